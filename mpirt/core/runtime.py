"""The per-rank runtime: shared state, message dispatch, and waiting for objects.

Every rank (driver, head scheduler, workers) holds one Runtime. One lock guards
all of its state; the progress thread takes it to handle a message, user and
task threads take it to submit work or wait on ``cond``.
"""
import gc
import itertools
import os
import sys
import threading
import time

from . import log_forward, object_value, protocol, tracing
from .actor_caller import ActorCaller
from .actor_host import ActorHost
from .call_context import task_context
from ..exceptions import ErrorPayload, GetTimeoutError, ObjectStoreFullError
from .codec import encode
from .executor import TaskExecutor
from .fault import FailureMonitor
from .host_socket import HostSocket
from .object_ref import ObjectRef, make_object_id, session_of
from .objects import ObjectTable
from .protocol import DRIVER_RANK, HEAD_RANK
from .replacement import Replacement
from ..scheduler.head import HeadScheduler
from ..scheduler.resources import ClusterView
from .signals import HOLD
from ..store.manager import StoreManager
from .submitter import TaskSubmitter
from .threads import handoffs
from .transport import POLL_BUDGET, Transport


GC_THRESHOLD = 20_000


def _tune_gc():
    """Every task or actor call allocates a dozen small container objects here (records, table
    entries, refs, messages) that live until its result is read. With CPython's first-generation
    threshold of 700 a collection ran every ~50 calls and moved them all into the older
    generations, whose scans then cost 5-9 us per call (a third of the caller's time on async
    actor calls). A threshold of 20,000 lets most of them die unscanned. Set
    ``MPIRT_GC_THRESHOLD`` (0: leave the interpreter's setting alone); a threshold already
    above it is kept."""
    wanted = int(os.environ.get("MPIRT_GC_THRESHOLD", GC_THRESHOLD))
    threshold, *older = gc.get_threshold()
    if wanted and threshold and threshold < wanted:
        gc.set_threshold(wanted, *older)


class _Waiter:
    """Counts objects becoming ready for one get/wait call; wakes it when satisfied."""

    __slots__ = ("cond", "needed", "fail_fast", "ready", "done")

    def __init__(self, cond, needed, fail_fast):
        self.cond = cond
        self.needed = needed
        self.fail_fast = fail_fast
        self.ready = 0
        self.done = needed <= 0

    def count(self, entry):
        self.ready += 1
        if self.ready >= self.needed or (self.fail_fast and entry.is_error):
            self.done = True

    def on_ready(self, object_id, entry):
        if not self.done:
            self.count(entry)
            if self.done:
                handoffs[0] += 1
                self.cond.notify_all()


