"""The segment allocator: alignment, first fit, coalescing, running out."""
import random

from mpirt.store.allocator import ALIGNMENT, SegmentAllocator


def test_alignment_and_zero_size():
    alloc = SegmentAllocator(1 << 20)
    offsets = [alloc.allocate(n) for n in (0, 1, 63, 64, 65, 1000)]
    assert all(o % ALIGNMENT == 0 for o in offsets)
    assert len(set(offsets)) == len(offsets)  # zero-byte objects get distinct blocks too


def test_out_of_space_then_reuse():
    alloc = SegmentAllocator(1024)
    first = alloc.allocate(512)
    second = alloc.allocate(512)
    assert alloc.allocate(1) is None and alloc.free_bytes == 0
    alloc.free(first)
    assert alloc.allocate(512) == first
    alloc.free(first)
    alloc.free(second)
    assert alloc.largest_free() == 1024  # freed neighbours coalesce back into one block


def test_random_alloc_free_keeps_invariants():
    rng = random.Random(7)
    alloc = SegmentAllocator(1 << 16)
    live = {}
    for _ in range(5000):
        if live and rng.random() < 0.45:
            offset = rng.choice(list(live))
            alloc.free(offset)
            del live[offset]
        else:
            size = rng.randint(0, 3000)
            offset = alloc.allocate(size)
            if offset is None:
                assert alloc.largest_free() < max(size, 1)
                continue
            end = offset + alloc.block_size(offset)
            for other, other_size in live.items():  # no overlap with any live block
                assert end <= other or other + other_size <= offset
            live[offset] = alloc.block_size(offset)
    assert alloc.used_bytes == sum(live.values())
    for offset in list(live):
        alloc.free(offset)
    assert alloc.used_bytes == 0 and alloc.largest_free() == alloc.capacity
