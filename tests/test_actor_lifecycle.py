"""An actor's lifecycle as its caller sees it (mpirt/core/actor_caller.py), without MPI: events in
(placed, location, rank dead, kill, restart, unplaceable, done), transitions and messages out, and
the illegal transitions refused. The real path is covered by test_actors.py and test_fault_tolerance.py."""
import collections
import gc
import threading

import pytest

from mpirt.core import actor_caller, object_ref
from mpirt.core.actor_caller import (ALIVE, DEAD, LOCATING, PENDING_CREATION, RESTARTING, UNKNOWN, ActorCaller,
                                ActorRecord, ActorState, CallRecord)
from mpirt.exceptions import ActorDiedError, TaskCancelledError
from mpirt.core.lifecycle import IllegalTransition
from mpirt.core.object_ref import ObjectRef, make_object_id
from mpirt.core.protocol import HEAD_RANK
from mpirt.core.serialization import loads

ME, OTHER, WORKER, WORKER2 = 0, 5, 3, 4   # this rank, another caller (an owner), two worker ranks


class Entry:
    __slots__ = ("blob", "is_error", "ready", "callbacks")

    def __init__(self):
        self.blob, self.is_error, self.ready, self.callbacks = None, False, False, []


class FakeObjects:
    """The part of ObjectTable the caller uses: owned entries, readiness callbacks."""

    def __init__(self):
        self.entries = {}

    def create_owned(self, object_id):
        self.entries[object_id] = Entry()

    def owned_ref(self, object_id):
        self.create_owned(object_id)
        return ObjectRef(object_id, None)

    def on_ready(self, object_id, callback):
        entry = self.entries.setdefault(object_id, Entry())
        if entry.ready:
            callback(object_id, entry)
        else:
            entry.callbacks.append(callback)

    def set_ready(self, object_id, blob, is_error=False):
        entry = self.entries.setdefault(object_id, Entry())
        if entry.ready:
            return
        entry.blob, entry.is_error, entry.ready = blob, is_error, True
        for callback in entry.callbacks:
            callback(object_id, entry)


class FakeRuntime:
    """Records what the caller sends; deaths are declared by the test."""

    def __init__(self, rank=ME):
        self.rank = rank
        self.lock = threading.RLock()
        self.objects = FakeObjects()
        self.failures = type("Failures", (), {})()
        self.failures.dead, self.failures.handlers = set(), []
        self.transport = type("Transport", (), {})()
        self.transport.add_ticker = lambda period, fn: None
        self.transport.send_local = lambda message: self.sent.append((self.rank, message))
        self.handlers = {}
        self.sent = []
        self._seq = 0

    def register(self, **handlers):
        self.handlers.update(handlers)

    def send(self, dest, message):
        self.sent.append((dest, message))

    def next_id(self):
        self._seq += 1
        return make_object_id(7, self.rank, self._seq)

    def take(self):
        """The (destination, kind, fields...) sent since the last take."""
        sent, self.sent = self.sent, []
        return [(dest, *message) for dest, message in sent]

    def kinds(self):
        return [(dest, kind) for dest, kind, *_ in self.take()]

    def die(self, rank):
        self.failures.dead.add(rank)
        for handler in self.failures.handlers:
            handler(rank)


@pytest.fixture(autouse=True)
def no_leftover_events():
    yield
    gc.collect()
    object_ref.ref_events.clear()   # the refs these tests made: no runtime here applies them
    actor_caller.handle_events.clear()


def owned_actor(rt, caller, max_restarts=0, max_task_retries=0):
    """An actor created (owned) by this rank, not placed yet."""
    actor_id = rt.next_id()
    caller.create(actor_id, b"class", b"args", [], {"CPU": 1}, {}, {}, tracked=False,
                  max_restarts=max_restarts, max_task_retries=max_task_retries)
    return actor_id


def borrowed_actor():
    return make_object_id(7, OTHER, 1000)


