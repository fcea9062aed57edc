"""How one object lies in store memory: pickle protocol 5 with out-of-band buffers.

    [header][pickle bytes][pad][buffer 0][pad][buffer 1]...

The header holds a magic number, the pickle length and each buffer's offset and length; every
buffer starts on a 64-byte boundary, so numpy arrays read back from shared memory need no copy
(they come back read-only, as in Ray).

A large buffer also starts at its source's offset within a 4 KiB page (it has a page of room
for that): x86's fast copy (``rep movsb``) runs at a quarter of its speed when the destination
lies a little ahead of the source within a page (4K aliasing: a 1 GiB put went at 3.8 GB/s, a
plain copy at 13-15 GB/s on the development VM). Large buffers are copied on several threads
(``copying.py``).
"""
import ctypes
import pickle
import struct

import cloudpickle
import numpy as np

from .allocator import ALIGNMENT, aligned
from .copying import copy_into

MAGIC = 0x6D707274  # "mprt"
_HEAD = struct.Struct("<IIQ")     # magic, buffer count, pickle length
_ENTRY = struct.Struct("<QQ")     # buffer offset, buffer length
PAGE = 4096
PAGE_MATCHED_BYTES = 1 << 20   # buffers from this size on get a page of room to match their source's offset


class Serialized:
    """A value split into its pickle stream and its raw buffers, with the size it needs."""

    __slots__ = ("pickled", "buffers", "size", "offsets")

    def __init__(self, value):
        buffers = []
        pickled = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        self._lay_out(pickled, buffers)

    @classmethod
    def from_parts(cls, pickled, pickle_buffers):
        """From a protocol-5 pickle and the PickleBuffers its buffer_callback received."""
        serialized = cls.__new__(cls)
        serialized._lay_out(pickled, pickle_buffers)
        return serialized

    def _lay_out(self, pickled, pickle_buffers):
        self.pickled = pickled
        self.buffers = [b.raw() for b in pickle_buffers]
        position = _HEAD.size + _ENTRY.size * len(self.buffers) + len(self.pickled)
        self.offsets = []
        for buffer in self.buffers:
            position = aligned(position)
            self.offsets.append(position)
            position += buffer.nbytes + (PAGE if buffer.nbytes >= PAGE_MATCHED_BYTES else 0)
        self.size = position

    def write_into(self, view):
        """Copy the object into ``view`` (a writable memoryview of at least ``size`` bytes)."""
        offsets = self._placed(view)
        _HEAD.pack_into(view, 0, MAGIC, len(self.buffers), len(self.pickled))
        position = _HEAD.size
        for offset, buffer in zip(offsets, self.buffers):
            _ENTRY.pack_into(view, position, offset, buffer.nbytes)
            position += _ENTRY.size
        copy_into(view[position:position + len(self.pickled)], memoryview(self.pickled))
        for offset, buffer in zip(offsets, self.buffers):
            copy_into(view[offset:offset + buffer.nbytes], buffer.cast("B"))

    def _placed(self, view):
        """Where each buffer goes in ``view``: its laid-out offset, a large buffer's moved within its
        page of room to its source's offset within a page (rounded down to ``ALIGNMENT``: a
        destination a little behind its source copies at full speed, one a little ahead does not)."""
        if not any(buffer.nbytes >= PAGE_MATCHED_BYTES for buffer in self.buffers):
            return self.offsets
        base = ctypes.addressof(ctypes.c_char.from_buffer(view))
        placed = []
        for offset, buffer in zip(self.offsets, self.buffers):
            if buffer.nbytes >= PAGE_MATCHED_BYTES:
                source = np.frombuffer(buffer, dtype=np.uint8).ctypes.data
                shift = (source - (base + offset)) % PAGE
                offset += shift - shift % ALIGNMENT
            placed.append(offset)
        return placed


def read_from(view):
    """The value stored in ``view``; its buffers are read-only views of that memory (no copy)."""
    view = view.toreadonly()
    magic, count, pickle_length = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError("store memory does not hold an mpirt object (bad magic number)")
    position = _HEAD.size
    buffers = []
    for _ in range(count):
        offset, length = _ENTRY.unpack_from(view, position)
        buffers.append(view[offset:offset + length])
        position += _ENTRY.size
    return pickle.loads(view[position:position + pickle_length], buffers=buffers)
