"""How a collective group's ranks exchange their buffers: the step of an operation between ranks.

An operation runs in two steps (``group.RankGroup``): the members that share a rank combine their
tensors there, then the ranks exchange one buffer each. That second step is a transport:

- ``HostMPI``: MPI on host memory (numpy arrays, torch CPU tensors).
- For GPU tensors (CuPy arrays, torch CUDA tensors, seen as CuPy arrays), one of three, chosen by the
  group's ranks together at their first GPU operation (``choose_gpu_transport``), so that every rank
  takes the same one:
  - ``DeviceMPI``: MPI is handed the device memory, where every rank's MPI is CUDA-aware
    (``MPIX_Query_cuda_support``, or ``MPIRT_CUDA_AWARE_MPI=1``);
  - ``NCCL``: CuPy's NCCL bindings, where every rank has them, holds one member, and has a GPU no other
    rank of the group has (NCCL refuses two ranks on one GPU: ``NCCL_ERROR_INVALID_USAGE``, seen with
    NCCL 2.28 on a one-GPU H200). Its unique id travels over the group's MPI communicator: no address,
    no port;
  - ``StagedMPI``: device -> pinned host memory -> MPI -> device, everywhere else.
  ``MPIRT_COLLECTIVE_GPU_PATH=staged`` (on any rank) keeps a group on the staged path.

Point-to-point ``send``/``recv`` are not collective, so their ranks cannot choose together: each end
hands MPI device memory where its own MPI is CUDA-aware and stages through host memory otherwise (MPI
matches the two ends whatever memory each uses).

MPI transports make blocking calls through ``RankGroup.call``: the members have met in the agreement
step just before, so the call only moves data. NCCL's work is waited for through ``RankGroup.wait`` (the
stream polled between sleeps): a member's rank dying aborts the communicator instead of hanging it.
"""
import functools
import os
import socket
import zlib
from typing import Any, List

import numpy as np

from ...core._mpi_env import mpi
from ...store.device import mpi_is_cuda_aware