def call(caller, actor_id, method="m", deps=(), max_retries=None):
    refs = caller.call(actor_id, method, b"args", list(deps), 1, None, max_retries)
    return refs[0].id


def result(rt, object_id):
    entry = rt.objects.entries[object_id]
    return (loads(entry.blob).error if entry.is_error else entry.blob) if entry.ready else None


def new():
    rt = FakeRuntime()
    return rt, ActorCaller(rt)


# -- the owner ----------------------------------------------------------------

def test_the_owner_places_creates_and_calls_in_order():
    rt, caller = new()
    actor_id = owned_actor(rt, caller)
    state = caller.actors[actor_id]
    assert state.state is PENDING_CREATION and state.location is None
    assert rt.kinds() == [(HEAD_RANK, "actor_place")]
    first = call(caller, actor_id, "first")
    assert rt.take() == [] and len(state.queue) == 2           # create and call wait for the place
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    assert state.state is ALIVE and caller.location_of(actor_id) == WORKER
    sent = rt.take()
    assert [(dest, kind) for dest, kind, *_ in sent] == [(WORKER, "actor_create"), (WORKER, "actor_call")]
    assert sent[1][4] == "first"
    second = call(caller, actor_id, "second")                  # nothing queued: straight out
    assert [(dest, kind, method) for dest, kind, _, _, method, *_ in rt.take()] == [(WORKER, "actor_call", "second")]
    (call_id,) = [c for c, rec in caller.calls.items() if rec.method == "second"]
    caller._on_done(WORKER, call_id, [b"two"], False)
    assert result(rt, second) == b"two" and result(rt, first) is None


def test_a_call_waits_for_its_argument_and_keeps_its_place_in_line():
    rt, caller = new()
    actor_id = owned_actor(rt, caller)
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    rt.take()
    dep = rt.next_id()
    rt.objects.create_owned(dep)
    call(caller, actor_id, "waits", deps=[object_ref.ObjectRef(dep)])
    call(caller, actor_id, "behind")
    assert rt.take() == []
    rt.objects.set_ready(dep, b"value", False)
    sent = rt.take()
    assert [m[4] for m in sent] == ["waits", "behind"] and sent[0][6] == {dep: b"value"}


def test_a_placement_on_a_rank_that_died_meanwhile_is_asked_again():
    rt, caller = new()
    actor_id = owned_actor(rt, caller)
    rt.take()
    rt.die(WORKER)
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    assert caller.actors[actor_id].state is PENDING_CREATION and rt.kinds() == [(HEAD_RANK, "actor_place")]


def test_the_owner_answers_where_its_actor_lives_now_or_once_placed():
    rt, caller = new()
    actor_id = owned_actor(rt, caller, max_task_retries=2)
    rt.take()
    caller._on_locate(OTHER, actor_id)
    assert rt.take() == []
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    assert (OTHER, "actor_location", actor_id, WORKER, 2) in rt.take()
    caller._on_locate(6, actor_id)
    assert rt.take() == [(6, "actor_location", actor_id, WORKER, 2)]


def test_an_unplaceable_actor_dies_its_calls_fail_and_askers_hear_it():
    rt, caller = new()
    actor_id = owned_actor(rt, caller)
    pending = call(caller, actor_id)
    caller._on_locate(OTHER, actor_id)
    rt.take()
    caller._on_unplaceable(HEAD_RANK, actor_id, "no rank has 64 CPUs")
    state = caller.actors[actor_id]
    assert state.state is DEAD and not state.queue
    assert rt.take() == [(HEAD_RANK, "actor_dead", actor_id), (OTHER, "actor_location", actor_id, None, 0)]
    error = result(rt, pending)
    assert isinstance(error, ActorDiedError) and "no rank has 64 CPUs" in str(error)
    later = call(caller, actor_id)                              # DEAD: fails at once, sends nothing
    assert isinstance(result(rt, later), ActorDiedError) and rt.take() == []
    caller._on_locate(6, actor_id)
    assert rt.take() == [(6, "actor_location", actor_id, None, 0)]


