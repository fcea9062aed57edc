"""mpirt.util.queue: Ray's Queue (ray.util.queue) on an async actor, from the driver, tasks and actors."""
import asyncio
import pickle
import queue as stdlib_queue
import subprocess
import sys
import time

import cloudpickle
import pytest

import mpirt
from mpirt.exceptions import TaskCancelledError
from mpirt.util.queue import Empty, Full, Queue

from conftest import BASE_ENVIRON, REPO, wait_for

pytestmark = pytest.mark.timeout(60)


@mpirt.remote
def consume(q, timeout=1.0):
    """The doc example's consumer: take items until none comes for ``timeout`` seconds."""
    got = []
    try:
        while True:
            got.append(q.get(block=True, timeout=timeout))
    except Empty:
        return got


@mpirt.remote
def produce(q, items):
    for item in items:
        q.put(item)
    return len(items)


@mpirt.remote
def get_one(q):
    return q.get()


@mpirt.remote
class Producer:
    def __init__(self, q):
        self.q = q

    def fill(self, items):
        self.q.put_nowait_batch(items)
        return self.q.qsize()


@mpirt.remote
class AsyncConsumer:
    async def take(self, q, n):
        return [await q.get_async(timeout=10) for _ in range(n)]

    async def give(self, q, item):
        await q.put_async(item)
        return True


def test_errors_are_the_standard_librarys():
    assert issubclass(Empty, stdlib_queue.Empty) and issubclass(Full, stdlib_queue.Full)


def test_fifo_size_and_flags(rt):
    q = Queue()
    assert q.empty() and not q.full() and len(q) == 0 and q.maxsize == 0
    for i in range(5):
        q.put(i)
    assert q.qsize() == q.size() == len(q) == 5 and not q.empty() and not q.full()
    assert [q.get() for _ in range(5)] == list(range(5))
    assert q.empty()
    q.shutdown()


def test_maxsize_full_and_timeouts(rt):
    q = Queue(maxsize=2)
    q.put("a")
    q.put_nowait("b")
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait("c")
    with pytest.raises(Full):
        q.put("c", block=False)
    start = time.monotonic()
    with pytest.raises(Full):
        q.put("c", timeout=0.3)
    assert time.monotonic() - start >= 0.25
    with pytest.raises(Full):
        q.put("c", timeout=0)
    assert q.qsize() == 2
    assert q.get(timeout=0) == "a"      # an item there: a zero timeout still gets it
    assert q.get_nowait() == "b"
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - start >= 0.25
    q.shutdown()


def test_bad_arguments(rt):
    q = Queue(maxsize=3)
    for call in (lambda: q.put(1, timeout=-1), lambda: q.get(timeout=-0.5)):
        with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
            call()
    with pytest.raises(TypeError, match="'timeout' must be a non-negative number"):
        q.get(timeout="1")
    # As in Ray: without blocking the timeout is not looked at.
    with pytest.raises(Empty):
        q.get(block=False, timeout=-1)
    with pytest.raises(TypeError, match="Argument 'items' must be an Iterable"):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError, match="Argument 'num_items' must be an int"):
        q.get_nowait_batch(1.5)
    with pytest.raises(ValueError, match="'num_items' must be nonnegative"):
        q.get_nowait_batch(-1)
    with pytest.raises(TypeError, match="maxsize"):
        Queue(maxsize="10")
    with pytest.raises(TypeError, match="actor_options"):
        Queue(actor_options=[("num_cpus", 1)])
    with pytest.raises(ValueError):
        Queue(actor_options={"num_cpus": -1})
    assert q.empty()
    q.shutdown()


def test_batches_are_all_or_nothing(rt):
    q = Queue(maxsize=4)
    q.put_nowait_batch(i for i in range(3))       # any iterable
    with pytest.raises(Full, match="Cannot add 2 items to queue of size 3 and maxsize 4."):
        q.put_nowait_batch(["x", "y"])
    assert q.qsize() == 3
    with pytest.raises(Empty, match="Cannot get 4 items from queue of size 3."):
        q.get_nowait_batch(4)
    assert q.qsize() == 3
    assert q.get_nowait_batch(0) == []
    assert q.get_nowait_batch(2) == [0, 1]
    assert q.get_nowait_batch(1) == [2]
    unbounded = Queue()
    unbounded.put_nowait_batch(range(1000))
    assert unbounded.get_nowait_batch(1000) == list(range(1000))
    q.shutdown()
    unbounded.shutdown()