GPU_PATH_ENV = "MPIRT_COLLECTIVE_GPU_PATH"
_NCCL_UNIQUE_ID_BYTES = 128      # NCCL_UNIQUE_ID_BYTES: CuPy hands the id over as that many ints
_NCCL_DTYPES = ("int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "float32", "float64")


def mpi_op(op_name: str):
    MPI = mpi()
    return {"SUM": MPI.SUM, "PRODUCT": MPI.PROD, "MIN": MPI.MIN, "MAX": MPI.MAX}[op_name]


def is_device_array(buffer: Any) -> bool:
    return not isinstance(buffer, np.ndarray) and type(buffer).__module__.startswith("cupy")


def synchronize_device() -> None:
    """Wait for the GPU work queued so far (the combining kernels, torch's own streams) before another
    library (MPI, NCCL) reads the memory."""
    import cupy

    cupy.cuda.Device().synchronize()


@functools.lru_cache(maxsize=1)
def local_mpi_is_cuda_aware() -> bool:
    return mpi_is_cuda_aware()


class HostMPI:
    """MPI on the buffers as they are (host memory, or device memory where MPI is CUDA-aware)."""

    name = "mpi"

    def __init__(self, group):
        self.group = group

    def _prepare(self) -> None:
        """Called before MPI reads the buffers."""

    def close(self) -> None:
        """Give back what the transport holds (the group is destroyed)."""

    def allreduce(self, buffer, op: str) -> None:
        self._prepare()
        g = self.group
        g.call("allreduce", lambda: g.comm.Allreduce(mpi().IN_PLACE, buffer, mpi_op(op)))

    def broadcast(self, buffer, root: int) -> None:
        self._prepare()
        g = self.group
        g.call("broadcast", lambda: g.comm.Bcast(buffer, root=root))

    def reduce(self, buffer, root: int, op: str, at_root: bool) -> None:
        """Reduce into ``buffer`` at sub-rank ``root``; the others' ``buffer`` is only read."""
        self._prepare()
        g, MPI = self.group, mpi()
        if at_root:
            g.call("reduce", lambda: g.comm.Reduce(MPI.IN_PLACE, buffer, mpi_op(op), root))
        else:
            g.call("reduce", lambda: g.comm.Reduce(buffer, None, mpi_op(op), root))

    def allgatherv(self, send, received, counts: List[int]) -> None:
        """Bytes: ``send`` from each rank, into ``received`` in sub-rank order (``counts[i]`` bytes each)."""
        self._prepare()
        g, MPI = self.group, mpi()
        displacements = [sum(counts[:i]) for i in range(len(counts))]
        g.call("allgather", lambda: g.comm.Allgatherv([send, MPI.BYTE], [received, (counts, displacements), MPI.BYTE]))

    def reduce_scatter(self, send, received, counts: List[int], op: str) -> None:
        self._prepare()
        g = self.group
        g.call("reducescatter", lambda: g.comm.Reduce_scatter(send, received, counts, mpi_op(op)))


class DeviceMPI(HostMPI):
    """CUDA-aware MPI reading and writing device memory."""

    name = "cuda-aware mpi"

    def _prepare(self) -> None:
        synchronize_device()


class StagedMPI:
    """Device buffers copied into pinned host memory, MPI between hosts, and the result copied back.

    The pinned buffers stay with the group for its next operations (pinning is slow: ~1 ms per MB the
    first time), growing to the largest operation seen."""

    name = "staged mpi"

    def __init__(self, group):
        self.host = HostMPI(group)
        self._pinned: List[Any] = [None, None]      # (memory, nbytes) per slot: an input and an output

    def close(self) -> None:
        self._pinned = [None, None]

    def _stage(self, buffer, slot: int, copy_in: bool = True) -> np.ndarray:
        import cupy

        held = self._pinned[slot]
        if held is None or held[1] < buffer.nbytes:
            size = max(buffer.nbytes, 1)
            held = self._pinned[slot] = (cupy.cuda.alloc_pinned_memory(size), size)
        host = np.frombuffer(held[0], dtype=np.uint8, count=buffer.nbytes).view(buffer.dtype).reshape(buffer.shape)
        if copy_in:
            synchronize_device()    # work on other streams (torch's, the user's) that writes the buffer
            buffer.get(out=host)
        return host

    def allreduce(self, buffer, op: str) -> None:
        host = self._stage(buffer, 0)
        self.host.allreduce(host, op)
        buffer.set(host)

    def broadcast(self, buffer, root: int) -> None:
        host = self._stage(buffer, 0, copy_in=self.host.group.comm.Get_rank() == root)
        self.host.broadcast(host, root)
        buffer.set(host)

    def reduce(self, buffer, root: int, op: str, at_root: bool) -> None:
        host = self._stage(buffer, 0)
        self.host.reduce(host, root, op, at_root)
        if at_root:
            buffer.set(host)

    def allgatherv(self, send, received, counts: List[int]) -> None:
        host_send = self._stage(send, 0)
        host_received = self._stage(received, 1, copy_in=False)
        self.host.allgatherv(host_send, host_received, counts)
        received.set(host_received)

    def reduce_scatter(self, send, received, counts: List[int], op: str) -> None:
        host_send = self._stage(send, 0)
        host_received = self._stage(received, 1, copy_in=False)
        self.host.reduce_scatter(host_send, host_received, counts, op)
        received.set(host_received)


class _StreamDone:
    """A CUDA stream as ``RankGroup.wait`` waits on MPI requests: ``Test`` is whether its work is done."""

    def __init__(self, stream):
        self.stream = stream

    def Test(self, status=None):  # noqa: N802 - the MPI request's name
        return self.stream.done


class NCCL:
    """CuPy's NCCL communicator over the group's ranks (one member and one GPU each), bootstrapped over MPI.

    Operations are queued on CuPy's current stream after the data is ready, and waited for by polling the
    stream; if a member's rank dies meanwhile, the communicator is aborted (NCCL would wait for ever)."""

    name = "nccl"

    def __init__(self, group):
        from cupy.cuda import nccl

        self.group, self._nccl = group, nccl
        self.staged = StagedMPI(group)       # for the dtypes NCCL has no type for (int16, complex, bool)
        comm, MPI = group.comm, mpi()
        unique_id = np.zeros(_NCCL_UNIQUE_ID_BYTES, dtype=np.int64)
        if comm.Get_rank() == 0:
            unique_id[:] = nccl.get_unique_id()
        group.wait(comm.Ibcast([unique_id, MPI.INT64_T], root=0), "forming the NCCL communicator")
        self.comm = nccl.NcclCommunicator(comm.Get_size(), tuple(int(v) for v in unique_id), comm.Get_rank())
        self.ops = {"SUM": nccl.NCCL_SUM, "PRODUCT": nccl.NCCL_PROD, "MIN": nccl.NCCL_MIN, "MAX": nccl.NCCL_MAX}
        self.types = {np.dtype(t): getattr(nccl, f"NCCL_{t.upper()}") for t in _NCCL_DTYPES}

    def handles(self, dtype) -> bool:
        return np.dtype(dtype) in self.types

    def _run(self, what: str, launch) -> None:
        import cupy

        synchronize_device()
        stream = cupy.cuda.get_current_stream()
        launch(stream.ptr)
        try:
            self.group.wait(_StreamDone(stream), what)
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        self.staged.close()
        try:
            self.comm.destroy()
        except Exception:  # noqa: BLE001 - aborted already
            pass

    def abort(self) -> None:
        try:
            self.comm.abort()
        except Exception:  # noqa: BLE001 - the communicator may already be gone
            pass

    def allreduce(self, buffer, op: str) -> None:
        if not self.handles(buffer.dtype):
            return self.staged.allreduce(buffer, op)
        self._run("allreduce", lambda s: self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size,
                                                              self.types[buffer.dtype], self.ops[op], s))

    def broadcast(self, buffer, root: int) -> None:
        flat = buffer.reshape(-1).view(np.uint8)
        self._run("broadcast", lambda s: self.comm.broadcast(flat.data.ptr, flat.data.ptr, flat.size,
                                                             self._nccl.NCCL_UINT8, root, s))

    def reduce(self, buffer, root: int, op: str, at_root: bool) -> None:
        if not self.handles(buffer.dtype):
            return self.staged.reduce(buffer, root, op, at_root)
        # the result lands in the root's buffer only: NCCL writes no receive buffer elsewhere
        self._run("reduce", lambda s: self.comm.reduce(buffer.data.ptr, buffer.data.ptr, buffer.size,
                                                       self.types[buffer.dtype], self.ops[op], root, s))

    def allgatherv(self, send, received, counts: List[int]) -> None:
        self._run("allgather", lambda s: self.comm.allGather(send.data.ptr, received.data.ptr, send.nbytes,
                                                             self._nccl.NCCL_UINT8, s))

    def reduce_scatter(self, send, received, counts: List[int], op: str) -> None:
        if not self.handles(send.dtype):
            return self.staged.reduce_scatter(send, received, counts, op)
        self._run("reducescatter", lambda s: self.comm.reduceScatter(
            send.data.ptr, received.data.ptr, received.size, self.types[send.dtype], self.ops[op], s))


