"""The worker's task lifecycle as a state machine, without MPI: a task queued on its lease, started,
blocked and unblocked in get/wait, finished, given back or cancelled; the illegal moves refused.
The executor's own handlers are driven with a stand-in runtime: events in, state and messages out."""
import threading

import pytest

from mpirt.core.executor import BLOCKED, FINISHED, QUEUED, RUNNING, RunningTask, TaskExecutor
from mpirt.core.lifecycle import IllegalTransition
from mpirt.core.protocol import HEAD_RANK
from mpirt.core.codec import loads


def spec(task_id, name="f", num_returns=1, gpus=0.0):
    """A task as it travels (``submitter.TaskSubmitter._send``): id, function id, function blob, name,
    args, inlined, return ids, retry_exceptions, shape, runtime_env."""
    return (task_id, 7, None, name, None, {}, list(range(num_returns)), False, {"CPU": 1.0, "GPU": gpus}, None)


def task(task_id=0x10, state=QUEUED):
    running = RunningTask(lease_id=1, submitter=0, spec=spec(task_id))
    running.state = state
    return running


def test_a_task_runs_through_its_states():
    t = task()
    assert t.state == QUEUED
    t.started()
    assert t.state == RUNNING
    t.blocked()
    assert t.state == BLOCKED
    t.unblocked()
    assert t.state == RUNNING
    t.finished()
    assert t.state == FINISHED and not t.cancelled


def test_a_queued_task_given_back_leaves_the_rank():
    t = task()
    t.given_back()
    assert t.state == FINISHED


def test_cancel_before_start_finishes_it_and_asks_for_an_answer():
    t = task()
    assert t.cancel() is True
    assert t.state == FINISHED and t.cancelled


@pytest.mark.parametrize("state", [RUNNING, BLOCKED])
def test_cancel_of_a_running_task_only_marks_it(state):
    t = task(state=state)
    assert t.cancel() is False
    assert t.state == state and t.cancelled
    assert t.cancel() is False and t.state == state     # a second cancel changes nothing


@pytest.mark.parametrize("state, transition", [
    (RUNNING, RunningTask.started), (BLOCKED, RunningTask.started), (FINISHED, RunningTask.started),
    (QUEUED, RunningTask.blocked), (BLOCKED, RunningTask.blocked), (FINISHED, RunningTask.blocked),
    (QUEUED, RunningTask.unblocked), (RUNNING, RunningTask.unblocked),
    (QUEUED, RunningTask.finished), (BLOCKED, RunningTask.finished), (FINISHED, RunningTask.finished),
    (RUNNING, RunningTask.given_back), (FINISHED, RunningTask.given_back),
    (FINISHED, RunningTask.cancel),
])
def test_illegal_transitions_are_refused_naming_the_states(state, transition):
    t = task(state=state)
    with pytest.raises(IllegalTransition, match=r"task f \(10\) is [A-Z]+, not"):
        transition(t)
    assert t.state == state and not t.cancelled


# -- the executor's handlers, with a stand-in runtime ------------------------------------------
class FakeRuntime:
    """What the handlers touch: the lock, ``send`` (recorded), a submitter for recursive cancels."""

    def __init__(self):
        self.lock = threading.RLock()
        self.sent = []
        self.rank = 3

    def send(self, destination, message):
        self.sent.append((destination, message))


class NoThreads:
    """A pool that only records: the test plays the task thread itself."""

    def __init__(self):
        self.submitted = []

    def submit(self, fn, *args):
        self.submitted.append(args[0])


class NoEnvironment:
    def enter(self, environment):
        pass

    def leave(self):
        pass


def executor():
    ex = TaskExecutor.__new__(TaskExecutor)   # without __init__: no thread pool, no slot processes
    ex.rt = FakeRuntime()
    ex.slots, ex.running, ex.functions = {}, {}, {}
    ex.pool = NoThreads()
    ex.environment = NoEnvironment()
    ex.task_slots = None
    return ex


