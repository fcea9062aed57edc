"""Store memory: one shared-memory window per node, one RMA window over the world.

Every rank owns a segment of ``MPI.Win.Allocate_shared`` on its node's
communicator and maps the segments of the other ranks of its node
(``Shared_query``), so it reads their objects in place. The same memory is also
exposed through a window on the whole communicator (``Win.Create``), read
across nodes with passive-target ``Lock(SHARED)`` + ``Get`` + ``Unlock``,
which completes without the target's help (DESIGN.md 4; dynamic windows need
it and are avoided). Where MPI cannot make that window, cross-node reads are
messages to the holder instead (``StoreManager``).

``MPIRT_RANKS_PER_NODE=k`` (read by the driver) groups ranks into nodes of k
consecutive ranks instead of asking MPI, so one machine can play several nodes.
"""
import os
import threading

import numpy as np

from .._mpi_env import mpi

# Cross-node reads move this much per MPI call, far below MPI's int count limit.
RMA_CHUNK = 1 << 30


def node_communicator(comm, ranks_per_node=None):
    """Ranks sharing memory: MPI's view of the node, or groups of ``ranks_per_node``."""
    MPI = mpi()
    if ranks_per_node:
        return comm.Split(comm.Get_rank() // ranks_per_node, comm.Get_rank())
    return comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())


class Arena:
    """This rank's view of store memory (collective to create and to free)."""

    def __init__(self, comm, bytes_per_node, ranks_per_node=None):
        MPI = mpi()
        self.rank = comm.Get_rank()
        self.node_comm = node_communicator(comm, ranks_per_node)
        self.node_ranks = self.node_comm.allgather(self.rank)
        # Each rank of the node gets an equal segment starting on a 64-byte boundary (numpy data read
        # in place must be aligned; some MPI libraries' shared windows start off it: Open MPI 4.1).
        segment_bytes = bytes_per_node // len(self.node_ranks) // 64 * 64
        # Which node every world rank is on (the lowest world rank of its node names it).
        self.node_of = comm.allgather(min(self.node_ranks))
        self.shared = MPI.Win.Allocate_shared(segment_bytes + 64, 1, comm=self.node_comm)
        self.segments = {}
        for local, world in enumerate(self.node_ranks):
            buffer, _ = self.shared.Shared_query(local)
            whole = np.frombuffer(buffer, dtype=np.uint8, count=segment_bytes + 64)
            start = -whole.ctypes.data % 64
            self.segments[world] = whole[start:start + segment_bytes]
        self.capacity = segment_bytes
        self.world = self._world_window(MPI, comm)
        self._rma_lock = threading.Lock()  # one passive-target epoch at a time from this process
        self.remote_gets = 0
        self.remote_bytes = 0

    def _world_window(self, MPI, comm):
        """The RMA window for reads across nodes; None on one node (nothing to read remotely),
        with ``MPIRT_STORE_RMA=0``, or where the MPI library cannot make one: some site builds
        (Open MPI 4.1's pt2pt one-sided component) refuse windows under MPI_THREAD_MULTIPLE.
        Without it, readers on other nodes ask the holder for the bytes by message."""
        wanted = os.environ.get("MPIRT_STORE_RMA", "1") not in ("0", "false", "no")
        # Every rank must decide alike (creating and freeing the window are collective).
        if len(set(self.node_of)) == 1 or not comm.allreduce(wanted, op=MPI.LAND):
            return None
        try:
            window = MPI.Win.Create(self.segments[self.rank], 1, comm=comm)
        except MPI.Exception:
            window = None
        # A window only some ranks got is left alone (freeing it is collective too).
        return window if comm.allreduce(window is not None, op=MPI.LAND) else None

    def same_node(self, rank):
        return self.node_of[rank] == self.node_of[self.rank]

    def own(self):
        """This rank's segment, writable."""
        return self.segments[self.rank]

    def local_view(self, rank, offset, size):
        """An array over bytes of a segment on this node (no copy); a new object each call."""
        return self.segments[rank][offset:offset + size]

    def fetch(self, rank, offset, size):
        """Copy bytes of another node's segment here with RMA Get; returns a new uint8 array."""
        MPI = mpi()
        out = np.empty(size, dtype=np.uint8)
        with self._rma_lock:
            self.world.Lock(rank, MPI.LOCK_SHARED)
            try:
                for start in range(0, size, RMA_CHUNK):
                    count = min(RMA_CHUNK, size - start)
                    self.world.Get([out[start:start + count], count, MPI.BYTE], rank,
                                   target=(offset + start, count, MPI.BYTE))
            finally:
                self.world.Unlock(rank)
            self.remote_gets += 1
            self.remote_bytes += size
        return out

    def free(self):
        """Collective: release both windows and the node communicator."""
        self.segments = {}
        if self.world is not None:
            self.world.Free()
        self.shared.Free()
        self.node_comm.Free()
