"""A collective group's communicator made of point-to-point messages, for groups formed after a rank died.

Under ULFM (Open MPI 5.0.11) a process that knows of a failed rank can no longer build communicators the
usual ways: ``MPI_Comm_create_group`` and ``MPI_Intercomm_create`` fail with ``MPI_ERR_PROC_FAILED`` /
``MPI_ERR_INTERN`` even for ranks that are all alive (measured, ``benchmarks/probes/group_after_death_probe.py``),
and ``MPI_Comm_create_from_group`` hung in about 1 of 10 formations inside mpirt. Messages between live
ranks keep working. So a group formed after a death exchanges its data with ``Isend``/``Irecv`` on a
communicator every rank duplicated at start-up for this alone (``Runtime.collective_comm``), with tags of
the group's own. It offers the few communicator methods the group and its transports call, with simple
algorithms (gather to the root, then send out): a group re-formed after a failure works, more slowly than
one on a communicator of its own with Open MPI's tuned collectives.

Every wait goes through the group's ``wait``, so a member's rank that dies fails the operation instead of
hanging it.
"""
from typing import Any, Callable, List

import numpy as np

from ...core._mpi_env import mpi
from .transports import mpi_op
from .types import UFUNC_NAMES

_TAG_SLOT = 1 << 20      # tags per group: its operations' tags and its members' send/recv pairs
_USER_TAGS = 16          # tags below this are the collective operations'; user send/recv tags follow


class _Done:
    """The request of an operation that already finished (``Test`` is True)."""

    def Test(self, status=None) -> bool:  # noqa: N802 - MPI's method name
        return True


def _ufunc(op) -> Callable:
    """numpy's function for the MPI reduce ``op`` the transports pass."""
    for name, ufunc_name in UFUNC_NAMES.items():
        if op == mpi_op(name):
            return getattr(np, ufunc_name)
    raise ValueError(f"reduce op {op!r} is not one of SUM, PRODUCT, MIN, MAX")


def _array(spec) -> np.ndarray:
    """The numpy array of a buffer argument (an array, or mpi4py's ``[array, ...]`` form) as flat bytes
    or elements, viewed without a copy."""
    if isinstance(spec, (list, tuple)):
        spec = spec[0]
    return np.asarray(spec)


