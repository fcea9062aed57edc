"""put/get/wait semantics and ObjectRef behaviour."""
import pickle
import time

import numpy as np
import pytest

import mpirt

from conftest import wait_for
from mpirt.exceptions import GetTimeoutError


@mpirt.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


@mpirt.remote
def make_ref(value):
    return mpirt.put(value)


@mpirt.remote
def deref(refs):
    return mpirt.get(refs[0])


def test_put_get_roundtrip(rt):
    values = [1, "text", {"a": [1, 2]}, None, b"", np.arange(1000).reshape(10, 100)]
    for value in values:
        got = rt.get(rt.put(value))
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got, value)
        else:
            assert got == value


@mpirt.remote
def writeable_flags(value):
    return [a.flags.writeable for a in value] if isinstance(value, list) else value.flags.writeable


@mpirt.remote
def zeros(n):
    return np.zeros(n)


@pytest.mark.parametrize("n", [3, 1_000_000])
def test_numpy_arrays_come_back_read_only_whatever_their_size(rt, n):
    """As in Ray: arrays in results, puts and arguments are read-only, small (inline) ones too, and a
    non-contiguous one keeps its values."""
    assert not rt.get(rt.put(np.zeros(n))).flags.writeable
    assert not rt.get(zeros.remote(n)).flags.writeable
    assert rt.get(writeable_flags.remote(np.zeros(n))) is False
    assert rt.get(writeable_flags.remote([np.zeros(n), np.ones(n)])) == [False, False]
    strided = np.arange(4 * n, dtype=np.float64).reshape(4, n)[:, ::2]
    got = rt.get(rt.put(strided))
    np.testing.assert_array_equal(got, strided)
    assert not got.flags.writeable
    mine = np.zeros(n)
    rt.put(mine)
    assert mine.flags.writeable          # the caller's array is left as it was


def test_put_of_ref_and_unpicklable_value_are_errors(rt):
    ref = rt.put(1)
    with pytest.raises(TypeError, match="ObjectRef"):
        rt.put(ref)
    import threading

    with pytest.raises(TypeError, match="put"):
        rt.put(threading.Lock())


def test_get_bad_input(rt):
    with pytest.raises(ValueError, match="ObjectRef"):   # Ray's type for something neither a ref nor a list
        rt.get(42)
    with pytest.raises(TypeError):
        rt.get([rt.put(1), 2])
    with pytest.raises(ValueError, match="timeout"):
        rt.get(rt.put(1), timeout=-1)
    assert rt.get([]) == []


def test_get_keeps_order(rt):
    refs = [sleep_then.remote(0.2 * (3 - i), i) for i in range(4)]
    assert rt.get(refs) == [0, 1, 2, 3]


