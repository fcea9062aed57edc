"""The 64-byte header in front of each object in the node pool.

    [key u64][same-node readers i64][unused up to 64 bytes][object bytes...]

``key`` names the object that the block holds (unique over the job, chosen by
its holder), or is 0 while the block is free or being spilled. ``readers``
counts the zero-copy views that ranks of the node hold on the block. Both are
read and changed under the node lock, so a holder spills only a block no
reader is viewing and a reader never maps a block after its holder began to
spill it. Readers on other nodes cannot take the node lock: they check the key
before and after their RMA ``Get`` (a sequence lock: the holder clears the key
before the bytes can change).
"""
import struct

HEADER_BYTES = 64
_FIELDS = struct.Struct("<Qq")


def write(view, offset, key):
    """Mark the block at ``offset`` as holding object ``key`` (its bytes are in place), no readers."""
    _FIELDS.pack_into(view, offset, key, 0)


_KEY = struct.Struct("<Q")


def key_of(view, offset):
    return _KEY.unpack_from(view, offset)[0]


def add_reader(view, offset, key):
    """Count one more view if the block still holds ``key``; whether it did. Under the node lock."""
    held, readers = _FIELDS.unpack_from(view, offset)
    if held != key:
        return False
    _FIELDS.pack_into(view, offset, key, readers + 1)
    return True


def drop_reader(view, offset, key):
    held, readers = _FIELDS.unpack_from(view, offset)
    if held == key and readers > 0:
        _FIELDS.pack_into(view, offset, key, readers - 1)


def clear_if_unread(view, offset, key):
    """Clear the key of a block holding ``key`` that no view reads; whether it did. Under the node lock."""
    held, readers = _FIELDS.unpack_from(view, offset)
    if held != key or readers:
        return False
    _FIELDS.pack_into(view, offset, 0, 0)
    return True


def clear(view, offset):
    _FIELDS.pack_into(view, offset, 0, 0)


def readers_of(view, offset):
    return _FIELDS.unpack_from(view, offset)[1]
