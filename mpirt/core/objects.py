"""The object table of one rank: values it owns, and copies it fetched from owners.

Values are kept encoded (inline, stored or on a device: ``object_value.py``) so they can be forwarded
without re-pickling; each entry's lifecycle is ``ObjectState``. The owner of an object (the rank that
created its ref) answers ``obj_req`` from other ranks once the value is ready, and frees the value once no
rank can reach it any more (``reachability.py``); a borrower drops its fetched copy when its last reference
goes.
"""
import enum
from typing import Callable, List, Optional

from ..exceptions import ErrorPayload, ObjectLostError, OwnerDiedError
from . import object_value, tracing
from .codec import dumps
from .lifecycle import refuse
from .object_ref import ObjectRef, owner_of, ref_events
from .object_value import Value
from .reachability import ReferenceCounter


class ObjectState(enum.IntEnum):
    """Where one object's value is, as this rank's table sees it."""
    PENDING = 0        # being made (the owner's task runs) or fetched (asked of the owner)
    UNREFERENCED = 1   # still pending, but nothing here refers to it any more: forgotten once it comes
    READY = 2          # ``blob`` holds its value, or its error when ``is_error``
    RELEASED = 3       # forgotten: out of the table (the owner freed its stored bytes)


PENDING, UNREFERENCED, READY, RELEASED = ObjectState


# How many entries became ready in this process so far: a ``wait`` polling without callbacks
# (``waiting._Waiter.enough_ready``) looks at its entries again only when this moved.
RESOLVED = [0]


class Entry:
    """One object in the table. Its state changes only through the methods below, each of which checks the
    state it leaves. ``ready`` says the value came (READY, or RELEASED after it: a caller that holds the
    entry, ``wait``, still sees it ready), kept as a plain attribute because ``get`` reads it without the
    lock (``Runtime.value_of``): ``resolve`` sets it after ``blob``, ``lose_copy`` clears it before."""

    __slots__ = ("blob", "is_error", "ready", "callbacks", "state")

    def __init__(self):
        self.blob = None
        self.is_error = False
        self.ready = False
        self.callbacks = None   # called with (object_id, entry) once it is READY
        self.state = PENDING

    def _refuse(self, *allowed):
        refuse("object", self.state, allowed, ObjectState)

    def resolve(self, blob: Value, is_error: bool) -> Optional[List["Callback"]]:
        """PENDING or UNREFERENCED -> READY: its value (or error) came. Returns the callbacks to run."""
        if self.state > UNREFERENCED:    # one comparison: this runs for every task result
            self._refuse(PENDING, UNREFERENCED)
        self.blob, self.is_error = blob, is_error
        self.state, self.ready = READY, True
        RESOLVED[0] += 1
        callbacks, self.callbacks = self.callbacks, None
        return callbacks

    def unreference(self) -> None:
        """PENDING -> UNREFERENCED: the last reference here went before the value came (again,
        when it was referenced and let go once more meanwhile)."""
        if self.state > UNREFERENCED:
            self._refuse(PENDING, UNREFERENCED)
        self.state = UNREFERENCED

    def forget(self) -> None:
        """READY -> RELEASED: out of the table; its owner frees what holds the value."""
        if self.state is not READY:
            self._refuse(READY)
        self.state = RELEASED

    def lose_copy(self) -> None:
        """READY -> PENDING: its only copy died with a rank; the owner makes it again (lineage)
        or a borrower asks the owner again."""
        if self.state is not READY:
            self._refuse(READY)
        self.ready, self.state = False, PENDING
        self.blob = None


Callback = Callable[[int, Entry], None]