def test_the_owner_restarts_an_actor_whose_rank_died_and_resends_its_calls():
    rt, caller = new()
    actor_id = owned_actor(rt, caller, max_restarts=1, max_task_retries=1)
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    first, second = call(caller, actor_id, "a"), call(caller, actor_id, "b")
    rt.take()
    rt.die(WORKER)
    state = caller.actors[actor_id]
    assert state.state is RESTARTING and state.location is None and not caller.calls
    assert (state.restarts_left, state.restarts) == (0, 1)
    assert rt.kinds() == [(HEAD_RANK, "actor_place")]
    caller._on_placed(HEAD_RANK, actor_id, WORKER2)
    sent = rt.take()
    assert [(dest, kind) for dest, kind, *_ in sent] == [(WORKER2, "actor_create"), (WORKER2, "actor_call"),
                                                         (WORKER2, "actor_call")]
    options = sent[0][6]
    assert (options["max_restarts"], options["restarts"]) == (0, 1) and [m[4] for m in sent[1:]] == ["a", "b"]
    rt.die(WORKER2)                                            # no restart left: DEAD
    assert state.state is DEAD and rt.kinds() == [(HEAD_RANK, "actor_dead")]
    for ref in (first, second):
        assert "no restarts left" in str(result(rt, ref))


def test_a_call_without_retries_left_fails_when_its_actor_restarts():
    rt, caller = new()
    actor_id = owned_actor(rt, caller, max_restarts=-1, max_task_retries=0)
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    plain, own = call(caller, actor_id, "plain"), call(caller, actor_id, "own", max_retries=1)
    rt.take()
    rt.die(WORKER)
    assert caller.actors[actor_id].state is RESTARTING and caller.actors[actor_id].restarts_left == -1
    assert "no retries left" in str(result(rt, plain)) and result(rt, own) is None   # the method's own limit
    caller._on_placed(HEAD_RANK, actor_id, WORKER2)
    assert [m[4] for m in rt.take() if m[1] == "actor_call"] == ["own"]


def test_kill_restart_restarts_in_place_while_restarts_are_left_then_kills():
    rt, caller = new()
    actor_id = owned_actor(rt, caller, max_restarts=2)
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    rt.take()
    caller.kill(actor_id, no_restart=False)
    caller._on_restarted(WORKER, actor_id)                     # sys.exit() in a method: the host restarted it
    assert rt.take() == [(WORKER, "actor_restart", actor_id)]
    state = caller.actors[actor_id]
    assert (state.state, state.restarts_left, state.restarts) == (ALIVE, 0, 2)
    caller._on_kill_restart(OTHER, actor_id)
    assert rt.take() == [(WORKER, "actor_kill", actor_id)] and state.state is ALIVE   # the host ends it


def test_a_kill_before_placement_waits_for_the_place():
    rt, caller = new()
    actor_id = owned_actor(rt, caller)
    rt.take()
    caller.kill(actor_id)
    assert rt.take() == [] and caller.actors[actor_id].kill_requested
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    assert rt.kinds() == [(WORKER, "actor_create"), (WORKER, "actor_kill")]
    assert not caller.actors[actor_id].kill_requested


def test_termination_goes_behind_the_calls_already_made():
    rt, caller = new()
    actor_id = owned_actor(rt, caller)
    call(caller, actor_id)
    caller._terminate(actor_id)
    assert rt.kinds() == [(HEAD_RANK, "actor_place")]
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    assert rt.kinds() == [(WORKER, "actor_create"), (WORKER, "actor_call"), (WORKER, "actor_terminate")]


