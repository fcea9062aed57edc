"""What an operation reads and writes for a tensor: an array over the tensor's own memory, or a copy.

numpy arrays and torch CPU tensors are used in place as numpy arrays (a torch tensor through
``.numpy()``, which shares its memory); CuPy arrays and torch CUDA tensors in place as CuPy arrays (a
torch tensor through ``__cuda_array_interface__``), which the group moves by the GPU path its ranks chose
(``transports.py``). A copy is made, and written back after the operation, where the memory cannot be
used as it is: a non-contiguous tensor, or a dtype MPI cannot reduce (float16, bfloat16, bool: reduced in
float32, on the device for GPU tensors). Without CuPy, torch CUDA tensors are copied to host memory.
"""
import functools
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

# dtypes whose elements MPI reduces itself (mpi4py maps each to an MPI datatype)
_REDUCIBLE = {np.dtype(t) for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                                    "float32", "float64", "complex64", "complex128")}
SUPPORTED = "np.ndarray, torch.Tensor, cupy.ndarray"
_GPU_KINDS = ("cupy", "torch_gpu")

WriteBack = Optional[Callable[[], None]]


def _kind(tensor):
    module = type(tensor).__module__
    if isinstance(tensor, np.ndarray):
        return "numpy"
    if module.startswith("torch"):
        return "torch" if tensor.device.type == "cpu" else "torch_gpu"
    if module.startswith("cupy"):
        return "cupy"
    return None


def check_tensor(tensor: Any) -> None:
    if _kind(tensor) is None:
        raise RuntimeError(f"Unrecognized tensor type '{type(tensor)}'. Supported types are: {SUPPORTED}.")


def check_tensor_list(tensors: Any) -> None:
    if not isinstance(tensors, list):
        raise RuntimeError(f"The input must be a list of tensors. Got '{type(tensors)}'.")
    if not tensors:
        raise RuntimeError("Got an empty list of tensors.")
    for tensor in tensors:
        check_tensor(tensor)


@functools.lru_cache(maxsize=256)
def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def signature(tensor: Any) -> tuple:
    """(dtype, shape) as the members compare them (a numpy and a torch float32 alike), and "gpu" for a
    tensor in GPU memory (every member's must be where the others' are)."""
    described = (_dtype_name(tensor.dtype), tuple(tensor.shape))
    return described + ("gpu",) if _kind(tensor) in _GPU_KINDS else described


def buffer_for(tensor: Any, reducing: bool, writing: bool = True) -> Tuple[Any, WriteBack]:
    """The array the operation works on for ``tensor`` (numpy, or CuPy for GPU memory), and what copies
    the result back into ``tensor`` (None when the array is the tensor's own memory)."""
    kind = _kind(tensor)
    if kind in _GPU_KINDS:
        cupy = _cupy()
        if cupy is not None:
            return _device_buffer(cupy, tensor, kind, reducing)
    return host_buffer(tensor, reducing, writing)


def buffers_for(tensors: List[Any], reducing: bool,
                writing: bool = True) -> Tuple[List[Any], List[Callable[[], None]]]:
    buffers, write_backs = [], []
    for tensor in tensors:
        buffer, write_back = buffer_for(tensor, reducing, writing)
        buffers.append(buffer)
        if write_back is not None:
            write_backs.append(write_back)
    return buffers, write_backs


@functools.lru_cache(maxsize=1)
def _cupy():
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def _device_buffer(cupy, tensor, kind, reducing):
    if kind == "cupy":
        if tensor.flags.c_contiguous and (not reducing or tensor.dtype in _REDUCIBLE):
            return tensor, None
        staged = cupy.ascontiguousarray(tensor, dtype=_staging_dtype(tensor.dtype, reducing))

        def write_cupy():
            tensor[...] = staged.astype(tensor.dtype, copy=False)
        return staged, write_cupy
    import torch

    own = tensor.detach()
    narrow = own.dtype in (torch.float16, torch.bfloat16, torch.bool)
    if own.is_contiguous() and not (reducing and narrow):
        # bfloat16 has no CuPy dtype: moved as the 16-bit integers of its bits (nothing adds them up)
        return cupy.asarray(own.view(torch.int16) if own.dtype == torch.bfloat16 else own), None
    staged_t = (own.float() if reducing and narrow else own).contiguous().clone()

    def write_torch_gpu():
        with torch.no_grad():
            tensor.copy_(staged_t.to(tensor.dtype))
    return cupy.asarray(staged_t.view(torch.int16) if staged_t.dtype == torch.bfloat16 else staged_t), write_torch_gpu


def host_buffer(tensor: Any, reducing: bool, writing: bool = True) -> Tuple[Any, WriteBack]:
    """The array MPI works on for ``tensor``, and what copies the result back into ``tensor`` (None
    when MPI works in the tensor's own memory). ``reducing``: MPI must also add up its elements;
    ``writing``: the operation writes into the tensor."""
    kind = _kind(tensor)
    if kind == "numpy":
        if writing and not tensor.flags.writeable:
            raise RuntimeError(f"the {tensor.dtype} array of shape {tensor.shape} is read-only (arrays that "
                               f"mpirt.get returns are): pass a copy (array.copy())")
        if tensor.flags.c_contiguous and (not reducing or tensor.dtype in _REDUCIBLE):
            return tensor, None
        staged = np.ascontiguousarray(tensor, dtype=_staging_dtype(tensor.dtype, reducing))

        def write_numpy():
            tensor[...] = staged.astype(tensor.dtype, copy=False)
        return staged, write_numpy
    if kind == "torch":
        import torch

        native = {torch.float16: False, torch.bfloat16: False, torch.bool: not reducing}
        if tensor.is_contiguous() and native.get(tensor.dtype, True):
            return tensor.detach().numpy(), None
        wide = tensor.detach().float() if tensor.dtype in (torch.float16, torch.bfloat16, torch.bool) else tensor
        staged_t = wide.detach().contiguous().clone()
        staged = staged_t.numpy()

        def write_torch():
            with torch.no_grad():
                tensor.copy_(staged_t.to(tensor.dtype))
        return staged, write_torch
    return _stage_from_device(tensor, kind, reducing)


def _staging_dtype(dtype, reducing):
    return np.float32 if reducing and dtype not in _REDUCIBLE else dtype


def _stage_from_device(tensor, kind, reducing):
    """A torch CUDA tensor where CuPy is missing: a host copy (16-bit floats and bool widened to float32,
    which numpy and MPI handle)."""
    import torch

    host = tensor.detach().to("cpu")
    if host.dtype in (torch.float16, torch.bfloat16, torch.bool):
        host = host.float()
    host = host.contiguous()

    def write_torch_gpu():
        with torch.no_grad():
            tensor.copy_(host.to(tensor.device, tensor.dtype))
    return host.numpy(), write_torch_gpu


def as_bytes(buffer: np.ndarray) -> np.ndarray:
    """The buffer's memory as bytes (operations that move bytes and add nothing up)."""
    return buffer.reshape(-1).view(np.uint8)
