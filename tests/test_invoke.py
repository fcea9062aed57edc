"""The one invoke path, without MPI: the call context set and cleared, one clock, results split and
encoded, and the one error-payload builder (tasks run here and in slot processes, actor calls)."""
import pickle
import threading

import pytest

from mpirt.core import invoke, tracing
from mpirt.core.call_context import async_call, running_actor_call, task_context
from mpirt.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError, TaskCancelledError, WorkerCrashedError
from mpirt.core.executor import RunningTask, task_failure
from mpirt.core.codec import dumps, loads


def error_of(blob):
    return loads(blob).error


def raised(exc):
    """``exc`` once raised (with its traceback), as the paths see it."""
    try:
        raise exc
    except BaseException as handled:  # noqa: B902
        return handled


# -- context ---------------------------------------------------------------------------------
def test_enter_and_leave_name_the_call_on_this_thread_only():
    seen = {}
    invoke.enter("f", 1.0, task="T")
    try:
        assert (task_context.task, task_context.label, task_context.num_gpus) == ("T", "f", 1.0)
        assert running_actor_call() == (None, None)
        thread = threading.Thread(target=lambda: seen.update(label=getattr(task_context, "label", None)))
        thread.start()
        thread.join()
        assert seen["label"] is None
    finally:
        invoke.leave()
    assert (task_context.task, task_context.label, task_context.num_gpus) == (None, None, 0.0)


def test_a_constructor_inside_a_call_puts_the_call_back():
    invoke.enter("A.m", 0.5, actor="actor", call="call")
    saved = invoke.current()
    invoke.enter("A.__init__", 0.5, actor="actor")
    assert running_actor_call() == ("actor", None)
    invoke.enter(*saved)
    assert running_actor_call() == ("actor", "call") and task_context.label == "A.m"
    invoke.leave()
    assert running_actor_call() == (None, None)


def test_an_async_call_is_named_in_its_own_context():
    class Actor:
        num_gpus = 2.0

    actor = Actor()
    token = async_call.set(None)
    try:
        invoke.enter_async(actor, "call", "A.m")
        assert running_actor_call() == (actor, "call") and task_context.num_gpus == 2.0
    finally:
        async_call.reset(token)
        invoke.leave()


def test_finished_traces_on_the_clock_it_times_with():
    before = len(tracing.events)
    started = invoke.clock()
    seconds = invoke.finished("task", "f", started, False, task_id="10")
    category, name, start, end, _, args = tracing.events[-1]
    assert len(tracing.events) == before + 1 or len(tracing.events) == tracing.events.maxlen
    assert (category, name, start, args) == ("task", "f", started, {"task_id": "10", "failed": False})
    assert seconds == end - start >= 0.0


# -- results ---------------------------------------------------------------------------------
def test_returns_are_split_by_num_returns():
    assert invoke.split_returns("f", 5, 1) == [5]
    assert invoke.split_returns("f", None, 0) == []
    assert invoke.split_returns("f", (1, 2), 2) == [1, 2]
    with pytest.raises(ValueError, match="f has num_returns=2 but returned 3 values"):
        invoke.split_returns("f", (1, 2, 3), 2)
    with pytest.raises(ValueError, match="f has num_returns=2 but returned a int"):
        invoke.split_returns("f", 1, 2)


def test_small_returns_are_encoded_inline():
    blobs = invoke.serialize_returns("f", ("a", [1, 2]), 2, None)
    assert [pickle.loads(b) for b in blobs] == ["a", [1, 2]]


def test_an_unpicklable_return_names_its_index_and_the_call():
    with pytest.raises(TypeError, match=r"Could not serialize the return value 1 of task f \(type lock\)"):
        invoke.serialize_returns("task f", (1, threading.Lock()), 2, None)


