"""Object layout in store memory: round trips, alignment, zero-copy reads."""
import numpy as np

from mpirt.store.layout import Serialized, read_from


def _store(value):
    serialized = Serialized(value)
    memory = np.zeros(serialized.size + 64, dtype=np.uint8)
    start = -memory.ctypes.data % 64  # a 64-byte aligned start, as store segments give
    view = memoryview(memory)[start:start + serialized.size]
    serialized.write_into(view)
    return memory, view


def test_round_trip_of_mixed_values():
    value = {"a": np.arange(1000, dtype=np.float64), "b": [np.ones((3, 4), dtype=np.int8), "text"], "c": b"", "d": 7}
    _, view = _store(value)
    got = read_from(view)
    np.testing.assert_array_equal(got["a"], value["a"])
    np.testing.assert_array_equal(got["b"][0], value["b"][0])
    assert got["b"][1] == "text" and got["c"] == b"" and got["d"] == 7


def test_numpy_reads_are_zero_copy_read_only_and_aligned():
    array = np.random.default_rng(0).random((256, 256))
    memory, view = _store(array)
    got = read_from(view)
    np.testing.assert_array_equal(got, array)
    assert not got.flags.writeable
    assert got.ctypes.data % 64 == 0
    base = memory.ctypes.data
    assert base <= got.ctypes.data < base + memory.nbytes  # it points into the store memory itself
    last = got.ctypes.data - base + got.nbytes - 8
    memory[last:last + 8] = 0  # a change in the memory shows through the view: no copy was made
    assert got.ravel()[-1] == 0


def test_empty_and_plain_objects():
    for value in (None, b"", np.zeros(0), "x" * 10):
        _, view = _store(value)
        got = read_from(view)
        if isinstance(value, np.ndarray):
            assert got.shape == (0,)
        else:
            assert got == value
