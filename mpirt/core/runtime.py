"""The per-rank runtime: builds every part of a rank, dispatches messages, and is the core of the
object API (put, get, the value of a ready object).

Every rank (driver, head scheduler, workers) holds one Runtime. One lock guards
all of its state; the progress thread takes it to handle a message, user and
task threads take it to submit work or wait on ``cond`` (``waiting.py``). Queries to other
ranks are ``queries.py``'s, the end of the job ``shutdown.py``'s.
"""
import itertools
import operator
import os
import sys
import threading
from typing import Any, Callable, List, Optional

from ..exceptions import ErrorPayload, ObjectLostError, ObjectStoreFullError
from ..scheduler.head import HeadScheduler
from ..scheduler.resources import ClusterView
from ..store.manager import StoreManager
from . import object_ref, object_value, protocol, rank_state
from .actor_caller import ActorCaller
from .actor_host import ActorHost
from .codec import encode, loads
from .executor import TaskExecutor
from .fault import FailureMonitor
from .gc_tuning import tune_gc
from .host_socket import HostSocket
from .object_ref import ObjectRef, make_object_id
from .object_value import ObjectValue
from .objects import ObjectTable
from .placement_groups import PlacementGroups
from .protocol import DRIVER_RANK, HEAD_RANK
from .queries import Queries
from .replacement import Replacement
from .shutdown import ShutdownHandshake
from .streams import Streams
from .submitter import TaskSubmitter
from .transport import Transport
from .waiting import ObjectWaits