def nccl_usable_here() -> bool:
    try:
        from cupy.cuda import nccl
    except Exception:  # noqa: BLE001 - any import failure means no NCCL
        return False
    return bool(getattr(nccl, "available", True))


def _gpu_identity() -> int:
    """This rank's GPU, as a number the ranks compare: host name and PCI bus id."""
    import cupy

    return zlib.crc32(f"{socket.gethostname()}/{cupy.cuda.Device().pci_bus_id}".encode())


def choose_gpu_transport(group):
    """The transport for the group's GPU buffers, chosen alike on every rank (collective over the group:
    called by each rank at the same operation, after the members agreed on it)."""
    MPI = mpi()
    if getattr(group.comm, "messages_only", False):
        return StagedMPI(group)          # a group formed after a death moves host buffers (peer_comm.py)
    staged_only = os.environ.get(GPU_PATH_ENV, "auto").strip().lower() == "staged"
    nccl_here = (not staged_only and nccl_usable_here() and len(group.local) == 1)
    mine = np.array([int(not staged_only and local_mpi_is_cuda_aware()), int(nccl_here), int(staged_only),
                     _gpu_identity()], dtype=np.int64)
    everyone = np.empty((group.comm.Get_size(), mine.size), dtype=np.int64)
    group.wait(group.comm.Iallgather([mine, MPI.INT64_T], [everyone, MPI.INT64_T]), "choosing the GPU path")
    if everyone[:, 2].any():
        return StagedMPI(group)
    if everyone[:, 0].all():
        return DeviceMPI(group)
    if everyone[:, 1].all() and len(set(everyone[:, 3].tolist())) == len(everyone):
        return NCCL(group)
    return StagedMPI(group)
