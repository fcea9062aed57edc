"""The object table of one rank: values it owns, and copies it fetched from owners.

Values are kept serialized (bytes) so they can be forwarded without re-pickling.
The owner of an object (the rank that created its ref) answers ``obj_req`` from
other ranks once the value is ready. Local reference counts come from
ObjectRef construction/destruction events; an owned value is freed when no local
ref is left and no ref ever left this process (distributed counting is the
object store's job).
"""
from .exceptions import ErrorPayload, ObjectLostError
from .object_ref import owner_of, ref_events
from .serialization import dumps


class Entry:
    __slots__ = ("blob", "is_error", "ready", "callbacks", "escaped", "unreferenced")

    def __init__(self):
        self.blob = None
        self.is_error = False
        self.ready = False
        self.callbacks = None
        self.escaped = False
        self.unreferenced = False


class ObjectTable:
    def __init__(self, runtime):
        self.rt = runtime
        self.rank = runtime.rank
        self.entries = {}
        self.local_refs = {}
        runtime.handlers.update(obj_req=self._on_request, obj=self._on_value)

    # All methods run with runtime.lock held.
    def create_owned(self, object_id):
        entry = Entry()
        self.entries[object_id] = entry
        return entry

    def set_ready(self, object_id, blob, is_error=False):
        entry = self.entries.get(object_id)
        if entry is None or entry.ready:
            return
        entry.blob, entry.is_error, entry.ready = blob, is_error, True
        callbacks, entry.callbacks = entry.callbacks, None
        if entry.unreferenced and not entry.escaped:
            del self.entries[object_id]
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
            self._lost(object_id, entry)
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
        events = ref_events
        refs = self.local_refs
        while events:
            try:
                delta, object_id = events.popleft()
            except IndexError:
                break
            if delta == 0:
                entry = self.entries.get(object_id)
                if entry is not None:
                    entry.escaped = True
                continue
            count = refs.get(object_id, 0) + delta
            if count > 0:
                refs[object_id] = count
                continue
            refs.pop(object_id, None)
            entry = self.entries.get(object_id)
            if entry is None:
                continue
            if entry.ready and (owner_of(object_id) != self.rank or not entry.escaped):
                del self.entries[object_id]
            else:
                entry.unreferenced = True

    def _lost(self, object_id, entry):
        error = ObjectLostError(f"object {object_id:028x} was freed by its owner (rank {owner_of(object_id)})")
        entry.blob, entry.is_error, entry.ready = dumps(ErrorPayload(error)), True, True

    # -- handlers ------------------------------------------------------------
    def _on_request(self, source, object_id):
        entry = self.entries.get(object_id)
        if entry is None:
            error = ObjectLostError(f"object {object_id:028x} is unknown to its owner (rank {self.rank})")
            self.rt.send(source, ("obj", object_id, dumps(ErrorPayload(error)), True))
            return
        entry.escaped = True
        self.on_ready(object_id, lambda oid, e: self.rt.send(source, ("obj", oid, e.blob, e.is_error)))

    def _on_value(self, source, object_id, blob, is_error):
        self.set_ready(object_id, blob, is_error)
