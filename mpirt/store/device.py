"""GPU arrays in the object store: they stay in device memory.

Pickling a CuPy array or torch CUDA tensor of more than ``INLINE_THRESHOLD`` bytes
(``codec.py``) *seals* a copy of it in device memory of the rank that pickles it (the holder)
and writes only a ``DeviceArrayHandle`` into the pickle; the copy keeps the value it had when
stored, as for host objects. Unpickling the handle gives the reader a new array on its own
current device:

- in the holder's process: a device-to-device copy;
- elsewhere on the holder's node: GPU to GPU from the sealed memory through a CUDA IPC handle
  (no CUDA-aware MPI needed);
- on another node, or where the IPC handle cannot be opened: the holder streams the bytes over
  MPI, from device memory when MPI is CUDA-aware, else through pinned host memory on both
  sides, in chunks that overlap copies and transfer.

The sealed memory is plain ``cudaMalloc`` memory (one allocation per array, so an IPC handle
maps exactly it) and lives until the object's owner frees the object (``release``). Smaller
arrays travel as host bytes inside the pickle and come back on the reader's current device.
Torch tensors take the same paths, the reader's bytes becoming a tensor through DLPack.
"""
import ctypes
import functools
import importlib.util
import itertools
import os
import queue
import sys
import threading
import time

import numpy as np

from ..core import current, object_value
from ..core._mpi_env import mpi
from ..core.object_value import ObjectValue
from ..exceptions import ObjectLostError

STAGING_CHUNK = 64 << 20          # bytes per MPI message on the staged path
_FIRST_TAG, _LAST_TAG = 1000, 30000   # point-to-point tags for streams (the transport uses 7)
STREAM_STALL_SECONDS = 300.0      # a holder gives up on a reader whose chunk has not moved for this long


# -- recognising device arrays (without importing CuPy or torch) --------------
def device_types():
    """(CuPy's ndarray, torch's Tensor), each None where a value cannot hold such GPU arrays: only
    modules already imported count (no CuPy array exists unless the program imported CuPy), torch
    only once CUDA is initialized here and only with CuPy (which moves torch tensors too; without
    it torch pickles its tensors through host memory)."""
    cupy = sys.modules.get("cupy")
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    tensor = torch.Tensor if cuda is not None and cuda.is_initialized() and can_seal() else None
    return (cupy.ndarray if cupy is not None else None), tensor


def device_kind(obj, types):
    """"cupy" or "torch" for a GPU array, else None (``types`` from ``device_types``)."""
    ndarray, tensor = types
    if ndarray is not None and type(obj) is ndarray:
        return "cupy"
    if tensor is not None and isinstance(obj, tensor) and obj.is_cuda:
        return "torch"
    return None


@functools.cache
def can_seal():
    """Sealing needs CuPy (torch tensors too: CuPy does the copies and IPC)."""
    return importlib.util.find_spec("cupy") is not None


def _cupy():
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError("a GPU array is being moved between ranks, which needs CuPy on every rank that "
                           "reads it (pip install 'mpirt[gpu]')") from exc
    return cupy


def array_bytes(obj, kind):
    return obj.nbytes if kind == "cupy" else obj.numel() * obj.element_size()


def _contiguous_pointer(obj, kind):
    """(array kept alive, device pointer, device id) of a C-contiguous version of ``obj``."""
    if kind == "cupy":
        cupy = sys.modules["cupy"]
        with obj.device:
            contiguous = cupy.ascontiguousarray(obj)
        return contiguous, contiguous.data.ptr, obj.device.id
    contiguous = obj.detach().contiguous()
    return contiguous, contiguous.data_ptr(), contiguous.device.index


def _meta(obj, kind):
    if kind == "cupy":
        return (obj.dtype.str, tuple(obj.shape), False)
    return (str(obj.dtype).replace("torch.", ""), tuple(obj.shape), bool(obj.requires_grad))


# -- small arrays: host bytes inside the pickle ----------------------------------
def reduce_small(obj, kind):
    if kind == "cupy":
        data = sys.modules["cupy"].asnumpy(obj).tobytes()
    else:
        torch = sys.modules["torch"]
        data = obj.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes()
    return (_rebuild_small, (kind, _meta(obj, kind), data))


