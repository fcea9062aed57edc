"""The object table's lifecycle as a state machine, without MPI: events in (a value comes, the last
reference goes, a rank dies, a request arrives), transitions and messages out; illegal transitions
raise."""
import pickle

import pytest

from mpirt.exceptions import ErrorPayload, ObjectLostError, OwnerDiedError
from mpirt.core.lifecycle import IllegalTransition
from mpirt.core import object_ref
from mpirt.core.object_ref import make_object_id
from mpirt.core.objects import PENDING, READY, RELEASED, UNREFERENCED, Entry, ObjectTable
from mpirt.store.manager import StoreLocation

ME, OTHER, FAR, NEIGHBOUR = 0, 1, 2, 3          # FAR lives on another node


class FakeRuntime:
    """What the table calls on its runtime: sends are recorded, the submitter and store are stand-ins."""

    def __init__(self, reconstructs=False):
        self.rank = ME
        self.handlers = {}
        self.sent = []
        self.failures = type("Failures", (), {"handlers": [], "dead": set()})()
        self.submitter = type("Submitter", (), {})()
        self.submitter.forgotten = []
        self.submitter.forget_lineage = self.submitter.forgotten.append
        self.submitter.reconstruct = lambda object_id: reconstructs
        self.store = type("Store", (), {})()
        self.store.released = []
        self.store.release = lambda object_id, location: self.store.released.append((object_id, location.key))
        self.store.arena = type("Arena", (), {"same_node": staticmethod(lambda rank: rank != FAR)})()

    def register(self, **handlers):
        self.handlers.update(handlers)

    def send(self, dest, message):
        self.sent.append((dest, message))

    def die(self, rank):
        self.failures.dead.add(rank)
        for handler in self.failures.handlers:
            handler(rank)


def oid(owner, seq=1):
    return make_object_id(1, owner, seq)


def error_of(entry):
    assert entry.state is READY and entry.ready and entry.is_error
    payload = pickle.loads(entry.blob)
    assert isinstance(payload, ErrorPayload)
    return payload.to_exception()


@pytest.fixture
def rt():
    return FakeRuntime()


@pytest.fixture
def table(rt):
    return ObjectTable(rt)


# -- one entry ------------------------------------------------------------------------------
def test_an_entry_runs_through_its_states():
    entry = Entry()
    assert (entry.state, entry.ready, entry.blob) == (PENDING, False, None)
    entry.callbacks = ["cb"]
    assert entry.resolve(b"v", False) == ["cb"]
    assert (entry.state, entry.ready, entry.blob, entry.callbacks) == (READY, True, b"v", None)
    entry.lose_copy()
    assert (entry.state, entry.ready, entry.blob) == (PENDING, False, None)
    entry.unreference()
    entry.unreference()                          # referenced and let go again before the value came
    assert entry.state is UNREFERENCED
    entry.resolve(b"v", True)
    entry.forget()
    assert (entry.state, entry.ready, entry.is_error) == (RELEASED, True, True)   # still ready to whoever holds it


def entry_in(state):
    entry = Entry()
    entry.state = state
    return entry


@pytest.mark.parametrize("state, transition", [
    (READY, lambda e: e.resolve(b"v", False)), (RELEASED, lambda e: e.resolve(b"v", False)),
    (READY, Entry.unreference), (RELEASED, Entry.unreference),
    (PENDING, Entry.forget), (UNREFERENCED, Entry.forget), (RELEASED, Entry.forget),
    (PENDING, Entry.lose_copy), (UNREFERENCED, Entry.lose_copy), (RELEASED, Entry.lose_copy),
])
def test_illegal_transitions_are_refused_naming_the_states(state, transition):
    entry = entry_in(state)
    with pytest.raises(IllegalTransition, match=rf"object is {state.name}, not [A-Z]+"):
        transition(entry)
    assert entry.state is state


