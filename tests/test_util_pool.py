"""mpirt.util.multiprocessing.Pool: the standard library's Pool interface (as Ray's) on mpirt actors."""
import logging
import multiprocessing
import multiprocessing.pool
import os
import pickle
import time

import pytest

import mpirt
from mpirt.exceptions import RayActorError
from mpirt.util.multiprocessing import JoinableQueue, Pool, TimeoutError

from conftest import run_app, wait_for
from helpers import CustomError

pytestmark = pytest.mark.timeout(90)

# Set by ``remember``, the initializer, in each worker (this module is imported there by reference).
initialized = []


def square(x):
    return x * x


def add(a, b=0):
    return a + b


def fail_on(x, bad=3):
    if x == bad:
        raise CustomError(f"bad item {x}")
    return x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def remember(tag):
    initialized.append(tag)


def whoami(_=None):
    """(pid, actor id, what the initializer left in this worker)."""
    return os.getpid(), mpirt.get_runtime_context().get_actor_id(), list(initialized)


@pytest.fixture(scope="module")
def pool(rt):
    with Pool() as p:
        yield p


def test_module_exports_match_rays():
    assert TimeoutError is multiprocessing.TimeoutError
    assert JoinableQueue is multiprocessing.JoinableQueue
    import mpirt.util.multiprocessing as module
    assert module.__all__ == ["Pool", "TimeoutError", "JoinableQueue"]


def test_results_equal_the_standard_librarys(pool):
    """Results as the standard library's pool gives them (its results are the built-ins')."""
    items = list(range(37))
    expected = list(map(square, items))
    for chunksize in (None, 1, 3, 7, 100):
        assert pool.map(square, items, chunksize) == expected
        assert list(pool.imap(square, items, chunksize or 1)) == expected
        assert sorted(pool.imap_unordered(square, items, chunksize or 1)) == expected
        assert pool.map_async(square, items, chunksize).get(timeout=30) == expected
    pairs = [(i, -2 * i) for i in items]
    assert pool.starmap(add, pairs) == [add(*p) for p in pairs]
    assert pool.starmap(add, pairs, 4) == [add(*p) for p in pairs]
    assert pool.starmap_async(add, pairs, 5).get(timeout=30) == [add(*p) for p in pairs]
    assert pool.map(square, (i for i in items)) == expected           # a generator
    assert list(pool.imap(square, iter(items), 4)) == expected
    assert pool.map(square, []) == [] and list(pool.imap(square, [])) == []
    assert pool.map(lambda x: x + 1, [1, 2]) == [2, 3]                 # cloudpickle: lambdas travel too
    assert pool.apply(add, (1, 2)) == 3
    assert pool.apply(add, (1,), {"b": 5}) == 6
    assert pool.apply(add, kwargs={"a": 1, "b": 7}) == 8               # Ray's keyword name
    results = [pool.apply_async(add, (i, i)) for i in range(20)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]


def test_the_standard_librarys_pool_agrees(pool):
    """The same calls on multiprocessing.Pool (spawned processes: this process runs MPI) give the same."""
    items = list(range(25))
    with multiprocessing.get_context("spawn").Pool(2) as reference:
        calls = [
            lambda p: p.map(square, items, 4),
            lambda p: list(p.imap(square, items, 3)),
            lambda p: sorted(p.imap_unordered(square, items)),
            lambda p: p.starmap(add, [(i, 1) for i in items], 2),
            lambda p: p.apply_async(add, (2, 3)).get(timeout=30),
            lambda p: p.map(square, []),
        ]
        for call in calls:
            assert call(pool) == call(reference)


def test_async_result_interface(pool):
    result = pool.apply_async(nap, (0.6,))
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    assert not result.ready()
    with pytest.raises(TimeoutError):
        result.get(timeout=0.05)
    result.wait(0.05)                       # no error, only a wait
    assert not result.ready()
    assert result.get(timeout=30) == 0.6
    assert result.ready() and result.successful()
    result.wait()
    failed = pool.apply_async(fail_on, (3,))
    failed.wait(30)
    assert failed.ready() and not failed.successful()


