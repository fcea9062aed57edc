"""The object table of one rank: values it owns, and copies it fetched from owners.

Values are kept serialized (bytes) so they can be forwarded without re-pickling.
The owner of an object (the rank that created its ref) answers ``obj_req`` from
other ranks once the value is ready, and frees the value once no rank can reach
it any more (``reachability.py``); a borrower drops its fetched copy when its
last reference goes.
"""
from ..exceptions import ErrorPayload, ObjectLostError, OwnerDiedError
from .object_ref import owner_of, ref_events
from .reachability import ReferenceCounter
from .serialization import dumps
from ..store.device import DeviceObject
from ..store.manager import StoreLocation


class Entry:
    __slots__ = ("blob", "is_error", "ready", "callbacks", "unreferenced")

    def __init__(self):
        self.blob = None
        self.is_error = False
        self.ready = False
        self.callbacks = None
        self.unreferenced = False  # nothing refers to it any more: drop it once ready


class ObjectTable:
    def __init__(self, runtime):
        self.rt = runtime
        self.rank = runtime.rank
        self.entries = {}
        self.references = ReferenceCounter(runtime, "obj_ref", ref_events, owner_of, self._drop, self._drop)
        runtime.register(obj_req=self._on_request, obj=self._on_value)
        runtime.failures.handlers.append(self._on_rank_dead)

    # All methods run with runtime.lock held.
    def create_owned(self, object_id):
        entry = Entry()
        self.entries[object_id] = entry
        self.references.track(object_id)
        return entry

    def set_ready(self, object_id, blob, is_error=False):
        entry = self.entries.get(object_id)
        if entry is None or entry.ready:
            return
        entry.blob, entry.is_error, entry.ready = blob, is_error, True
        callbacks, entry.callbacks = entry.callbacks, None
        if entry.unreferenced:
            self._forget(object_id, entry)
        for callback in callbacks or ():
            callback(object_id, entry)

    def ensure(self, object_id):
        """The entry for ``object_id``; asks the owner for the value the first time."""
        entry = self.entries.get(object_id)
        if entry is not None:
            return entry
        entry = self.entries[object_id] = Entry()
        owner = owner_of(object_id)
        if owner == self.rank:  # owned but already freed: nothing can produce it again
            self._mark_lost(entry, object_id, f"it was freed by its owner (rank {owner})")
        elif owner in self.rt.failures.dead:
            self._mark_lost(entry, object_id, f"its owner (rank {owner}) died")
        else:
            self.rt.send(owner, ("obj_req", object_id))
        return entry

    def on_ready(self, object_id, callback):
        entry = self.ensure(object_id)
        if entry.ready:
            callback(object_id, entry)
        elif entry.callbacks is None:
            entry.callbacks = [callback]
        else:
            entry.callbacks.append(callback)

    def apply_ref_events(self):
        self.references.apply_events()

    def _drop(self, object_id):
        entry = self.entries.get(object_id)
        if entry is None:
            return
        if entry.ready:
            self._forget(object_id, entry)
        else:
            entry.unreferenced = True

    def _forget(self, object_id, entry):
        del self.entries[object_id]
        self.rt.submitter.forget_lineage(object_id)
        if owner_of(object_id) != self.rank:
            return
        blob = entry.blob
        if isinstance(blob, DeviceObject):
            self.rt.store.device.release(blob)
            blob = blob.inner
        if isinstance(blob, StoreLocation):
            self.rt.store.release(object_id, blob)

    def _mark_lost(self, entry, object_id, why):
        entry.blob, entry.is_error, entry.ready = self._lost_blob(object_id, why), True, True

    # -- worker deaths (ULFM) --------------------------------------------------
    def _on_rank_dead(self, rank):
        """Values that lived only in ``rank``'s store on another node are lost: the owner rebuilds
        them from lineage (or reports ObjectLostError for ``put`` values); borrowers ask again.
        Values of objects ``rank`` owned but never delivered are lost with it. Same-node stores
        stay readable after their rank dies (the segment is shared), so those values live on."""
        lost = []
        for object_id, entry in self.entries.items():
            owner = owner_of(object_id)
            if not entry.ready:
                if owner == rank:
                    lost.append((object_id, entry, "owner"))
                continue
            if self._only_copy_on(entry.blob, rank):
                lost.append((object_id, entry, "copy"))
        for object_id, entry, why in lost:
            if why == "owner":
                self.set_ready(object_id, self._lost_blob(object_id, f"its owner (rank {rank}) died", OwnerDiedError),
                               True)
                continue
            entry.ready, entry.blob = False, None
            if owner_of(object_id) != self.rank:       # a borrowed copy: the owner knows what became of it
                self.rt.send(owner_of(object_id), ("obj_req", object_id))
        for object_id, entry, why in lost:
            if why == "copy" and owner_of(object_id) == self.rank and not self.rt.submitter.reconstruct(object_id):
                self.set_ready(object_id, self._lost_blob(object_id, f"its only copy was on rank {rank}, which died, "
                                                          "and no task can make it again (it was put(), or its "
                                                          "task has no retries left)"), True)

    def _only_copy_on(self, blob, rank):
        """Whether the value of ``blob`` died with ``rank``: sealed GPU arrays die with their
        process; store bytes only with their node (the segment is shared)."""
        if isinstance(blob, DeviceObject):
            if blob.holder == rank:
                return True
            blob = blob.inner
        return isinstance(blob, StoreLocation) and blob.holder == rank and not self.rt.store.arena.same_node(rank)

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
        self.set_ready(object_id, blob, is_error)
