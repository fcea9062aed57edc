"""Submitting tasks: dependency resolution, leases, pipelined dispatch, retries.

The submitting rank owns the task's return objects. A task waits here until its top-level ObjectRef arguments
are ready (their values are then inlined into the task), joins the queue for its resource shape, and is sent
straight to a worker leased from the head scheduler. Several tasks may be in flight on one lease when tasks of
that shape are short; the lease goes back when the queue is empty.
"""
import collections
import enum
import os
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..exceptions import TaskPlacementGroupRemoved, TaskUnschedulableError, WorkerCrashedError
from .call_context import task_context
from .codec import INLINE_THRESHOLD
from .invoke import error_blobs, task_cancelled
from .lifecycle import refuse
from .object_ref import ObjectRef, owner_of, session_of
from .object_value import is_inline, placement
from .protocol import HEAD_RANK
from .rank_state import finished_tasks

# Tasks of a shape whose average run time is below this are pipelined on a lease: a lease then holds
# PIPELINE_SECONDS of their work (by that average), at least 2 and at most MAX_PIPELINE_DEPTH tasks. Enough
# that the worker has the next tasks before it answers the last ones (it answers a batch at a time), little
# enough that one lease does not hold work another could start now. No-op tasks: 16 in flight made 29-32k
# tasks/s, 48-64 made 35-39k (2-core VM, 2 workers).
SHORT_TASK_SECONDS = 2e-3
PIPELINE_SECONDS = 1e-3
MAX_PIPELINE_DEPTH = 64
# Tasks queued behind a task that has run this long on a lease are taken back
# ("stolen") and sent elsewhere, so a long task never holds up short ones.
STEAL_AFTER_SECONDS = 0.01
# An idle lease is kept this long before it goes back, so a loop of synchronous
# calls does not pay a round trip to the head per task.
LEASE_LINGER_SECONDS = 0.01
# A task preferring another worker rank (locality) waits this long for a lease there; then
# an idle lease anywhere takes it (that rank may be busy with long tasks).
PREFERENCE_WAIT_SECONDS = 2e-3


# Ray's limits on a pickled function or class (ray_constants.FUNCTION_SIZE_*): a warning above
# the first, ValueError from the second on (the variable raises or lowers it).
FUNCTION_SIZE_WARN_THRESHOLD = 10**7
FUNCTION_SIZE_ERROR_THRESHOLD = int(os.environ.get("MPIRT_FUNCTION_SIZE_ERROR_THRESHOLD", 10**8))


def check_pickled_size(blob, kind, name):
    """Ray's check of a pickled remote function or actor class (``kind``): a warning naming it over 10 MB,
    ValueError from 100 MB (usually a large array captured from the enclosing scope by accident)."""
    size = len(blob)
    if size <= FUNCTION_SIZE_WARN_THRESHOLD:
        return
    tip = ("Check that its definition is not implicitly capturing a large array or other object in scope. "
           "Tip: use ray.put() to put large objects in the Ray object store.")
    if size >= FUNCTION_SIZE_ERROR_THRESHOLD:
        raise ValueError(f"The {kind} {name} is too large ({size // 2**20} MiB > FUNCTION_SIZE_ERROR_THRESHOLD="
                         f"{FUNCTION_SIZE_ERROR_THRESHOLD // 2**20} MiB). {tip}")
    warnings.warn(f"The {kind} {name} is very large ({size // 2**20} MiB). {tip} (mpirt stores it in the object "
                  f"store once; each worker reads it from there.)", UserWarning, stacklevel=2)


class FunctionDescriptor:
    """A function as it travels: an id workers cache it under, and its pickle, sent to each worker with the
    first task of the function. A pickle larger than the store's inline limit goes into the object store instead,
    once per process and session (``stored``), and workers get its ObjectRef: a worker on the submitter's node
    then reads it from shared memory rather than from a message of its own."""

    __slots__ = ("function_id", "blob", "stored", "function_name")

    def __init__(self, function_id, blob, name):
        check_pickled_size(blob, "remote function", name)
        self.function_name = name.rpartition(".")[2]   # its __name__: func_or_class_name in the state API
        self.function_id = function_id
        self.blob = blob
        self.stored = None

    def store_once(self, rt):
        """Put a large pickle into ``rt``'s object store (caller thread), unless this session has it already
        (a descriptor outlives ``shutdown()``; refs do not)."""
        if len(self.blob) > INLINE_THRESHOLD and (self.stored is None or session_of(self.stored.id) != rt.session):
            self.stored = rt.put(np.frombuffer(self.blob, dtype=np.uint8))   # read back as a view, not a copy