class Runtime:
    def __init__(self, comm, session, resources_by_rank, config, joining=None):
        """Collective over ``comm``, except for a rank that joins a running job in place of a
        dead one (``joining``, see ``replacement.py``): its ``comm`` numbers ranks differently
        from mpirt (``members``: the mpirt rank of each), and it gets what the others made
        collectively at start-up from them."""
        self.comm = comm
        self.members = None if joining is None else joining.members
        self.rank = comm.Get_rank() if joining is None else joining.rank
        self.size = comm.Get_size() if joining is None else joining.size   # rank numbers given so far
        self.session = session
        self.config = config
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.handlers = {}
        self.cluster = ClusterView(resources_by_rank, config)
        self._seq = itertools.count(1)
        self.transport = Transport(comm, self._dispatch, lock=self.lock, members=self.members)
        self.failures = FailureMonitor(self)
        self.failures.handlers.append(self._on_rank_dead)
        if joining is not None:
            self.failures.dead.update(joining.dead)
        self.replacement = Replacement(self)
        self.cluster.replacements_expected = self.replacement.expected
        self.objects = ObjectTable(self)
        self.store = StoreManager(self, comm, config["object_store_memory"], config.get("ranks_per_node"), joining)
        if joining is None:
            self.transport.enable_host_socket(HostSocket.open(comm), self._mail_peers(config))  # collective
        else:
            self.transport.enable_host_socket(joining.host_socket(), joining.mail_peers())
        self.replacement.prepare()
        self.stopped = threading.Event()
        self.shutdown_acks = set()
        self.shutting_down = False   # the driver has begun telling the ranks to stop
        self._queries = {}
        self.register(
            shutdown=self._on_shutdown,
            shutdown_ack=self._on_shutdown_ack,
            query_reply=self._on_query_reply,
            timeline_query=self._on_timeline_query,
        )
        self.transport.add_ticker(0.005, self._apply_ref_events)
        self.submitter = TaskSubmitter(self)
        self.actors = ActorCaller(self)
        self.executor = None
        self.actor_host = None
        self.head = None
        if self.rank == HEAD_RANK:
            self.head = HeadScheduler(self, self.cluster)
        elif self.rank in self.cluster.worker_ranks:
            self.executor = TaskExecutor(self)
            self.actor_host = ActorHost(self)

    def _mail_peers(self, config):
        """Ranks whose batches go through host sockets: a spawning driver and the ranks it spawned
        (Open MPI links two jobs over TCP even on one host; the driver decides, see launch.py)."""
        if not config.get("driver_mail"):
            return ()
        return range(1, self.size) if self.rank == DRIVER_RANK else (DRIVER_RANK,)

    def live_ranks(self):
        """Every rank of the job that has not died (those that joined later included)."""
        return [r for r in range(self.size) if r not in self.failures.dead]

    def start(self):
        _tune_gc()
        self.transport.start()

    def send(self, dest, message):
        self.transport.send(dest, message)

    def next_id(self):
        return make_object_id(self.session, self.rank, next(self._seq))

    def register(self, **handlers):
        """A role's message handlers, checked against their kinds' fields in ``protocol.py``."""
        for kind, handler in handlers.items():
            protocol.check_handler(kind, handler)
        self.handlers.update(handlers)

    def _dispatch(self, source, message):
        """Handle one message (the transport holds ``self.lock`` around each batch)."""
        self.handlers[message[0]](source, *message[1:])

    def _apply_ref_events(self):
        with self.lock:
            self.objects.apply_ref_events()
            self.store.unpin_gone_views()

    # -- the object API's core -------------------------------------------------
    def put(self, value):
        """Store ``value`` as an object this rank owns and return its ObjectRef."""
        try:
            blob = encode(value, self.store)
        except ObjectStoreFullError:
            raise
        except Exception as exc:
            raise TypeError(f"Could not serialize the value given to put() (type {type(value).__name__}): "
                            f"{exc}") from exc
        with self.lock:
            object_id = self.next_id()
            self.objects.create_owned(object_id)
            self.objects.set_ready(object_id, blob)
            return ObjectRef(object_id)

    def get(self, refs, timeout=None):
        """The values of ``refs`` (a list), waiting up to ``timeout`` seconds (None: no limit);
        raises the error of the first failed one as soon as one failed."""
        if refs:
            self.wait_objects(refs, len(refs), timeout, fail_fast=True)
            self.raise_first_error(refs)
        return [self.value_of(ref) for ref in refs]

    # -- waiting for objects -------------------------------------------------
    def wait_objects(self, refs, num_required, timeout, fail_fast):
        """Block until ``num_required`` of ``refs`` are ready (or one failed, if
        ``fail_fast``, as ``get`` wants). Returns the ready flags. On timeout
        ``get`` (fail_fast) raises GetTimeoutError; ``wait`` just returns."""
        return [e.ready for e in self.wait_entries(refs, num_required, timeout, fail_fast)]

    def wait_entries(self, refs, num_required, timeout, fail_fast):
        """``wait_objects``, returning the table entries of ``refs`` (which stay while the refs live)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for ref in refs:
            if session_of(ref.id) != self.session:
                raise ValueError(f"{ref} belongs to an earlier mpirt session (it was created before shutdown())")
        with self.lock:
            entries = [self.objects.ensure(ref.id) for ref in refs]
            waiter = _Waiter(self.cond, num_required, fail_fast)
            for ref, entry in zip(refs, entries):
                if entry.ready:
                    waiter.count(entry)
            if not waiter.done:
                for ref, entry in zip(refs, entries):
                    if not entry.ready:
                        self.objects.on_ready(ref.id, waiter.on_ready)
            if waiter.done:
                return entries
        waited_from = tracing.now()

        def record_wait():
            tracing.record("wait", "get" if fail_fast else "wait", waited_from, tracing.now(), objects=len(refs))

        budget = POLL_BUDGET if deadline is None else min(POLL_BUDGET, deadline - time.monotonic())
        if budget > 0 and not self.lock._is_owned():
            # Most waits for a call's result are short: drive MPI here for a moment rather than
            # sleep until the progress thread wakes us (and before giving a task's CPU back).
            if self.transport.poll(lambda: waiter.done, budget):
                record_wait()
                return entries
        while True:
            with self.lock:
                if waiter.done:
                    record_wait()
                    return entries
                blocked = self._enter_blocked()
                try:
                    while not waiter.done and not HOLD.pending_here():
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            if not fail_fast:
                                break
                            raise GetTimeoutError(f"Get timed out: some object(s) not ready (timeout={timeout} s).")
                        # A signal held meanwhile (Ctrl-C) is seen within signals.SIGNAL_CHECK.
                        self.cond.wait(HOLD.wait_slice(1.0 if remaining is None else remaining))
                finally:
                    if blocked:
                        self._exit_blocked()
                    record_wait()
                if not HOLD.pending_here():
                    return entries
            HOLD.deliver()   # outside the lock; raises KeyboardInterrupt for Ctrl-C, else wait on

    def _enter_blocked(self):
        """A task or actor call about to wait (runtime lock held): a task gives its CPU back,
        and either lets go of the rank's runtime_env, which a task it waits for may need."""
        if self.executor is None:
            return False
        task = getattr(task_context, "task", None)
        if task is not None:
            self.executor.task_blocked(task)
            return True
        actor = getattr(task_context, "environment_actor", None)
        if actor is not None:            # a threaded actor call holding its actor's runtime_env
            self.actor_host.leave_environment(actor)
            return True
        return False

    def _exit_blocked(self):
        task = getattr(task_context, "task", None)
        if task is not None:
            self.executor.task_unblocked(task)
        else:
            self.actor_host.enter_environment(task_context.environment_actor)

    def raise_first_error(self, refs):
        """Raise the error of the first failed object among ``refs`` (ready or not)."""
        if len(refs) == 1:
            return  # value_of raises it
        with self.lock:
            entries = self.objects.entries
            failed = next((ref for ref in refs if ref.id in entries and entries[ref.id].is_error), None)
        if failed is not None:
            self.value_of(failed)

    def value_of(self, ref):
        """The deserialized value of a ready object; raises its error if it failed."""
        # No lock: set_ready stores blob and is_error before ready; a rank's death clears ready
        # before blob, so ready still set after reading them means they belong together.
        entry = self.objects.entries.get(ref.id)
        if entry is not None and entry.ready:
            blob, is_error = entry.blob, entry.is_error
            if not entry.ready:
                entry = None
        else:
            entry = None
        if entry is None:
            self.wait_objects([ref], 1, None, True)
            return self.value_of(ref)
        value = self.decode(ref.id, blob)
        if is_error:
            if isinstance(value, ErrorPayload):
                raise value.to_exception()
            raise value
        return value

    def decode(self, object_id, blob):
        """A value from its object-table form (inline, stored or on a device: ``object_value.py``)."""
        return object_value.decode(blob, self.store, object_id)

    # -- queries and shutdown ------------------------------------------------
    def query(self, dest, kind, *payload, timeout=30.0):
        """Ask rank ``dest`` something (a ``*_query`` message) and wait for its reply."""
        event = threading.Event()
        with self.lock:
            request_id = next(self._seq)
            self._queries[request_id] = [event, None]
        self.send(dest, (kind, request_id, *payload))
        deadline = time.monotonic() + timeout
        try:
            while not event.wait(HOLD.wait_slice(deadline - time.monotonic())):
                if HOLD.pending_here():
                    HOLD.deliver()   # Ctrl-C: raises; else wait on
                elif time.monotonic() >= deadline:
                    raise TimeoutError(f"rank {dest} did not answer {kind} within {timeout} s")
            return self._queries[request_id][1]
        finally:
            with self.lock:
                self._queries.pop(request_id, None)

    def _on_timeline_query(self, source, request_id):
        self.send(source, ("query_reply", request_id, list(tracing.events)))

    def _on_query_reply(self, source, request_id, value):
        slot = self._queries.get(request_id)
        if slot is not None:
            slot[1] = value
            slot[0].set()

    def _on_rank_dead(self, rank):
        """The driver or the scheduler cannot be replaced: end this rank with a clear message
        (unless the job is ending anyway: then ranks leaving are no news)."""
        self.cluster.remove_rank(rank)
        if self.shutting_down or self.stopped.is_set():
            self.cond.notify_all()
            return
        if rank in (DRIVER_RANK, HEAD_RANK):
            role = "driver" if rank == DRIVER_RANK else "scheduler"
            if self.rank == DRIVER_RANK or rank == HEAD_RANK:
                sys.__stderr__.write(f"mpirt: the {role} (rank {rank}) died; the job cannot go on without it\n")
                sys.__stderr__.flush()
            os._exit(1)
        if self.rank == DRIVER_RANK:
            sys.__stderr__.write(f"mpirt: worker rank {rank} died; its tasks, actors and objects are recovered "
                                 "where their retry/restart limits allow\n")
        self.cond.notify_all()

    def _on_shutdown(self, source, free_store):
        log_forward.flush()
        self.free_store_at_exit = free_store
        self.send(source, ("shutdown_ack",))
        self.stopped.set()

    def _on_shutdown_ack(self, source):
        self.shutdown_acks.add(source)
        self.cond.notify_all()

    def shutdown_cluster(self, timeout=10.0):
        """Driver: tell every other rank to stop; wait until each has answered.

        Workers are told first and the scheduler last: a rank leaves as soon as it has
        answered, and under ULFM its exit is seen as a death, which for the scheduler ends
        the job (``_on_rank_dead``). Told last, the scheduler exits only when no worker is
        still listening, and the driver, shutting down, takes no rank's exit for a death."""
        self.shutting_down = True
        self.replacement.stop()
        others = {r for r in self.live_ranks() if r != self.rank}
        # Arrays the driver got from the store are views of its windows: while any is
        # alive the windows stay (freeing them is collective, so every rank is told).
        self.free_store_at_exit = self.store.live_views == 0
        deadline = time.monotonic() + timeout
        for group in (others - {HEAD_RANK}, others & {HEAD_RANK}):
            for rank in group:
                self.send(rank, ("shutdown", self.free_store_at_exit))
            with self.lock:
                while not self.shutdown_acks >= group - self.failures.dead:   # a rank may die meanwhile
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self.cond.wait(remaining)
        self.transport.stop()
        return self.shutdown_acks >= others - self.failures.dead