def _rebuild_small(kind, meta, data):
    cupy = _cupy()
    _check_reader_has_gpu(cupy, len(data))
    return _as_kind(cupy.asarray(np.frombuffer(data, dtype=np.uint8)), kind, meta)


def _as_kind(flat_bytes, kind, meta):
    """The reader's array from a flat uint8 CuPy array it owns."""
    dtype, shape, requires_grad = meta
    if kind == "cupy":
        return flat_bytes.view(np.dtype(dtype)).reshape(shape)
    import torch

    tensor = torch.from_dlpack(flat_bytes).view(getattr(torch, dtype)).reshape(shape)
    if requires_grad:
        tensor.requires_grad_(True)
    return tensor


def _check_reader_has_gpu(cupy, nbytes):
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        count = 0
    if count == 0:
        rank = getattr(current.runtime(), "rank", "?")
        raise RuntimeError(
            f"rank {rank} cannot receive a GPU array ({nbytes:,} bytes): it has no GPU "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r}). Give the task or actor "
            "num_gpus=..., or move the array to host memory (cupy.asnumpy / tensor.cpu()) before passing it")


# -- large arrays: a handle to sealed device memory -----------------------------
class DeviceArrayHandle:
    """What travels in place of a sealed GPU array."""

    __slots__ = ("holder", "key", "nbytes", "ipc_handle", "kind", "meta")

    def __init__(self, holder, key, nbytes, ipc_handle, kind, meta):
        self.holder, self.key, self.nbytes = holder, key, nbytes
        self.ipc_handle, self.kind, self.meta = ipc_handle, kind, meta

    def __reduce__(self):
        return (DeviceArrayHandle, (self.holder, self.key, self.nbytes, self.ipc_handle, self.kind, self.meta))


def reduce_sealed(handle):
    """How a sealed array is pickled: unpickling opens it on the reader (``DeviceStore.read``)."""
    return (_open_device_array, (handle,))


def _open_device_array(handle):
    """Unpickling a sealed GPU array: the reader's own copy (see the module docstring)."""
    rt = current.runtime()
    if rt is None:
        raise RuntimeError("a GPU array from the object store can only be read while mpirt is running")
    return rt.store.device.read(handle)


class DeviceObject(ObjectValue):
    """A value holding sealed GPU arrays (``object_value.py``) that ``holder`` keeps under ``keys``
    (``nbytes`` in all), named in ``inner``, its inline or stored pickle."""

    __slots__ = ("inner", "holder", "keys", "nbytes")

    def __init__(self, inner, holder, keys, nbytes):
        self.inner, self.holder, self.keys, self.nbytes = inner, holder, keys, nbytes

    def __reduce__(self):
        return (DeviceObject, (self.inner, self.holder, self.keys, self.nbytes))

    def total_size(self):
        return self.nbytes + object_value.size(self.inner)

    def decode(self, store, object_id):
        """Unpickling ``inner`` opens the arrays (``_open_device_array``)."""
        return object_value.decode(self.inner, store, object_id)

    def release(self, store, object_id):
        store.device.release(self)
        object_value.release(self.inner, store, object_id)

    def discard(self, store):
        if self.holder == store.rank:
            store.device.free(self.keys)
        object_value.discard(self.inner, store)

    def lost_with(self, rank, same_node):
        """Sealed arrays die with their process, wherever their pickle lives."""
        return self.holder == rank or object_value.lost_with(self.inner, rank, same_node)

    def placement(self):
        """The arrays' holder: a reader there copies them device to device."""
        return (self.holder, self.nbytes)


