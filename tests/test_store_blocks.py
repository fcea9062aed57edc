"""Block headers: the sequence lock of cross-node readers names one write of an object, so an
object spilled and restored into the same block does not pass for the bytes read before."""
import pickle

import numpy as np

from mpirt.store import blocks
from mpirt.store.manager import StoreLocation


def _checked(memory, offset):
    """What a cross-node reader reads again after the bytes: a copy of the header's start."""
    return memory[offset:offset + blocks.CHECKED_BYTES].copy()


def test_a_header_holds_the_key_and_stamp_it_was_written_with():
    memory = np.zeros(4 * blocks.HEADER_BYTES, dtype=np.uint8)
    view = memoryview(memory)
    blocks.write(view, 64, key=7, stamp=7, size=100)
    assert blocks.holds(_checked(memory, 64), 7, 7)
    assert not blocks.holds(_checked(memory, 64), 8, 7)
    assert blocks.add_reader(view, 64, 7)                  # same-node views leave the check alone
    assert blocks.holds(_checked(memory, 64), 7, 7)


def test_a_restore_into_the_same_block_does_not_pass_for_the_first_write():
    memory = np.zeros(4 * blocks.HEADER_BYTES, dtype=np.uint8)
    view = memoryview(memory)
    blocks.write(view, 0, key=7, stamp=7, size=100)        # put
    assert blocks.clear_if_unread(view, 0, 7)              # spilled: cleared before the bytes change
    assert not blocks.holds(_checked(memory, 0), 7, 7)
    blocks.write(view, 0, key=7, stamp=11, size=100)       # restored into the same block
    assert not blocks.holds(_checked(memory, 0), 7, 7)     # a read begun before the spill is refused
    assert blocks.holds(_checked(memory, 0), 7, 11)        # a read of the restored location passes


def test_locations_carry_their_stamp_through_pickling():
    put = StoreLocation(2, 4096, 100, None, key=5)
    assert put.stamp == 5
    again = pickle.loads(pickle.dumps(put))
    assert (again.holder, again.offset, again.size, again.key, again.stamp) == (2, 4096, 100, 5, 5)
    restored = pickle.loads(pickle.dumps(StoreLocation(2, 4096, 100, None, key=5, stamp=9)))
    assert (restored.key, restored.stamp) == (5, 9)
