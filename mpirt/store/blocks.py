"""The 64-byte header in front of each object in the node pool.

    [key u64][same-node readers i64][stamp u64][unused up to 64 bytes][object bytes...]

``key`` names the object the block holds (unique over the job, chosen by its holder), or is 0
while the block is free or being spilled; ``readers`` counts the zero-copy views ranks of the
node hold on it. Both change only under the node lock, so a holder spills only a block no
reader views, and a reader never maps a block its holder began to spill.

Readers on other nodes cannot take the node lock: after their RMA ``Get`` of the bytes they
read the header again (``Flush`` orders the two) and keep the bytes only if it still holds the
key and ``stamp`` of their location (a sequence lock). ``stamp`` is unique to one write of the
object into a block (its put, or each restore from disk) and a holder clears the key before the
bytes can change, so a header still holding the stamp proves the bytes did not change since
that write. The key alone would not: an object spilled and restored into the same block during
a slow read holds its key again, though the reader may have copied whatever the block held in
between.
"""
import struct

HEADER_BYTES = 64
CHECKED_BYTES = 24      # the header a cross-node reader reads again: key, readers, stamp
_FIELDS = struct.Struct("<Qq")
_CHECKED = struct.Struct("<QqQ")


def write(view, offset, key, stamp):
    """Mark the block at ``offset`` as holding object ``key`` (its bytes in place, written as ``stamp``), unread."""
    _CHECKED.pack_into(view, offset, key, 0, stamp)


def holds(header, key, stamp):
    """Whether ``header`` (a copy of a block's first ``CHECKED_BYTES``) names ``key`` written as ``stamp``."""
    held, _, written = _CHECKED.unpack_from(header, 0)
    return held == key and written == stamp


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