def test_blocking_put_and_get_wake_up(rt):
    q = Queue(maxsize=1)
    waiting = get_one.remote(q)                  # blocks in the task until the driver puts
    assert not mpirt.wait([waiting], timeout=0.3)[0]
    q.put("item")
    assert mpirt.get(waiting, timeout=20) == "item"
    q.put(1)
    producer = produce.remote(q, [2, 3])         # blocks on the full queue
    assert [q.get(timeout=20) for _ in range(3)] == [1, 2, 3]
    assert mpirt.get(producer, timeout=20) == 2
    q.shutdown()


def test_doc_example_consumers_share_the_items(rt):
    """Ray's actor-queue example: two consumer tasks drain what the driver put, each item once."""
    q = Queue(maxsize=100)
    for i in range(10):
        q.put(i)
    consumers = [consume.remote(q) for _ in range(2)]
    got = mpirt.get(consumers, timeout=30)
    assert sorted(got[0] + got[1]) == list(range(10))
    q.shutdown()


def test_from_actors_and_asyncio(rt):
    q = Queue()
    producer = Producer.remote(q)
    assert mpirt.get(producer.fill.remote([1, 2, 3]), timeout=20) == 3
    consumer = AsyncConsumer.remote()
    taken = consumer.take.remote(q, 5)                 # 3 there, 2 to come
    assert mpirt.get(consumer.give.remote(q, 4), timeout=20)
    q.put(5)
    assert mpirt.get(taken, timeout=20) == [1, 2, 3, 4, 5]

    async def driver_side():
        await q.put_async("x")
        await q.put_async("y", timeout=1)
        with pytest.raises(ValueError, match="non-negative"):
            await q.get_async(timeout=-1)
        first = await q.get_async()
        second = await q.get_async(block=False)
        with pytest.raises(Empty):
            await q.get_async(timeout=0.1)
        with pytest.raises(Empty):
            await q.get_async(block=False)
        return first, second

    assert asyncio.run(driver_side()) == ("x", "y")
    full = Queue(maxsize=1)
    full.put(0)

    async def put_into_full():
        with pytest.raises(Full):
            await full.put_async(1, block=False)
        with pytest.raises(Full):
            await full.put_async(1, timeout=0.1)

    asyncio.run(put_into_full())
    mpirt.kill(producer)
    mpirt.kill(consumer)
    q.shutdown()
    full.shutdown()


def test_pickles_as_its_actor(rt):
    q = Queue(maxsize=7)
    copy = pickle.loads(cloudpickle.dumps(q))
    assert copy.maxsize == 7 and copy.actor == q.actor
    copy.put("shared")
    assert q.get(timeout=10) == "shared"
    q.shutdown()


def test_cancelled_waiter_takes_nothing(rt):
    """A task cancelled while it waits in get() cancels its call in the queue's actor: the next
    item is not swallowed by a caller that is gone."""
    q = Queue()
    waiting = get_one.remote(q)
    time.sleep(0.5)                              # it is waiting in the actor now
    mpirt.cancel(waiting)
    with pytest.raises(TaskCancelledError):
        mpirt.get(waiting, timeout=20)
    time.sleep(0.3)
    q.put("kept")
    assert q.get(timeout=10) == "kept"
    q.shutdown()


def test_shutdown_and_actor_options(rt):
    q = Queue(actor_options={"name": "util-queue-test", "num_cpus": 0})
    assert mpirt.get_actor("util-queue-test") == q.actor
    q.put(1)
    q.shutdown()
    assert q.actor is None
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(2)
    with pytest.raises(RuntimeError, match="shut down"):
        len(q)
    q.shutdown()                                 # again: nothing to do
    assert wait_for(lambda: "util-queue-test" not in [a["name"] if isinstance(a, dict) else a
                                                      for a in mpirt.util.list_named_actors()])
    forced = Queue()
    forced.put(1)
    forced.shutdown(force=True)
    assert forced.actor is None


def test_util_queue_needs_its_import_as_in_ray():
    """``import ray`` alone does not give ``ray.util.queue`` (an AttributeError, as in Ray); the import does."""
    code = ("import mpirt, sys\n"
            "assert 'mpirt.util.queue' not in sys.modules and not hasattr(mpirt.util, 'queue')\n"
            "import mpirt.util.queue\n"
            "assert mpirt.util.queue.Queue is not None\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**BASE_ENVIRON, "PYTHONPATH": REPO}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