def test_tasks_on_one_lease_start_one_at_a_time_and_block_hands_the_slot_on():
    ex = executor()
    ex._on_task(5, 1, spec(0x10))
    ex._on_task(5, 1, spec(0x11))
    first, second = ex.running[0x10], ex.slots[1].queue[0]
    assert (first.state, second.state) == (RUNNING, QUEUED)
    assert ex.pool.submitted == [first]
    ex.task_blocked(first)                    # get/wait in the first: the second starts
    assert (first.state, second.state) == (BLOCKED, RUNNING)
    assert ex.pool.submitted == [first, second]
    assert ex.rt.sent == []                   # a task was queued: the CPU stays
    ex.task_unblocked(first)
    assert first.state == RUNNING
    assert ex._finish_and_take_next(second) is None
    assert second.state == FINISHED
    assert ex._finish_and_take_next(first) is None
    assert first.state == FINISHED and ex.slots == {} and ex.running == {}


def test_a_blocked_task_with_nothing_queued_gives_its_cpu_back():
    ex = executor()
    ex._on_task(5, 1, spec(0x10))
    t = ex.running[0x10]
    ex.task_blocked(t)
    assert ex.rt.sent == [(HEAD_RANK, ("cpu_release", {"CPU": 1.0}))]
    ex.task_unblocked(t)
    assert ex.rt.sent[-1] == (HEAD_RANK, ("cpu_reacquire", {"CPU": 1.0}))


def test_the_next_queued_task_runs_on_the_same_thread():
    ex = executor()
    ex._on_task(5, 1, spec(0x10))
    ex._on_task(5, 1, spec(0x11))
    first = ex.running[0x10]
    following = ex._finish_and_take_next(first)
    assert following.task_id == 0x11 and following.state == RUNNING and first.state == FINISHED


def test_steal_gives_back_the_queued_tasks():
    ex = executor()
    for task_id in (0x10, 0x11, 0x12):
        ex._on_task(5, 1, spec(task_id))
    queued = list(ex.slots[1].queue)
    ex._on_steal(5, 1)
    assert ex.rt.sent == [(5, ("stolen", 1, [0x11, 0x12]))]
    assert [t.state for t in queued] == [FINISHED, FINISHED]
    assert ex.running[0x10].state == RUNNING


def test_cancel_of_a_queued_task_answers_it_cancelled():
    ex = executor()
    ex._on_task(5, 1, spec(0x10))
    ex._on_task(5, 1, spec(0x11, name="g", num_returns=2))
    queued = ex.slots[1].queue[0]
    ex._on_cancel(5, 0x11, force=False)
    assert queued.state == FINISHED and queued.cancelled and not ex.slots[1].queue
    (destination, (kind, task_id, blobs, is_error, retryable, seconds)), = ex.rt.sent
    assert (destination, kind, task_id, is_error, retryable, seconds) == (5, "done", 0x11, True, False, 0.0)
    assert len(blobs) == 2
    assert str(loads(blobs[0]).error) == "task g was cancelled before it ran"


def test_cancel_of_a_running_task_marks_it_once():
    ex = executor()
    ex._on_task(5, 1, spec(0x10))
    t = ex.running[0x10]
    ex._on_cancel(5, 0x10, force=False, recursive=False)
    assert t.cancelled and t.state == RUNNING and ex.rt.sent == []
    ex._on_cancel(5, 0x10, force=False, recursive=False)   # again: nothing more
    assert t.cancelled and t.state == RUNNING


def test_blocking_a_task_twice_is_a_bug_and_raises():
    ex = executor()
    ex._on_task(5, 1, spec(0x10))
    t = ex.running[0x10]
    ex.task_blocked(t)
    with pytest.raises(IllegalTransition, match="is BLOCKED, not RUNNING"):
        ex.task_blocked(t)
