"""How one object lies in store memory: pickle protocol 5 with out-of-band buffers.

    [header][pickle bytes][pad][buffer 0][pad][buffer 1]...

The header holds a magic number, the pickle length and each buffer's offset
and length; every buffer starts on a 64-byte boundary, so numpy arrays read
back from shared memory need no copy (they come back read-only, as in Ray).
"""
import pickle
import struct

import cloudpickle

from .allocator import aligned

MAGIC = 0x6D707274  # "mprt"
_HEAD = struct.Struct("<IIQ")     # magic, buffer count, pickle length
_ENTRY = struct.Struct("<QQ")     # buffer offset, buffer length


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
            position += buffer.nbytes
        self.size = position

    def write_into(self, view):
        """Copy the object into ``view`` (a writable memoryview of at least ``size`` bytes)."""
        _HEAD.pack_into(view, 0, MAGIC, len(self.buffers), len(self.pickled))
        position = _HEAD.size
        for offset, buffer in zip(self.offsets, self.buffers):
            _ENTRY.pack_into(view, position, offset, buffer.nbytes)
            position += _ENTRY.size
        view[position:position + len(self.pickled)] = self.pickled
        for offset, buffer in zip(self.offsets, self.buffers):
            view[offset:offset + buffer.nbytes] = buffer.cast("B")


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
