"""Calling actors from any rank: creation, placement, and method calls in order.

The rank that creates an actor owns it: it asks the head to place it, sends
the constructor to the chosen worker, and tells other ranks where the actor
lives (``actor_locate``). Each rank keeps one queue per actor; a call leaves
the queue only when its ObjectRef arguments are ready and every earlier call
has left, so calls from one caller run in submission order.
"""
import collections

from .object_ref import ObjectRef, owner_of
from .reachability import ReferenceCounter
from .runtime import HEAD_RANK

# Actor handles post (actor_id, event) here from __init__/__del__/__reduce__ (no locks
# there: destructors run anywhere); the progress thread applies them.
handle_events = collections.deque()


class CallRecord:
    __slots__ = ("call_id", "actor_id", "kind", "method", "args_blob", "dep_refs", "deps_left", "return_ids",
                 "failed_blob", "extra")


class ActorState:
    """What this rank knows of one actor."""

    __slots__ = ("location", "locating", "queue", "kill_requested", "waiting_for_location")

    def __init__(self):
        self.location = None
        self.locating = False
        self.queue = collections.deque()
        self.kill_requested = False
        self.waiting_for_location = []  # ranks that asked the owner where the actor is


class ActorCaller:
    def __init__(self, runtime):
        self.rt = runtime
        self.actors = {}
        self.calls = {}
        self.references = ReferenceCounter(runtime, "actor_ref", self._terminate)  # unnamed actors only
        runtime.handlers.update(
            actor_placed=self._on_placed,
            actor_locate=self._on_locate,
            actor_location=self._on_location,
            actor_done=self._on_done,
        )
        runtime.transport.add_ticker(0.02, self._apply_handle_events)

    def _state(self, actor_id):
        state = self.actors.get(actor_id)
        if state is None:
            state = self.actors[actor_id] = ActorState()
        return state

    # -- caller threads ------------------------------------------------------
    def create(self, actor_id, class_blob, args_blob, dep_refs, placement, held, options, tracked):
        with self.rt.lock:
            if tracked:
                self.references.track(actor_id)
            state = self._state(actor_id)
            rec = self._record(actor_id, "create", "__init__", args_blob, dep_refs, 0)
            rec.extra = (class_blob, options)
            state.queue.append(rec)
            self._watch_dependencies(rec)
            self.rt.send(HEAD_RANK, ("actor_place", actor_id, placement, held))

    def call(self, actor_id, method, args_blob, dep_refs, num_returns):
        rt = self.rt
        with rt.lock:
            state = self._state(actor_id)
            if state.location is None and not state.locating and owner_of(actor_id) != rt.rank:
                state.locating = True
                rt.send(owner_of(actor_id), ("actor_locate", actor_id))
            rec = self._record(actor_id, "call", method, args_blob, dep_refs, num_returns)
            for object_id in rec.return_ids:
                rt.objects.create_owned(object_id)
            refs = [ObjectRef(object_id) for object_id in rec.return_ids]
            state.queue.append(rec)
            self._watch_dependencies(rec)
            self._pump(actor_id)
        return refs

    def kill(self, actor_id):
        rt = self.rt
        with rt.lock:
            state = self._state(actor_id)
            if state.location is not None:
                rt.send(state.location, ("actor_kill", actor_id))
                return
            state.kill_requested = True
            if not state.locating and owner_of(actor_id) != rt.rank:
                state.locating = True
                rt.send(owner_of(actor_id), ("actor_locate", actor_id))

    # -- internals (runtime.lock held) --------------------------------------
    def _record(self, actor_id, kind, method, args_blob, dep_refs, num_returns):
        rec = CallRecord()
        rec.call_id = self.rt.next_id()
        rec.actor_id = actor_id
        rec.kind = kind
        rec.method = method
        rec.args_blob = args_blob
        rec.dep_refs = dep_refs
        rec.deps_left = len(dep_refs)
        rec.return_ids = [self.rt.next_id() for _ in range(num_returns)]
        rec.failed_blob = None
        rec.extra = None
        return rec

    def _watch_dependencies(self, rec):
        for ref in rec.dep_refs:
            self.rt.objects.on_ready(ref.id, self._dependency_ready(rec))

    def _dependency_ready(self, rec):
        def callback(object_id, entry):
            if entry.is_error and rec.failed_blob is None:
                rec.failed_blob = entry.blob
            rec.deps_left -= 1
            if rec.deps_left == 0:
                self._pump(rec.actor_id)

        return callback

    def _pump(self, actor_id):
        state = self.actors[actor_id]
        if state.location is None:
            return
        rt = self.rt
        entries = rt.objects.entries
        while state.queue and state.queue[0].deps_left == 0:
            rec = state.queue.popleft()
            inlined = {ref.id: entries[ref.id].blob for ref in rec.dep_refs if ref.id in entries}
            if rec.kind == "create":
                # A failed constructor argument still goes: the worker records the actor as dead.
                class_blob, options = rec.extra
                rt.send(state.location, ("actor_create", actor_id, class_blob, rec.args_blob, inlined, options,
                                         rec.failed_blob))
            elif rec.kind == "terminate":
                rt.send(state.location, ("actor_terminate", actor_id))
            elif rec.failed_blob is not None:  # a failed argument fails the call with the same error
                for object_id in rec.return_ids:
                    rt.objects.set_ready(object_id, rec.failed_blob, True)
            else:
                self.calls[rec.call_id] = rec
                rt.send(state.location, ("actor_call", actor_id, rec.call_id, rec.method, rec.args_blob, inlined,
                                         len(rec.return_ids)))

    def _set_location(self, actor_id, worker):
        state = self._state(actor_id)
        state.location = worker
        state.locating = False
        for rank in state.waiting_for_location:
            self.rt.send(rank, ("actor_location", actor_id, worker))
        state.waiting_for_location = []
        self._pump(actor_id)
        if state.kill_requested:
            state.kill_requested = False
            self.rt.send(worker, ("actor_kill", actor_id))

    def _apply_handle_events(self):
        if handle_events:
            with self.rt.lock:
                self.references.apply_events(handle_events, owner_of)

    def _terminate(self, actor_id):
        """No handle is left: end the actor behind the calls already made (they still run, as in Ray)."""
        state = self._state(actor_id)
        state.queue.append(self._record(actor_id, "terminate", None, None, [], 0))
        self._pump(actor_id)

    # -- handlers -----------------------------------------------------------
    def _on_placed(self, source, actor_id, worker):
        self._set_location(actor_id, worker)

    def _on_locate(self, source, actor_id):
        state = self._state(actor_id)
        if state.location is not None:
            self.rt.send(source, ("actor_location", actor_id, state.location))
        else:
            state.waiting_for_location.append(source)

    def _on_location(self, source, actor_id, worker):
        self._set_location(actor_id, worker)

    def _on_done(self, source, call_id, blobs, is_error):
        rec = self.calls.pop(call_id, None)
        if rec is None:
            return
        for object_id, blob in zip(rec.return_ids, blobs):
            self.rt.objects.set_ready(object_id, blob, is_error)

