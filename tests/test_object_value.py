"""The object value type and the codec, without MPI: each kind (inline, stored, on a device) answers
size, decode, release, discard, lost-with-rank and placement; the codec picks the kind."""
import pickle
import threading

import numpy as np
import pytest

from mpirt.core import codec, current, object_value
from mpirt.store.device import DeviceObject
from mpirt.store.layout import read_from
from mpirt.store.manager import StoreLocation


class FakeDevice:
    def __init__(self):
        self.released, self.freed = [], []

    def release(self, device_object):
        self.released.append(device_object)

    def free(self, keys):
        self.freed.append(list(keys))


class FakeStore:
    """The parts of a StoreManager the value kinds call: put/read keep the laid-out bytes here."""

    def __init__(self, rank=0):
        self.rank = rank
        self.device = FakeDevice()
        self.written = {}
        self.released, self.freed_here = [], []

    def put(self, serialized):
        data = bytearray(serialized.size)
        serialized.write_into(memoryview(data))
        location = StoreLocation(self.rank, 4096 * (len(self.written) + 1), serialized.size, None, key=len(self.written) + 1)
        self.written[location.key] = bytes(data)
        return location

    def read(self, object_id, location):
        return read_from(memoryview(self.written[location.key]))

    def release(self, object_id, location):
        self.released.append((object_id, location.key))

    def free_unpublished(self, location):
        self.freed_here.append(location.key)


def other_node(rank):
    return False


def same_node(rank):
    return True


def test_inline_values_are_bare_pickles():
    blob = pickle.dumps({"a": 1})
    store = FakeStore()
    assert object_value.is_inline(blob)
    assert object_value.size(blob) == len(blob)
    assert object_value.decode(blob, store, 7) == {"a": 1}
    object_value.release(blob, store, 7)
    object_value.discard(blob, store)
    assert (store.released, store.freed_here, store.device.released) == ([], [], [])
    assert not object_value.lost_with(blob, 0, other_node)
    assert object_value.placement(blob) is None
    assert object_value.placement(None) is None        # a pending entry has no value yet


def test_a_stored_value_reads_and_frees_through_the_store():
    store = FakeStore(rank=0)
    location = codec.encode(np.arange(100_000, dtype=np.int64), store)
    assert isinstance(location, StoreLocation) and not object_value.is_inline(location)
    assert object_value.size(location) == location.size > codec.INLINE_THRESHOLD
    np.testing.assert_array_equal(object_value.decode(location, store, 7), np.arange(100_000))
    object_value.release(location, store, 7)
    assert store.released == [(7, location.key)]
    object_value.discard(location, store)
    assert store.freed_here == [location.key]


def test_a_stored_value_is_lost_only_with_its_holder_on_another_node():
    location = StoreLocation(2, 4096, 1000, None, key=5)
    assert object_value.lost_with(location, 2, other_node)
    assert not object_value.lost_with(location, 2, same_node)      # the segment outlives the rank
    assert not object_value.lost_with(location, 3, other_node)
    assert object_value.placement(location) == (2, 1000)
    spilled = StoreLocation(2, -1, 1000, "/spill/5", key=5)
    assert object_value.placement(spilled) is None                   # read from disk wherever the reader is


def test_discard_leaves_values_held_by_other_ranks():
    store = FakeStore(rank=0)
    object_value.discard(StoreLocation(1, 4096, 1000, None, key=5), store)
    object_value.discard(DeviceObject(b"x", 1, [3], 10), store)
    assert store.freed_here == [] and store.device.freed == []


@pytest.mark.parametrize("inner", [pickle.dumps("names the arrays"), StoreLocation(2, 4096, 200_000, None, key=9)],
                         ids=["inline", "stored"])
def test_a_device_value_answers_for_its_arrays_and_its_pickle(inner):
    store = FakeStore(rank=1)
    value = DeviceObject(inner, 1, [3, 4], 1 << 20)
    assert not object_value.is_inline(value)
    assert object_value.size(value) == (1 << 20) + object_value.size(inner)
    assert object_value.placement(value) == (1, 1 << 20)
    object_value.release(value, store, 7)
    assert store.device.released == [value]
    assert store.released == ([] if object_value.is_inline(inner) else [(7, 9)])
    object_value.discard(value, store)
    assert store.device.freed == [[3, 4]]
    assert object_value.lost_with(value, 1, same_node)               # sealed arrays die with their process
    assert object_value.lost_with(value, 2, other_node) == (not object_value.is_inline(inner))
    assert not object_value.lost_with(value, 2, same_node)


def test_a_device_value_decodes_its_inline_pickle():
    value = DeviceObject(pickle.dumps([1, 2]), 1, [3], 16)
    assert object_value.decode(value, FakeStore(), 7) == [1, 2]


def test_the_kinds_keep_their_form_on_the_wire():
    location = StoreLocation(2, 4096, 100, None, key=5, stamp=9)
    value = pickle.loads(pickle.dumps(DeviceObject(location, 1, [3], 16)))
    assert isinstance(value, DeviceObject) and (value.holder, value.keys, value.nbytes) == (1, [3], 16)
    assert (value.inner.holder, value.inner.key, value.inner.stamp) == (2, 5, 9)


@pytest.mark.parametrize("value", [None, True, 3, 2.5, "text", b"bytes", "x" * codec.INLINE_THRESHOLD])
def test_plain_small_values_are_encoded_without_cloudpickle(value):
    blob = codec.encode(value, FakeStore())
    assert blob == pickle.dumps(value, protocol=5) == codec.encode_plain(value)


def test_the_codec_inlines_small_values_and_stores_large_ones():
    store = FakeStore()
    small = codec.encode({"k": np.arange(10)}, store)
    assert object_value.is_inline(small) and store.written == {}
    assert codec.encode_plain("x" * (codec.INLINE_THRESHOLD + 1)) is None
    large = codec.encode("x" * (codec.INLINE_THRESHOLD + 1), store)
    assert isinstance(large, StoreLocation) and object_value.decode(large, store, 1) == "x" * (codec.INLINE_THRESHOLD + 1)
    unstored = codec.encode(np.zeros(codec.INLINE_THRESHOLD), None)   # no store: every value stays inline
    assert object_value.is_inline(unstored) and object_value.decode(unstored, None, 1).shape == (codec.INLINE_THRESHOLD,)


def test_a_large_gpu_array_stays_on_its_device():
    cupy = pytest.importorskip("cupy", reason="the device kind needs CuPy and a GPU")
    if cupy.cuda.runtime.getDeviceCount() == 0:
        pytest.skip("no GPU")
    from mpirt.store import device

    class Rt:
        rank = 0
        lock = threading.Lock()

        def register(self, **handlers):
            pass

    rt = Rt()
    store = FakeStore()
    store.device = device.DeviceStore(rt, same_node)
    rt.store = store
    array = cupy.arange(1 << 20, dtype=cupy.float32)
    value = codec.encode(array, store)
    assert isinstance(value, DeviceObject) and value.nbytes == array.nbytes and object_value.is_inline(value.inner)
    current.set_runtime(rt)
    try:
        got = object_value.decode(value, store, 7)
    finally:
        current.set_runtime(None)
    assert bool((got == array).all()) and got.data.ptr != array.data.ptr
    store.device.free(value.keys)