class PeerComm:
    """The communicator of one group formed after a rank died: ``ranks`` are the members' ranks in the
    job's communicator ``comm``, in the group's sub-rank order; ``wait(request, what)`` is the group's."""

    messages_only = True     # GPU buffers take the staged path (``transports.choose_gpu_transport``)

    def __init__(self, comm, ranks: List[int], my_rank: int, serial: int, wait: Callable[[Any, str], None]):
        MPI = mpi()
        tag_ub = MPI.COMM_WORLD.Get_attr(MPI.TAG_UB) or 32767    # kept on the world communicator only
        slots = max(1, int(tag_ub) // _TAG_SLOT)
        self._comm = comm
        self._ranks = list(ranks)
        self._me = self._ranks.index(my_rank)
        self._base = (serial % slots) * _TAG_SLOT
        self._wait = wait

    def Get_rank(self) -> int:  # noqa: N802 - the names of MPI's communicator methods
        return self._me

    def Get_size(self) -> int:  # noqa: N802
        return len(self._ranks)

    def Free(self) -> None:  # noqa: N802
        """Nothing to free: the messages travel on the job's collective communicator."""

    # -- messages ------------------------------------------------------------------------
    def _send(self, data: np.ndarray, to: int, tag: int, what: str) -> None:
        self._wait(self._comm.Isend(np.ascontiguousarray(data), self._ranks[to], self._base + tag), what)

    def _recv(self, into: np.ndarray, source: int, tag: int, what: str) -> None:
        self._wait(self._comm.Irecv(into, self._ranks[source], self._base + tag), what)

    def _exchange(self, sends, receives, tag: int, what: str) -> None:
        """Post every receive, then every send, then wait for all: two members sending each other large
        messages first would each wait for the other's receive."""
        requests = [self._comm.Irecv(into, self._ranks[source], self._base + tag) for source, into in receives]
        requests += [self._comm.Isend(np.ascontiguousarray(data), self._ranks[to], self._base + tag)
                     for to, data in sends]
        for request in requests:
            self._wait(request, what)

    def _others(self):
        return [r for r in range(len(self._ranks)) if r != self._me]

    # -- the collective operations the group uses ------------------------------------------------
    def Allreduce(self, sendbuf, recvbuf, op) -> None:  # noqa: N802
        buffer = self._in_place(sendbuf, recvbuf)
        self._reduce_to(buffer, 0, op, "allreduce")
        self.Bcast(buffer, root=0)

    def Iallreduce(self, sendbuf, recvbuf, op) -> _Done:  # noqa: N802
        self.Allreduce(sendbuf, recvbuf, op)
        return _Done()

    def Reduce(self, sendbuf, recvbuf, op, root: int = 0) -> None:  # noqa: N802
        if self._me == root:
            buffer = self._in_place(sendbuf, recvbuf)
        else:
            buffer = _array(sendbuf).copy()
        self._reduce_to(buffer, root, op, "reduce")

    def _reduce_to(self, buffer: np.ndarray, root: int, op, what: str) -> None:
        """Combine every member's ``buffer`` into the root's, in sub-rank order (so every run adds alike)."""
        flat = buffer.reshape(-1)
        if self._me != root:
            self._send(flat, root, 1, what)
            return
        combine = _ufunc(op)
        incoming = np.empty_like(flat)
        for source in self._others():
            self._recv(incoming, source, 1, what)
            combine(flat, incoming, out=flat)

    def Bcast(self, buffer, root: int = 0) -> None:  # noqa: N802
        flat = _array(buffer).reshape(-1)
        if self._me == root:
            for to in self._others():
                self._send(flat, to, 2, "broadcast")
        else:
            self._recv(flat, root, 2, "broadcast")

    def Allgatherv(self, sendbuf, recvbuf) -> None:  # noqa: N802
        """``recvbuf`` is ``[array, (counts, displacements), type]`` in elements of ``array``."""
        send = _array(sendbuf).reshape(-1)
        received = _array(recvbuf).reshape(-1)
        counts, displacements = recvbuf[1]
        received[displacements[self._me]:displacements[self._me] + counts[self._me]] = send
        self._exchange([(to, send) for to in self._others()],
                       [(source, received[displacements[source]:displacements[source] + counts[source]])
                        for source in self._others()], 3, "allgather")

    def Reduce_scatter(self, sendbuf, recvbuf, counts: List[int], op) -> None:  # noqa: N802
        """Member ``i`` receives the reduction of everyone's ``counts[i]`` elements at its offset."""
        send = _array(sendbuf).reshape(-1)
        received = _array(recvbuf).reshape(-1)
        offsets = [sum(counts[:i]) for i in range(len(counts))]
        mine = send[offsets[self._me]:offsets[self._me] + counts[self._me]]
        incoming = {source: np.empty_like(mine) for source in self._others()}
        self._exchange([(to, send[offsets[to]:offsets[to] + counts[to]]) for to in self._others()],
                       list(incoming.items()), 4, "reducescatter")
        total = received[:counts[self._me]]
        total[...] = mine
        combine = _ufunc(op)
        for source in sorted(incoming):        # a fixed order: runs of one program add alike
            combine(total, incoming[source], out=total)

    # -- the members' send/recv --------------------------------------------------------
    def Isend(self, data, dest: int, tag: int):  # noqa: N802
        return self._comm.Isend(np.ascontiguousarray(data), self._ranks[dest], self._base + _USER_TAGS + tag)

    def Irecv(self, data, source: int, tag: int):  # noqa: N802
        return self._comm.Irecv(data, self._ranks[source], self._base + _USER_TAGS + tag)

    def _in_place(self, sendbuf, recvbuf) -> np.ndarray:
        if sendbuf is mpi().IN_PLACE:
            return _array(recvbuf)
        buffer = _array(recvbuf)
        buffer[...] = _array(sendbuf)
        return buffer