# -- the table ------------------------------------------------------------------------------
def test_a_borrowed_object_is_asked_of_its_owner_once_and_delivered_to_every_waiter(rt, table):
    seen = []
    table.on_ready(oid(OTHER), lambda object_id, entry: seen.append(("a", entry.blob)))
    table.on_ready(oid(OTHER), lambda object_id, entry: seen.append(("b", entry.blob)))
    assert rt.sent == [(OTHER, ("obj_req", oid(OTHER)))]
    assert table.entries[oid(OTHER)].state is PENDING
    rt.handlers["obj"](OTHER, oid(OTHER), b"value", False)
    assert seen == [("a", b"value"), ("b", b"value")] and table.entries[oid(OTHER)].state is READY
    rt.handlers["obj"](OTHER, oid(OTHER), b"late", False)          # a second answer changes nothing
    assert table.entries[oid(OTHER)].blob == b"value"
    table.on_ready(oid(OTHER), lambda object_id, entry: seen.append(("c", entry.blob)))
    assert seen[-1] == ("c", b"value") and len(rt.sent) == 1


def test_an_owned_object_is_released_when_nothing_reaches_it(rt, table):
    location = StoreLocation(ME, 4096, 1 << 20, None, key=5)
    entry = table.create_owned(oid(ME))
    table.set_ready(oid(ME), location)
    table._drop(oid(ME))                                             # the reference counter: unreachable
    assert entry.state is RELEASED and oid(ME) not in table.entries
    assert rt.store.released == [(oid(ME), 5)] and rt.submitter.forgotten == [oid(ME)]


def test_a_borrowed_copy_is_dropped_without_freeing_the_owners_value(rt, table):
    table.ensure(oid(OTHER))
    table.set_ready(oid(OTHER), StoreLocation(OTHER, 4096, 1 << 20, None, key=5))
    table._drop(oid(OTHER))
    assert oid(OTHER) not in table.entries and rt.store.released == []


def test_an_object_let_go_while_pending_is_released_when_its_value_comes(rt, table):
    seen = []
    entry = table.create_owned(oid(ME))
    entry.callbacks = [lambda object_id, e: seen.append(e.state)]
    table._drop(oid(ME))
    assert entry.state is UNREFERENCED and oid(ME) in table.entries
    table.set_ready(oid(ME), StoreLocation(ME, 4096, 1 << 20, None, key=6))
    assert oid(ME) not in table.entries and rt.store.released == [(oid(ME), 6)] and seen == [RELEASED]
    assert entry.ready                            # a wait that holds the entry sees its value came


def test_an_object_its_owner_freed_or_whose_owner_died_reads_as_lost(rt, table):
    assert isinstance(error_of(table.ensure(oid(ME))), ObjectLostError)
    rt.failures.dead.add(OTHER)
    error = error_of(table.ensure(oid(OTHER, 2)))
    assert isinstance(error, ObjectLostError) and "owner (rank 1) died" in str(error)
    assert rt.sent == []


def test_a_pending_object_whose_owner_dies_fails_with_owner_died(rt, table):
    entry = table.ensure(oid(OTHER))
    rt.die(OTHER)
    assert isinstance(error_of(entry), OwnerDiedError)


def test_a_borrowed_copy_lost_with_its_holder_is_asked_for_again(rt, table):
    entry = table.ensure(oid(OTHER))
    table.set_ready(oid(OTHER), StoreLocation(FAR, 4096, 1 << 20, None, key=5))
    rt.sent.clear()
    rt.die(FAR)
    assert entry.state is PENDING and entry.blob is None
    assert rt.sent == [(OTHER, ("obj_req", oid(OTHER)))]


def test_a_value_in_a_same_node_store_outlives_its_holder(rt, table):
    entry = table.ensure(oid(OTHER))
    table.set_ready(oid(OTHER), StoreLocation(OTHER, 4096, 1 << 20, None, key=5))
    table.ensure(oid(FAR, 2))
    table.set_ready(oid(FAR, 2), b"inline")
    mine = table.create_owned(oid(ME))
    table.set_ready(oid(ME), StoreLocation(NEIGHBOUR, 4096, 1 << 20, None, key=6))
    neighbours = table.ensure(oid(OTHER, 3))
    table.set_ready(oid(OTHER, 3), StoreLocation(NEIGHBOUR, 8192, 1 << 20, None, key=7))
    rt.sent.clear()
    rt.die(NEIGHBOUR)                     # same node, live owners: the node's adopter keeps the bytes for them
    assert mine.state is READY and neighbours.state is READY and rt.sent == []
    rt.die(OTHER)                         # the owner died with it: no one would free the copy, nor make it again
    assert isinstance(error_of(entry), OwnerDiedError) and rt.sent == []


