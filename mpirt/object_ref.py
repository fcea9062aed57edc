"""ObjectRef: a future for a value owned by the rank that created it."""
import collections

# Object ids are ints: session (bits 52+) | owner rank (bits 32-51) | sequence (bits 0-31).
_RANK_SHIFT = 32
_SESSION_SHIFT = 52
_RANK_MASK = (1 << 20) - 1

# Reference events are queued here and applied by the runtime; ``__del__`` can run
# on any thread at any moment (garbage collection), so it must never take a lock.
ref_events = collections.deque()


def make_object_id(session, rank, seq):
    return (session << _SESSION_SHIFT) | (rank << _RANK_SHIFT) | seq


def owner_of(object_id):
    return (object_id >> _RANK_SHIFT) & _RANK_MASK


def session_of(object_id):
    return object_id >> _SESSION_SHIFT


class ObjectRef:
    """Reference to a (possibly not yet computed) object; pass it anywhere, ``get`` it later."""

    __slots__ = ("id", "__weakref__")

    def __init__(self, object_id):
        self.id = object_id
        ref_events.append((1, object_id))

    def __del__(self):
        try:
            ref_events.append((-1, self.id))
        except Exception:  # interpreter shutdown
            pass

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

    def __reduce__(self):
        # A ref that leaves this process may be used anywhere: its owner must keep the value.
        ref_events.append((0, self.id))
        return (ObjectRef, (self.id,))