class TaskState(enum.IntEnum):
    """Where a task of this rank is, as its submitter sees it."""
    WAITING = 0    # for its arguments
    QUEUED = 1     # for a lease
    SENT = 2       # to a worker, running or queued there
    FINISHED = 3   # its results are set (values or the error); kept only as lineage


WAITING, QUEUED, SENT, FINISHED = TaskState


class TaskRecord:
    """One task submitted by this rank. Its state changes only through the methods below, each
    of which checks the state it leaves; ``use_retry`` is the one place retries are counted."""

    __slots__ = ("task_id", "function", "args_blob", "dep_refs", "deps_left", "return_ids", "key", "shape", "state",
                 "retries_left", "retries_used", "retry_exceptions", "lease", "name", "preferred", "near_actor", "queued_at",
                 "environment", "parent", "cancelled", "placement", "stream")
    task_id: int
    function: "FunctionDescriptor"
    args_blob: Optional[bytes]            # the pickled arguments (refs in it as ArgRef), None: none
    dep_refs: Sequence[ObjectRef]         # top-level ref arguments, resolved before it is sent
    deps_left: int
    return_ids: List[int]
    key: Any                              # its shape's key: tasks of one key share leases
    shape: Dict[str, float]
    state: TaskState
    retries_left: int                     # -1: unlimited
    retries_used: int                     # its attempt number (0: the first run), as the state API shows it
    retry_exceptions: Any
    lease: Any                            # the Lease it was sent on, while SENT
    name: str
    preferred: Optional[int]              # the rank it would best run on
    near_actor: Optional[int]
    queued_at: float
    environment: Any                      # its runtime_env beyond the job's
    parent: Any                           # the task that submitted it, on a worker rank
    cancelled: bool
    placement: Optional[tuple]            # (group id, bundle index, capture child tasks) in a placement group
    stream: Optional[int]                 # a streaming generator's backpressure (streams.py); None: not one

    def _leave(self, *allowed):
        if self.state not in allowed:
            self._refuse(*allowed)

    def _refuse(self, *allowed):
        refuse(f"task {self.name} ({self.task_id:x})", self.state, allowed, TaskState)

    def arguments_ready(self):
        """WAITING -> QUEUED: every argument is ready; it waits for a lease."""
        if self.state is not WAITING:   # these three run per task: the check is inline
            self._refuse(WAITING)
        self.state = QUEUED

    def sent(self, lease):
        """QUEUED -> SENT: on its way to ``lease``'s worker."""
        if self.state is not QUEUED:
            self._refuse(QUEUED)
        self.state = SENT
        self.lease = lease

    def given_back(self):
        """SENT -> QUEUED without using a retry: the worker gave it back unstarted (stolen)."""
        self._leave(SENT)
        self.state = QUEUED
        self.lease = None

    def use_retry(self):
        """Count one retry: False when none is left (``max_retries``; -1 is unlimited)."""
        if self.retries_left == 0:
            return False
        if self.retries_left > 0:
            self.retries_left -= 1
        self.retries_used += 1
        return True

    def retried(self):
        """SENT -> QUEUED using a retry (it failed retryably, or its worker died); False, unchanged, if none is left."""
        self._leave(SENT)
        if not self.use_retry():
            return False
        self.state = QUEUED
        self.lease = None
        return True

    def cancel_sent(self):
        """A cancel reaches it while SENT: it must not run again."""
        self._leave(SENT)
        self.retries_left = 0
        self.cancelled = True

    def finished(self):
        """WAITING, QUEUED or SENT -> FINISHED: its results are being set."""
        if self.state == FINISHED:
            self._refuse(WAITING, QUEUED, SENT)
        self.state = FINISHED

    def rebuilt(self, task_id, pending):
        """FINISHED -> WAITING, as ``task_id``, using a retry: a stored result of it died with its worker
        (lineage reconstruction). False, unchanged, if no retry is left."""
        self._leave(FINISHED)
        if not self.use_retry():
            return False
        self.task_id = task_id
        self.lease = None
        self.state = WAITING
        self.deps_left = pending
        return True