def test_a_borrowed_copy_in_a_same_node_store_of_a_far_owner_is_asked_for_again(rt, table):
    entry = table.ensure(oid(FAR))
    table.set_ready(oid(FAR), StoreLocation(OTHER, 4096, 1 << 20, None, key=5))
    rt.sent.clear()
    rt.die(OTHER)                         # the owner, on another node, took it for lost and makes it again
    assert entry.state is PENDING and rt.sent == [(FAR, ("obj_req", oid(FAR)))]


@pytest.mark.parametrize("reconstructs", [True, False])
def test_an_owned_value_lost_with_its_holder_is_made_again_or_fails(reconstructs):
    rt = FakeRuntime(reconstructs=reconstructs)
    table = ObjectTable(rt)
    entry = table.create_owned(oid(ME))
    table.set_ready(oid(ME), StoreLocation(FAR, 4096, 1 << 20, None, key=5))
    rt.die(FAR)
    if reconstructs:
        assert entry.state is PENDING                                # its task runs again
    else:
        error = error_of(entry)
        assert isinstance(error, ObjectLostError) and "no task can make it again" in str(error)
    assert rt.sent == []


def test_the_owner_answers_requests_once_the_value_is_ready(rt, table):
    rt.handlers["obj_req"](OTHER, oid(ME, 9))                       # unknown here: lost
    dest, (kind, object_id, blob, is_error) = rt.sent.pop()
    assert (dest, kind, object_id, is_error) == (OTHER, "obj", oid(ME, 9), True)
    assert isinstance(pickle.loads(blob).to_exception(), ObjectLostError)
    table.create_owned(oid(ME))
    rt.handlers["obj_req"](OTHER, oid(ME))
    assert rt.sent == []
    table.set_ready(oid(ME), b"value")
    assert rt.sent == [(OTHER, ("obj", oid(ME), b"value", False))]


# -- references -----------------------------------------------------------------------------
def _unpickled_and_dropped(table, blob):
    """Unpickle ``blob`` (ObjectRefs), drop the copies, and apply the reference events they made."""
    ref = pickle.loads(blob)
    del ref
    table.references.apply_events()


def test_refs_read_out_of_a_stored_value_tell_their_owner_nothing_and_refs_sent_do(rt, table):
    object_ref.ref_events.clear()
    ref = object_ref.ObjectRef(oid(OTHER), None)          # a borrowed ref, counted elsewhere
    object_ref.pickling_context.stored = True              # as codec.encode pickles a put value or a result
    try:
        stored = pickle.dumps([ref])
    finally:
        object_ref.pickling_context.stored = False
    sent = pickle.dumps(ref)                               # as an argument or a message carries it
    table.references.apply_events()
    assert rt.sent == [(OTHER, ("obj_ref", oid(OTHER), "pinned")),       # the stored value pins the id
                       (OTHER, ("obj_ref", oid(OTHER), "pickled"))]      # the sent one is in flight
    rt.sent.clear()
    for _ in range(3):                                     # a value read again and again: no events, no notices
        found = pickle.loads(stored)
        assert type(found[0]) is object_ref.ObjectRef and not object_ref.ref_events
        del found
    assert not object_ref.ref_events and rt.sent == []
    found = pickle.loads(stored)[0]                        # one is read here: a get counts it first (waiting.py)
    object_ref.count_found(found)
    table.ensure(oid(OTHER))                               # ... and keeps a borrowed copy of its value
    rt.handlers["obj"](OTHER, oid(OTHER), b"value", False)
    rt.sent.clear()
    _unpickled_and_dropped(table, stored)                  # other copies come and go around it
    assert oid(OTHER) in table.entries
    del found
    table.references.apply_events()
    assert rt.sent == []                                   # its owner still hears nothing
    assert oid(OTHER) not in table.entries                 # ... and the borrowed copy went with the counted ref
    _unpickled_and_dropped(table, sent)                    # one that travelled: its owner counts it, both ways
    assert [message for _, message in rt.sent] == [("obj_ref", oid(OTHER), "arrived"),
                                                   ("obj_ref", oid(OTHER), "released")]
    del ref
