"""Calling actors from any rank: creation, placement, and method calls in order.

The rank that creates an actor owns it: it asks the head to place it, sends the constructor to the
chosen worker, and tells other ranks where the actor lives (``actor_locate``). Each rank keeps one
queue per actor; a call leaves the queue only when its ObjectRef arguments are ready and every
earlier call has left, so calls from one caller run in submission order.

What one rank knows of an actor is an ``ActorRecord`` (its lifecycle: docs/architecture.md, "Lifecycles"):
calls are sent only while it is ALIVE and fail at once when it is DEAD.
"""
import collections
import enum
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from ..exceptions import ActorDiedError, ErrorPayload, TaskCancelledError
from .codec import dumps
from .lifecycle import refuse
from .object_ref import ObjectRef, owner_of
from .protocol import HEAD_RANK
from .rank_state import finished_tasks
from .reachability import ReferenceCounter

# Actor handles post (actor_id, event) here from __init__/__del__/__reduce__ (no locks
# there: destructors run anywhere); the progress thread applies them.
handle_events: collections.deque = collections.deque()

_NO_VALUES: dict = {}  # the inlined argument values of a call without ObjectRef arguments (never changed)


class CallRecord:
    """One creation, call or termination queued or sent by this rank."""

    __slots__ = ("call_id", "actor_id", "kind", "method", "args_blob", "dep_refs", "deps_left", "return_ids",
                 "failed_blob", "extra", "retries_used", "pending_retry", "overrides", "max_retries")

    def use_retry(self, max_task_retries):
        """Count one retry of a call its actor's death interrupted: False when none is left. The limit is
        the method's own (@method or .options()), else the actor's ``max_task_retries``; -1 is unlimited."""
        limit = max_task_retries if self.max_retries is None else self.max_retries
        if limit != -1 and self.retries_used >= limit:
            return False
        self.retries_used += 1
        return True


class ActorState(enum.IntEnum):
    """Where an actor is, as one rank calling it sees it (Ray's ``ActorState`` names where they match)."""
    UNKNOWN = 0           # a borrower that has not asked where it lives yet
    PENDING_CREATION = 1  # the owner waits for the head to place it
    LOCATING = 2          # a borrower asked the owner (the head, once the owner died) where it lives
    ALIVE = 3             # its rank is known: calls are sent there
    RESTARTING = 4        # the owner: its rank died, the head is asked to place it again
    DEAD = 5              # gone for good: calls fail with its ActorDiedError


UNKNOWN, PENDING_CREATION, LOCATING, ALIVE, RESTARTING, DEAD = ActorState


class ActorRecord:
    """What this rank knows of one actor. ``state`` changes only through the methods below, each of which checks
    the state it leaves; ``location`` is set exactly while ALIVE. ``ActorCaller`` sends the messages they call for."""

    __slots__ = ("actor_id", "state", "location", "queue", "kill_requested", "waiting_for_location",
                 "restarts_left", "restarts", "max_task_retries", "placement", "held", "constraint", "create_message",
                 "dead_blob", "class_name", "name")

    def __init__(self, actor_id):
        self.actor_id = actor_id
        self.state = UNKNOWN
        self.location = None
        self.queue = collections.deque()
        self.kill_requested = False     # kill() before the location was known: sent once ALIVE
        self.waiting_for_location = []  # ranks that asked the owner where the actor is
        # Known at the owner: what restarting the actor after its rank died takes.
        self.restarts_left = 0
        self.restarts = 0               # restarts so far (the host reports was_current_actor_reconstructed)
        self.max_task_retries = 0
        self.placement = self.held = self.constraint = None   # constraint: where it must go (placement group)
        self.create_message = None
        self.dead_blob = None           # the ActorDiedError its calls fail with, once DEAD
        self.class_name = self.name = None   # known at the owner (the state API)

    def _leave(self, *allowed):
        if self.state not in allowed:
            refuse(f"actor {self.actor_id:028x}", self.state, allowed, ActorState)

    def placement_asked(self):
        """UNKNOWN -> PENDING_CREATION: this rank created the actor and asked the head for a place."""
        self._leave(UNKNOWN)
        self.state = PENDING_CREATION

    def location_asked(self):
        """UNKNOWN, LOCATING or ALIVE -> LOCATING: a borrower asks where the actor lives (again from
        LOCATING when the owner it asked died; from ALIVE when the actor's rank died)."""
        self._leave(UNKNOWN, LOCATING, ALIVE)
        self.state = LOCATING
        self.location = None

    def located(self, worker):
        """PENDING_CREATION, RESTARTING, LOCATING or ALIVE -> ALIVE on ``worker``: the head placed it
        (owner) or an answer came (borrower; one that asked the head after the owner died may get the
        owner's answer too, hence ALIVE)."""
        self._leave(PENDING_CREATION, RESTARTING, LOCATING, ALIVE)
        self.state = ALIVE
        self.location = worker

    def restarting(self):
        """ALIVE -> RESTARTING: the owner saw its rank die and asks the head for a new place."""
        self._leave(ALIVE)
        self.state = RESTARTING
        self.location = None

    def died(self, blob):
        """PENDING_CREATION, LOCATING, ALIVE or RESTARTING -> DEAD: its calls fail with ``blob`` from now on."""
        self._leave(PENDING_CREATION, LOCATING, ALIVE, RESTARTING)
        self.state = DEAD
        self.location = None
        self.dead_blob = blob

    def count_restart(self):
        """One restart happened (in place at the host, or by the owner): one fewer left (-1: unlimited)."""
        if self.restarts_left > 0:
            self.restarts_left -= 1
        self.restarts += 1

    def use_restart(self):
        """Count a restart the owner decides on: False, and nothing counted, when none is left."""
        if self.restarts_left == 0:
            return False
        self.count_restart()
        return True