class DeviceStore:
    """One rank's sealed GPU arrays, and its side of the transfers."""

    def __init__(self, runtime, same_node):
        self.rt = runtime
        self.rank = runtime.rank
        self._same_node = same_node
        self.sealed = {}                  # key -> (cupy Memory, nbytes, device id)
        self._keys = itertools.count(1)
        self._tags = itertools.cycle(range(_FIRST_TAG, _LAST_TAG))
        self._lock = threading.Lock()
        self._ipc_open = {}               # (holder, key) -> [device pointer, users]
        self._failed_streams = {}         # tag -> why the holder could not send
        self.ipc_enabled = os.environ.get("MPIRT_GPU_IPC", "1") not in ("0", "false", "no")
        self._cuda_aware = None
        self.stats = {"gpu_objects": 0, "gpu_bytes": 0, "gpu_local_reads": 0, "gpu_ipc_reads": 0,
                      "gpu_staged_reads": 0, "gpu_read_bytes": 0}
        runtime.register(device_free=self._on_free, device_fetch=self._on_fetch,
                         device_fetch_failed=self._on_fetch_failed)

    # -- holder: sealing and freeing ------------------------------------------
    def seal(self, obj, kind):
        """Copy ``obj`` into new device memory kept here; returns its handle."""
        cupy = _cupy()
        runtime_api = cupy.cuda.runtime
        contiguous, pointer, device_id = _contiguous_pointer(obj, kind)
        nbytes = array_bytes(obj, kind)
        with cupy.cuda.Device(device_id):
            memory = cupy.cuda.memory.Memory(nbytes)      # cudaMalloc: its own allocation, so IPC maps exactly it
            # Order after the producer's work on its current stream (torch's own for a tensor: it may
            # have been made on a side stream CuPy knows nothing of), then finish before anyone reads.
            if kind == "torch":
                stream = sys.modules["torch"].cuda.current_stream(device_id).cuda_stream
            else:
                stream = cupy.cuda.get_current_stream().ptr
            runtime_api.memcpyAsync(memory.ptr, pointer, nbytes, runtime_api.memcpyDeviceToDevice, stream)
            runtime_api.streamSynchronize(stream)
            ipc_handle = runtime_api.ipcGetMemHandle(memory.ptr)
        del contiguous
        key = next(self._keys)
        with self._lock:
            self.sealed[key] = (memory, nbytes, device_id)
            self.stats["gpu_objects"] += 1
            self.stats["gpu_bytes"] += nbytes
        return DeviceArrayHandle(self.rank, key, nbytes, ipc_handle, kind, _meta(obj, kind))

    def free(self, keys):
        """Forget sealed arrays; their memory goes back on the freeing thread, since ``cudaFree``
        synchronizes the device and callers hold the runtime lock (the progress thread)."""
        gone = []
        with self._lock:
            for key in keys:
                entry = self.sealed.pop(key, None)
                if entry is not None:
                    self.stats["gpu_objects"] -= 1
                    self.stats["gpu_bytes"] -= entry[1]
                    gone.append(entry)
        if gone:
            _freeing_queue().put(gone)

    def release(self, device_object):
        """Owner: the object is unreachable; its holder frees the sealed arrays."""
        if device_object.holder == self.rank:
            self.free(device_object.keys)
        else:
            self.rt.send(device_object.holder, ("device_free", device_object.keys))

    def _on_free(self, source, keys):
        self.free(keys)

    # -- reader --------------------------------------------------------------
    def read(self, handle):
        cupy = _cupy()
        _check_reader_has_gpu(cupy, handle.nbytes)
        out = cupy.empty(handle.nbytes, dtype=cupy.uint8)
        if handle.holder == self.rank:
            self._copy_local(cupy, handle, out)
            self._count("gpu_local_reads", handle.nbytes)
        elif self.ipc_enabled and self._same_node(handle.holder) and self._copy_through_ipc(cupy, handle, out):
            self._count("gpu_ipc_reads", handle.nbytes)
        else:
            self._copy_staged(cupy, handle, out)
            self._count("gpu_staged_reads", handle.nbytes)
        return _as_kind(out, handle.kind, handle.meta)

    def _count(self, what, nbytes):
        with self._lock:
            self.stats[what] += 1
            self.stats["gpu_read_bytes"] += nbytes

    def _copy_local(self, cupy, handle, out):
        with self._lock:
            entry = self.sealed.get(handle.key)
        if entry is None:
            raise _lost(handle, "its holder has freed it")
        _device_copy(cupy, out.data.ptr, entry[0].ptr, handle.nbytes)

    def _copy_through_ipc(self, cupy, handle, out):
        """GPU to GPU from the holder's sealed memory; False if the handle cannot be opened here
        (the holder's GPU not visible to this process, say): then the caller stages."""
        ident = (handle.holder, handle.key)
        with self._lock:
            opened = self._ipc_open.get(ident)
            if opened is None:
                try:
                    pointer = cupy.cuda.runtime.ipcOpenMemHandle(handle.ipc_handle,
                                                                 cupy.cuda.runtime.cudaIpcMemLazyEnablePeerAccess)
                except Exception:
                    return False
                opened = self._ipc_open[ident] = [pointer, 0]
            opened[1] += 1
        try:
            _device_copy(cupy, out.data.ptr, opened[0], handle.nbytes)
        finally:
            with self._lock:
                opened[1] -= 1
                if opened[1] == 0:
                    del self._ipc_open[ident]
                    cupy.cuda.runtime.ipcCloseMemHandle(opened[0])
        return True

    def _copy_staged(self, cupy, handle, out):
        """Receive the bytes from the holder over MPI, chunk by chunk, into ``out``."""
        MPI = mpi()
        if self.rt.transport.is_current_thread():
            raise RuntimeError("a GPU array from another node cannot be read on the progress thread")
        direct = self.cuda_aware_mpi()
        tag = next(self._tags)
        chunks = _chunks(handle.nbytes)
        staging = None if direct else _staging(cupy, chunks)
        comm, holder = self.rt.transport.route(handle.holder)

        def post(i):
            start, length = chunks[i]
            buffer = out[start:start + length] if direct else staging[i % 2][:length]
            return comm.Irecv([buffer, MPI.BYTE], holder, tag)

        requests = {i: post(i) for i in range(min(2, len(chunks)))}
        self._failed_streams.pop(tag, None)   # a stale notice for an earlier use of this tag
        self.rt.send(handle.holder, ("device_fetch", handle.key, tag, direct))
        try:
            for i, (start, length) in enumerate(chunks):
                self._wait_stream(requests.pop(i), tag, handle)
                if not direct:
                    cupy.cuda.runtime.memcpy(out.data.ptr + start, staging[i % 2].ctypes.data, length,
                                             cupy.cuda.runtime.memcpyHostToDevice)
                if i + 2 < len(chunks):
                    requests[i + 2] = post(i + 2)
        except BaseException:
            for request in requests.values():
                _cancel(request)
            raise

    def _wait_stream(self, request, tag, handle):
        """Wait for one chunk, calling into MPI often (large messages move only while both sides
        do); fail if the holder said it cannot send."""
        started = time.monotonic()
        while True:
            try:
                if request.Test():
                    return
            except Exception as exc:  # the holder died (ULFM)
                raise _lost(handle, f"its holder (rank {handle.holder}) failed during the transfer: {exc}")
            why = self._failed_streams.pop(tag, None)
            if why is None and handle.holder in self.rt.failures.dead:
                why = f"its holder (rank {handle.holder}) died"
            if why is not None:
                _cancel(request)
                raise _lost(handle, why)
            _yield(started)

    def _on_fetch_failed(self, source, tag, why):
        self._failed_streams[tag] = why

    # -- holder: streaming to a reader on another node --------------------------
    def _on_fetch(self, source, key, tag, direct):
        with self._lock:
            entry = self.sealed.get(key)
        if entry is None:
            self.rt.send(source, ("device_fetch_failed", tag, f"its holder (rank {self.rank}) has freed it"))
            return
        threading.Thread(target=self._stream, args=(source, tag, direct, entry), daemon=True,
                         name="mpirt-gpu-stream").start()

    def _stream(self, dest, tag, direct, entry):
        MPI = mpi()
        cupy = _cupy()
        memory, nbytes, device_id = entry
        chunks = _chunks(nbytes)
        comm, to = self.rt.transport.route(dest)
        try:
            with cupy.cuda.Device(device_id):
                if direct:
                    whole = cupy.ndarray((nbytes,), cupy.uint8, cupy.cuda.memory.MemoryPointer(memory, 0))
                    requests = [comm.Isend([whole[s:s + n], MPI.BYTE], to, tag) for s, n in chunks]
                    for i, request in enumerate(requests):
                        if not self._wait_for_reader(request, dest):
                            for rest in requests[i + 1:]:
                                _cancel(rest)
                            return
                    return
                staging = _staging(cupy, chunks)
                in_flight = []   # sends not yet done, oldest first: at most two (one per staging buffer)
                reader_gone = False
                for i, (start, length) in enumerate(chunks):
                    if len(in_flight) == 2 and not self._wait_for_reader(in_flight.pop(0), dest):
                        reader_gone = True
                        break
                    host = staging[i % 2]
                    cupy.cuda.runtime.memcpy(host.ctypes.data, memory.ptr + start, length,
                                             cupy.cuda.runtime.memcpyDeviceToHost)
                    in_flight.append(comm.Isend([host[:length], MPI.BYTE], to, tag))
                while in_flight and not reader_gone:
                    reader_gone = not self._wait_for_reader(in_flight.pop(0), dest)
                for request in in_flight:   # left after the reader went
                    _cancel(request)
        except Exception as exc:  # the reader died, or CUDA failed: the reader hears of it if it can
            if dest not in self.rt.failures.dead:
                self.rt.send(dest, ("device_fetch_failed", tag, f"its holder (rank {self.rank}) could not send "
                                                                f"it: {type(exc).__name__}: {exc}"))

    def _wait_for_reader(self, request, dest):
        """Wait for one chunk to go; False (the send cancelled) once the reader died or the chunk
        did not move for ``STREAM_STALL_SECONDS`` (a reader that gave up cancelled its receive: the
        send would wait forever, holding the sealed memory and this thread)."""
        started = time.monotonic()
        while not request.Test():
            if dest in self.rt.failures.dead or self.rt.shutdown.stopped.is_set() or \
                    time.monotonic() - started > STREAM_STALL_SECONDS:
                _cancel(request)
                return False
            _yield(started)
        return True

    # -- CUDA-aware MPI --------------------------------------------------------
    def cuda_aware_mpi(self):
        if self._cuda_aware is None:
            self._cuda_aware = mpi_is_cuda_aware()
        return self._cuda_aware


