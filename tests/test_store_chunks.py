"""The node pool's chunk table and a rank's space in it: chunks handed out and given back,
runs for large objects, several ranks sharing one table (as the ranks of a node do), a dead
rank's chunks taken over by a live one."""
import os
import random

import numpy as np
import pytest

from mpirt.store import blocks
from mpirt.store.allocator import SegmentAllocator
from mpirt.store.arena import NodeLock
from mpirt.store.chunks import ChunkTable, RankSpace, chunk_geometry, consecutive_runs

MiB = 1 << 20


def _pool(tmp_path, capacity):
    return _pool_and_memory(tmp_path, capacity)[0]


def _pool_and_memory(tmp_path, capacity):
    header, _, _ = chunk_geometry(capacity)
    memory = np.zeros(header + capacity, dtype=np.uint8)
    start = ChunkTable.initial_header(capacity)
    memory[:len(start)] = np.frombuffer(start, dtype=np.uint8)
    fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT)
    return ChunkTable(memory, NodeLock(fd), capacity), memory


def test_geometry_keeps_chunks_large_but_many_enough():
    assert chunk_geometry(8 << 30)[1:] == (64 * MiB, 128)
    assert chunk_geometry(64 * MiB)[1] == 2 * MiB        # 32 chunks: every rank of a node can hold some
    assert chunk_geometry(MiB)[1:] == (MiB, 1)
    header, chunk, count = chunk_geometry(100 * MiB + 5)
    assert header % 4096 == 0 and count * chunk >= 100 * MiB + 5


def test_freed_chunks_go_back_so_another_rank_can_use_the_whole_pool(tmp_path):
    table = _pool(tmp_path, 64 * MiB)
    first, second = RankSpace(table, 2), RankSpace(table, 3)
    blocks = [first.allocate(MiB) for _ in range(40)]
    assert None not in blocks and first.chunks_held >= 20
    assert second.allocate(40 * MiB) is None            # the pool has no run that long left
    for offset in blocks:
        first.free(offset)
    assert first.chunks_held == 1                        # one wholly free chunk is kept, for the next put
    assert first.release_spare() == 2 * MiB and first.reserved_bytes == 0
    big = second.allocate(63 * MiB)                      # one rank may take nearly all of it
    assert big is not None and table.counts() == {3: 32}
    assert table.reserved_bytes() == second.reserved_bytes == 64 * MiB
    second.free(big)
    assert table.counts() == {3: 1} and table.reserved_bytes() == 2 * MiB


def test_large_objects_take_contiguous_runs_and_small_ones_come_from_the_top(tmp_path):
    table = _pool(tmp_path, 64 * MiB)
    space = RankSpace(table, 2)
    small = space.allocate(1000)
    _, chunk_bytes, count = chunk_geometry(64 * MiB)
    assert small >= table.chunk_range(count - 1)[0]      # the last chunk
    big = space.allocate(10 * MiB)
    assert big == table.chunk_range(0)[0]                # first fit from the bottom
    assert table.largest_free_run() == count - 1 - 10 * MiB // chunk_bytes


def test_random_traffic_from_two_ranks_keeps_the_table_consistent(tmp_path):
    rng = random.Random(3)
    table = _pool(tmp_path, 64 * MiB)
    spaces = [RankSpace(table, r) for r in (2, 3)]
    live = []
    for _ in range(3000):
        if live and (rng.random() < 0.5 or len(live) > 40):
            space, offset, size = live.pop(rng.randrange(len(live)))
            space.free(offset)
        else:
            space = rng.choice(spaces)
            size = rng.choice([rng.randint(1, 64 << 10), rng.randint(1, 3 * MiB), rng.randint(1, 9 * MiB)])
            offset = space.allocate(size)
            if offset is not None:
                assert all(offset + size <= o or o + s <= offset for _, o, s in live)   # no overlap
                live.append((space, offset, size))
        counts = table.counts()
        assert all(counts.get(s.rank, 0) == s.chunks_held for s in spaces)
    for space, offset, _ in live:
        space.free(offset)
    for space in spaces:
        space.release_spare()
    assert table.counts() == {} and all(s.reserved_bytes == 0 for s in spaces)


def test_grant_and_withdraw_ranges():
    alloc = SegmentAllocator()
    assert alloc.allocate(64) is None
    alloc.grant(1024, 1024)
    alloc.grant(0, 1024)                                 # coalesces with its neighbour
    assert alloc.largest_free() == 2048 and alloc.capacity == 2048
    offset = alloc.allocate(512)
    assert alloc.free(offset) == (0, 2048)               # free reports the range it joined
    alloc.withdraw(1024, 1024)
    assert alloc.capacity == 1024 and alloc.free_ranges() == [(0, 1024)]
    with pytest.raises(ValueError):
        alloc.withdraw(512, 1024)                        # not wholly free space


def test_a_dead_ranks_chunks_pass_to_a_live_rank_which_frees_what_nothing_refers_to(tmp_path):
    # What manager.StoreManager._adopt does with a killed rank's part of the pool: the blocks of objects
    # still referred to (or viewed) are kept, the rest goes back to the node at once.
    table, memory = _pool_and_memory(tmp_path, 64 * MiB)
    view = memoryview(memory)
    dead, adopter = RankSpace(table, 2), RankSpace(table, 3)
    keys, offsets = [], []
    for i in range(12):                                  # 3 MiB objects: 2 chunks each
        size = 3 * MiB
        offset = dead.allocate(blocks.HEADER_BYTES + size)
        key = (2 + 1) << 40 | (i + 1)
        blocks.write(view, offset, key, key, size)
        keys.append(key)
        offsets.append(offset)
    small = dead.allocate(blocks.HEADER_BYTES + 1000)
    blocks.write(view, small, (3 << 40) | 99, (3 << 40) | 99, 1000)
    viewed = offsets[5]
    assert blocks.add_reader(view, viewed, keys[5])      # a reader's zero-copy view of an object whose owner died
    held_before = table.counts()[2]
    live = keys[:2]                                      # what live owners reported
    with table.lock:
        indices = table.held_by([2])
        found = []
        for first, last in consecutive_runs(indices):
            start, end = table.chunk_range(first)[0], sum(table.chunk_range(last))
            found += blocks.survivors(memory, start, end, live, [3], 40)
        table.reassign(indices, 3)
    assert [key for _, key, _, _, _ in found] == [keys[0], keys[1], keys[5]]
    assert not blocks.add_reader(view, small, (3 << 40) | 99)   # a block freed now cannot be mapped any more
    adopter.adopt(indices.tolist(), [(offset, blocks.block_bytes(size)) for offset, _, _, size, _ in found])
    assert 2 not in table.counts() and table.counts()[3] == adopter.chunks_held < held_before
    assert adopter.used_bytes == sum(blocks.block_bytes(size) for _, _, _, size, _ in found)
    for offset, _, _, _, _ in found:
        adopter.free(offset)
    adopter.release_spare()
    assert table.counts() == {} and adopter.reserved_bytes == 0

