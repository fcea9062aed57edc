"""The 64-byte header in front of each object in the node pool.

    [key u64][same-node readers i64][stamp u64][object bytes u64][unused up to 64 bytes][object bytes...]

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

The object's size is there so that a rank taking over a dead rank's chunks (``manager.py``,
"adoption") can tell how far each block it finds in them reaches: the dead rank's own records
died with it.
"""
import struct

import numpy as np

from .allocator import ALIGNMENT, aligned

HEADER_BYTES = 64
CHECKED_BYTES = 24      # the header a cross-node reader reads again: key, readers, stamp
_FIELDS = struct.Struct("<Qq")
_CHECKED = struct.Struct("<QqQ")
_WRITTEN = struct.Struct("<QqQQ")
SIZE_FIELD = 3          # the object's size, in the header's u64 words


def write(view, offset, key, stamp, size):
    """Mark the block at ``offset`` as holding object ``key`` of ``size`` bytes (in place, written as
    ``stamp``), unread."""
    _WRITTEN.pack_into(view, offset, key, 0, stamp, size)


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


def block_bytes(size):
    """Bytes the allocator gives a block holding an object of ``size`` bytes."""
    return max(aligned(HEADER_BYTES + size), ALIGNMENT)


def survivors(memory, start, end, live, writers, key_bits):
    """Under the node lock, in ``memory[start:end]`` (a run of chunks of dead ranks, taken over by a
    live one): the blocks to keep, [(offset, key, stamp, size, readers)] in offset order. Those are
    the blocks whose header names an object in ``live`` (keys some live owner still refers to), and
    the blocks a same-node view still reads (their owner died, but the bytes stay until the view goes).
    ``writers``: the dead ranks + 1, the top bits (above ``key_bits``) of the keys they made.
    Every other header of theirs found there loses its key, so no reader maps what is free space from now on.

    The dead rank's records died with it, so the blocks are found by their headers: blocks start on
    ``HEADER_BYTES`` boundaries, and a key is cleared whenever its block is freed or spilled, so a
    header holding a key heads the bytes of a live write of it (a block's size is in its header)."""
    usable = (end - start) // HEADER_BYTES * HEADER_BYTES
    rows = memory[start:start + usable].view(np.uint64).reshape(-1, HEADER_BYTES // 8)
    keys = rows[:, 0]
    # Headers are those with a key the dead ranks made (every object in their chunks was put by one of
    # them: a restore keeps the key); other words are object bytes.
    writer = keys >> np.uint64(key_bits)
    plausible = np.zeros(len(keys), dtype=bool)
    for made_by in writers:
        plausible |= writer == made_by
    named = np.flatnonzero(plausible)
    if not len(named):
        return []
    named_keys = keys[named]
    live_rows = named[np.isin(named_keys, np.asarray(live, dtype=np.uint64))]
    read_rows = named[rows[named, 1].view(np.int64) > 0]
    found, keep, seen = [], np.zeros(len(rows), dtype=bool), set()
    # Live objects first: a header-like pattern in the bytes of a watched block cannot hide one.
    for row in list(live_rows) + list(read_rows):
        offset = start + int(row) * HEADER_BYTES
        key, readers, stamp, size = _WRITTEN.unpack_from(memory, offset)
        span = block_bytes(size) // HEADER_BYTES
        if key in seen or row + span > len(rows) or keep[row:row + span].any():
            continue
        found.append((offset, key, stamp, size, readers))
        seen.add(key)
        keep[row:row + span] = True
    stale = named[~keep[named]]
    rows[stale, :2] = 0
    return sorted(found)
