"""Space management inside one rank's store segment.

First-fit over a free list kept sorted by offset; frees coalesce with their
neighbours. Every block starts on a 64-byte boundary so numpy buffers placed
in it are aligned. Only the segment's own rank allocates and frees, under the
runtime lock, so there is no locking here.
"""
import bisect

ALIGNMENT = 64


def aligned(size):
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


class SegmentAllocator:
    def __init__(self, capacity):
        self.capacity = capacity - capacity % ALIGNMENT
        self._free_offsets = [0] if self.capacity else []
        self._free_sizes = {0: self.capacity} if self.capacity else {}
        self._used = {}  # offset -> size
        self.used_bytes = 0

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
        size = self._used.pop(offset)
        self.used_bytes -= size
        i = bisect.bisect_left(self._free_offsets, offset)
        # merge with the following free block
        if i < len(self._free_offsets) and self._free_offsets[i] == offset + size:
            size += self._free_sizes.pop(self._free_offsets.pop(i))
        # merge with the preceding free block
        if i > 0:
            before = self._free_offsets[i - 1]
            if before + self._free_sizes[before] == offset:
                self._free_sizes[before] += size
                return
        self._free_offsets.insert(i, offset)
        self._free_sizes[offset] = size

    def block_size(self, offset):
        return self._used[offset]