def test_get_timeout_is_honoured(rt):
    ref = sleep_then.remote(3, "late")
    start = time.monotonic()
    with pytest.raises(GetTimeoutError):
        rt.get(ref, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 1.5  # generous: CI machines are busy
    assert isinstance(GetTimeoutError("x"), TimeoutError)
    assert rt.get(ref, timeout=30) == "late"


def test_wait_semantics(rt):
    fast = [sleep_then.remote(0, i) for i in range(3)]
    slow = sleep_then.remote(5, "slow")
    refs = [slow] + fast
    rt.get(fast)
    ready, not_ready = rt.wait(refs, num_returns=3, timeout=10)
    assert ready == fast and not_ready == [slow]
    ready, not_ready = rt.wait(refs, num_returns=1)
    assert len(ready) == 1 and ready[0] in fast and len(not_ready) == 3
    start = time.monotonic()
    ready, not_ready = rt.wait(refs, num_returns=4, timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 1.5
    assert ready == fast and not_ready == [slow]
    # input order is kept in both lists
    ready, not_ready = rt.wait(fast[::-1], num_returns=3)
    assert ready == fast[::-1]
    rt.cancel(slow)


def test_wait_gives_the_first_ready_refs_in_input_order_and_keeps_the_rest_in_order(rt):
    refs = [rt.put(i) for i in range(6)]
    pending = sleep_then.remote(30, "pending")
    mixed = refs[:2] + [pending] + refs[2:]
    ready, not_ready = rt.wait(mixed, num_returns=3)
    assert ready == refs[:3] and not_ready == [pending] + refs[3:]
    ready, not_ready = rt.wait(mixed, num_returns=6)
    assert ready == refs and not_ready == [pending]
    ready, not_ready = rt.wait(mixed[::-1], num_returns=1)
    assert ready == [refs[5]] and not_ready == mixed[::-1][1:]
    rt.cancel(pending)


def test_wait_bad_input(rt):
    ref = rt.put(1)
    with pytest.raises(TypeError):
        rt.wait(ref)
    with pytest.raises(ValueError, match="greater than"):
        rt.wait([ref], num_returns=2)
    with pytest.raises(ValueError, match="unique"):
        rt.wait([ref, ref])
    with pytest.raises(TypeError):
        rt.wait([ref, 3])
    with pytest.raises(ValueError):
        rt.wait([ref], num_returns=0)


def test_wait_returns_failed_objects_as_ready(rt):
    @mpirt.remote
    def boom():
        raise RuntimeError("x")

    ref = boom.remote()
    ready, _ = rt.wait([ref], timeout=30)
    assert ready == [ref]


def test_object_ref_is_hashable_and_picklable(rt):
    ref = rt.put("value")
    copy = pickle.loads(pickle.dumps(ref))
    assert copy == ref and hash(copy) == hash(ref)
    assert {ref: 1}[copy] == 1
    assert rt.get(copy) == "value"
    assert "ObjectRef(" in repr(ref) and len(ref.hex()) == 28


def test_refs_returned_from_tasks_and_passed_nested(rt):
    inner = rt.get(make_ref.remote("made in a task"))
    assert isinstance(inner, mpirt.ObjectRef)
    assert rt.get(inner) == "made in a task"
    # a ref owned by the driver, passed nested, read by a task on a worker
    mine = rt.put(np.ones(5))
    assert rt.get(deref.remote([mine])).sum() == 5
    # a ref owned by a worker, passed on to another task
    assert rt.get(deref.remote([inner])) == "made in a task"


@mpirt.remote
def make_refs(count):
    return [mpirt.put(f"value {i}") for i in range(count)]


@mpirt.remote
def value_of_argument(value):
    return value


def test_refs_found_in_a_value_keep_a_copy_here_only_once_read_here(rt):
    table = mpirt.core.current.runtime().objects
    holder = make_refs.remote(200)
    for _ in range(3):                            # read and dropped unread: nothing of theirs stays here
        assert len(rt.get(holder)) == 200
    found = rt.get(holder)
    assert all(isinstance(ref, mpirt.ObjectRef) for ref in found)
    assert not any(ref.id in table.entries for ref in found)
    assert rt.get(found[7]) == "value 7"          # read here: a copy of its value is kept while the ref lives
    assert rt.get(value_of_argument.remote(found[8])) == "value 8"     # an argument, resolved here first
    assert rt.get(deref.remote([found[9]])) == "value 9"               # nested: read by the worker
    ready, _ = rt.wait([found[10]])
    assert ready == [found[10]] and rt.get(ready[0]) == "value 10"
    read = [found[i].id for i in (7, 8, 10)]
    assert wait_for(lambda: all(object_id in table.entries for object_id in read[:1]))
    del found, ready
    assert wait_for(lambda: not any(object_id in table.entries for object_id in read))   # gone with the refs
    assert rt.get(rt.get(holder)[7]) == "value 7"                      # read again: fetched again


def test_many_small_objects_are_freed(rt):
    table = mpirt.core.current.runtime().objects
    for _ in range(5):
        refs = [rt.put(i) for i in range(2000)]
        assert rt.get(refs[-1]) == 1999
        del refs
    time.sleep(0.1)
    assert len(table.entries) < 2000


def test_cluster_resources(rt):
    assert rt.cluster_resources() == {"CPU": 2.0}
    deadline = time.monotonic() + 5
    while rt.available_resources().get("CPU") != 2.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.available_resources()["CPU"] == 2.0



def test_owner_frees_a_value_once_no_rank_can_reach_it(rt):
    table = mpirt.core.current.runtime().objects

    @mpirt.remote
    class Keeper:
        def __init__(self):
            self.kept = None

        def keep(self, refs):
            self.kept = refs[0]

        def read(self):
            return mpirt.get(self.kept).sum()

    ref = rt.put(np.ones(100))
    object_id = ref.id
    assert rt.get(deref.remote([ref])).sum() == 100  # borrowed by a task, released when it ends
    keeper = Keeper.remote()
    rt.get(keeper.keep.remote([ref]))  # an actor keeps a borrowed ref
    del ref
    time.sleep(0.3)
    assert object_id in table.entries  # still reachable through the actor
    assert rt.get(keeper.read.remote()) == 100
    mpirt.kill(keeper)
    assert wait_for(lambda: object_id not in table.entries), "value not freed after the last borrower went"
