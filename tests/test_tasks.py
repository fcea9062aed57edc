"""Remote functions: submission, arguments, dependencies, errors, retries, cancel, nesting, output."""
import os
import time

import numpy as np
import pytest

import mpirt
from mpirt.exceptions import TaskCancelledError, TaskError

from helpers import CustomError, Unpicklable, module_square


@mpirt.remote
def add(a, b=0):
    return a + b


@mpirt.remote
def identity(x):
    return x


@mpirt.remote
def fail(message):
    raise CustomError(message)


@mpirt.remote
def where():
    return os.getpid()


@mpirt.remote(num_returns=3)
def three():
    return 1, 2, 3


def test_remote_returns_ref_and_value(rt):
    ref = add.remote(1, 2)
    assert isinstance(ref, mpirt.ObjectRef)
    assert rt.get(ref) == 3
    assert rt.get([add.remote(i, i) for i in range(20)]) == [2 * i for i in range(20)]


def test_tasks_run_on_worker_ranks(rt):
    pids = set(rt.get([where.remote() for _ in range(50)]))
    assert os.getpid() not in pids


def test_direct_call_is_an_error(rt):
    with pytest.raises(TypeError, match="cannot be called directly"):
        add(1, 2)


def test_arguments_are_bound_at_submission(rt):
    with pytest.raises(TypeError, match="add.remote"):
        add.remote()
    with pytest.raises(TypeError):
        add.remote(1, 2, 3)
    with pytest.raises(TypeError):
        add.remote(1, c=2)


def test_options_and_num_returns(rt):
    a, b, c = three.remote()
    assert rt.get([a, b, c]) == [1, 2, 3]
    x, y = identity.options(num_returns=2).remote((5, 6))
    assert rt.get(x) == 5 and rt.get(y) == 6
    assert identity.options(num_returns=0).remote(1) is None
    bad = identity.options(num_returns=2).remote((1, 2, 3))
    with pytest.raises(ValueError, match="num_returns=2"):
        rt.get(bad)


def test_bad_options_are_rejected(rt):
    with pytest.raises(ValueError, match="Invalid option keyword num_cpu for remote functions"):
        identity.options(num_cpu=1)
    with pytest.raises(ValueError, match="num_returns"):
        identity.options(num_returns=-1)
    with pytest.raises(ValueError, match="num_cpus"):
        mpirt.remote(num_cpus=-1)(lambda: 1)
    with pytest.raises(TypeError, match="retry_exceptions"):
        identity.options(retry_exceptions="yes")


def test_infeasible_request_raises_at_submission(rt):
    with pytest.raises(ValueError, match="GPU"):
        identity.options(num_gpus=1).remote(1)
    with pytest.raises(ValueError, match="CPU=64"):
        identity.options(num_cpus=64).remote(1)
    with pytest.raises(ValueError, match="custom_thing"):
        identity.options(resources={"custom_thing": 1}).remote(1)


def test_top_level_refs_resolved_nested_refs_stay_refs(rt):
    ref = rt.put(np.arange(10))

    @mpirt.remote
    def inspect_args(top, nested):
        return type(top).__name__, type(nested[0]).__name__, int(rt.get(nested[0]).sum())

    assert rt.get(inspect_args.remote(ref, [ref])) == ("ndarray", "ObjectRef", 45)
    assert rt.get(add.remote(add.remote(1, 2), b=add.remote(3, 4))) == 10


def test_failed_dependency_fails_dependents_with_same_error(rt):
    bad = fail.remote("root cause")
    child = add.remote(bad, 1)
    grandchild = identity.remote(child)
    for ref in (bad, child, grandchild):
        with pytest.raises(CustomError, match="root cause") as info:
            rt.get(ref)
        assert isinstance(info.value, TaskError)
        assert info.value.function_name == "fail"


def test_main_module_and_closure_functions(rt):
    assert rt.get(module_square.remote(7)) == 49
    offset = 100

    def make_adder(k):
        @mpirt.remote
        def adder(x):
            return x + k + offset

        return adder

    assert rt.get(make_adder(5).remote(1)) == 106


def test_task_error_carries_cause_traceback_and_rank(rt):
    with pytest.raises(TaskError) as info:
        rt.get(fail.remote("boom"))
    err = info.value
    assert isinstance(err, CustomError)
    assert isinstance(err.cause, CustomError)
    assert "boom" in str(err) and "in fail" in err.traceback_str
    assert err.rank >= 2
    # builtin exception classes too
    @mpirt.remote
    def divide(a, b):
        return a / b

    with pytest.raises(ZeroDivisionError):
        rt.get(divide.remote(1, 0))