class ActorCaller:
    """This rank's side of every actor it created or calls: records, calls in flight, owner and caller handlers."""

    def __init__(self, runtime):
        self.rt = runtime
        self.actors = {}
        self.calls = {}
        self.references = ReferenceCounter(runtime, "actor_ref", handle_events, owner_of,
                                           self._terminate)  # unnamed actors only
        runtime.register(actor_placed=self._on_placed, actor_locate=self._on_locate, actor_location=self._on_location,
                         actor_done=self._on_done, actor_kill_restart=self._on_kill_restart,
                         actor_restarted=self._on_restarted, actor_unplaceable=self._on_unplaceable,
                         actor_pending=self._on_pending)
        runtime.failures.handlers.append(self._on_rank_dead)
        runtime.transport.add_ticker(0.02, self._apply_handle_events)

    def _state(self, actor_id):
        state = self.actors.get(actor_id)
        if state is None:
            state = self.actors[actor_id] = ActorRecord(actor_id)
        return state

    def location_of(self, actor_id: int) -> Optional[int]:
        """The rank the actor lives on, if this rank knows it (runtime lock held)."""
        state = self.actors.get(actor_id)
        return state.location if state is not None else None

    # -- caller threads ------------------------------------------------------
    def create(self, actor_id: int, class_blob: bytes, args_blob: Optional[bytes], dep_refs: Sequence[ObjectRef],
               placement: Dict[str, float], held: Dict[str, float], options: Dict[str, Any], tracked: bool,
               max_restarts: int = 0, max_task_retries: int = 0, constraint: Any = None) -> None:
        with self.rt.lock:
            if tracked:
                self.references.track(actor_id)
            state = self._state(actor_id)
            state.restarts_left, state.max_task_retries = max_restarts, max_task_retries
            state.placement, state.held, state.constraint = placement, held, constraint
            state.class_name, state.name = options.get("class_name"), options.get("name")
            rec = self._record(actor_id, "create", "__init__", args_blob, dep_refs, 0)
            rec.extra = (class_blob, {**options, "max_restarts": max_restarts, "held": held})
            state.queue.append(rec)
            self._watch_dependencies(rec)
            state.placement_asked()
            self.rt.send(HEAD_RANK, ("actor_place", actor_id, placement, held, constraint))

    def call(self, actor_id: int, method: str, args_blob: Optional[bytes], dep_refs: Sequence[ObjectRef],
             num_returns: int, overrides: Optional[Dict[str, Any]] = None,
             max_retries: Optional[int] = None) -> List[ObjectRef]:
        """``overrides``: per-call options for the host (concurrency_group, max_task_retries, retry_exceptions,
        name), None for a plain call; ``max_retries``: the method's own ``max_task_retries`` (None: the actor's)."""
        rt = self.rt
        with rt.lock:
            state = self.actors.get(actor_id) or self._state(actor_id)
            rec = self._record(actor_id, "call", method, args_blob, dep_refs, num_returns, overrides, max_retries)
            refs = list(map(rt.objects.owned_ref, rec.return_ids))
            lifecycle = state.state
            if lifecycle is ALIVE and not dep_refs and not state.queue:
                # The common case: nothing to wait for and no earlier call queued: it goes now.
                self.calls[rec.call_id] = rec
                message: tuple = ("actor_call", actor_id, rec.call_id, method, args_blob, _NO_VALUES, num_returns)
                if overrides is not None:
                    message += (overrides,)
                if state.location == rt.rank:
                    rt.transport.send_local(message)   # the actor lives here: straight to its thread
                else:
                    rt.send(state.location, message)
            elif lifecycle is DEAD:
                self._fail(rec, state.dead_blob)
            else:
                if lifecycle is UNKNOWN and owner_of(actor_id) != rt.rank:
                    self._ask_location(actor_id, state)
                state.queue.append(rec)
                self._watch_dependencies(rec)
                self._pump(actor_id)
        return refs

    def kill(self, actor_id: int, no_restart: bool = True) -> None:
        rt = self.rt
        with rt.lock:
            owner = owner_of(actor_id)
            if not no_restart and owner not in rt.failures.dead:   # only the owner could restart it
                # Only the owner counts restarts: it decides between a restart and the end.
                if owner == rt.rank:
                    self._on_kill_restart(rt.rank, actor_id)
                else:
                    rt.send(owner, ("actor_kill_restart", actor_id))
                return
            state = self._state(actor_id)
            if state.state is ALIVE:
                rt.send(state.location, ("actor_kill", actor_id))
            elif state.state is not DEAD:   # sent once it is ALIVE (_set_location)
                state.kill_requested = True
                if state.state is UNKNOWN and owner != rt.rank:
                    self._ask_location(actor_id, state)

    def cancel_call(self, object_id: int, force: bool, recursive: bool) -> None:
        """``cancel()`` of an actor call's result (runtime lock held; submitter._cancel_object). Still
        queued here: it never goes, and fails with TaskCancelledError. Sent: the host drops, cancels or
        flags it (actor_host._on_cancel_call). Ray refuses ``force`` for actor calls; ``recursive``
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
        elif rec.call_id in self.calls and state is not None and state.state is ALIVE:
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
        """Ask the actor's owner where it lives; once the owner is dead, ask the head, which knows where
        it placed the actor (only a detached actor outlives its owner; for any other it answers: gone)."""
        state.location_asked()
        owner = owner_of(actor_id)
        if owner in self.rt.failures.dead:
            self.rt.send(HEAD_RANK, ("actor_where", actor_id))
        else:
            self.rt.send(owner, ("actor_locate", actor_id))

    def _record(self, actor_id, kind, method, args_blob, dep_refs, num_returns, overrides=None, max_retries=None):
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
        rec.overrides = overrides
        rec.max_retries = max_retries
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
        """Send the queued records whose arguments are ready, in order, while the actor is ALIVE."""
        state = self.actors[actor_id]
        if state.state is not ALIVE:
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
                self._fail(rec, rec.failed_blob)
            else:
                self.calls[rec.call_id] = rec
                message = ("actor_call", actor_id, rec.call_id, rec.method, rec.args_blob, inlined, len(rec.return_ids))
                rt.send(state.location, message if rec.overrides is None else message + (rec.overrides,))

    def _set_location(self, actor_id, state, worker):
        """ALIVE on ``worker``: answer the ranks that asked, send what was queued, then a kill asked meanwhile."""
        state.located(worker)
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
        if state.state is not DEAD:
            state.queue.append(self._record(actor_id, "terminate", None, None, [], 0))
            self._pump(actor_id)

    # -- handlers -----------------------------------------------------------
    def _on_placed(self, source, actor_id, worker):
        state = self._state(actor_id)
        if state.state is DEAD:
            return
        if worker in self.rt.failures.dead:
            # The head placed it before it heard that ``worker`` died, and this owner heard of the
            # death before the placement: nothing will ever run there, so ask for a place again.
            self.rt.send(HEAD_RANK, ("actor_place", actor_id, state.placement, state.held, state.constraint))
            return
        self._set_location(actor_id, state, worker)

    def _on_locate(self, source, actor_id):
        state = self._state(actor_id)
        if state.state is DEAD:
            self.rt.send(source, ("actor_location", actor_id, None, 0))
        elif state.state is ALIVE:
            self.rt.send(source, ("actor_location", actor_id, state.location, state.max_task_retries))
        else:
            state.waiting_for_location.append(source)

    def _on_location(self, source, actor_id, worker, max_task_retries=None):
        """A borrower's answer, from the owner or (once the owner died) the head: where the actor lives, or None
        once it is gone for good. A late second answer to a DEAD actor is dropped."""
        state = self._state(actor_id)
        if state.state is DEAD:
            return
        if worker is None:
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
        self._set_location(actor_id, state, worker)

    def _on_kill_restart(self, source, actor_id):
        """At the owner: ``kill(no_restart=False)``. With restarts left the actor's rank makes a new instance
        in place (same resources, same name); without, it is killed. Either way the host does it: ALIVE here."""
        state = self._state(actor_id)
        if state.state is DEAD:
            return
        if not state.use_restart():
            if state.state is ALIVE:
                self.rt.send(state.location, ("actor_kill", actor_id))
            else:
                state.kill_requested = True
            return
        if state.state is ALIVE:
            self.rt.send(state.location, ("actor_restart", actor_id))
        # Not placed yet: its first instance is still to come, which is what a restart gives.

    def _on_unplaceable(self, source, actor_id, why):
        """At the owner: the head cannot place the actor on any live rank."""
        state = self._state(actor_id)
        if state.state is not DEAD:
            self._mark_dead(actor_id, state, why, [])

    def _on_pending(self, source, actor_id, why, waited_s):
        """At the owner: the head has not placed the actor for a while; say why, once (it still waits)."""
        state = self._state(actor_id)
        if state.state is not DEAD:
            sys.stderr.write(f"mpirt: the actor {state.class_name or ''} ({actor_id:x}) has waited {waited_s} s to be "
                             f"placed: {why}. It is placed when that frees up (remove a placement group, end "
                             f"an actor, or give it num_cpus=0).\n")

    def _on_restarted(self, source, actor_id):
        """At the owner: the host restarted the actor in place after ``sys.exit()`` in a method (_process_exit)."""
        self._state(actor_id).count_restart()

    # -- worker deaths (ULFM) --------------------------------------------------
    def _on_rank_dead(self, rank):
        """Actors on ``rank`` restart elsewhere (their owner re-places them) while ``max_restarts`` allows;
        their running calls are sent again while ``max_task_retries`` allows, else fail with ActorDiedError."""
        for actor_id, state in list(self.actors.items()):
            if state.state is DEAD:
                continue
            owner = owner_of(actor_id)
            if state.location != rank:
                if owner == rank and state.state is LOCATING:
                    self._ask_location(actor_id, state)   # the owner will not answer now
                continue
            inflight = sorted((c for c in self.calls.values() if c.actor_id == actor_id), key=lambda c: c.call_id)
            for rec in inflight:
                del self.calls[rec.call_id]
            if owner == self.rt.rank:
                self._restart_or_die(actor_id, state, rank, inflight)
            elif owner == rank or owner in self.rt.failures.dead:
                self._mark_dead(actor_id, state, f"its rank ({rank}) died, and its owner (rank {owner}), who "
                                                 "could restart it, is dead", inflight)
            else:
                for rec in reversed(inflight):
                    rec.pending_retry = True   # the owner's answer says whether it may run again
                    state.queue.appendleft(rec)
                self._ask_location(actor_id, state)

    def _restart_or_die(self, actor_id, state, rank, inflight):
        """At the owner, the actor's rank died: RESTARTING with the calls it ran (those with retries left)
        first again, behind a re-creation, or DEAD without restarts left."""
        if state.create_message is None or not state.use_restart():
            self._mark_dead(actor_id, state, f"its rank ({rank}) died and it has no restarts left "
                                             "(max_restarts)", inflight)
            return
        state.restarting()
        for rec in reversed(inflight):
            if self._may_retry(rec, state.max_task_retries):
                state.queue.appendleft(rec)
        state.queue.appendleft(self._record(actor_id, "recreate", "__init__", None, [], 0))
        self.rt.send(HEAD_RANK, ("actor_place", actor_id, state.placement, state.held, state.constraint))

    def _may_retry(self, rec, max_task_retries):
        """A call whose actor died under it: count a retry and say True, or fail it and say False."""
        if rec.use_retry(max_task_retries):
            return True
        self._fail(rec, self._died_blob(rec.actor_id, "its rank died during the call, which has no retries "
                                                      "left (max_task_retries)"))
        return False

    @staticmethod
    def _died_blob(actor_id, why):
        return dumps(ErrorPayload(ActorDiedError(f"actor {actor_id:028x} died: {why}")))

    def _fail(self, rec, blob):
        if rec.kind == "call":
            self._record_finished(rec, None, blob)
        for object_id in rec.return_ids:
            self.rt.objects.set_ready(object_id, blob, True)

    def _record_finished(self, rec, worker, error_blob):
        """Keep a finished call for the state API (``rank_state.finished_tasks``, bounded)."""
        finished_tasks.append((rec.call_id, rec.method, rec.method, "ACTOR_TASK", rec.actor_id, worker, error_blob,
                               time.time(), rec.retries_used, None))

    def _mark_dead(self, actor_id, state, why, inflight):
        """DEAD: the calls in flight and queued fail, and the ranks waiting for its location hear it is gone."""
        if owner_of(actor_id) == self.rt.rank:
            # Dead for good (no host said so if it died with its rank): the head frees its name.
            self.rt.send(HEAD_RANK, ("actor_dead", actor_id))
        state.died(self._died_blob(actor_id, why))
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
        failed = any(is_error) if type(is_error) is list else is_error
        self._record_finished(rec, source, blobs[0] if failed and blobs else None)
        for object_id, blob in zip(rec.return_ids, blobs):
            self.rt.objects.set_ready(object_id, blob, is_error)
