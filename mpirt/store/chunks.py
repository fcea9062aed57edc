"""The node pool's chunk table: which rank of the node holds which chunk.

The pool (after a small header) is cut into chunks of ``chunk_bytes`` (64 MiB, less for small
pools so every rank can hold a few). A rank that needs room takes free chunks from the table,
under the node lock, and places objects inside its own chunks with its own
``SegmentAllocator``, asking no one: the fast path stays local. An object larger than a chunk
takes a run of contiguous chunks. Chunks that become wholly free go back to the table at once,
for every rank of the node (each rank keeps its last one, so a loop of put and drop stays
local, until another rank asks for room). A dead rank's chunks pass to one live rank of its
node (``RankSpace.adopt``, driven by ``manager.py``). Single chunks are taken from the top of the pool,
runs first-fit from the bottom, so small objects do not break up the long runs big objects
need.

Header layout (little endian): magic u64, chunk bytes u64, chunk count u64, then one int32 per
chunk: the world rank holding it, or -1.
"""
import struct

import numpy as np

from .allocator import ALIGNMENT, SegmentAllocator, aligned

MAGIC = 0x6D70727463686B73   # "mprtchks"
MAX_CHUNK_BYTES = 64 << 20
MIN_CHUNK_BYTES = 1 << 20
PAGE = 4096
_HEAD = struct.Struct("<QQQ")
FREE = -1


