"""Store memory: one file-backed pool per node, every rank of the node maps all of it.

The node's lowest rank (its *leader*) decides the pool's size and place (``capacity.py``: a
file in ``/dev/shm``, or in node-local temporary space when ``/dev/shm`` is too small), creates
the file (sparse: pages are backed only when written) with a small header holding the chunk
table (``chunks.py``); the node's other ranks open and map it, then it is unlinked at once, so
a killed job leaves nothing behind and the memory goes back when the node's last process exits.
A mapped plain file needs no MPI shared window, and works where ``/dev/shm`` is small.

The same memory is exposed through a window on the whole communicator (``Win.Create``, every
rank over the whole pool), read across nodes with passive-target ``Lock(SHARED)`` + ``Get`` +
``Unlock``, which completes without the target's help (DESIGN.md 4; dynamic windows need it and
are avoided). Where MPI cannot make that window, cross-node reads are messages to the holder.

``MPIRT_RANKS_PER_NODE=k`` (read by the driver) groups ranks into nodes of k consecutive ranks
instead of asking MPI, so one machine can play several nodes.
"""
import fcntl
import mmap
import os
import sys
import tempfile
import threading

import numpy as np

from ..core._mpi_env import mpi
from . import capacity as store_capacity
from .chunks import ChunkTable, chunk_geometry

# Cross-node reads move this much per MPI call, far below MPI's int count limit.
RMA_CHUNK = 1 << 30


class RmaTargetDied(Exception):
    """The rank an RMA read was reading from died before the read completed (``Arena.fetch``)."""


def node_communicator(comm, ranks_per_node=None):
    """Ranks sharing memory: MPI's view of the node, or groups of ``ranks_per_node``."""
    MPI = mpi()
    if ranks_per_node:
        return comm.Split(comm.Get_rank() // ranks_per_node, comm.Get_rank())
    return comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())


class NodeLock:
    """Mutual exclusion among the node's processes (``flock`` on the pool file each opened; a process
    dying holding it releases it) and this process's threads (``flock`` does not tell them apart)."""

    def __init__(self, fd):
        self._fd = fd
        self._threads = threading.Lock()

    def __enter__(self):
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