def test_callbacks(pool):
    got, errors = [], []
    result = pool.map_async(square, range(10), 3, callback=got.append, error_callback=errors.append)
    assert result.get(timeout=30) == list(map(square, range(10)))
    assert got == [list(map(square, range(10)))] and errors == []     # ready implies the callback ran
    single = pool.apply_async(add, (2, 2), callback=got.append)
    single.wait(30)
    assert got[-1] == 4
    bad = pool.map_async(fail_on, range(6), 2, callback=got.append, error_callback=errors.append)
    bad.wait(30)
    assert len(got) == 2 and len(errors) == 1
    assert isinstance(errors[0], CustomError) and "bad item 3" in str(errors[0])
    bad_star = pool.starmap_async(add, [(1, "x")], error_callback=errors.append)
    bad_star.wait(30)
    assert isinstance(errors[-1], TypeError)


def test_exceptions_come_back_as_themselves(pool):
    with pytest.raises(CustomError, match="bad item 3") as info:
        pool.map(fail_on, range(8), 2)
    cause = info.value.__cause__
    assert isinstance(cause, multiprocessing.pool.RemoteTraceback) and "fail_on" in str(cause)
    with pytest.raises(CustomError):
        pool.apply(fail_on, (3,))
    with pytest.raises(ZeroDivisionError):
        pool.apply_async(divmod, (1, 0)).get(timeout=30)
    # imap raises at the failed item's place and goes on with the others.
    iterator = pool.imap(fail_on, range(6))
    seen = []
    while True:
        try:
            seen.append(next(iterator))
        except CustomError:
            seen.append("error")
        except StopIteration:
            break
    assert seen == [0, 1, 2, "error", 4, 5]
    with pytest.raises(TypeError):
        pool.map(square, ["a", "b"], 1)          # 'a' * 'a' fails in the worker: a TypeError here


def test_imap_next_timeout(pool):
    iterator = pool.imap(nap, [0.8, 0.0])
    with pytest.raises(TimeoutError):
        iterator.next(timeout=0.05)
    assert iterator.next(timeout=30) == 0.8
    assert list(iterator) == [0.0]


def test_workers_spread_over_the_ranks_and_initializer_runs_once_each(rt):
    cpus = int(mpirt.cluster_resources()["CPU"])
    with Pool(initializer=remember, initargs=("ready",)) as p:
        seen = p.map(whoami, range(40), 1)
        workers = {actor for _, actor, _ in seen}
        assert len(workers) == cpus                          # processes defaults to the cluster's CPUs
        assert len({pid for pid, _, _ in seen}) == cpus      # one worker per rank: each its own process
        assert all(state == ["ready"] for _, _, state in seen)   # run once per worker, seen by the function
        assert initialized == []                             # not in the driver


def test_maxtasksperchild_replaces_workers(rt):
    p = Pool(processes=1, maxtasksperchild=2)
    seen = [p.apply(whoami)[1] for _ in range(4)]
    assert seen[0] == seen[1] and seen[2] == seen[3] and seen[0] != seen[2]
    p.close()
    p.join()


def test_closed_and_terminated_pools(rt):
    p = Pool(processes=2)
    with pytest.raises(ValueError, match="Pool is still running"):
        p.join()
    called = []
    slow = [p.apply_async(nap, (0.3,), callback=called.append) for _ in range(4)]
    iterator = p.imap(square, range(50))          # not read yet: close() sends the rest
    p.close()
    for call in (lambda: p.map(square, [1]), lambda: p.apply_async(square, (1,)), lambda: p.imap(square, [1]),
                 lambda: p.starmap(add, [(1, 2)]), lambda: p.__enter__()):
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    p.join()                                       # outstanding work finishes first, callbacks included
    assert called == [0.3] * 4 and [r.get(timeout=0) for r in slow] == [0.3] * 4
    assert wait_for(lambda: not p._callbacks.is_alive())      # the pool's callback thread ended
    assert list(iterator) == list(map(square, range(50)))
    p.terminate()

    q = Pool(processes=2)
    hanging = q.apply_async(nap, (30,))
    start = time.monotonic()
    q.terminate()
    with pytest.raises(RayActorError):
        hanging.get(timeout=30)
    assert time.monotonic() - start < 20
    with pytest.raises(ValueError, match="Pool not running"):
        q.map(square, [1])
    q.join()

    with Pool(processes=1) as r:
        assert r.map(square, [3]) == [9]
    with pytest.raises(ValueError, match="Pool not running"):   # leaving the block terminated it
        r.map(square, [3])
    with pytest.raises(NotImplementedError, match="cannot be passed between processes or pickled"):
        pickle.dumps(Pool(processes=1))


