"""What a GPU machine offers collective groups: CUDA-aware MPI, NCCL between ranks, and whether two
ranks may share one GPU in an NCCL communicator.

    mpirun -n 2 python benchmarks/probes/gpu_collective_probe.py

Each rank prints what it found; rank 0 also tries a plain CuPy NCCL allreduce over the two ranks
(its unique id sent over MPI) and a CUDA-aware mpi4py Allreduce on CuPy arrays where MPI says it is one.
"""
import os
import sys
import traceback

from mpi4py import MPI
import numpy as np
import cupy as cp
from cupy.cuda import nccl

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from mpirt.store.device import mpi_is_cuda_aware  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
device = cp.cuda.Device(rank % cp.cuda.runtime.getDeviceCount())
device.use()
print(f"rank {rank}: MPI {MPI.Get_library_version().splitlines()[0]!r}; cuda-aware={mpi_is_cuda_aware()}; "
      f"nccl {nccl.get_version()}; device {device.id} bus {device.pci_bus_id}", flush=True)

uid = nccl.get_unique_id() if rank == 0 else None
uid = comm.bcast(uid, root=0)
try:
    nc = nccl.NcclCommunicator(size, uid, rank)
    x = cp.full(1 << 20, rank + 1, dtype=cp.float32)
    nc.allReduce(x.data.ptr, x.data.ptr, x.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                 cp.cuda.get_current_stream().ptr)
    cp.cuda.get_current_stream().synchronize()
    print(f"rank {rank}: NCCL allreduce of ranks sharing a GPU: {float(x[0])} (expected {size * (size + 1) / 2})",
          flush=True)
except Exception as error:  # noqa: BLE001 - a probe reports what failed
    print(f"rank {rank}: NCCL communicator failed: {type(error).__name__}: {error}", flush=True)

if mpi_is_cuda_aware():
    try:
        x = cp.full(1 << 20, rank + 1, dtype=cp.float32)
        cp.cuda.get_current_stream().synchronize()
        comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
        print(f"rank {rank}: CUDA-aware Allreduce: {float(x[0])}", flush=True)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
comm.Barrier()