class Arena:
    """This rank's view of store memory (collective to create and to free)."""

    def __init__(self, comm, requested_bytes=None, ranks_per_node=None):
        """``requested_bytes``: the node pool's size, or None for the per-node default."""
        MPI = mpi()
        self.rank = comm.Get_rank()
        self.node_comm = node_communicator(comm, ranks_per_node)
        # Which node every world rank is on (the lowest world rank of its node names it).
        self.node_of = comm.allgather(min(self.node_comm.allgather(self.rank)))
        plan = self._create_pool(requested_bytes) if self.node_comm.Get_rank() == 0 else None
        plan = self.node_comm.bcast(plan, root=0)
        if isinstance(plan, str):
            raise MemoryError(plan)
        path, self.capacity, self.capacity_reason, self.directory, warning = plan
        fd = self._fd if self.node_comm.Get_rank() == 0 else os.open(path, os.O_RDWR)
        self.node_comm.Barrier()   # every rank has the file open: it can go
        if self.node_comm.Get_rank() == 0:
            os.unlink(path)
            if warning:
                sys.stderr.write(warning + "\n")
        self._map(fd)
        self.world = self._world_window(MPI, comm)
        self._window_size = comm.Get_size()

    @classmethod
    def joined(cls, rank, node_of, pool):
        """The arena of a rank joining a running job (``replacement.py``): it maps its node's pool
        through ``/proc/PID/fd/N`` of a rank there (the file was unlinked at start-up), ``pool``
        being that rank's ``pool_handle()``. The world window comes later (``make_window``)."""
        arena = cls.__new__(cls)
        arena.rank = rank
        arena.node_comm = None
        arena.node_of = list(node_of)
        pid, fd, arena.capacity, arena.capacity_reason, arena.directory = pool
        arena._map(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR))
        arena.world = None
        return arena

    def _map(self, fd):
        self._fd = fd
        header_bytes, chunk_bytes, count = chunk_geometry(self.capacity)
        self._mmap = mmap.mmap(fd, header_bytes + self.capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.memory = np.frombuffer(self._mmap, dtype=np.uint8)
        self.lock = NodeLock(fd)
        self.chunks = ChunkTable(self.memory, self.lock, self.capacity)
        self._rma_lock = threading.Lock()  # one passive-target epoch at a time from this process
        self._window_rank = None           # rank -> its rank in ``world`` (None: the same number)
        self._old_windows = []             # replaced windows, kept: freeing one is collective

    def pool_handle(self):
        """What a rank joining this node needs to map the pool (see ``joined``)."""
        return os.getpid(), self._fd, self.capacity, self.capacity_reason, self.directory

    def make_window(self, comm):
        """Collective over ``comm`` (a communicator of survivors and newcomers): a world window
        over this rank's pool, or None on every rank if some rank could not make one."""
        MPI = mpi()
        memory = self.memory if self.memory is not None else np.empty(0, dtype=np.uint8)
        try:
            window = MPI.Win.Create(memory, 1, comm=comm)
        except MPI.Exception:
            window = None
        # A window only some ranks got is left alone (freeing it is collective).
        return window if comm.allreduce(window is not None, op=MPI.LAND) else None

    def reaches(self, rank):
        """Whether ``rank``'s pool can be read through the world window (a rank that joined in a
        one-host round is not in it: it is read by message)."""
        if self.world is None:
            return False
        if self._window_rank is None:
            return rank < self._window_size
        return rank in self._window_rank

    def use_window(self, window, members):
        """Read other nodes through ``window`` from now on (``members``: the rank number of each of
        its ranks); the old one stays allocated."""
        with self._rma_lock:
            if self.world is not None:
                self._old_windows.append(self.world)
            self.world = window
            self._window_rank = {rank: i for i, rank in enumerate(members)}

    def add_rank(self, rank, node):
        """A rank that joined ``node``."""
        while len(self.node_of) <= rank:
            self.node_of.append(None)
        self.node_of[rank] = node

    def _create_pool(self, requested_bytes):
        """Leader: size the pool, make its file and header; the plan for the node, or an error text."""
        directory = None
        try:
            size, why, directory, warning = store_capacity.choose(requested_bytes)
            fd, path = tempfile.mkstemp(prefix=f"mpirt-store-{os.getpid()}-", dir=directory)
            header_bytes, _, _ = chunk_geometry(size)
            os.ftruncate(fd, header_bytes + size)
            os.pwrite(fd, ChunkTable.initial_header(size), 0)
        except OSError as exc:
            return f"mpirt: cannot create the object store file in {directory}: {exc}"
        self._fd = fd
        return path, size, why, directory, warning

    def _world_window(self, MPI, comm):
        """The RMA window for reads across nodes; None on one node, with ``MPIRT_STORE_RMA=0``, or
        where MPI cannot make one (Open MPI 4.1's pt2pt one-sided component refuses windows
        under MPI_THREAD_MULTIPLE): then readers on other nodes ask the holder by message."""
        wanted = os.environ.get("MPIRT_STORE_RMA", "1") not in ("0", "false", "no")
        # Every rank must decide alike (creating and freeing the window are collective).
        if len(set(self.node_of)) == 1 or not comm.allreduce(wanted, op=MPI.LAND):
            return None
        return self.make_window(comm)

    def same_node(self, rank):
        """Whether ``rank`` shares this rank's pool (False for a rank not heard of yet)."""
        return rank < len(self.node_of) and self.node_of[rank] == self.node_of[self.rank]

    def fetch(self, rank, offset, size, check, target_died=lambda: False):
        """Two new uint8 arrays: bytes of ``rank``'s pool copied with RMA Get, then the ``check`` =
        (offset, size) bytes read after them (the first Gets complete before the second starts, in one
        lock epoch: where the target must help, the epoch is what costs; with a target driving MPI
        without pause the second read added ~5 us to a 1 MB read).

        The Gets are request-based and waited for here, asking ``target_died()`` meanwhile: a target that
        dies mid-read (ULFM) raises ``RmaTargetDied`` instead of leaving the reader in ``Flush`` for ever
        (Open MPI's one-sided component is not failure-aware; the 5-minute soak hung there once when a
        holder was SIGKILLed during a read). The epoch on the dead target is left open: ending it would wait
        on the dead rank too, and reads go to its node's adopter from then on."""
        MPI = mpi()
        out = np.empty(size, dtype=np.uint8)
        check_offset, check_size = check
        again = np.empty(check_size, dtype=np.uint8)
        with self._rma_lock:
            if self._window_rank is not None:
                rank = self._window_rank[rank]
            self.world.Lock(rank, MPI.LOCK_SHARED)
            ended = False
            try:
                self._wait([self.world.Rget([out[start:start + count], count, MPI.BYTE], rank,
                                            target=(offset + start, count, MPI.BYTE))
                            for start, count in ((start, min(RMA_CHUNK, size - start))
                                                 for start in range(0, size, RMA_CHUNK))], target_died)
                self._wait([self.world.Rget([again, check_size, MPI.BYTE], rank,
                                            target=(check_offset, check_size, MPI.BYTE))], target_died)
                ended = True
            finally:
                if ended or not target_died():
                    self.world.Unlock(rank)
        return out, again

    @staticmethod
    def _wait(requests, target_died):
        """Wait for RMA ``requests``, yielding the core between tests (the target may need it to serve them)."""
        MPI = mpi()
        while True:
            try:
                if MPI.Request.Testall(requests):
                    return
            except MPI.Exception:
                if target_died():
                    raise RmaTargetDied() from None
                raise
            if target_died():
                raise RmaTargetDied()
            os.sched_yield()

    def free(self):
        """Collective: free the window and node communicator; the mapping goes with its last view."""
        if self.world is not None:
            self.world.Free()
        if self.node_comm is not None:
            self.node_comm.Free()
        self.memory = None
        try:
            self._mmap.close()
        except BufferError:   # arrays still view it: the mapping lives until they go
            pass