class ObjectTable:
    def __init__(self, runtime):
        self.rt = runtime
        self.rank = runtime.rank
        self.entries = {}
        self._asked = {}   # borrower: object id -> when obj_req went to its owner (the trace's "transfer")
        self.references = ReferenceCounter(runtime, "obj_ref", ref_events, owner_of, self._drop, self._drop)
        runtime.register(obj_req=self._on_request, obj=self._on_value)
        runtime.failures.handlers.append(self._on_rank_dead)

    # All methods run with runtime.lock held.
    def create_owned(self, object_id: int, value: Optional[Value] = None, local_refs: int = 0) -> Entry:
        """A new object this rank owns, PENDING until its value comes; READY at once when ``value`` is given
        (``put``: the value is here already, and no one can wait on an object not yet returned).
        ``local_refs``: references to it here already counted (``owned_ref``)."""
        entry = Entry()
        if value is not None:
            entry.resolve(value, False)
        self.entries[object_id] = entry
        self.references.track(object_id, local_refs)
        return entry

    def owned_ref(self, object_id: int, value: Optional[Value] = None) -> ObjectRef:
        """A new owned object (``create_owned``) and its first ObjectRef, counted here instead of by a
        "created" event: one event fewer for the reference counter per put, task return and actor call."""
        self.create_owned(object_id, value, local_refs=1)
        return ObjectRef(object_id, None)

    def set_ready(self, object_id: int, blob: Value, is_error: bool = False) -> None:
        """The value (or error) of ``object_id`` came; a late or second answer is ignored."""
        entry = self.entries.get(object_id)
        if entry is None or entry.ready:
            return
        unreferenced = entry.state is UNREFERENCED
        callbacks = entry.resolve(blob, is_error)
        if unreferenced:
            self._forget(object_id, entry)
        for callback in callbacks or ():
            callback(object_id, entry)

    def ensure(self, object_id: int) -> Entry:
        """The entry for ``object_id``; asks the owner for the value the first time."""
        entry = self.entries.get(object_id)
        if entry is not None:
            return entry
        entry = self.entries[object_id] = Entry()
        owner = owner_of(object_id)
        if owner == self.rank:  # owned but already freed: nothing can produce it again
            entry.resolve(self._lost_blob(object_id, f"it was freed by its owner (rank {owner})"), True)
        elif owner in self.rt.failures.dead:
            entry.resolve(self._lost_blob(object_id, f"its owner (rank {owner}) died"), True)
        else:
            self._asked[object_id] = tracing.now()
            self.rt.send(owner, ("obj_req", object_id))
        return entry

    def on_ready(self, object_id: int, callback: "Callback") -> None:
        entry = self.ensure(object_id)
        if entry.ready:
            callback(object_id, entry)
        elif entry.callbacks is None:
            entry.callbacks = [callback]
        else:
            entry.callbacks.append(callback)

    def _drop(self, object_id):
        entry = self.entries.get(object_id)
        if entry is None:
            return
        if entry.ready:
            self._forget(object_id, entry)
        else:
            entry.unreference()

    def _forget(self, object_id, entry):
        entry.forget()
        del self.entries[object_id]
        self.rt.submitter.forget_lineage(object_id)
        if owner_of(object_id) == self.rank:
            object_value.release(entry.blob, self.rt.store, object_id)

    # -- worker deaths (ULFM) --------------------------------------------------
    def _on_rank_dead(self, rank):
        """Values that lived only in ``rank``'s store on another node are lost: the owner rebuilds
        them from lineage (or reports ObjectLostError for ``put`` values); borrowers ask again.
        Values of objects ``rank`` owned but never delivered are lost with it. Same-node stores
        outlive their rank (the pool is shared, and a live rank of the node adopts the dead one's
        part, ``store/manager.py``), so those values live on where a live owner on this node will
        free them; a borrowed copy whose owner is elsewhere (it rebuilds the value) or dead (no one
        would free it: its adopter lets it go) is lost like a copy on another node."""
        for object_id in [object_id for object_id in self._asked if owner_of(object_id) == rank]:
            del self._asked[object_id]
        lost = []
        same_node = self.rt.store.arena.same_node
        dead = self.rt.failures.dead

        def freed_here(object_id):
            owner = owner_of(object_id)
            return owner == self.rank or (owner not in dead and same_node(owner))

        for object_id, entry in self.entries.items():
            if not entry.ready:
                if owner_of(object_id) == rank:
                    lost.append((object_id, entry, "owner"))
            elif object_value.lost_with(entry.blob, rank, same_node if freed_here(object_id) else _nowhere):
                lost.append((object_id, entry, "copy"))
        for object_id, entry, why in lost:
            if why == "owner":
                self.set_ready(object_id, self._lost_blob(object_id, f"its owner (rank {rank}) died", OwnerDiedError),
                               True)
                continue
            entry.lose_copy()
            owner = owner_of(object_id)
            if owner in dead:                           # a borrowed copy no owner can make again
                self.set_ready(object_id, self._lost_blob(object_id, f"its owner (rank {owner}) died", OwnerDiedError),
                               True)
            elif owner != self.rank:                    # a borrowed copy: the owner knows what became of it
                self.rt.send(owner, ("obj_req", object_id))
        for object_id, entry, why in lost:
            if why == "copy" and owner_of(object_id) == self.rank and not self.rt.submitter.reconstruct(object_id):
                self.set_ready(object_id, self._lost_blob(object_id, f"its only copy was on rank {rank}, which died, "
                                                          "and no task can make it again (it was put(), or its "
                                                          "task has no retries left)"), True)

    @staticmethod
    def _lost_blob(object_id, why, error_class=ObjectLostError):
        """The error a lost object reads as: ``OwnerDiedError`` when its owner died, as in Ray."""
        return dumps(ErrorPayload(error_class(f"object {object_id:028x} is lost: {why}")))

    # -- handlers ------------------------------------------------------------
    def _on_request(self, source, object_id):
        entry = self.entries.get(object_id)
        if entry is None:
            self.rt.send(source, ("obj", object_id, self._lost_blob(object_id, f"it is unknown to its owner "
                                                                               f"(rank {self.rank})"), True))
            return
        self.on_ready(object_id, lambda oid, e: self.rt.send(source, ("obj", oid, e.blob, e.is_error)))

    def _on_value(self, source, object_id, blob, is_error):
        asked = self._asked.pop(object_id, None)
        if asked is not None and isinstance(blob, (bytes, bytearray)):   # a stored value's bytes move later
            tracing.record("transfer", "object reply", asked, tracing.now(), bytes=len(blob), peer=source,
                           object_id=f"{object_id:028x}")
        self.set_ready(object_id, blob, is_error)


def _nowhere(rank):
    """``same_node`` for a value no one on this node would free: its bytes count as gone with their rank."""
    return False
