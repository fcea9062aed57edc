"""Calling actors from any rank: creation, placement, and method calls in order.

The rank that creates an actor owns it: it asks the head to place it, sends
the constructor to the chosen worker, and tells other ranks where the actor
lives (``actor_locate``). Each rank keeps one queue per actor; a call leaves
the queue only when its ObjectRef arguments are ready and every earlier call
has left, so calls from one caller run in submission order.
"""
import collections

from ..exceptions import ActorDiedError, ErrorPayload, TaskCancelledError
from .object_ref import ObjectRef, owner_of
from .protocol import HEAD_RANK
from .reachability import ReferenceCounter
from .codec import dumps

# Actor handles post (actor_id, event) here from __init__/__del__/__reduce__ (no locks
# there: destructors run anywhere); the progress thread applies them.
handle_events: collections.deque = collections.deque()

_NO_VALUES: dict = {}  # the inlined argument values of a call without ObjectRef arguments (never changed)


class CallRecord:
    __slots__ = ("call_id", "actor_id", "kind", "method", "args_blob", "dep_refs", "deps_left", "return_ids",
                 "failed_blob", "extra", "retries_used", "pending_retry", "overrides", "max_retries")


class ActorState:
    """What this rank knows of one actor."""

    __slots__ = ("location", "locating", "queue", "kill_requested", "waiting_for_location", "restarts_left",
                 "restarts", "max_task_retries", "placement", "held", "create_message", "dead_blob")

    def __init__(self):
        self.location = None
        self.locating = False
        self.queue = collections.deque()
        self.kill_requested = False
        self.waiting_for_location = []  # ranks that asked the owner where the actor is
        # Known at the owner: what restarting the actor after its rank died takes.
        self.restarts_left = 0
        self.restarts = 0               # restarts so far (the host reports was_current_actor_reconstructed)
        self.max_task_retries = 0
        self.placement = self.held = None
        self.create_message = None
        self.dead_blob = None           # set once the actor is gone for good (its rank died)


