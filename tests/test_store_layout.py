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


def test_large_buffers_are_copied_whole_in_parts_on_several_threads(monkeypatch):
    """A buffer from PARALLEL_BYTES up is copied in parts side by side (copying.py): every byte lands,
    the parts' seams and an odd-sized tail included, for the large buffer and the pickle stream both."""
    from mpirt.store import copying
    monkeypatch.setattr(copying, "_threads", 3)   # as on a machine with 3 or more cores: 3 parts
    array = np.arange((copying.PARALLEL_BYTES * 2 + 12_345) // 8, dtype=np.int64)
    text = bytes(range(256)) * (copying.PARALLEL_BYTES // 256 + 7)    # a large in-band pickle
    value = {"array": array, "text": text}
    _, view = _store(value)
    got = read_from(view)
    np.testing.assert_array_equal(got["array"], array)
    assert got["text"] == text
    assert copying._pool is not None   # the parts beside the caller's ran on the pool's threads


def test_copy_threads_follow_the_cores_allowed_and_the_environment(monkeypatch):
    import os

    import pytest

    from mpirt.store import copying
    allowed = len(os.sched_getaffinity(0))
    for setting, expected in (("1", 1), ("64", allowed), (None, min(allowed, 4))):
        monkeypatch.setattr(copying, "_threads", None)
        if setting is None:
            monkeypatch.delenv("MPIRT_COPY_THREADS", raising=False)
        else:
            monkeypatch.setenv("MPIRT_COPY_THREADS", setting)
        assert copying.copy_threads() == expected, setting
    monkeypatch.setattr(copying, "_threads", None)
    monkeypatch.setenv("MPIRT_COPY_THREADS", "many")
    with pytest.raises(ValueError, match="MPIRT_COPY_THREADS='many'"):
        copying.copy_threads()
    monkeypatch.setattr(copying, "_threads", None)
