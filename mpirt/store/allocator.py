"""Space management inside the store memory one rank holds.

First-fit over a free list kept sorted by offset; frees coalesce with their neighbours. Every
block starts on a 64-byte boundary so numpy buffers placed in it are aligned. Only the holding
rank allocates and frees, under the runtime lock, so there is no locking here.

The space need not be one range: ``grant`` adds a range (a chunk of the node pool,
``chunks.py``) and ``withdraw`` takes a wholly free one back out, so offsets are offsets into
the whole node pool.
"""
import bisect

ALIGNMENT = 64


def aligned(size):
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


class SegmentAllocator:
    def __init__(self, capacity=0):
        self.capacity = 0
        self._free_offsets = []
        self._free_sizes = {}
        self._used = {}  # offset -> size
        self.used_bytes = 0
        if capacity - capacity % ALIGNMENT:
            self.grant(0, capacity - capacity % ALIGNMENT)

    @property
    def free_bytes(self):
        return self.capacity - self.used_bytes

    def largest_free(self):
        return max(self._free_sizes.values(), default=0)

    def allocate(self, size):
        """Offset of a block of at least ``size`` bytes, or None when none is free."""
        size = max(aligned(size), ALIGNMENT)  # zero-byte objects still get a distinct block
        for i, offset in enumerate(self._free_offsets):
            block = self._free_sizes[offset]
            if block >= size:
                del self._free_sizes[offset]
                del self._free_offsets[i]
                if block > size:
                    rest = offset + size
                    self._free_offsets.insert(i, rest)
                    self._free_sizes[rest] = block - size
                self._used[offset] = size
                self.used_bytes += size
                return offset
        return None

    def free(self, offset):
        """Free the block at ``offset``; returns the free range it is now part of (offset, size)."""
        size = self._used.pop(offset)
        self.used_bytes -= size
        return self._insert_free(offset, size)

    def grant(self, offset, size):
        """Add the range [offset, offset + size) (aligned, not overlapping ours) as free space."""
        self.capacity += size
        return self._insert_free(offset, size)

    def withdraw(self, offset, size):
        """Take the range [offset, offset + size) out of the space; it must lie inside one free block."""
        i = bisect.bisect_right(self._free_offsets, offset) - 1
        start = self._free_offsets[i] if i >= 0 else None
        if start is None or offset + size > start + self._free_sizes[start]:
            raise ValueError(f"range {offset}+{size} is not free")
        end = start + self._free_sizes[start]
        del self._free_offsets[i]
        del self._free_sizes[start]
        if offset + size < end:
            self._free_offsets.insert(i, offset + size)
            self._free_sizes[offset + size] = end - offset - size
        if start < offset:
            self._free_offsets.insert(i, start)
            self._free_sizes[start] = offset - start
        self.capacity -= size

    def reserve(self, offset, size):
        """Mark the block [offset, offset + size) (inside one free block) as used: a block some other
        rank allocated, in space taken over from it."""
        self.withdraw(offset, size)
        self.capacity += size
        self._used[offset] = size
        self.used_bytes += size

    def is_free(self, offset, size):
        """Whether the range [offset, offset + size) lies inside one free block."""
        i = bisect.bisect_right(self._free_offsets, offset) - 1
        return i >= 0 and offset + size <= self._free_offsets[i] + self._free_sizes[self._free_offsets[i]]

    def _insert_free(self, offset, size):
        """Add a free range, merged with the free blocks after and before it; (offset, size) of the result."""
        i = bisect.bisect_left(self._free_offsets, offset)
        if i < len(self._free_offsets) and self._free_offsets[i] == offset + size:
            size += self._free_sizes.pop(self._free_offsets.pop(i))
        if i > 0:
            before = self._free_offsets[i - 1]
            if before + self._free_sizes[before] == offset:
                self._free_sizes[before] += size
                return before, self._free_sizes[before]
        self._free_offsets.insert(i, offset)
        self._free_sizes[offset] = size
        return offset, size

    def block_size(self, offset):
        return self._used[offset]

    def free_ranges(self):
        """The free blocks, (offset, size) in offset order (for statistics)."""
        return [(offset, self._free_sizes[offset]) for offset in self._free_offsets]