class ActorCaller:
    def __init__(self, runtime):
        self.rt = runtime
        self.actors = {}
        self.calls = {}
        self.references = ReferenceCounter(runtime, "actor_ref", handle_events, owner_of,
                                           self._terminate)  # unnamed actors only
        runtime.register(
            actor_placed=self._on_placed,
            actor_locate=self._on_locate,
            actor_location=self._on_location,
            actor_done=self._on_done,
            actor_kill_restart=self._on_kill_restart,
            actor_restarted=self._on_restarted,
            actor_unplaceable=self._on_unplaceable,
        )
        runtime.failures.handlers.append(self._on_rank_dead)
        runtime.transport.add_ticker(0.02, self._apply_handle_events)

    def _state(self, actor_id):
        state = self.actors.get(actor_id)
        if state is None:
            state = self.actors[actor_id] = ActorState()
        return state

    def location_of(self, actor_id):
        """The rank the actor lives on, if this rank knows it (runtime lock held)."""
        state = self.actors.get(actor_id)
        return state.location if state is not None else None

    # -- caller threads ------------------------------------------------------
    def create(self, actor_id, class_blob, args_blob, dep_refs, placement, held, options, tracked,
               max_restarts=0, max_task_retries=0):
        with self.rt.lock:
            if tracked:
                self.references.track(actor_id)
            state = self._state(actor_id)
            state.restarts_left, state.max_task_retries = max_restarts, max_task_retries
            state.placement, state.held = placement, held
            rec = self._record(actor_id, "create", "__init__", args_blob, dep_refs, 0)
            rec.extra = (class_blob, {**options, "max_restarts": max_restarts, "held": held})
            state.queue.append(rec)
            self._watch_dependencies(rec)
            self.rt.send(HEAD_RANK, ("actor_place", actor_id, placement, held))

    def call(self, actor_id, method, args_blob, dep_refs, num_returns, overrides=None, max_retries=None):
        """``overrides``: per-call options for the host (concurrency_group, max_task_retries,
        retry_exceptions, name), None for a plain call; ``max_retries``: the method's own
        ``max_task_retries`` for calls its rank's death interrupts (None: the actor's)."""
        rt = self.rt
        with rt.lock:
            state = self.actors.get(actor_id) or self._state(actor_id)
            if state.location is None and not state.locating and owner_of(actor_id) != rt.rank:
                self._ask_location(actor_id, state)
            rec = self._record(actor_id, "call", method, args_blob, dep_refs, num_returns)
            rec.overrides, rec.max_retries = overrides, max_retries
            create_owned = rt.objects.create_owned
            for object_id in rec.return_ids:
                create_owned(object_id)
            refs = [ObjectRef(object_id) for object_id in rec.return_ids]
            if state.dead_blob is not None:
                self._fail(rec, state.dead_blob)
            elif not dep_refs and not state.queue and state.location is not None:
                # The common case: nothing to wait for and no earlier call queued: it goes now.
                self.calls[rec.call_id] = rec
                message = ("actor_call", actor_id, rec.call_id, method, args_blob, _NO_VALUES, num_returns)
                if overrides is not None:
                    message += (overrides,)
                if state.location == rt.rank:
                    rt.transport.send_local(message)   # the actor lives here: straight to its thread
                else:
                    rt.send(state.location, message)
            else:
                state.queue.append(rec)
                self._watch_dependencies(rec)
                self._pump(actor_id)
        return refs

    def kill(self, actor_id, no_restart=True):
        rt = self.rt
        with rt.lock:
            if not no_restart and owner_of(actor_id) in rt.failures.dead:
                no_restart = True      # only the owner could restart it, and it is gone
            if not no_restart:
                # Only the owner counts restarts: it decides between a restart and the end.
                if owner_of(actor_id) == rt.rank:
                    self._on_kill_restart(rt.rank, actor_id)
                else:
                    rt.send(owner_of(actor_id), ("actor_kill_restart", actor_id))
                return
            state = self._state(actor_id)
            if state.location is not None:
                rt.send(state.location, ("actor_kill", actor_id))
                return
            state.kill_requested = True
            if not state.locating and owner_of(actor_id) != rt.rank:
                self._ask_location(actor_id, state)

    def cancel_call(self, object_id, force, recursive):
        """``cancel()`` of an actor call's result (runtime lock held; submitter._cancel_object).
        Still queued here: it never goes, and fails with TaskCancelledError. Sent: the actor's
        rank drops it if it has not started, cancels it if it is an async call, else flags it
        (actor_host._on_cancel_call). Ray refuses ``force`` for actor calls; ``recursive``
        reaches no further (what a call submitted is not tracked per call)."""
        rec = self._call_making(object_id)
        if rec is None:
            return
        if force:
            raise ValueError("force=True is not supported for actor tasks.")
        state = self.actors.get(rec.actor_id)
        if state is not None and rec in state.queue:
            state.queue.remove(rec)
            self._fail(rec, dumps(ErrorPayload(TaskCancelledError(
                f"the actor call {rec.method} was cancelled with cancel() before it was sent"))))
        elif rec.call_id in self.calls and state is not None and state.location is not None:
            self.rt.send(state.location, ("actor_cancel_call", rec.actor_id, rec.call_id))

    def _call_making(self, object_id):
        """The call record with ``object_id`` among its results (sent or queued), or None."""
        for rec in self.calls.values():
            if object_id in rec.return_ids:
                return rec
        for state in self.actors.values():
            for rec in state.queue:
                if rec.kind == "call" and object_id in rec.return_ids:
                    return rec
        return None

    # -- internals (runtime.lock held) --------------------------------------
    def _ask_location(self, actor_id, state):
        """Ask the actor's owner where it lives; once the owner is dead, ask the head, which
        knows where it placed the actor (a detached actor outlives its creator; any other
        actor dies with its owner, and the head then answers that it is gone)."""
        state.locating = True
        owner = owner_of(actor_id)
        if owner in self.rt.failures.dead:
            self.rt.send(HEAD_RANK, ("actor_where", actor_id))
        else:
            self.rt.send(owner, ("actor_locate", actor_id))

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
        rec.retries_used = 0
        rec.pending_retry = False
        rec.overrides = None
        rec.max_retries = None
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
            inlined = ({ref.id: entries[ref.id].blob for ref in rec.dep_refs if ref.id in entries}
                       if rec.dep_refs else _NO_VALUES)
            if rec.kind == "create":
                # A failed constructor argument still goes: the worker records the actor as dead.
                class_blob, options = rec.extra
                state.create_message = ("actor_create", actor_id, class_blob, rec.args_blob, inlined, options,
                                        rec.failed_blob)
                rt.send(state.location, state.create_message)
            elif rec.kind == "recreate":
                # The same creation, with the restarts that are left now (the host counts them too).
                message = list(state.create_message)
                message[5] = {**message[5], "max_restarts": state.restarts_left, "restarts": state.restarts}
                state.create_message = tuple(message)
                rt.send(state.location, state.create_message)
            elif rec.kind == "terminate":
                rt.send(state.location, ("actor_terminate", actor_id))
            elif rec.failed_blob is not None:  # a failed argument fails the call with the same error
                for object_id in rec.return_ids:
                    rt.objects.set_ready(object_id, rec.failed_blob, True)
            else:
                self.calls[rec.call_id] = rec
                message = ("actor_call", actor_id, rec.call_id, rec.method, rec.args_blob, inlined,
                           len(rec.return_ids))
                rt.send(state.location, message if rec.overrides is None else message + (rec.overrides,))

    def _set_location(self, actor_id, worker, max_task_retries=None):
        state = self._state(actor_id)
        if worker is None:                 # the owner (or the head, once the owner died) says it is gone
            state.locating = False
            if state.dead_blob is None:
                owner = owner_of(actor_id)
                why = (f"its owner (rank {owner}) died, and with it the actor (only a detached actor outlives its "
                       "owner)" if owner in self.rt.failures.dead else
                       "its rank died and it was not restarted (max_restarts)")
                self._mark_dead(actor_id, state, why, [])
            return
        if max_task_retries is not None:   # calls that were on the dead rank: retry or fail them
            for rec in list(state.queue):
                if rec.pending_retry:
                    rec.pending_retry = False
                    if not self._may_retry(rec, max_task_retries):
                        state.queue.remove(rec)
        state.location = worker
        state.locating = False
        for rank in state.waiting_for_location:
            self.rt.send(rank, ("actor_location", actor_id, worker, state.max_task_retries))
        state.waiting_for_location = []
        self._pump(actor_id)
        if state.kill_requested:
            state.kill_requested = False
            self.rt.send(worker, ("actor_kill", actor_id))

    def _apply_handle_events(self):
        if handle_events:
            with self.rt.lock:
                self.references.apply_events()

    def _terminate(self, actor_id):
        """No handle is left: end the actor behind the calls already made (they still run, as in Ray)."""
        state = self._state(actor_id)
        state.queue.append(self._record(actor_id, "terminate", None, None, [], 0))
        self._pump(actor_id)

    # -- handlers -----------------------------------------------------------
    def _on_placed(self, source, actor_id, worker):
        state = self.actors.get(actor_id)
        if worker in self.rt.failures.dead and state is not None and state.dead_blob is None:
            # The head placed it before it heard that ``worker`` died, and this owner heard of the
            # death before the placement: nothing will ever run there, so ask for a place again.
            self.rt.send(HEAD_RANK, ("actor_place", actor_id, state.placement, state.held))
            return
        self._set_location(actor_id, worker)

    def _on_locate(self, source, actor_id):
        state = self._state(actor_id)
        if state.dead_blob is not None:
            self.rt.send(source, ("actor_location", actor_id, None, 0))
        elif state.location is not None:
            self.rt.send(source, ("actor_location", actor_id, state.location, state.max_task_retries))
        else:
            state.waiting_for_location.append(source)

    def _on_location(self, source, actor_id, worker, max_task_retries=None):
        self._set_location(actor_id, worker, max_task_retries)

    def _on_kill_restart(self, source, actor_id):
        """At the owner: ``kill(no_restart=False)``. With restarts left (``max_restarts``; -1
        for ever) the actor's rank makes a new instance in place (same resources, same name);
        without, it is killed as by ``kill()``."""
        state = self._state(actor_id)
        if state.dead_blob is not None:
            return
        if state.restarts_left == 0:
            if state.location is not None:
                self.rt.send(state.location, ("actor_kill", actor_id))
            else:
                state.kill_requested = True
            return
        if state.restarts_left > 0:
            state.restarts_left -= 1
        state.restarts += 1
        if state.location is not None:
            self.rt.send(state.location, ("actor_restart", actor_id))
        # Not placed yet: its first instance is still to come, which is what a restart gives.

    def _on_unplaceable(self, source, actor_id, why):
        """At the owner: the head cannot place the actor on any live rank."""
        state = self._state(actor_id)
        if state.dead_blob is None:
            self._mark_dead(actor_id, state, why, [])

    def _on_restarted(self, source, actor_id):
        """At the owner: the actor's host restarted it in place after ``sys.exit()`` in a
        method (actor_host._process_exit): one restart fewer left."""
        state = self._state(actor_id)
        if state.restarts_left > 0:
            state.restarts_left -= 1
        state.restarts += 1

    # -- worker deaths (ULFM) --------------------------------------------------
    def _on_rank_dead(self, rank):
        """Actors on ``rank`` restart elsewhere (their owner re-places them and runs ``__init__``
        again) while ``max_restarts`` allows; the calls they were running are sent again while
        ``max_task_retries`` allows. Otherwise their calls fail with ActorDiedError."""
        me = self.rt.rank
        for actor_id, state in list(self.actors.items()):
            owner = owner_of(actor_id)
            if state.dead_blob is not None:
                continue
            if state.location != rank:
                if owner == rank and state.location is None and owner != me and state.locating:
                    self._ask_location(actor_id, state)   # the owner will not answer now
                continue
            inflight = sorted((c for c in self.calls.values() if c.actor_id == actor_id), key=lambda c: c.call_id)
            for rec in inflight:
                del self.calls[rec.call_id]
            state.location = None
            if owner == me:
                if state.create_message is None or state.restarts_left == 0:
                    self._mark_dead(actor_id, state, f"its rank ({rank}) died and it has no restarts left "
                                                     "(max_restarts)", inflight)
                    continue
                if state.restarts_left > 0:
                    state.restarts_left -= 1
                state.restarts += 1
                for rec in reversed(inflight):
                    if self._may_retry(rec, state.max_task_retries):
                        state.queue.appendleft(rec)
                state.queue.appendleft(self._record(actor_id, "recreate", "__init__", None, [], 0))
                self.rt.send(HEAD_RANK, ("actor_place", actor_id, state.placement, state.held))
            elif owner == rank or owner in self.rt.failures.dead:
                self._mark_dead(actor_id, state, f"its rank ({rank}) died, and its owner (rank {owner}), who "
                                                 "could restart it, is dead", inflight)
            else:
                for rec in reversed(inflight):
                    rec.pending_retry = True   # the owner's answer says whether it may run again
                    state.queue.appendleft(rec)
                self._ask_location(actor_id, state)

    def _may_retry(self, rec, max_task_retries):
        """A call whose actor died under it: count a retry and say True, or fail it and say False."""
        if rec.max_retries is not None:   # the method's own (@method or .options())
            max_task_retries = rec.max_retries
        if max_task_retries == -1 or rec.retries_used < max_task_retries:
            rec.retries_used += 1
            return True
        self._fail(rec, self._died_blob(rec.actor_id, "its rank died during the call, which has no retries "
                                                      "left (max_task_retries)"))
        return False

    @staticmethod
    def _died_blob(actor_id, why):
        return dumps(ErrorPayload(ActorDiedError(f"actor {actor_id:028x} died: {why}")))

    def _fail(self, rec, blob):
        for object_id in rec.return_ids:
            self.rt.objects.set_ready(object_id, blob, True)

    def _mark_dead(self, actor_id, state, why, inflight):
        if owner_of(actor_id) == self.rt.rank:
            # Dead for good (no host said so if it died with its rank): the head frees its name.
            self.rt.send(HEAD_RANK, ("actor_dead", actor_id))
        state.dead_blob = self._died_blob(actor_id, why)
        for rec in list(inflight) + list(state.queue):
            self._fail(rec, state.dead_blob)
        state.queue.clear()
        for waiting in state.waiting_for_location:
            self.rt.send(waiting, ("actor_location", actor_id, None, 0))
        state.waiting_for_location = []

    def _on_done(self, source, call_id, blobs, is_error):
        rec = self.calls.pop(call_id, None)
        if rec is None:
            return
        for object_id, blob in zip(rec.return_ids, blobs):
            self.rt.objects.set_ready(object_id, blob, is_error)

