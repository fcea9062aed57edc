"""The submitter's task lifecycle as a state machine, without MPI: each transition from its legal
states, the illegal ones refused, retries counted in one place."""
import pytest

from mpirt.core.lifecycle import IllegalTransition
from mpirt.core.submitter import FINISHED, QUEUED, SENT, WAITING, TaskRecord


def record(retries):
    rec = TaskRecord()
    rec.task_id, rec.name, rec.state, rec.retries_left, rec.retries_used = 0x10, "f", WAITING, retries, 0
    rec.lease, rec.cancelled, rec.deps_left = None, False, 0
    return rec


def test_a_task_runs_through_its_states():
    rec = record(retries=3)
    rec.arguments_ready()
    assert rec.state == QUEUED
    rec.sent("lease")
    assert rec.state == SENT and rec.lease == "lease"
    rec.given_back()                       # stolen: no retry used
    assert rec.state == QUEUED and rec.lease is None and rec.retries_left == 3
    rec.sent("other")
    rec.finished()
    assert rec.state == FINISHED


def test_retries_are_counted_once_per_retry_and_run_out():
    rec = record(retries=2)
    rec.arguments_ready()
    for left in (1, 0):
        rec.sent("lease")
        assert rec.retried() and rec.state == QUEUED and rec.retries_left == left
    rec.sent("lease")
    assert not rec.retried() and rec.state == SENT   # no retry left: the caller finishes it with the error
    assert rec.retries_used == 2                      # its attempt number, as the state API shows it
    rec.finished()
    assert not rec.rebuilt(0x11, pending=0) and rec.state == FINISHED and rec.task_id == 0x10


def test_unlimited_retries_never_run_out():
    rec = record(retries=-1)
    rec.arguments_ready()
    for _ in range(100):
        rec.sent("lease")
        assert rec.retried()
    assert rec.retries_left == -1


def test_a_finished_task_is_rebuilt_under_a_new_id_using_a_retry():
    rec = record(retries=1)
    rec.arguments_ready()
    rec.sent("lease")
    rec.finished()
    assert rec.rebuilt(0x11, pending=2)
    assert (rec.state, rec.task_id, rec.deps_left, rec.retries_left, rec.lease) == (WAITING, 0x11, 2, 0, None)


def test_a_cancel_while_sent_leaves_no_retry():
    rec = record(retries=5)
    rec.arguments_ready()
    rec.sent("lease")
    rec.cancel_sent()
    assert rec.cancelled and rec.retries_left == 0 and not rec.retried()


@pytest.mark.parametrize("state, transition", [
    (WAITING, lambda r: r.sent("lease")), (WAITING, lambda r: r.retried()), (QUEUED, lambda r: r.arguments_ready()),
    (QUEUED, lambda r: r.given_back()), (QUEUED, lambda r: r.cancel_sent()), (SENT, lambda r: r.rebuilt(1, 0)),
    (FINISHED, lambda r: r.finished()), (FINISHED, lambda r: r.sent("lease")),
])
def test_illegal_transitions_are_refused_naming_the_states(state, transition):
    rec = record(retries=1)
    rec.state = state
    with pytest.raises(IllegalTransition, match=r"task f \(10\) is [A-Z]+, not"):
        transition(rec)
    assert rec.state == state