def test_cancel_drops_a_queued_call_and_forwards_a_sent_one():
    rt, caller = new()
    actor_id = owned_actor(rt, caller)
    queued = call(caller, actor_id)
    caller.cancel_call(queued, force=False, recursive=True)
    assert isinstance(result(rt, queued), TaskCancelledError)
    caller._on_placed(HEAD_RANK, actor_id, WORKER)
    sent = call(caller, actor_id)
    rt.take()
    caller.cancel_call(sent, force=False, recursive=True)
    assert rt.kinds() == [(WORKER, "actor_cancel_call")]
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        caller.cancel_call(sent, force=True, recursive=False)


# -- a borrower ---------------------------------------------------------------

def test_a_borrower_asks_the_owner_once_and_sends_its_calls_in_order():
    rt, caller = new()
    actor_id = borrowed_actor()
    call(caller, actor_id, "a")
    call(caller, actor_id, "b")
    assert caller.actors[actor_id].state is LOCATING
    assert rt.take() == [(OTHER, "actor_locate", actor_id)]
    caller._on_location(OTHER, actor_id, WORKER, 0)
    assert caller.actors[actor_id].state is ALIVE and [m[4] for m in rt.take()] == ["a", "b"]
    caller._on_location(HEAD_RANK, actor_id, WORKER, 0)       # a second answer changes nothing
    assert caller.actors[actor_id].state is ALIVE and rt.take() == []


def test_a_borrower_sends_a_kill_once_it_knows_where():
    rt, caller = new()
    actor_id = borrowed_actor()
    caller.kill(actor_id)
    assert rt.take() == [(OTHER, "actor_locate", actor_id)] and caller.actors[actor_id].state is LOCATING
    caller._on_location(OTHER, actor_id, WORKER, 0)
    assert rt.take() == [(WORKER, "actor_kill", actor_id)]
    caller.kill(actor_id)
    assert rt.take() == [(WORKER, "actor_kill", actor_id)]


def test_a_borrower_asks_the_head_once_the_owner_died():
    rt, caller = new()
    actor_id = borrowed_actor()
    call(caller, actor_id)
    rt.take()
    rt.die(OTHER)
    assert caller.actors[actor_id].state is LOCATING and rt.take() == [(HEAD_RANK, "actor_where", actor_id)]
    caller._on_location(HEAD_RANK, actor_id, None, 0)
    assert caller.actors[actor_id].state is DEAD


def test_a_borrower_retries_interrupted_calls_as_the_owners_answer_allows():
    rt, caller = new()
    actor_id = borrowed_actor()
    caller._state(actor_id)
    caller._ask_location(actor_id, caller.actors[actor_id])
    caller._on_location(OTHER, actor_id, WORKER, 0)
    lost, kept = call(caller, actor_id, "lost"), call(caller, actor_id, "kept", max_retries=-1)
    rt.take()
    rt.die(WORKER)
    state = caller.actors[actor_id]
    assert state.state is LOCATING and state.location is None
    assert rt.take() == [(OTHER, "actor_locate", actor_id)]
    assert all(rec.pending_retry for rec in state.queue)
    caller._on_location(OTHER, actor_id, WORKER2, 0)          # restarted elsewhere; the actor allows no retry
    assert "no retries left" in str(result(rt, lost)) and result(rt, kept) is None
    assert [(dest, m[3]) for dest, *m in rt.take()] == [(WORKER2, "kept")]


def test_a_borrower_whose_actor_and_owner_died_fails_its_calls():
    rt, caller = new()
    actor_id = borrowed_actor()
    call(caller, actor_id)
    caller._on_location(OTHER, actor_id, WORKER, 0)
    inflight = call(caller, actor_id)
    rt.take()
    rt.failures.dead.add(OTHER)
    rt.die(WORKER)
    assert caller.actors[actor_id].state is DEAD and rt.take() == []   # only the owner tells the head
    assert "its owner (rank 5), who could restart it, is dead" in str(result(rt, inflight))