# -- errors ----------------------------------------------------------------------------------
def test_error_blobs_repeat_the_error_for_every_return():
    blobs = invoke.error_blobs(TaskCancelledError("x"), 3)
    assert len(blobs) == 3 and isinstance(error_of(blobs[2]), TaskCancelledError)
    assert invoke.error_blobs(TaskCancelledError("x"), 0) == []


def test_a_failure_is_reported_as_the_calls_error():
    try:
        raise ValueError("bad")
    except ValueError as exc:
        blobs = invoke.failure_blobs(exc, "f", 4, 2)
    error = error_of(blobs[0])
    assert isinstance(error, RayTaskError) and "bad" in str(error) and len(blobs) == 2


def test_a_failure_that_cannot_be_pickled_travels_as_its_text():
    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("no pickling")

    try:
        raise Unpicklable("odd")
    except Unpicklable as exc:
        with pytest.MonkeyPatch.context() as patch:    # the task error wraps it whole
            patch.setattr(invoke, "as_task_failure", lambda exc, name, rank: exc)
            blob, = invoke.failure_blobs(exc, "f", 4, 1)
    error = error_of(blob)
    assert type(error) is RuntimeError and str(error).startswith("Unpicklable: odd\n")


def test_interrupts_and_exits_become_runtime_errors_of_the_call():
    for exc in (KeyboardInterrupt(), SystemExit(2)):
        error = invoke.as_task_failure(raised(exc), "f", 0)
        assert isinstance(error, RayTaskError) and isinstance(error.cause, RuntimeError)
        assert str(error.cause).startswith(f"f raised {type(exc).__name__}")


def test_retry_exceptions_match():
    exc = ValueError()
    assert not invoke.matches_retry(False, exc)
    assert invoke.matches_retry(True, exc)
    assert invoke.matches_retry(dumps((ValueError,)), exc)
    assert not invoke.matches_retry(dumps((KeyError,)), exc)


def test_exit_statuses_follow_sys_exit():
    assert [invoke.exit_status(SystemExit(code)) for code in (None, 0, 3, "message")] == [0, 0, 3, 1]


def test_actor_call_errors_name_the_actor_and_the_fix():
    class Actor:
        actor_id, class_name, dead_error = 0x1a, "A", None

    actor = Actor()
    assert "restarted before this call ran" in str(invoke.call_restarted(actor))
    unavailable = invoke.call_exited(actor, SystemExit(2), restarted=True)
    assert isinstance(unavailable, ActorUnavailableError) and "status 2" in str(unavailable)
    assert isinstance(invoke.call_exited(actor, SystemExit(2), restarted=False), ActorDiedError)
    actor.dead_error = dead = ActorDiedError("gone")
    assert invoke.call_exited(actor, SystemExit(2), restarted=False) is dead
    assert str(invoke.call_cancelled("A.m")).endswith("the actor call A.m was cancelled with cancel()")


# -- a task's failure on the rank (thread path) ----------------------------------------------
def task(cancelled=False, num_returns=1):
    t = RunningTask(1, 0, (0x10, 7, None, "f", None, {}, list(range(num_returns)), False, {"CPU": 1.0}, None))
    t.cancelled = cancelled
    return t


def test_a_cancelled_tasks_interrupt_is_its_cancellation():
    blobs, retryable = task_failure(raised(KeyboardInterrupt()), task(cancelled=True), False, 0)
    assert not retryable and isinstance(error_of(blobs[0]), TaskCancelledError)


def test_sys_exit_in_a_task_is_a_retryable_crash():
    blobs, retryable = task_failure(raised(SystemExit(3)), task(num_returns=2), False, 0)
    error = error_of(blobs[1])
    assert retryable and isinstance(error, WorkerCrashedError) and "sys.exit(3)" in str(error)


def test_an_application_error_retries_as_retry_exceptions_says():
    exc = raised(ValueError("bad"))
    assert task_failure(exc, task(), True, 0)[1] is True
    blobs, retryable = task_failure(exc, task(), False, 0)
    assert retryable is False and isinstance(error_of(blobs[0]), RayTaskError)
