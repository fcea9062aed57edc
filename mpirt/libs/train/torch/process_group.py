"""A torch.distributed process group whose operations are mpirt's MPI collectives.

torch lets a Python class be a process group (``dist.ProcessGroup``) and registers it as a backend
(``"mpirt"``), so ``init_process_group("mpirt", ...)`` needs no ``MASTER_ADDR``/``MASTER_PORT`` and no
TCP store: the members already share an MPI sub-communicator (``mpirt.util.collective``), and every
operation DDP and user code make (allreduce of gradient buckets, broadcast of the initial weights,
allgather, barrier, send/recv) runs on it. torch's own MPI backend would need torch built against the
job's MPI and spans all of MPI_COMM_WORLD; pip's torch has none.

Operations run when called and return finished work: DDP then waits on nothing (its overlap of
communication with the backward pass is given up; measured by benchmarks/train_bench.py).
"""
from typing import List

import torch
import torch.distributed as dist
from torch.futures import Future

from mpirt.util.collective import GroupHandle, ReduceOp

BACKEND = "mpirt"
_OPS = {dist.ReduceOp.SUM: ReduceOp.SUM, dist.ReduceOp.PRODUCT: ReduceOp.PRODUCT,
        dist.ReduceOp.MIN: ReduceOp.MIN, dist.ReduceOp.MAX: ReduceOp.MAX}


class _Done(dist._Work):
    """Work that finished when it was made."""

    def __init__(self, result):
        super().__init__()
        self._future = Future()
        self._future.set_result(result)

    def wait(self, timeout=None):
        return True

    def is_completed(self):
        return True

    def get_future(self):
        return self._future


class MPIProcessGroup(dist.ProcessGroup):
    """torch's stubs declare the C++ class's overloads; a Python process group implements the forms torch
    calls it with (``tensor lists + options``), hence the ``override`` ignores."""

    def __init__(self, handle: GroupHandle):
        super().__init__(handle.rank, handle.world_size)  # type: ignore[call-arg]
        self.handle = handle

    def getBackendName(self):
        return BACKEND

    def _reduce_op(self, op):
        op = getattr(op, "op", op)      # a ReduceOp object carries its RedOpType
        if op == dist.ReduceOp.AVG:
            return None
        try:
            return _OPS[op]
        except KeyError:
            raise ValueError(f"the mpirt process group reduces with SUM, AVG, PRODUCT, MIN or MAX, not {op}") from None

    def allreduce(self, tensors: List[torch.Tensor], opts=None):  # type: ignore[override]
        op = self._reduce_op(opts.reduceOp if opts is not None else dist.ReduceOp.SUM)
        with torch.no_grad():
            for tensor in tensors:
                self.handle.allreduce(tensor, op or ReduceOp.SUM)
                if op is None:
                    tensor.div_(self.handle.world_size)
        return _Done(tensors)

    def broadcast(self, tensors: List[torch.Tensor], opts=None):  # type: ignore[override]
        with torch.no_grad():
            for tensor in tensors:
                self.handle.broadcast(tensor, opts.rootRank)
        return _Done(tensors)

    def allgather(self, output_lists: List[List[torch.Tensor]],  # type: ignore[override]
                  inputs: List[torch.Tensor], opts=None):
        with torch.no_grad():
            for outputs, tensor in zip(output_lists, inputs):
                self.handle.allgather(list(outputs), tensor)
        return _Done(output_lists)

    def _allgather_base(self, output: torch.Tensor, tensor: torch.Tensor, opts=None):
        with torch.no_grad():
            self.handle.allgather(list(output.chunk(self.handle.world_size)), tensor)
        return _Done([output])

    def reduce(self, tensors: List[torch.Tensor], opts=None):  # type: ignore[override]
        op = self._reduce_op(opts.reduceOp)
        with torch.no_grad():
            for tensor in tensors:
                self.handle.reduce(tensor, opts.rootRank, op or ReduceOp.SUM)
                if op is None and self.handle.rank == opts.rootRank:
                    tensor.div_(self.handle.world_size)
        return _Done(tensors)

    def reduce_scatter(self, outputs: List[torch.Tensor],  # type: ignore[override]
                       input_lists: List[List[torch.Tensor]], opts=None):
        op = self._reduce_op(opts.reduceOp)
        with torch.no_grad():
            for output, inputs in zip(outputs, input_lists):
                self.handle.reducescatter(output, list(inputs), op or ReduceOp.SUM)
                if op is None:
                    output.div_(self.handle.world_size)
        return _Done(outputs)

    def barrier(self, opts=None):
        self.handle.barrier()
        return _Done(None)

    def send(self, tensors: List[torch.Tensor], dst: int, tag: int = 0):
        for tensor in tensors:
            self.handle.send(tensor, dst)
        return _Done(None)

    def recv(self, tensors: List[torch.Tensor], src: int, tag: int = 0):
        with torch.no_grad():
            for tensor in tensors:
                self.handle.recv(tensor, src)
        return _Done(None)


_next_handle = None


def _create(store, rank, world_size, timeout):
    handle = _next_handle
    if handle is None or handle.rank != rank or handle.world_size != world_size:
        raise RuntimeError("init_process_group(backend='mpirt') is called by mpirt.libs.train on its workers; use "
                           "TorchTrainer (or mpirt.util.collective directly)")
    return MPIProcessGroup(handle)


def init_process_group(handle: GroupHandle) -> None:
    """Make the default torch process group of this process run on the collective group ``handle``."""
    global _next_handle
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is initialized already in this process: two TorchTrainer workers "
                           "share a process, or the loop initialized it itself")
    if BACKEND not in dist.Backend.backend_list:
        dist.Backend.register_backend(BACKEND, _create, devices=["cpu", "cuda"])
    _next_handle = handle
    try:
        dist.init_process_group(BACKEND, store=dist.HashStore(), rank=handle.rank, world_size=handle.world_size)
    finally:
        _next_handle = None