def chunk_geometry(capacity):
    """(header bytes, chunk bytes, chunk count) of a pool of ``capacity`` bytes."""
    chunk = MAX_CHUNK_BYTES
    while chunk > MIN_CHUNK_BYTES and chunk * 32 > capacity:
        chunk //= 2
    count = -(-capacity // chunk)
    header = -(-(_HEAD.size + 4 * count) // PAGE) * PAGE
    return header, chunk, count


class ChunkTable:
    """The shared table (in the pool's header), read and changed only under the node lock."""

    def __init__(self, memory, lock, capacity):
        self.lock = lock
        self.capacity = capacity
        self.header_bytes, self.chunk_bytes, self.count = chunk_geometry(capacity)
        magic, chunk_bytes, count = _HEAD.unpack_from(memory, 0)
        if (magic, chunk_bytes, count) != (MAGIC, self.chunk_bytes, self.count):
            raise RuntimeError("the object store file does not hold this pool's chunk table")
        self.owners = memory[_HEAD.size:_HEAD.size + 4 * self.count].view(np.int32)

    @staticmethod
    def initial_header(capacity):
        """Bytes the leader writes at the start of a new pool file: every chunk free."""
        _, chunk_bytes, count = chunk_geometry(capacity)
        return _HEAD.pack(MAGIC, chunk_bytes, count) + np.full(count, FREE, dtype=np.int32).tobytes()

    def chunk_range(self, index):
        """(pool offset, bytes) of chunk ``index`` (the last one may be shorter)."""
        start = index * self.chunk_bytes
        return self.header_bytes + start, min(self.chunk_bytes, self.capacity - start)

    def take(self, rank, count):
        """Mark a run of ``count`` free chunks as ``rank``'s; its first index, or None."""
        with self.lock:
            free = self.owners == FREE
            if count == 1:
                found = np.flatnonzero(free)
                first = int(found[-1]) if len(found) else None
            else:
                first = _first_run(free, count)
            if first is None:
                return None
            self.owners[first:first + count] = rank
            return first

    def give_back(self, indices):
        with self.lock:
            self.owners[indices] = FREE

    def held_by(self, ranks):
        """Indices of the chunks any of ``ranks`` holds. Under the node lock (the caller's)."""
        return np.flatnonzero(np.isin(self.owners, list(ranks)))

    def reassign(self, indices, rank):
        """Mark chunks ``indices`` as ``rank``'s. Under the node lock (the caller's)."""
        self.owners[indices] = rank

    def counts(self):
        """(chunks held, by world rank), read without the lock (statistics only)."""
        owners = self.owners.copy()
        held = owners[owners != FREE]
        ranks, numbers = np.unique(held, return_counts=True)
        return dict(zip(ranks.tolist(), numbers.tolist()))

    def reserved_bytes(self):
        """Bytes of the chunks held by any rank, from one copy of the table: unlike a sum of the
        ranks' own figures taken at different moments, never counts twice a chunk passing between ranks."""
        held = np.flatnonzero(self.owners.copy() != FREE)
        if not len(held):
            return 0
        last = self.count - 1
        return int(len(held) * self.chunk_bytes - (self.chunk_bytes - self.chunk_range(last)[1]) * (held[-1] == last))

    def largest_free_run(self):
        return int(_runs(self.owners == FREE)[1].max(initial=0))


def _runs(free):
    """(starts, lengths) of the runs of True values in ``free``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], free, [False])).astype(np.int8)))
    return edges[0::2], edges[1::2] - edges[0::2]


def consecutive_runs(indices):
    """(first, last) of each run of consecutive numbers in the sorted array ``indices``."""
    if not len(indices):
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1)
    firsts = np.concatenate(([indices[0]], indices[breaks + 1]))
    lasts = np.concatenate((indices[breaks], [indices[-1]]))
    return list(zip(firsts.tolist(), lasts.tolist()))


def _first_run(free, count):
    """Index of the first run of ``count`` True values in ``free``, or None."""
    starts, lengths = _runs(free)
    long_enough = np.flatnonzero(lengths >= count)
    return int(starts[long_enough[0]]) if len(long_enough) else None


class RankSpace:
    """The part of the node pool this rank holds: its chunks, and its objects inside them.
    Used only by the holding rank, under the runtime lock."""

    def __init__(self, table, rank):
        self.table = table
        self.rank = rank
        self.allocator = SegmentAllocator()
        self.chunks_held = 0

    @property
    def used_bytes(self):
        return self.allocator.used_bytes

    @property
    def reserved_bytes(self):
        return self.allocator.capacity

    def allocate(self, size):
        """Pool offset of a block of at least ``size`` bytes, or None when the node has no room."""
        offset = self.allocator.allocate(size)
        if offset is not None:
            return offset
        count = -(-max(aligned(size), ALIGNMENT) // self.table.chunk_bytes)
        first = self.table.take(self.rank, count)
        if first is None and self.release_spare():   # the kept chunk may be what breaks up the run
            first = self.table.take(self.rank, count)
        if first is None:
            return None
        for index in range(first, first + count):
            self.allocator.grant(*self.table.chunk_range(index))
        self.chunks_held += count
        return self.allocator.allocate(size)

    def free(self, offset):
        """Free a block; chunks left wholly free go back to the node."""
        start, size = self.allocator.free(offset)
        first = -(-(start - self.table.header_bytes) // self.table.chunk_bytes)
        whole = []
        for index in range(first, self.table.count):
            chunk_start, chunk_size = self.table.chunk_range(index)
            if chunk_start + chunk_size > start + size:
                break
            whole.append(index)
        if whole and len(whole) == self.chunks_held:
            whole.pop()    # keep one wholly free chunk: a loop of put and drop then never touches the table
        if whole:
            for index in whole:
                self.allocator.withdraw(*self.table.chunk_range(index))
            self.chunks_held -= len(whole)
            self.table.give_back(whole)

    def adopt(self, indices, used):
        """Take over chunks ``indices`` of a dead rank (the table marks them ours already), with the
        blocks ``used`` [(offset, allocated bytes)] of its objects still live in them; chunks with
        none go back to the node at once (no spare is kept: nothing here will reuse them soon)."""
        for index in indices:
            self.allocator.grant(*self.table.chunk_range(index))
        self.chunks_held += len(indices)
        for offset, size in used:
            self.allocator.reserve(offset, size)
        empty = [index for index in indices if self.allocator.is_free(*self.table.chunk_range(index))]
        for index in empty:
            self.allocator.withdraw(*self.table.chunk_range(index))
        self.chunks_held -= len(empty)
        if empty:
            self.table.give_back(empty)

    def release_spare(self):
        """Give back the chunk kept when all others went (another rank needs room); the bytes given back."""
        if self.chunks_held != 1 or self.allocator.used_bytes:
            return 0
        (start, size), = self.allocator.free_ranges()
        index = (start - self.table.header_bytes) // self.table.chunk_bytes
        self.allocator.withdraw(start, size)
        self.chunks_held = 0
        self.table.give_back([index])
        return size