def test_bad_arguments(rt, pool, caplog):
    cpus = int(mpirt.cluster_resources()["CPU"])
    with pytest.raises(ValueError, match=r"Processes in the pool must be >0\."):
        Pool(processes=0)
    with pytest.raises(ValueError, match=f"Tried to start a pool with {cpus + 1} processes on an existing ray "
                                         f"cluster, but there are only {cpus} CPUs in the ray cluster."):
        Pool(processes=cpus + 1)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        Pool(initializer=3)
    with pytest.raises(ValueError, match="maxtasksperchild must be a positive int or None"):
        Pool(maxtasksperchild=0)
    with pytest.raises(ValueError, match="Chunksize must be 1\\+, not 0"):
        pool.map(square, [1, 2], 0)
    with pytest.raises(ValueError, match="Chunksize must be 1\\+, not -1"):
        pool.imap(square, [1, 2], -1)
    with pytest.raises(TypeError, match="chunksize"):
        pool.starmap_async(add, [(1, 2)], lambda result: None)   # Ray's positional callback: here the chunksize
    with pytest.raises(TypeError, match="kwds"):
        pool.apply_async(add, (1,), {"b": 1}, kwargs={"b": 2})
    with pytest.raises(ValueError):
        Pool(processes=1, ray_remote_args={"num_cpus": -1})
    with caplog.at_level(logging.WARNING, logger="mpirt.util.multiprocessing.pool"):
        with Pool(processes=1, context=multiprocessing.get_context("spawn")) as p:
            assert p.map(square, [2]) == [4]
    assert "'context' argument is not supported" in caplog.text


def test_worker_options(rt):
    cpus = mpirt.available_resources().get("CPU", 0)
    with Pool(processes=1, ray_remote_args={"num_cpus": 1}) as p:
        assert p.apply(square, (4,)) == 16
        assert wait_for(lambda: mpirt.available_resources().get("CPU", 0) == cpus - 1)
    assert wait_for(lambda: mpirt.available_resources().get("CPU", 0) == cpus)


SCRIPT = """
import os
from mpirt.util.multiprocessing import Pool      # the one changed line: was `from multiprocessing import Pool`
import mpirt                                     # for the test's check only

lookup = None


def init_worker(table):
    global lookup
    lookup = table


def use_lookup(key):
    return lookup[key], os.getpid()


if __name__ == "__main__":
    with Pool(initializer=init_worker, initargs=({"a": 1, "b": 2},)) as pool:    # starts mpirt
        cpus = int(mpirt.cluster_resources()["CPU"])
        pairs = pool.map(use_lookup, ["a", "b"] * cpus, 1)
        print("values", sorted({value for value, _ in pairs}), "workers == cpus", len({pid for _, pid in pairs}) == cpus)
        print("sum", sum(pool.imap_unordered(abs, range(-100, 0), 7)))
"""


def test_multiprocessing_script_moves_over_by_one_import(tmp_path):
    """A script written for multiprocessing (its functions in __main__, an initializer that sets a
    global) runs with the import changed; Pool() starts mpirt with one worker per CPU."""
    proc = run_app(tmp_path, SCRIPT, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "values [1, 2] workers == cpus True" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "sum 5050" in proc.stdout


MPIRUN_SCRIPT = """
import os
import mpirt
from mpirt.util.multiprocessing import Pool


def where(_):
    return os.getpid(), mpirt.get_runtime_context().get_node_id()


with Pool() as pool:                  # before init(): every rank runs this; rank 0 goes on as the driver
    placed = pool.map(where, range(30), 1)
    print("workers", len({pid for pid, _ in placed}), "nodes", len({node for _, node in placed}),
          "cpus", int(mpirt.cluster_resources()["CPU"]))
mpirt.shutdown()
"""


def test_pool_spreads_over_the_ranks_and_nodes_under_mpirun(tmp_path):
    """Under mpirun (5 ranks: 3 workers, 2 ranks a node) a default Pool has a worker on every worker
    rank, on both nodes."""
    proc = run_app(tmp_path, MPIRUN_SCRIPT, ranks=5, env={"MPIRT_RANKS_PER_NODE": "2"}, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "workers 3 nodes 2 cpus 3" in proc.stdout, proc.stdout + proc.stderr[-2000:]
