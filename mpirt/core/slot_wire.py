"""The pipe between a worker rank and its task-slot processes: framing and pickling.

A worker rank with several CPUs runs its tasks in slot processes (``task_slots.py``, the rank's side;
``slot_process.py``, the slot's side). They talk over one Unix stream socket per slot. Every message is two
frames: a small head (``pickle`` of ``(head, slices)``) and a body (a pickle stream, possibly empty).

Large buffers are not copied through the socket when they lie in the node's object-store pool, which both
processes map (the rank's ``Arena``, the slot through the descriptor it inherited): the pickle stream carries
them out of band and ``slices`` names them as ``(offset, nbytes)`` in the pool, so a task reads a large argument
in place, as a thread of the rank would. Other buffers travel in band (copied).

Handles do not travel as themselves: an ``ObjectRef`` or ``ActorHandle`` pickled the usual way would count as a
reference in flight in the rank's distributed reference counting, and the slot has no runtime to count its
arrival. They travel as ids instead (each side's ``persistent_id`` names them, its ``persistent_load`` makes
them back), and the rank keeps the real objects (``task_slots``).
"""
import io
import pickle
import threading

import cloudpickle
import numpy as np

# Buffers smaller than this go in band even when they lie in the pool (a reference costs
# about as much as copying a few KB).
POOL_REF_MIN_BYTES = 64 * 1024


class Pool:
    """A process's mapping of the node's store pool: where it starts and how long it is."""

    def __init__(self, memory):
        """``memory``: a writable or read-only uint8 numpy array over the whole pool mapping."""
        self.memory = memory
        self.base = memory.ctypes.data
        self.size = memory.nbytes

    def offset_of(self, buffer):
        """The pool offset of ``buffer`` (a contiguous memoryview), or None if it lies outside."""
        if buffer.nbytes < POOL_REF_MIN_BYTES:
            return None
        address = np.frombuffer(buffer, dtype=np.uint8).ctypes.data
        if self.base <= address and address + buffer.nbytes <= self.base + self.size:
            return address - self.base
        return None

    def view(self, offset, nbytes):
        """A read-only buffer over ``nbytes`` of the pool at ``offset`` (no copy)."""
        return memoryview(self.memory[offset:offset + nbytes]).toreadonly()


_loading = threading.local()   # .resolve: the persistent_load of the ``loads`` running on this thread


def _handle(pid):
    """A handle read from a pickle stream: what the receiving side makes of its id."""
    return _loading.resolve(pid)


class _Pickler(cloudpickle.Pickler):
    """Handles are written as ``_handle(pid)``. Not through ``persistent_id``: the C pickler calls that for
    every object, ints of a list included (a 2 M-element list took 10 s to cross with it), while
    ``reducer_override`` is called only for objects that are not built-in containers or atoms."""

    def __init__(self, file, persistent_id, buffer_callback):
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self._persistent_id = persistent_id

    def reducer_override(self, obj):
        pid = self._persistent_id(obj)
        if pid is not None:
            return _handle, (pid,)
        return super().reducer_override(obj)


def dumps(value, persistent_id, pool=None):
    """``(body, slices)`` for ``value``: buffers in ``pool`` by reference, the rest in band; a handle travels
    as ``persistent_id(obj)`` (None for anything else)."""
    slices = []

    def buffer_callback(picklebuffer):
        if pool is None:
            return True
        try:
            raw = picklebuffer.raw()
        except BufferError:        # not contiguous: in band
            return True
        offset = pool.offset_of(raw)
        if offset is None:
            return True
        slices.append((offset, raw.nbytes))
        return False

    file = io.BytesIO()
    _Pickler(file, persistent_id, buffer_callback).dump(value)
    return file.getvalue(), slices


def loads(body, slices, persistent_load, pool=None):
    """Inverse of ``dumps``: ``slices`` are read-only views of ``pool``, handles ``persistent_load(pid)``."""
    buffers = [pool.view(offset, nbytes) for offset, nbytes in slices] if slices else None
    outer = getattr(_loading, "resolve", None)
    _loading.resolve = persistent_load
    try:
        return pickle.loads(body, buffers=buffers)
    finally:
        _loading.resolve = outer


class Channel:
    """Two-frame messages over a ``multiprocessing.connection.Connection``: sends from several threads are kept
    whole by a lock; receiving is one thread's job."""

    def __init__(self, connection):
        self.connection = connection
        self._send_lock = threading.Lock()

    def send(self, head, body=b"", slices=()):
        frame = pickle.dumps((head, list(slices)), protocol=5)
        with self._send_lock:
            self.connection.send_bytes(frame)
            self.connection.send_bytes(body)

    def recv(self):
        """``(head, slices, body)``; EOFError when the other side has gone."""
        head, slices = pickle.loads(self.connection.recv_bytes())
        return head, slices, self.connection.recv_bytes()

    def close(self):
        self.connection.close()
