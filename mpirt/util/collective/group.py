"""One collective group as a rank holds it: the sub-communicator of its members' ranks, the meeting of
members that share the rank, and each operation: the members' buffers combined on their rank (with numpy,
or CuPy for GPU memory), then exchanged between ranks by a transport (``transports.py``).

The members' MPI ranks come from the head (``scheduler/collectives.py``); ``MPI_Comm_create_group`` then
builds a communicator of just those ranks (collective over them only, so the rest of the job is not
involved). Several members may live on one rank (actors share a worker rank when it has the CPUs): they
meet first, the last to arrive combines their tensors, makes the one MPI call for the rank, and hands
each its result. Every operation starts with a check that the members agree on it (kind, dtype, shape,
root, op): a tiny allreduce, so that a mismatch raises a clear error on every member instead of
corrupting memory or hanging.

Waiting is non-blocking (``Test`` with a short spin, then sleeps that grow to a millisecond): an idle
member does not hold a core, and a member whose rank died is noticed (``failures.dead``), which fails the
operation and the group with an error instead of a hang.
"""
import collections
import functools
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ...core._mpi_env import mpi
from .peer_comm import PeerComm
from .transports import HostMPI, choose_gpu_transport, is_device_array, local_mpi_is_cuda_aware, synchronize_device
from .types import UFUNC_NAMES

_SPINS = 200             # Test calls before the first sleep: small operations finish within them
_SHORT_SLEEP_S = 2e-5    # sleeps while the operation is young: MPI moves data only while a rank is in a call
_SHORT_SLEEPS_FOR_S = 0.02
_LONGEST_SLEEP_S = 1e-3  # a member that waits long for the others sleeps up to this
_BUILD_TIMEOUT_S = 30.0
_TAG_BASE = 1000         # communicator-building tags, away from the transport's tag 7


@functools.lru_cache(maxsize=1024)
def _hash(signature: Any) -> int:
    return zlib.crc32(repr(signature).encode())


class CollectiveGroupError(RuntimeError):
    """An operation of a collective group failed: the members disagreed on it, or a member's rank died."""


def _array_module(buffer: Any):
    """numpy, or CuPy for a GPU buffer: the members' tensors are combined where they are."""
    if is_device_array(buffer):
        import cupy
        return cupy
    return np


def _combine(op: str, total: Any, other: Any) -> None:
    getattr(_array_module(total), UFUNC_NAMES[op])(total, other, out=total)


class _Meeting:
    __slots__ = ("payloads", "signatures", "done", "error")

    def __init__(self):
        self.payloads: Dict[int, Any] = {}
        self.signatures: List[Any] = []
        self.done = False
        self.error: Optional[BaseException] = None