_freeing = None
_freeing_lock = threading.Lock()


def _freeing_queue():
    """The queue of one daemon thread that drops sealed device memory (``cudaFree`` runs in CuPy's destructor)."""
    global _freeing
    with _freeing_lock:
        if _freeing is None:
            _freeing = queue.Queue()
            threading.Thread(target=_drop_forever, args=(_freeing,), name="mpirt-gpu-free", daemon=True).start()
        return _freeing


def _drop_forever(entries):
    while True:
        entries.get()   # dropped at once


def _device_copy(cupy, destination, source, nbytes):
    """Copy device bytes (any GPUs: unified addressing) and wait until they are there."""
    stream = cupy.cuda.get_current_stream()
    cupy.cuda.runtime.memcpyAsync(destination, source, nbytes, cupy.cuda.runtime.memcpyDefault, stream.ptr)
    stream.synchronize()


def _chunks(nbytes):
    return [(start, min(STAGING_CHUNK, nbytes - start)) for start in range(0, nbytes, STAGING_CHUNK)] or [(0, 0)]


def _staging(cupy, chunks):
    """Page-locked numpy uint8 buffers (CuPy pools them) for the first two ``chunks``, as long as the first."""
    nbytes = max(chunks[0][1], 1)
    return [np.frombuffer(cupy.cuda.alloc_pinned_memory(nbytes), dtype=np.uint8, count=nbytes) for _ in chunks[:2]]


def _yield(started):
    """Between polls of a transfer: give the core away at once while it is young (MPI moves
    large messages only while it is called), then sleep a little if it drags on."""
    time.sleep(0 if time.monotonic() - started < 5.0 else 1e-4)


def _cancel(request):
    try:
        request.Cancel()
        request.Free()
    except Exception:
        pass


def _lost(handle, why):
    return ObjectLostError(f"a GPU array of {handle.nbytes:,} bytes held by rank {handle.holder} is lost: {why}")


def mpi_is_cuda_aware():
    """Whether the MPI library moves device memory itself: ``MPIRT_CUDA_AWARE_MPI`` (0/1) if set,
    else what Open MPI's or MPICH's ``MPIX_Query_cuda_support`` says, else False."""
    setting = os.environ.get("MPIRT_CUDA_AWARE_MPI")
    if setting is not None:
        return setting.lower() not in ("0", "false", "no", "")
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libmpi" in line and "/" in line})
    except OSError:
        paths = []
    for path in paths:
        try:
            query = getattr(ctypes.CDLL(path), "MPIX_Query_cuda_support", None)
        except OSError:
            continue
        if query is not None:
            return bool(query())
    return False