class Lease:
    __slots__ = ("lease_id", "worker", "key", "inflight", "idle_since", "last_progress", "steal_pending", "fresh")

    def __init__(self, lease_id, worker, key):
        self.lease_id = lease_id
        self.worker = worker
        self.key = key
        self.inflight = 0
        self.idle_since = None
        self.last_progress = time.monotonic()  # last send to an idle lease, or last completion
        self.steal_pending = False
        self.fresh = True   # just granted: the head placed it knowing the preference it was asked for


class TaskSubmitter:
    def __init__(self, runtime):
        self.rt = runtime
        self.tasks = {}                               # task_id -> TaskRecord, until finished
        self.task_of_object = {}                      # return object id -> task_id
        self.queues = collections.defaultdict(collections.deque)
        self.leases = collections.defaultdict(list)   # shape key -> [Lease]
        self.leases_by_id = {}
        self.requested = collections.defaultdict(int)  # shape key -> lease requests in flight
        self.shapes = {}
        self.constraints = {}                         # key -> where its tasks must run (options.placement_constraint)
        self.removed_groups = set()                   # placement groups the head said are removed
        self.task_seconds = {}                        # shape key -> moving average run time
        self.sent_functions = set()                   # (worker, function_id)
        # Lineage: the finished task behind each result kept in a worker's store, so the result
        # can be made again if that worker dies (results inline at the owner need none).
        self.lineage = {}                             # object id -> TaskRecord
        # Tasks cancelled with force=True while at a worker: finished here already, their lease
        # slot still taken until the worker says the task ended.
        self.abandoned = {}                           # task_id -> Lease
        self._to_pump = set()                         # keys whose leases got room in the batch being handled
        runtime.register(lease_grant=self._on_lease_grant, done=self._on_done, stolen=self._on_stolen,
                         cancel_request=self._on_cancel_request, lease_unschedulable=self._on_lease_unschedulable,
                         group_removed=self._on_group_removed)
        runtime.failures.handlers.append(self._on_rank_dead)
        runtime.transport.add_ticker(LEASE_LINGER_SECONDS / 2, self._check_leases)

    # -- submission (caller thread) -------------------------------------------
    def submit(self, function: "FunctionDescriptor", args_blob: Optional[bytes], dep_refs: Sequence[ObjectRef],
               num_returns: int, key: Any, shape: Dict[str, float], max_retries: int, retry_exceptions: Any,
               name: str, near_actor: Optional[int] = None, environment: Any = None, constraint: Any = None,
               placement: Optional[tuple] = None, stream: Optional[int] = None) -> List[ObjectRef]:
        """Queue a task; ``near_actor`` (an actor passed to it) makes that actor's rank its preferred place when
        no large argument decides it. ``environment``: its runtime_env beyond the job's, applied by the worker.
        ``constraint`` and ``placement``: where it must run (``options.placement_constraint``; part of ``key``).
        ``stream``: it is a streaming generator (``streams.py``) with that backpressure (0: none)."""
        rt = self.rt
        function.store_once(rt)
        parent = task_context.task   # the task submitting it, on a worker rank
        with rt.lock:
            rec = TaskRecord()
            rec.task_id = rt.next_id()
            rec.function = function
            rec.args_blob = args_blob
            rec.dep_refs = dep_refs
            rec.return_ids = [rt.next_id() for _ in range(num_returns)]
            rec.key, rec.shape = key, shape
            rec.state = WAITING
            rec.retries_left = max_retries
            rec.retries_used = 0
            rec.retry_exceptions = retry_exceptions
            rec.lease = None
            rec.name = name
            rec.preferred = None
            rec.near_actor = near_actor
            rec.environment = environment
            rec.parent = parent
            rec.cancelled = False
            rec.placement = placement
            rec.stream = stream
            if constraint is not None:
                self.constraints[key] = constraint
            if parent is not None:
                parent.children.add(rec.task_id)
            rec.deps_left = len(dep_refs)
            self.shapes[key] = shape
            self.tasks[rec.task_id] = rec
            refs = list(map(rt.objects.owned_ref, rec.return_ids))
            for object_id in rec.return_ids:
                self.task_of_object[object_id] = rec.task_id
            if not dep_refs:
                self._enqueue(rec)
            for ref in dep_refs:
                rt.objects.on_ready(ref.id, self._dependency_ready(rec))
        return refs

    def _dependency_ready(self, rec):
        def callback(object_id, entry):
            if rec.state != WAITING:
                return
            if entry.is_error:  # a failed dependency fails this task with the same error
                self._finish(rec, [entry.blob] * len(rec.return_ids), True)
                return
            rec.deps_left -= 1
            if rec.deps_left == 0:
                self._enqueue(rec)

        return callback

    def _enqueue(self, rec):
        rec.arguments_ready()
        rec.queued_at = time.monotonic()
        if rec.placement is not None and rec.placement[0] in self.removed_groups:
            self._finish(rec, error_blobs(TaskPlacementGroupRemoved(), len(rec.return_ids)), True)
            return
        preferred = None if rec.key in self.constraints else self._holder_of_largest_argument(rec)
        if preferred is None and rec.near_actor is not None and rec.key not in self.constraints:
            preferred = self.rt.actors.location_of(rec.near_actor)  # its calls then skip MPI
        if preferred is not None and not self.rt.cluster.rank_could_run(preferred, rec.shape):
            preferred = None   # that rank could never run it: no point waiting for it
        rec.preferred = preferred
        self.queues[rec.key].append(rec)
        self._pump(rec.key)

    def _holder_of_largest_argument(self, rec):
        """The rank whose store segment holds the task's biggest argument, if any is stored."""
        best, best_size = None, 0
        entries = self.rt.objects.entries
        for ref in rec.dep_refs:
            entry = entries.get(ref.id)
            where = placement(entry.blob) if entry is not None else None
            if where is not None and where[1] > best_size:
                best, best_size = where
        return best

    # -- leases and dispatch (under lock) --------------------------------------
    def _pump(self, key):
        queue = self.queues[key]
        leases = self.leases[key]
        average = self.task_seconds.get(key)
        short = average is not None and average < SHORT_TASK_SECONDS
        pipelined = max(2, min(MAX_PIPELINE_DEPTH, int(PIPELINE_SECONDS / max(average, 1e-6)))) if short else 1
        now = time.monotonic()
        workers = self.rt.cluster.worker_ranks
        for lease in leases:
            # Pipeline only on a lease whose tasks are short and still completing.
            depth = pipelined if now - lease.last_progress < SHORT_TASK_SECONDS else 1
            while queue and lease.inflight < depth:
                rec = self._next_for(queue, lease.worker, lease.inflight > 0, lease.fresh, workers, now)
                if rec is None:
                    break
                if rec.state == QUEUED:
                    # A lease with room on the rank that holds the task's large argument (locality), else this one.
                    local = rec.preferred is not None and next(
                        (x for x in leases if x.worker == rec.preferred and x.inflight < depth), None)
                    self._send(rec, local or lease)
            lease.fresh = False
            if lease.inflight == 0 and lease.idle_since is None:
                lease.idle_since = time.monotonic()
        while queue and queue[0].state != QUEUED:
            queue.popleft()
        if queue:
            wanted = min(len(queue), max(1, len(self.rt.cluster.worker_ranks)))
            while self.requested[key] < wanted:
                # The n-th outstanding request asks for the place the n-th queued task prefers.
                preferred = queue[min(self.requested[key], len(queue) - 1)].preferred
                self.requested[key] += 1
                self.rt.send(HEAD_RANK, ("lease_req", key, self.shapes[key], preferred, self.constraints.get(key)))

    @staticmethod
    def _next_for(queue, worker, pipelined, fresh, workers, now, lookahead=8):
        """The next queued task for a lease on ``worker``: among the first few, one that prefers ``worker``;
        else the oldest that prefers no other worker rank. A task preferring another worker waits for a lease of
        its own (the request names its preference, and the head grants that rank when it has room), except on a
        lease that is idle and either ``fresh`` (the head just placed it, and found no room there) or the task
        has waited ``PREFERENCE_WAIT_SECONDS``. None if nothing should go to this lease now."""
        fallback = None
        for i in range(min(lookahead, len(queue))):
            rec = queue[i]
            preferred = rec.preferred
            if preferred == worker:
                fallback = i
                break
            if fallback is None and (preferred is None or preferred not in workers or (
                    not pipelined and (fresh or now - rec.queued_at >= PREFERENCE_WAIT_SECONDS))):
                fallback = i
        if fallback is None:
            return None
        rec = queue[fallback]
        del queue[fallback]
        return rec

    def _send(self, rec, lease):
        rec.sent(lease)
        if lease.inflight == 0:
            lease.last_progress = time.monotonic()
        lease.inflight += 1
        lease.idle_since = None
        function = rec.function
        sent_key = (lease.worker, function.function_id)
        blob = None
        if sent_key not in self.sent_functions:
            self.sent_functions.add(sent_key)
            blob = function.blob if function.stored is None else function.stored
        entries = self.rt.objects.entries
        inlined = {ref.id: entries[ref.id].blob for ref in rec.dep_refs if ref.id in entries}
        spec = (rec.task_id, function.function_id, blob, rec.name, rec.args_blob, inlined,
                rec.return_ids, rec.retry_exceptions if rec.retries_left else None, rec.shape, rec.environment, rec.placement,
                rec.stream)
        self.rt.send(lease.worker, ("task", lease.lease_id, spec))

    def _check_leases(self):
        """Return leases idle for a while; take back tasks stuck behind a long one."""
        now = time.monotonic()
        with self.rt.lock:
            for key, leases in self.leases.items():
                if self.queues[key] and any(lease.inflight == 0 for lease in leases):
                    self._pump(key)   # tasks that waited for their preferred rank long enough go now
                for lease in list(leases):
                    if lease.inflight == 0:
                        if now - lease.idle_since > LEASE_LINGER_SECONDS:
                            self._return_lease(lease)
                    elif lease.inflight > 1 and not lease.steal_pending \
                            and now - lease.last_progress > STEAL_AFTER_SECONDS:
                        lease.steal_pending = True
                        self.rt.send(lease.worker, ("steal", lease.lease_id))

    def _on_stolen(self, source, lease_id, task_ids):
        lease = self.leases_by_id.get(lease_id)
        if lease is not None:
            lease.steal_pending = False
        keys = set()
        for task_id in reversed(task_ids):
            rec = self.tasks.get(task_id)
            if rec is None or rec.state != SENT:
                abandoned = self.abandoned.pop(task_id, None)
                if abandoned is not None:
                    abandoned.inflight -= 1
                    keys.add(abandoned.key)
                continue
            rec.lease.inflight -= 1
            keys.add(rec.key)
            if rec.cancelled:   # the cancel reached the worker after it had given the task back
                self._finish(rec, self._cancelled_blobs(rec), True)
                continue
            rec.given_back()
            self.queues[rec.key].appendleft(rec)
        for key in keys:
            self._pump(key)

    def _return_lease(self, lease):
        self.leases[lease.key].remove(lease)
        del self.leases_by_id[lease.lease_id]
        self.rt.send(HEAD_RANK, ("lease_ret", lease.lease_id))

    def _on_lease_grant(self, source, key, lease_id, worker):
        self.requested[key] -= 1
        if worker in self.rt.failures.dead:
            # Granted before the head heard that ``worker`` died (the head has dropped the lease
            # since); this rank heard first, so nothing sent there would run: ask again.
            self._pump(key)
            return
        lease = Lease(lease_id, worker, key)
        self.leases[key].append(lease)
        self.leases_by_id[lease_id] = lease
        self._pump(key)

    # -- completion ----------------------------------------------------------
    def _on_done(self, source, task_id, blobs, is_error, retryable, seconds):
        rec = self.tasks.get(task_id)
        if rec is None:
            lease = self.abandoned.pop(task_id, None)
            if lease is not None:   # a task cancelled with force=True has ended: its slot is free
                lease.inflight -= 1
                lease.last_progress = time.monotonic()
                self._to_pump.add(lease.key)
            return
        lease = rec.lease
        lease.inflight -= 1
        lease.last_progress = time.monotonic()
        average = self.task_seconds.get(rec.key)
        self.task_seconds[rec.key] = seconds if average is None else 0.8 * average + 0.2 * seconds
        if rec.state == SENT:
            if is_error and retryable and rec.retried():
                self.queues[rec.key].appendleft(rec)
            else:
                self._finish(rec, blobs, is_error)
        self._to_pump.add(rec.key)

    def pump_after_batch(self):
        """Refill the leases that tasks finished on, once per batch of messages (the transport's
        ``after_batch``): a worker answers up to MAX_PIPELINE_DEPTH tasks in one batch, and a pump per answer
        was a fifth of a submitting driver's progress thread."""
        to_pump = self._to_pump
        while to_pump:
            self._pump(to_pump.pop())

    def _finish(self, rec, blobs, is_error):
        """Set the task's results; ``is_error`` is one flag for all, or one per result (a generator with
        ``num_returns=N`` that failed after yielding some: ``invoke.generator_returns``)."""
        rec.finished()
        del self.tasks[rec.task_id]
        if rec.parent is not None:
            rec.parent.children.discard(rec.task_id)
            rec.parent = None
        objects = self.rt.objects
        stored = False
        flags = is_error if type(is_error) is list else None
        for i, (object_id, blob) in enumerate(zip(rec.return_ids, blobs)):
            failed = is_error if flags is None else flags[i]
            self.task_of_object.pop(object_id, None)
            if not failed and self.rt.failures.enabled and not is_inline(blob):   # it can be lost with a rank
                self.lineage[object_id] = rec
                stored = True
            objects.set_ready(object_id, blob, failed)
        if not stored:
            rec.dep_refs = None
        error = (blobs[0] if is_error else None) if flags is None else next(
            (blob for blob, flag in zip(blobs, flags) if flag), None)
        finished_tasks.append((rec.task_id, rec.name, rec.function.function_name, "NORMAL_TASK", None,
                               rec.lease.worker if rec.lease is not None else None, error, time.time(), rec.retries_used,
                               rec.shape))

    def _on_lease_unschedulable(self, source, key, why):
        """No live rank can take tasks of this shape any more (worker ranks died, not replaced): the queued ones
        fail with TaskUnschedulableError rather than wait for ever; those waiting for arguments, later."""
        self.requested[key] -= 1
        self._fail_queued(key, lambda rec: TaskUnschedulableError(f"task {rec.name} cannot run: {why}"))

    def _on_group_removed(self, source, group_id):
        """The placement group ``group_id`` was removed: its tasks still queued here fail with
        TaskPlacementGroupRemoved, as do any submitted to it later; its leases go back (the head
        dropped the requests for it). Tasks already running in it finish."""
        self.removed_groups.add(group_id)
        for key, constraint in self.constraints.items():
            if constraint[0] != "pg" or constraint[1] != group_id:
                continue
            self.requested[key] = 0
            self._fail_queued(key, lambda rec: TaskPlacementGroupRemoved())
            for lease in list(self.leases[key]):
                if lease.inflight == 0:
                    self._return_lease(lease)

    def _fail_queued(self, key, error_of):
        """Fail the tasks queued for ``key`` with ``error_of(task)``."""
        queue = self.queues[key]
        while queue:
            rec = queue.popleft()
            if rec.state == QUEUED:
                self._finish(rec, error_blobs(error_of(rec), len(rec.return_ids)), True)

    # -- worker deaths (ULFM) ------------------------------------------------
    def _on_rank_dead(self, rank):
        """Tasks sent to ``rank`` run again elsewhere while ``max_retries`` allows."""
        for key, leases in self.leases.items():
            for lease in [x for x in leases if x.worker == rank]:
                leases.remove(lease)
                self.leases_by_id.pop(lease.lease_id, None)
        lost = sorted((rec for rec in self.tasks.values() if rec.state == SENT and rec.lease.worker == rank),
                      key=lambda rec: rec.task_id, reverse=True)
        keys = set()
        for rec in lost:
            keys.add(rec.key)
            if rec.retried():
                self.queues[rec.key].appendleft(rec)
            else:
                error = WorkerCrashedError(f"task {rec.name} failed: its worker (rank {rank}) died while running it, "
                                           "and it has no retries left (max_retries)")
                self._finish(rec, error_blobs(error, len(rec.return_ids)), True)
        self.sent_functions = {(worker, f) for worker, f in self.sent_functions if worker != rank}
        self.abandoned = {task_id: lease for task_id, lease in self.abandoned.items() if lease.worker != rank}
        for key in keys | set(self.queues):
            self._pump(key)

    def forget_lineage(self, object_id):
        self.lineage.pop(object_id, None)

    def reconstruct(self, object_id):
        """Run the task that made ``object_id`` again (its copy died with a worker); False without lineage or retry."""
        rec = self.lineage.get(object_id)
        entries = self.rt.objects.entries
        pending = [] if rec is None else [ref for ref in rec.dep_refs
                                          if ref.id not in entries or not entries[ref.id].ready]
        if rec is None or not rec.rebuilt(self.rt.next_id(), len(pending)):
            return False
        self.tasks[rec.task_id] = rec
        for other in rec.return_ids:
            if self.lineage.get(other) is rec:
                del self.lineage[other]
            self.task_of_object[other] = rec.task_id
        if not pending:
            self._enqueue(rec)
        for ref in pending:                  # an argument that died too is being rebuilt as well
            self.rt.objects.on_ready(ref.id, self._dependency_ready(rec))
        return True

    # -- cancellation ----------------------------------------------------------
    def cancel(self, object_id: int, force: bool, recursive: bool) -> None:
        """``cancel()`` of the task or actor call producing ``object_id`` (caller thread). Its owner cancels it:
        this rank, or the one told here (no answer: Ray's cancel of a borrowed ref returns before it took effect)."""
        owner = owner_of(object_id)
        if owner != self.rt.rank:
            self.rt.send(owner, ("cancel_request", object_id, force, recursive))
            return
        with self.rt.lock:
            self._cancel_object(object_id, force, recursive)

    def _on_cancel_request(self, source, object_id, force, recursive):
        try:
            self._cancel_object(object_id, force, recursive)
        except ValueError:   # force=True on an actor call: refused, and nobody is waiting to hear it
            pass

    def _cancel_object(self, object_id, force, recursive):
        task_id = self.task_of_object.get(object_id)
        if task_id is not None:
            self.cancel_task(task_id, force, recursive)
            return
        cancel_call = getattr(self.rt.actors, "cancel_call", None)   # an actor call's result
        if cancel_call is not None:
            cancel_call(object_id, force, recursive)

    def cancel_task(self, task_id, force, recursive):
        """Cancel task ``task_id`` of this rank (runtime lock held); a finished one is left as it is. Not started:
        it never runs. At a worker: told there (``executor._on_cancel``), with no retry left; with ``force`` its
        results fail now, while the worker stops it when it can (Ray kills the worker; a rank runs other work)."""
        rec = self.tasks.get(task_id)
        if rec is None:
            return
        if rec.state in (WAITING, QUEUED):
            self._finish(rec, self._cancelled_blobs(rec, "before it ran"), True)
            self._pump(rec.key)
        elif rec.state == SENT and not rec.cancelled:
            rec.cancel_sent()
            self.rt.send(rec.lease.worker, ("cancel", task_id, force, recursive))
            if force:
                self.abandoned[task_id] = rec.lease
                self._finish(rec, self._cancelled_blobs(rec, "with force=True"), True)

    @staticmethod
    def _cancelled_blobs(rec, how=""):
        return error_blobs(task_cancelled(rec.name, how), len(rec.return_ids))
