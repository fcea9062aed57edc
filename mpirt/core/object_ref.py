"""ObjectRef: a future for a value owned by the rank that created it."""
import asyncio
import collections
import concurrent.futures
import operator
import threading

from .reachability import ARRIVED, CREATED, DELETED, PICKLED, PINNED

# Object ids are ints: session (bits 52+) | owner rank (bits 32-51) | sequence (bits 0-31).
_RANK_SHIFT = 32
_SESSION_SHIFT = 52
_RANK_MASK = (1 << 20) - 1

# Reference events, (object_id, event), are queued here and applied by the runtime; ``__del__`` can run on
# any thread at any moment, so it must never take a lock.
ref_events: collections.deque = collections.deque()

# Set while pickling a value that may be unpickled any number of times (put values,
# task results): references inside it pin what they point to (see reachability.py).
pickling_context = threading.local()

# ``mpirt.get``, which ``future()`` and ``await ref`` call: handed down by ``mpirt.api`` when it is imported
# (so that in a task slot, where the API's functions forward to the rank, these forward too).
_get = None


def set_get(get):
    global _get
    _get = get


def get_through_api(ref, timeout=None):
    """``mpirt.get(ref, timeout=timeout)``, for the runtime's own handles (``PlacementGroup.wait``)."""
    return _get(ref, timeout=timeout)


def pickle_event():
    return PINNED if getattr(pickling_context, "stored", False) else PICKLED


def make_object_id(session, rank, seq):
    return (session << _SESSION_SHIFT) | (rank << _RANK_SHIFT) | seq


def owner_of(object_id):
    return (object_id >> _RANK_SHIFT) & _RANK_MASK


def session_of(object_id):
    return object_id >> _SESSION_SHIFT


id_of = operator.attrgetter("id")   # a ref's object id, for C-level passes over many refs (map, sets)


# The session of this process's runtime while it has had only one: no reference of another can be here then
# (ids are made by a runtime; one pickled to a file by another job is no reference).
_only_session = None
_sessions_started = 0


def session_started(session):
    global _only_session, _sessions_started
    _sessions_started += 1
    _only_session = session if _sessions_started == 1 else None


def all_in_session(object_ids, session):
    """Whether every id of ``object_ids`` is of ``session``: the session is an id's top bits, so
    the smallest and the largest id tell (one C-level pass each, where ``session_of`` per id is a call);
    no pass in a process that has had no other session (``wait`` on 1,000 refs calls this 1,000 times)."""
    if session == _only_session:
        return True
    low = session << _SESSION_SHIFT
    return not object_ids or low <= min(object_ids) and max(object_ids) < low + (1 << _SESSION_SHIFT)


def returned(refs, num_returns):
    """What ``.remote()`` gives back, as in Ray: one ref, None, or a list."""
    if num_returns == 1:
        return refs[0]
    return None if num_returns == 0 else refs


class ObjectRef:
    """Reference to a (possibly not yet computed) object; pass it anywhere, ``get`` it later.

    ``ObjectRef(object_id)`` makes a counted reference (``CountedRef``): its making and its going are reference
    events (``reachability.py``). A reference unpickled from a stored value (a "found" one, ``_arrive_pinned``)
    is a plain ``ObjectRef``: no event, no finalizer, until this rank is about to keep the id's value for it
    (``count_found``). A get of a value holding 10,000 refs made and applied 20,000 events for refs that are
    usually dropped unread."""

    __slots__ = ("id", "__weakref__")
    id: int

    def __new__(cls, object_id, _event=CREATED):
        ref = _new(CountedRef)
        ref.id = object_id
        if _event is not None:     # None: the owner counted this reference when it made the object
            ref_events.append((object_id, _event))
        return ref

    @property
    def owner_rank(self):
        return owner_of(self.id)

    def hex(self):
        return format(self.id, "028x")

    def __hash__(self):
        return hash(self.id)

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and other.id == self.id

    def __repr__(self):
        return f"ObjectRef({self.hex()})"

    def future(self):
        """A ``concurrent.futures.Future`` that gets the value (or the error) once it is ready, as Ray's."""
        future = concurrent.futures.Future()

        def resolve():
            try:
                future.set_result(_get(self))
            except BaseException as exc:  # noqa: B902 - the future carries it
                future.set_exception(exc)

        threading.Thread(target=resolve, name="mpirt-ref-future", daemon=True).start()
        return future

    def __await__(self):
        """``await ref`` (in async actor methods or any asyncio code): the value, without blocking the event loop."""
        return asyncio.wrap_future(self.future()).__await__()

    def __reduce__(self):
        event = pickle_event()
        ref_events.append((self.id, event))
        return (_arrive_pinned if event == PINNED else _arrive, (self.id,))


class CountedRef(ObjectRef):
    """An ObjectRef whose going is a reference event (every reference but found ones not yet used here)."""

    __slots__ = ()

    def __del__(self):
        try:
            ref_events.append((self.id, DELETED))
        except Exception:  # interpreter shutdown
            pass


# Users see one type, as in Ray: ``type(ref).__name__`` is "ObjectRef" whichever kind a reference is.
CountedRef.__name__ = CountedRef.__qualname__ = "ObjectRef"
_new = object.__new__
REF_CLASSES = frozenset((ObjectRef, CountedRef))   # what type() of a reference is: found or counted


# What an unpickled reference is made by. Module functions, not classmethods: pickle writes a function once and
# refers back to it, where a bound method is written out and looked up again for every reference (10,000 refs
# in one value: 230 KB and 18.6 ms to unpickle and drop, against 150 KB and 12.8 ms).
def _arrive(object_id):
    """A reference that travelled (an argument, a message): its owner hears that it arrived."""
    return ObjectRef(object_id, ARRIVED)


def _arrive_pinned(object_id):
    """A copy unpickled from a stored value, whose pickling pinned the id (``reachability.py``): a found
    reference, not counted."""
    ref = _new(ObjectRef)
    ref.id = object_id
    return ref


def count_found(ref):
    """Count ``ref`` from now on if it is a found reference: a get, a wait or a task argument is about to
    keep its value on this rank, which goes when this rank's last counted reference to the id goes. The
    owner pinned the id, so a found reference never needs counting for the value to live; only for this
    rank's copy of it."""
    if type(ref) is ObjectRef:
        ref.__class__ = CountedRef
        ref_events.append((ref.id, CREATED))