_ready_of = operator.attrgetter("ready")


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
        object_ref.session_started(session)
        self.config = config
        rank_state.finished_tasks.clear()    # a job's state API shows its own tasks, not an earlier init()'s
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
            # the messages of collective groups formed after a rank died (util/collective/peer_comm.py)
            self.collective_comm = comm.Dup()
        else:
            self.transport.enable_host_socket(joining.host_socket(), joining.mail_peers())
            self.collective_comm = None
        self.replacement.prepare()
        self.waits = ObjectWaits(self)
        self.queries = Queries(self)
        self.shutdown = ShutdownHandshake(self)
        self.transport.add_ticker(0.005, self._apply_ref_events)
        self.submitter = TaskSubmitter(self)
        self.transport.after_batch = self.submitter.pump_after_batch
        self.actors = ActorCaller(self)
        self.groups = PlacementGroups(self)
        self.streams = Streams(self)
        self.executor = self.actor_host = self.head = None
        if self.rank == HEAD_RANK:
            self.head = HeadScheduler(self, self.cluster)
        elif self.rank in self.cluster.worker_ranks:
            self.executor = TaskExecutor(self)
            self.actor_host = ActorHost(self)

    def _mail_peers(self, config):
        """Ranks whose batches go through host sockets: a spawning driver and the ranks it spawned
        (Open MPI links two jobs over TCP even on one host; the driver decides, see launch/spawn.py)."""
        if not config.get("driver_mail"):
            return ()
        return range(1, self.size) if self.rank == DRIVER_RANK else (DRIVER_RANK,)

    def live_ranks(self) -> List[int]:
        """Every rank of the job that has not died (those that joined later included)."""
        return [r for r in range(self.size) if r not in self.failures.dead]

    def start(self) -> None:
        tune_gc()
        self.transport.start()

    def send(self, dest: int, message: tuple) -> None:
        self.transport.send(dest, message)

    def send_now(self, dest: int, message: tuple) -> None:
        """``send``, and the message leaves from this thread now (``Transport.send_now``)."""
        self.transport.send_now(dest, message)

    def next_id(self) -> int:
        return make_object_id(self.session, self.rank, next(self._seq))

    def register(self, **handlers: Callable[..., None]) -> None:
        """A role's message handlers, checked against their kinds' fields in ``protocol.py``."""
        for kind, handler in handlers.items():
            protocol.check_handler(kind, handler)
        self.handlers.update(handlers)

    def _dispatch(self, source, message):
        """Handle one message (the transport holds ``self.lock`` around each batch)."""
        self.handlers[message[0]](source, *message[1:])

    def _apply_ref_events(self):
        with self.lock:
            self.objects.references.apply_events()
            self.store.unpin_gone_views()

    # -- the object API's core -------------------------------------------------
    def put(self, value: Any) -> ObjectRef:
        """Store ``value`` as an object this rank owns and return its ObjectRef."""
        try:
            blob = encode(value, self.store)
        except ObjectStoreFullError:
            raise
        except Exception as exc:
            raise TypeError(f"Could not serialize the value given to put() (type {type(value).__name__}): "
                            f"{exc}") from exc
        with self.lock:
            return self.objects.owned_ref(self.next_id(), blob)

    def get(self, refs: List[ObjectRef], timeout: Optional[float] = None) -> List[Any]:
        """The values of ``refs`` (a list), waiting up to ``timeout`` seconds (None: no limit);
        raises the error of the first failed one as soon as one failed."""
        if len(refs) == 1 and timeout is None:
            return [self.value_of(refs[0])]    # waits (value_of) only if not ready
        if refs:
            self.waits.wait_entries(refs, len(refs), timeout, True)
            self.raise_first_error(refs)
        return [self.value_of(ref) for ref in refs]

    def wait_objects(self, refs: List[ObjectRef], num_required: int, timeout: Optional[float],
                     fail_fast: bool) -> List[bool]:
        """``ObjectWaits.wait_entries``, returning the ready flags."""
        return list(map(_ready_of, self.waits.wait_entries(refs, num_required, timeout, fail_fast)))

    def first_ready(self, refs: List[ObjectRef], num_required: int) -> Optional[List[int]]:
        """``ObjectWaits.first_ready``: where the first ``num_required`` ready refs are, if that many are now."""
        return self.waits.first_ready(refs, num_required)

    def raise_first_error(self, refs: List[ObjectRef]) -> None:
        """Raise the error of the first failed object among ``refs`` (ready or not)."""
        if len(refs) == 1:
            return  # value_of raises it
        with self.lock:
            entries = self.objects.entries
            failed = next((ref for ref in refs if ref.id in entries and entries[ref.id].is_error), None)
        if failed is not None:
            self.value_of(failed)

    def value_of(self, ref: ObjectRef) -> Any:
        """The deserialized value of a ready object; raises its error if it failed."""
        # No lock: set_ready stores blob and is_error before ready; a rank's death clears ready
        # before blob, so ready still set after reading them means they belong together.
        entry = self.objects.entries.get(ref.id)
        if entry is None or not entry.ready:
            self.wait_objects([ref], 1, None, True)
            return self.value_of(ref)
        blob, is_error = entry.blob, entry.is_error
        if not entry.ready:      # lost meanwhile: wait for it again
            return self.value_of(ref)
        try:
            value = self.decode(ref.id, blob)
        except ObjectLostError:
            with self.lock:      # a death being handled now: its handlers (lineage) have run once this is taken
                now = self.objects.entries.get(ref.id)
                lost_meanwhile = now is not entry or not now.ready or now.blob is not blob
            if lost_meanwhile:   # its holder died while it was read and lineage is rebuilding it: wait again
                return self.value_of(ref)
            raise
        if is_error:
            if isinstance(value, ErrorPayload):
                raise value.to_exception()
            raise value
        return value

    def decode(self, object_id: int, blob: object_value.Value) -> Any:
        """A value from its object-table form (inline, stored or on a device: ``object_value.py``)."""
        if isinstance(blob, ObjectValue):     # object_value.decode, without a call: every read passes here
            return blob.decode(self.store, object_id)
        return loads(blob)

    def _on_rank_dead(self, rank):
        """The driver or the scheduler cannot be replaced: end this rank with a clear message
        (unless the job is ending anyway: then ranks leaving are no news)."""
        self.cluster.remove_rank(rank)
        if self.shutdown.begun or self.shutdown.stopped.is_set():
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