def test_get_on_list_raises_as_soon_as_one_failed(rt):
    @mpirt.remote
    def slow():
        time.sleep(30)

    slow_ref = slow.remote()
    start = time.monotonic()
    with pytest.raises(CustomError):
        rt.get([slow_ref, fail.remote("fast")])
    assert time.monotonic() - start < 10
    rt.cancel(slow_ref)


def test_retry_exceptions(rt, tmp_path):
    counter = tmp_path / "attempts"

    @mpirt.remote(max_retries=3, retry_exceptions=[OSError])
    def flaky(path):
        with open(path, "a") as f:
            f.write("x")
        if len(open(path).read()) < 3:
            raise OSError("not yet")
        return "ok"

    assert rt.get(flaky.remote(str(counter))) == "ok"
    assert len(counter.read_text()) == 3

    counter2 = tmp_path / "attempts2"
    with pytest.raises(OSError):
        rt.get(flaky.options(max_retries=1).remote(str(counter2)))
    assert len(counter2.read_text()) == 2

    counter3 = tmp_path / "attempts3"
    with pytest.raises(OSError):  # retry_exceptions=False (default): no retry
        rt.get(flaky.options(retry_exceptions=False).remote(str(counter3)))
    assert len(counter3.read_text()) == 1

    counter4 = tmp_path / "attempts4"
    with pytest.raises(OSError):  # a list that does not match: no retry
        rt.get(flaky.options(retry_exceptions=[KeyError]).remote(str(counter4)))
    assert len(counter4.read_text()) == 1


def test_unpicklable_argument_raises_at_remote_naming_it(rt):
    with pytest.raises(TypeError, match="argument 'b'"):
        add.remote(1, b=Unpicklable())
    with pytest.raises(TypeError, match="argument 'a'"):
        add.remote(Unpicklable())


def test_unpicklable_return_is_an_error_at_get_and_worker_lives(rt):
    @mpirt.remote
    def make_unpicklable():
        return Unpicklable()

    with pytest.raises(TypeError, match="Could not serialize the return value"):
        rt.get(make_unpicklable.remote())
    assert rt.get(add.remote(2, 2)) == 4


def test_cancel_before_start(rt):
    @mpirt.remote
    def sleeper(s):
        time.sleep(s)
        return s

    blockers = [sleeper.remote(1.5) for _ in range(2)]
    queued = sleeper.remote(0)
    rt.cancel(queued)
    with pytest.raises(TaskCancelledError):
        rt.get(queued)
    assert rt.get(blockers) == [1.5, 1.5]


def test_cancel_waiting_on_dependency(rt):
    @mpirt.remote
    def sleeper(s):
        time.sleep(s)
        return s

    dep = sleeper.remote(1)
    waiting = identity.remote(dep)
    rt.cancel(waiting)
    with pytest.raises(TaskCancelledError):
        rt.get(waiting)
    assert rt.get(dep) == 1


def test_cancel_running_task(rt):
    @mpirt.remote
    def spin():
        while True:
            time.sleep(0.01)

    ref = spin.remote()
    time.sleep(0.5)
    rt.cancel(ref)
    with pytest.raises(TaskCancelledError):
        rt.get(ref, timeout=20)
    assert rt.get(add.remote(1, 1)) == 2


@mpirt.remote
def fib(n):
    if n < 2:
        return n
    return sum(mpirt.get([fib.remote(n - 1), fib.remote(n - 2)]))


def test_recursive_fib_does_not_deadlock(rt):
    assert rt.get(fib.remote(15), timeout=150) == 610


def test_parents_waiting_on_children(rt):
    @mpirt.remote
    def child(i, j):
        return i * 10 + j

    @mpirt.remote
    def parent(i):
        return sum(mpirt.get([child.remote(i, j) for j in range(10)]))

    results = rt.get([parent.remote(i) for i in range(100)], timeout=150)
    assert results == [sum(i * 10 + j for j in range(10)) for i in range(100)]


def test_task_can_wait_on_children(rt):
    @mpirt.remote
    def sleeper(s):
        time.sleep(s)
        return s

    @mpirt.remote
    def waiter():
        refs = [sleeper.remote(0.05), sleeper.remote(5)]
        ready, not_ready = mpirt.wait(refs, num_returns=1, timeout=3)
        return len(ready), len(not_ready)

    assert rt.get(waiter.remote()) == (1, 1)


def test_print_reaches_driver_with_prefix(rt, capsys):
    @mpirt.remote
    def talker(x):
        print(f"hello from task {x}")
        return x

    rt.get(talker.remote(42))
    deadline = time.monotonic() + 5
    out = ""
    while time.monotonic() < deadline:
        out += capsys.readouterr().out
        if "hello from task 42" in out:
            break
        time.sleep(0.05)
    line = next(l for l in out.splitlines() if "hello from task 42" in l)
    assert line.startswith("(talker rank=")
    assert "pid=" in line