class RankGroup:
    """A collective group's state on one rank, shared by the group's members that live there."""

    def __init__(self, rt, name: str, table: Dict[int, int], backend: str, serial: int):
        self.rt = rt
        self.name = name
        self.backend = backend
        self.serial = serial
        self.table = table                              # group rank -> MPI rank
        self.world_size = len(table)
        self.mpi_ranks = sorted(set(table.values()))    # the sub-communicator's ranks, in its order
        self.sub_rank = {r: i for i, r in enumerate(self.mpi_ranks)}
        members_of = {r: sorted(g for g, m in table.items() if m == r) for r in self.mpi_ranks}
        self.order = [g for r in self.mpi_ranks for g in members_of[r]]   # group ranks by sub-rank
        self.counts = [len(members_of[r]) for r in self.mpi_ranks]
        self.local = members_of[rt.rank]
        self.users = set(self.local)    # local members that have not destroyed the group
        self.comm = None
        self.broken: Optional[str] = None
        self._built = threading.Event()
        self._building = False
        self._cond = threading.Condition()
        self._meetings: Dict[int, _Meeting] = {}
        self._next_seq = {g: 0 for g in self.local}
        self._mail: Dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
        self._host = HostMPI(self)
        self._gpu = None      # the transport of GPU buffers, chosen by the ranks at their first GPU operation

    # -- the communicator -------------------------------------------------------------
    def build(self) -> None:
        """Build the sub-communicator once for the rank (its first member does; the others wait)."""
        with self._cond:
            builder = not self._building
            self._building = True
        if not builder:
            self._built.wait()
            self._check("building the communicator")
            return
        try:
            if len(self.mpi_ranks) > 1:
                self.comm = self._create_communicator()
        except BaseException as error:
            self.broken = f"its communicator could not be built: {error}"
            raise CollectiveGroupError(f"the collective group '{self.name}' could not be built: {error}") from error
        finally:
            self._built.set()

    def _create_communicator(self):
        """A communicator of the members' ranks, made by them alone: ``MPI_Comm_create_group`` on the
        job's communicator. A process that knows of a failed rank cannot build communicators any more
        under ULFM (Open MPI 5.0.11: see ``peer_comm.py``), so the members first tell each other, in
        messages, whether any of them knows of a death; if one does, the group's communicator is made
        of messages (``PeerComm``)."""
        MPI = mpi()
        rt = self.rt
        if rt.members is not None or rt.collective_comm is None or max(self.mpi_ranks) >= rt.comm.Get_size():
            raise CollectiveGroupError(f"collective group '{self.name}': a member runs on a rank that "
                                       f"replaced a dead one, which collective groups do not span yet")
        peers = PeerComm(rt.collective_comm, self.mpi_ranks, rt.rank, self.serial, self.wait)
        deaths = np.array([len(rt.failures.dead)], dtype=np.int64)
        peers.Allreduce(MPI.IN_PLACE, deaths, MPI.MAX)
        if deaths[0]:
            return peers
        group = rt.comm.Get_group().Incl(self.mpi_ranks)
        try:
            return self._bounded(lambda: rt.comm.Create_group(group, _TAG_BASE + self.serial % 30000))
        finally:
            group.Free()

    def _bounded(self, build: Callable[[], Any]):
        """Run ``build`` on a thread of its own; fail after ``_BUILD_TIMEOUT_S`` instead of hanging the
        member. A rank whose death becomes known between the members' check and their
        ``MPI_Comm_create_group`` makes it fail on the members that know, and the others wait in it."""
        outcome: Dict[str, Any] = {}

        def run():
            try:
                outcome["comm"] = build()
            except BaseException as error:  # noqa: BLE001 - raised on the member's thread below
                outcome["error"] = error

        thread = threading.Thread(target=run, name="mpirt-collective-build", daemon=True)
        thread.start()
        thread.join(_BUILD_TIMEOUT_S)
        if thread.is_alive():
            raise CollectiveGroupError(f"building its communicator did not finish within {_BUILD_TIMEOUT_S:g} s "
                                       f"(a rank died as the members built it); try again")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["comm"]

    def free(self) -> None:
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None
        if self.comm is not None and self.broken is None:
            self.comm.Free()
        self.comm = None

    # -- waiting ------------------------------------------------------------------------
    def _check(self, what: str) -> None:
        if self.broken is not None:
            raise CollectiveGroupError(f"{what} in the collective group '{self.name}' cannot run: {self.broken}; "
                                       f"destroy the group and create it again")

    def wait(self, request, what: str, status=None) -> None:
        """Wait for ``request`` without holding a core; fail the group if a member's rank dies."""
        MPI = mpi()
        spins = 0
        delay = _SHORT_SLEEP_S
        short_until = 0.0
        try:
            while not request.Test(status):
                spins += 1
                if spins < _SPINS:
                    continue
                if self.broken is not None:
                    raise CollectiveGroupError(f"{what} in the collective group '{self.name}' stopped: {self.broken}")
                if self.rt.shutdown.stopped.is_set():
                    raise CollectiveGroupError(f"{what} in the collective group '{self.name}' stopped: mpirt is "
                                               f"shutting down")
                time.sleep(delay)
                now = time.monotonic()
                if not short_until:
                    short_until = now + _SHORT_SLEEPS_FOR_S
                elif now > short_until:
                    delay = min(delay * 2, _LONGEST_SLEEP_S)
                dead = self.rt.failures.dead.intersection(self.mpi_ranks)
                if dead:
                    self._break(f"the rank(s) {sorted(dead)} of its members died")
                    raise CollectiveGroupError(f"{what} in the collective group '{self.name}' failed: members on "
                                               f"rank(s) {sorted(dead)} died. The group cannot be used again: "
                                               f"destroy it and create a new one of the live members")
        except MPI.Exception as error:
            raise self._failed(what, error) from error

    def call(self, what: str, blocking_call: Callable[[], Any]) -> None:
        """Run the blocking MPI call of an operation the members have agreed on.

        The agreement (``_agree``) is itself a meeting of every rank, so by now all of them are in the
        operation and a blocking call waits only for the data to move. It takes Open MPI's tuned
        algorithms, which run several times faster than the non-blocking ones progressed by ``Test``
        between sleeps (2.9x at 256 MB between two ranks here; 10x on a GPU machine's Open MPI 4.1).
        If a member's rank dies meanwhile, ULFM ends the call with an error (without ULFM the job ends)."""
        self._check(what)
        try:
            blocking_call()
        except mpi().Exception as error:
            raise self._failed(what, error) from error

    def _failed(self, what: str, error) -> CollectiveGroupError:
        if error.Get_error_class() == mpi().ERR_TRUNCATE:
            return CollectiveGroupError(f"{what} in the collective group '{self.name}': the message sent is "
                                        f"larger than the receiving tensor")
        self._break(f"MPI failed: {error}")
        return CollectiveGroupError(f"{what} in the collective group '{self.name}' failed: {error}")

    def abandon(self, why: str) -> None:
        """Stop this rank's members waiting in the group (their operation raises ``why``): the group's
        user is shutting it down, and a member elsewhere may never come."""
        self.broken = why
        with self._cond:
            self._cond.notify_all()

    def _break(self, why: str) -> None:
        self.broken = why
        if self.comm is not None and hasattr(self.comm, "Revoke") and self.rt.failures.enabled:
            try:
                self.comm.Revoke()     # the members still waiting get an error instead of waiting on
            except Exception:  # noqa: BLE001 - revoking is best effort
                pass

    # -- meeting the rank's other members -------------------------------------------------
    def meet(self, rank: int, what: str, signature: Any, payload: Any,
             run: Callable[[Dict[int, Any]], None]) -> None:
        """Run one operation of member ``rank``: at once if it is the rank's only member, else once every
        member here brought its ``payload``, by the last to arrive."""
        self._check(what)
        if len(self.local) == 1:
            self._agree(what, [signature])
            run({rank: payload})
            return
        with self._cond:
            seq = self._next_seq[rank]
            self._next_seq[rank] = seq + 1
            meeting = self._meetings.setdefault(seq, _Meeting())
            meeting.payloads[rank] = payload
            meeting.signatures.append(signature)
            if len(meeting.payloads) < len(self.local):
                while not meeting.done and self.broken is None:
                    self._cond.wait()
                if meeting.error is not None:
                    raise meeting.error
                self._check(what)
                return
            del self._meetings[seq]
        try:
            self._agree(what, meeting.signatures)
            run(meeting.payloads)
        except BaseException as error:
            meeting.error = error
            raise
        finally:
            with self._cond:
                meeting.done = True
                self._cond.notify_all()

    def _agree(self, what: str, signatures: List[Any]) -> None:
        """Raise on every member unless all of them called ``what`` alike (also a barrier)."""
        hashes = [_hash(s) for s in signatures]
        agreed = min(hashes) == max(hashes)
        if self.comm is not None:
            MPI = mpi()
            extremes = np.array([max(hashes), -min(hashes)], dtype=np.int64)
            self.wait(self.comm.Iallreduce(MPI.IN_PLACE, extremes, MPI.MAX), what)
            agreed = extremes[0] == -extremes[1]
        if not agreed:
            raise CollectiveGroupError(
                f"{what} in the collective group '{self.name}': the members called it with different arguments "
                f"(here: {signatures[0]}). Every member must pass tensors of the same dtype and shape, and the "
                f"same op and root rank")

    # -- operations (payloads: group rank -> buffers of that member, host or device arrays alike) -------
    def transport(self, buffer: Any):
        """How the group's ranks exchange ``buffer``: MPI on host memory, or for GPU memory the path the
        ranks chose together at their first GPU operation (``transports.choose_gpu_transport``)."""
        if not is_device_array(buffer):
            return self._host
        if self._gpu is None:
            self._gpu = choose_gpu_transport(self)
        return self._gpu

    @property
    def gpu_path(self) -> Optional[str]:
        """The name of the path GPU tensors take between this group's ranks (None before the first)."""
        return None if self._gpu is None else self._gpu.name

    def allreduce(self, payloads: Dict[int, Any], op: str) -> None:
        buffers = [payloads[g] for g in sorted(payloads)]
        total = buffers[0]
        for other in buffers[1:]:
            _combine(op, total, other)
        if self.comm is not None:
            self.transport(total).allreduce(total, op)
        for other in buffers[1:]:
            other[...] = total

    def broadcast(self, payloads: Dict[int, Any], src: int) -> None:
        data = payloads[src] if src in payloads else payloads[min(payloads)]
        if self.comm is not None:
            self.transport(data).broadcast(data, self.sub_rank[self.table[src]])
        for buffer in payloads.values():
            if buffer is not data:
                buffer[...] = data

    def reduce(self, payloads: Dict[int, Any], dst: int, op: str) -> None:
        buffers = [payloads[g] for g in sorted(payloads)]
        total = buffers[0] if len(buffers) == 1 else buffers[0].copy()   # the others' tensors stay as they are
        for other in buffers[1:]:
            _combine(op, total, other)
        if self.comm is not None:
            self.transport(total).reduce(total, self.sub_rank[self.table[dst]], op, dst in payloads)
        if dst in payloads and payloads[dst] is not total:
            payloads[dst][...] = total

    def allgather(self, payloads: Dict[int, tuple]) -> None:
        """payloads: group rank -> (its input as bytes, its output list as bytes)."""
        size = next(iter(payloads.values()))[0].nbytes
        if self.comm is not None:
            mine = [payloads[g][0] for g in self.local]
            xp = _array_module(mine[0])
            send = mine[0] if len(mine) == 1 else xp.concatenate(mine)
            gathered = xp.empty(size * self.world_size, dtype=np.uint8)
            self.transport(send).allgatherv(send, gathered, [size * n for n in self.counts])
            pieces = {g: gathered[i * size:(i + 1) * size] for i, g in enumerate(self.order)}
        else:
            pieces = {g: inputs for g, (inputs, _) in payloads.items()}
        for _, outputs in payloads.values():
            for g, output in enumerate(outputs):
                output[...] = pieces[g]

    def reducescatter(self, payloads: Dict[int, tuple], op: str) -> None:
        """payloads: group rank -> (its output buffer, its list of world_size input buffers)."""
        members = sorted(payloads)
        totals = []
        for g in range(self.world_size):
            parts = [payloads[m][1][g] for m in members]
            total = parts[0].copy()
            for other in parts[1:]:
                _combine(op, total, other)
            totals.append(total.reshape(-1))
        if self.comm is None:
            for m in members:
                payloads[m][0].reshape(-1)[...] = totals[m]
            return
        size = totals[0].size
        xp = _array_module(totals[0])
        send = xp.concatenate([totals[g] for g in self.order])
        received = xp.empty(size * len(self.local), dtype=send.dtype)
        self.transport(send).reduce_scatter(send, received, [size * n for n in self.counts], op)
        for i, m in enumerate(self.local):
            payloads[m][0].reshape(-1)[...] = received[i * size:(i + 1) * size]

    # -- point to point ------------------------------------------------------------------
    def _tag(self, src: int, dst: int) -> int:
        return src * self.world_size + dst

    def send(self, rank: int, data: np.ndarray, dst: int) -> None:
        self._check("send")
        if self.table[dst] == self.rt.rank:
            with self._cond:
                self._mail[(rank, dst)].append(data.copy())
                self._cond.notify_all()
            return
        comm = self.comm
        assert comm is not None, "members on other ranks share a communicator"
        if is_device_array(data):
            if local_mpi_is_cuda_aware():
                synchronize_device()
            else:
                data = data.get()       # staged: MPI matches it with the receiver's buffer wherever that is
        self.wait(comm.Isend(data, self.sub_rank[self.table[dst]], self._tag(rank, dst)), "send")

    def recv(self, rank: int, data: np.ndarray, src: int) -> None:
        self._check("recv")
        if self.table[src] == self.rt.rank:
            with self._cond:
                box = self._mail[(src, rank)]
                while not box and self.broken is None:
                    self._cond.wait()
                self._check("recv")
                sent = box.popleft()
            if sent.nbytes != data.nbytes:
                raise CollectiveGroupError(f"recv in the collective group '{self.name}': rank {src} sent "
                                           f"{sent.nbytes} bytes, the receiving tensor holds {data.nbytes}")
            data[...] = sent
            return
        MPI = mpi()
        status = MPI.Status()
        comm = self.comm
        assert comm is not None, "members on other ranks share a communicator"
        target = data
        if is_device_array(data):
            if local_mpi_is_cuda_aware():
                synchronize_device()
            else:
                target = np.empty(data.shape, dtype=data.dtype)
        self.wait(comm.Irecv(target, self.sub_rank[self.table[src]], self._tag(src, rank)), "recv", status)
        if status.Get_count(MPI.BYTE) != data.nbytes:
            raise CollectiveGroupError(f"recv in the collective group '{self.name}': rank {src} sent "
                                       f"{status.Get_count(MPI.BYTE)} bytes, the receiving tensor holds {data.nbytes}")
        if target is not data:
            data.set(target)