def test_a_dead_actor_stays_dead_and_costs_no_message():
    rt, caller = new()
    actor_id = borrowed_actor()
    caller.kill(actor_id)
    caller._on_location(OTHER, actor_id, None, 0)
    state = caller.actors[actor_id]
    assert state.state is DEAD and "not restarted" in str(loads(state.dead_blob).error)
    rt.take()
    caller._on_location(HEAD_RANK, actor_id, WORKER, 0)      # a late answer
    caller.kill(actor_id)
    caller._terminate(actor_id)
    assert isinstance(result(rt, call(caller, actor_id)), ActorDiedError)
    assert state.state is DEAD and state.location is None and not state.queue and rt.take() == []


# -- the record's transitions -------------------------------------------------

def record(state):
    rec = ActorRecord(0xAB)
    rec.state = state
    return rec


@pytest.mark.parametrize("state, transition", [
    (PENDING_CREATION, lambda r: r.placement_asked()), (ALIVE, lambda r: r.placement_asked()),
    (PENDING_CREATION, lambda r: r.location_asked()), (RESTARTING, lambda r: r.location_asked()),
    (DEAD, lambda r: r.location_asked()), (UNKNOWN, lambda r: r.located(3)), (DEAD, lambda r: r.located(3)),
    (PENDING_CREATION, lambda r: r.restarting()), (RESTARTING, lambda r: r.restarting()),
    (LOCATING, lambda r: r.restarting()), (UNKNOWN, lambda r: r.died(b"")), (DEAD, lambda r: r.died(b"")),
])
def test_illegal_transitions_are_refused_naming_the_states(state, transition):
    rec = record(state)
    with pytest.raises(IllegalTransition, match=rf"actor 0+ab is {state.name}, not [A-Z_]+"):
        transition(rec)
    assert rec.state is state


def test_location_is_set_exactly_while_alive():
    rec = ActorRecord(1)
    for transition, expected in [(lambda: rec.placement_asked(), PENDING_CREATION), (lambda: rec.located(3), ALIVE),
                                 (rec.restarting, RESTARTING), (lambda: rec.located(4), ALIVE),
                                 (lambda: rec.died(b"x"), DEAD)]:
        transition()
        assert rec.state is expected and (rec.location is not None) == (expected is ALIVE)
    assert rec.dead_blob == b"x" and [s.name for s in ActorState] == [
        "UNKNOWN", "PENDING_CREATION", "LOCATING", "ALIVE", "RESTARTING", "DEAD"]


def test_restarts_and_retries_are_counted_in_one_place_each():
    rec = ActorRecord(1)
    rec.restarts_left = 1
    assert rec.use_restart() and (rec.restarts_left, rec.restarts) == (0, 1)
    assert not rec.use_restart() and rec.restarts == 1
    rec.count_restart()                                        # the host restarted it: counted regardless
    assert (rec.restarts_left, rec.restarts) == (0, 2)
    rec.restarts_left = -1
    assert all(rec.use_restart() for _ in range(50)) and rec.restarts_left == -1
    call_rec = CallRecord()
    call_rec.retries_used, call_rec.max_retries = 0, None
    assert call_rec.use_retry(2) and call_rec.use_retry(2) and not call_rec.use_retry(2)
    call_rec.max_retries = -1                                  # the method's own: unlimited
    assert all(call_rec.use_retry(0) for _ in range(50))
    call_rec.retries_used, call_rec.max_retries = 0, 0
    assert not call_rec.use_retry(5)


def test_every_handler_is_registered_with_the_runtime():
    rt, caller = new()
    assert set(rt.handlers) >= {"actor_placed", "actor_locate", "actor_location", "actor_done",
                                "actor_kill_restart", "actor_restarted", "actor_unplaceable", "actor_ref"}
    assert rt.failures.handlers == [caller._on_rank_dead]
    assert collections.deque is type(caller._state(1).queue)
