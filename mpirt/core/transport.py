"""The progress thread: the only code that touches point-to-point MPI on a rank.

Callers enqueue messages with ``send``; the thread coalesces everything queued for one destination into a
single MPI message, drains incoming batches and hands each message to ``dispatch(source, message)``. When
nothing happens it backs off from polling to sleeping up to ``MAX_IDLE_SLEEP`` so idle ranks leave the cores
to ranks that compute (DESIGN.md 2). With a host socket per rank (``host_socket.py``, one host) a rank idle
for ``DEEP_IDLE`` sleeps until rung or ``DEEP_SLEEP`` passed, and a sender rings a peer it has sent nothing
to for ``RING_GAP``; batches between ranks that MPI links over TCP (the driver and the ranks it spawned)
travel through those sockets instead of MPI.
"""
import os
import pickle
import sys
import threading
import time
import traceback
from typing import Callable, Optional

from ._mpi_env import ENABLE_HINT, mpi
from .threads import handoffs

TAG = 7
HOT_POLLS = 64           # empty polls before sleeping at all
MAX_IDLE_SLEEP = 1e-3    # longest sleep between polls of an idle rank
MAX_BATCHES_PER_POLL = 64
POLL_GRACE = 1e-3        # the progress thread keeps out this long after a thread's successful poll
# Seconds a thread about to wait for a reply drives MPI itself first (``Transport.poll``).
POLL_BUDGET = float(os.environ.get("MPIRT_POLL_BUDGET", 0.001))
# Doorbells. A rank sleeps deeply only after DEEP_IDLE without receiving anything, so a sender
# whose last message to it left less than RING_GAP ago knows it is still polling (it received
# that message later); the margin DEEP_IDLE - RING_GAP covers a message not yet visible to MPI.
DEEP_IDLE = 4e-3
RING_GAP = 2e-3
DEEP_SLEEP = 0.02        # tickers of an idle rank run this late at most
SPIN_SLICE = 1e-4        # longest tight MPI spin between steps while serving one-sided reads (stay_hot)
BACKLOG_WAIT = 5e-5      # first wait before retrying datagrams a full queue refused; doubles to DEEP_SLEEP
_LIGHT, _SOCKET = 1, 2   # values of Transport._sleeping besides False: on the wake Event, on the host socket


class Transport:
    def __init__(self, comm, dispatch, name="mpirt-progress", lock=None, members=None):
        """``members``: the mpirt rank of each rank of ``comm`` (None: the same numbers). A rank
        that joined later (``replacement.py``) has a communicator of its own whose numbering
        differs from mpirt's rank numbers, which never change and are never reused."""
        self.comm = comm
        self.rank = comm.Get_rank() if members is None else members[comm.Get_rank()]
        # Every communicator this rank receives on, with its members (None: numbered as mpirt's
        # ranks), and how to reach the ranks not reached on ``comm`` under their own number.
        self._comms = [(comm, members)]
        self._routes = {} if members is None else {r: (comm, i) for i, r in enumerate(members)}
        self._dispatch = dispatch
        # Held while a batch is dispatched: one acquisition per batch, not per message.
        self._dispatch_lock = lock if lock is not None else threading.RLock()
        self._outbox = {}
        self._out_lock = threading.Lock()
        # Whoever drives MPI (the progress thread, or a thread in ``poll``) holds this:
        # batches leave and are handled in order, by one thread at a time.
        self._progress_lock = threading.Lock()
        self._polling = False        # a thread other than the progress thread drives MPI now
        self._polled_until = 0.0     # ... or did, successfully, until then (it will likely be back)
        self._poll_yielding = False  # the poller is an idle thread that gives way to others
        self._preempt = False        # a thread asks the yielding poller to give way
        self._wake = threading.Event()
        self._inflight = []
        # Held while queued batches leave (and around _inflight): the thread driving MPI takes it,
        # and so may, without waiting, a thread that just queued a reply while another drives MPI.
        self._send_lock = threading.Lock()
        self._local_busy = False      # a flush is handing messages to this rank's handlers
        self._poll_status = None      # pollers take turns (progress lock): one MPI.Status serves them all
        self._tickers = []
        # Called after each batch is handled (dispatch lock held): work that handlers of its messages
        # left for once per batch rather than once per message.
        self.after_batch: Optional[Callable[[], None]] = None
        self._running = False
        self._sleeping = False        # or _LIGHT (on the wake Event) or _SOCKET (on the host socket)
        self.host = None              # a host_socket.HostSocket once enable_host_socket() ran
        self._mail = frozenset()      # ranks whose batches go through the host sockets
        self._last_sent = {}          # rank -> when a batch last left for it (perf_counter)
        self._last_received = 0.0     # when a batch last came in
        self._backlog_wait = BACKLOG_WAIT   # next sleep while refused datagrams wait (host sockets)
        self._forgotten = []          # dead mail peers whose queued datagrams are still to drop
        self.failures = None          # a fault.FailureMonitor when ULFM is on
        self._assisting = 0           # one-sided reads of this rank's memory in progress (stay_hot)
        self._hot_until = 0.0         # ... and until when to poll without sleeping for them
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._running = True
        self._thread.start()

    def stay_hot(self, seconds):
        """Drive MPI without pause for up to ``seconds`` (until ``cool_down``): another rank reads this
        rank's memory with RMA, and over transports without true one-sided access (TCP, Open MPI's
        shared-memory BTL, whose Gets are active messages of 32 KB) each fragment of the read waits for this
        rank to drive MPI. With 1 ms naps between polls a 100 MB read took over a second; with a Python step
        and a yield between polls the Get of 1 MB took ~0.25 ms, with ``_spin`` 0.12-0.25 ms, as a plain Get
        from a target blocked in MPI did in the same minutes (2-core development VM)."""
        self._assisting += 1
        self._hot_until = max(self._hot_until, time.perf_counter() + seconds)
        self._wake_up()

    def cool_down(self):
        """One read that ``stay_hot`` served has ended."""
        self._assisting = max(0, self._assisting - 1)
        if self._assisting == 0:
            self._hot_until = 0.0

    def send(self, dest: int, message: tuple) -> None:
        """Queue ``message`` for rank ``dest`` (any thread; never blocks on the network)."""
        self._queue(dest, message)
        if self._sleeping and not self._polling:  # Event.set costs ~5 us: only wake a thread that sleeps
            self._wake_up()

    def _queue(self, dest, message):
        with self._out_lock:
            box = self._outbox.get(dest)
            if box is None:
                self._outbox[dest] = [message]
            else:
                box.append(message)

    def send_now(self, dest: int, message: tuple) -> None:
        """``send``, then send what is queued from the calling thread unless another thread is
        sending right now (it then sends this too): for a message whose receiver should act at
        once. Through the progress thread such a message left ~110 us after ``send`` on the
        2-core development VM under load (the thread's wake-up), this way ~10 us."""
        self._queue(dest, message)
        try:
            sent = self._flush(wait=False)
        except mpi().Exception as error:
            self._fatal_unless_peer_died(error)
            sent = True
        # A thread sending right now may have taken the outbox before this message came in:
        # then the progress thread sends it (woken if it sleeps; not woken otherwise, since a
        # thread it wakes competes with this one for the GIL and a core).
        if not sent and self._sleeping and not self._polling:
            self._wake_up()

    def send_local(self, message):
        """Handle ``message`` to this rank now, on the calling thread (under the dispatch lock),
        unless earlier messages to this rank are still queued or being handled: then it queues
        behind them, so messages to oneself keep their order. For the same-rank actor call and
        reply, which then cross no queue and wait for no poller."""
        rank = self.rank
        with self._dispatch_lock:
            with self._out_lock:
                queued = self._local_busy or rank in self._outbox
                if queued:
                    box = self._outbox.get(rank)
                    if box is None:
                        self._outbox[rank] = [message]
                    else:
                        box.append(message)
            if not queued:
                self._deliver(rank, (message,))  # the dispatch lock is re-entrant
                return
        if self._sleeping and not self._polling:
            self._wake_up()

    def enable_host_socket(self, host, mail_peers=()):
        """Use ``host`` (before ``start``): idle ranks then sleep until a peer rings, and batches
        to and from ``mail_peers`` travel through the sockets."""
        self.host = host
        self.add_mail_peers(mail_peers)

    def _wake_up(self):
        """Wake the progress thread from whichever sleep it is in."""
        if self._sleeping == _SOCKET:
            self.host.ring_self()
        else:
            self._wake.set()

    def add_communicator(self, comm, members, peers):
        """Receive on ``comm`` too (``members``: the mpirt rank of each of its ranks), and reach
        ``peers`` through it. Each pair of ranks keeps one communicator for its whole life (the
        one made when the later of the two joined), so messages between two ranks keep their
        order; ranks that join are new numbers, so no route ever changes."""
        self._routes.update({peer: (comm, members.index(peer)) for peer in peers})
        self._comms = self._comms + [(comm, members)]

    def route(self, rank):
        """(communicator, ``rank``'s number in it) through which this rank reaches ``rank``."""
        return self._routes.get(rank) or (self.comm, rank)

    def add_mail_peers(self, ranks):
        """Batches to and from ``ranks`` travel through the host sockets from now on."""
        if self.host is not None:
            for rank in ranks:
                self.host.add_peer(rank)
            self.host.mail_peers = self._mail = self._mail | frozenset(ranks)

    def forget(self, rank):
        """``rank`` died (it is in ``failures.dead`` now): drop what is queued for it."""
        with self._out_lock:
            self._outbox.pop(rank, None)
        if rank in self._mail:
            # Its datagrams are dropped by the thread driving MPI: this runs under the runtime lock,
            # maybe on that very thread inside a send, so taking the send lock here could deadlock.
            self._forgotten.append(rank)

    def _peer_failed(self, error):
        """True if ``error`` was a peer's death, which the failure monitor has now handled."""
        return self.failures is not None and self.failures.on_mpi_error(error)

    def _fatal_unless_peer_died(self, error):
        """An MPI error that was no peer's death, which mpirt cannot recover from (without ULFM: a
        rank died): end this rank with a message instead of a silent hang."""
        if self._peer_failed(error):
            return
        sys.__stderr__.write(f"mpirt rank {self.rank}: MPI failed ({error}); a rank has probably died, and without "
                             f"ULFM the job cannot go on. To survive worker deaths, {ENABLE_HINT}\n")
        sys.__stderr__.flush()
        os._exit(1)

    def add_ticker(self, interval: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the progress thread about every ``interval`` seconds."""
        self._tickers.append([interval, 0.0, fn])

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is queued, wait for sends to complete, then end the thread."""
        self._running = False
        self._wake.set()  # always: stopping must not wait for a sleep to run out
        if self.host is not None:
            self.host.ring_self()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self.host is not None and not self._thread.is_alive():
            self.host.close()

    def is_current_thread(self):
        return threading.current_thread() is self._thread

    def idle_poll(self, ready: Callable[[], bool], budget: Optional[float] = None) -> None:
        """For a task or actor thread with nothing queued: drive MPI for ``POLL_BUDGET`` (or ``budget`` if less;
        yielding to a thread of this rank in ``get``) before it sleeps. The reply it just queued leaves now, and
        a caller's next call then arrives on this thread, with no hand-off from the progress thread."""
        if POLL_BUDGET:
            self.poll(ready, POLL_BUDGET if budget is None else min(budget, POLL_BUDGET), yielding=True)

    def poll(self, done: Callable[[], bool], budget: float, yielding: bool = False) -> bool:
        """Drive MPI from the calling thread until ``done()`` or ``budget`` seconds passed; True if
        ``done()``. For a thread that would otherwise sleep until a reply comes (a caller in ``get``, an
        idle actor thread): it sends, receives and handles messages itself, which saves two thread hand-offs
        per round trip. The progress thread waits meanwhile. A ``yielding`` poll (an idle actor thread)
        stops when another thread asks to poll. Never call it holding the runtime lock."""
        if not self._running or threading.current_thread() is self._thread:
            return done()
        deadline = time.perf_counter() + budget
        # Another thread that drives MPI also handles what this one waits for (and wakes it):
        # wait for the lock only while the progress thread ends an iteration, not for a poller.
        if self._polling:
            if yielding or not self._poll_yielding:
                # The other poller dispatches what this thread waits for. An actor thread going
                # idle sends the reply it just queued now, not at that poller's next step (which
                # may be a whole call of its own away: it needs the GIL this thread had).
                if yielding and not done():
                    try:
                        self._flush(wait=False)
                    except mpi().Exception as error:
                        self._fatal_unless_peer_died(error)
                return done()
            self._preempt = True   # an idle actor thread polls: take over from it
        acquired = self._progress_lock.acquire(timeout=min(budget, 2e-4))
        if not yielding:
            self._preempt = False
        if not acquired:
            return done()
        status = self._poll_status
        if status is None:
            status = self._poll_status = mpi().Status()
        self._polling = True
        self._poll_yielding = yielding
        success = False
        try:
            while True:
                woken = handoffs[0]
                busy = self._step(status)
                if done():
                    success = True
                    return True
                if time.perf_counter() >= deadline:
                    return False
                if yielding and self._preempt:
                    success = True  # another thread polls next: no need for the progress thread
                    return done()
                if not busy or handoffs[0] != woken:
                    # Nothing came, or what came woke another thread: let others have the core.
                    os.sched_yield()  # not sleep(0): that pads by the thread's 50 us timer slack
        finally:
            # After a poll that got its answer the thread will likely poll again soon (the next
            # call of a loop): the progress thread keeps out of the way for POLL_GRACE. After a
            # poll that gave up it takes over at once.
            self._polled_until = time.perf_counter() + POLL_GRACE if success else 0.0
            self._polling = False
            self._progress_lock.release()
            if not success or self._outbox or (self.host is not None and self.host.backlog):
                self._wake_up()

    # -- progress thread -------------------------------------------------
    def _run(self):
        _tighten_timer_slack()
        idle = 0
        status = mpi().Status()
        while self._running:
            self._wake.clear()
            if self._polling or time.perf_counter() < self._polled_until:
                # Another thread drives MPI (Transport.poll): stay out of its way.
                if self._tickers:
                    self._tick()
                self._wake.wait(POLL_GRACE)
                continue
            checked = time.perf_counter()   # all that came before this is handled below
            with self._progress_lock:
                busy = self._step(status)
            if self._tickers:
                self._tick()
            idle = 0 if busy else min(idle + 1, HOT_POLLS + 64)
            if checked < self._hot_until:
                # At once, not after one more step: the step that set it handled a read's wake-up.
                self._spin(min(self._hot_until, time.perf_counter() + SPIN_SLICE))
                continue
            if busy:
                continue
            if idle < HOT_POLLS:
                time.sleep(0)
                continue
            light_sleep = min(MAX_IDLE_SLEEP, 2e-6 * 1.25 ** (idle - HOT_POLLS))
            # Deep only if nothing came for DEEP_IDLE before the last look (not before now: tickers
            # may have run long since, and a peer that sent meanwhile did not ring). While datagrams
            # wait for room in a receiver's queue, sleep from BACKLOG_WAIT, doubling while the
            # receiver makes no room (a receiver busy in C code must not make its senders spin).
            backlog = self.host is not None and self.host.backlog
            deep = self.host is not None and not backlog and checked - self._last_received >= DEEP_IDLE
            if backlog:
                light_sleep = self._backlog_wait
                self._backlog_wait = min(2 * light_sleep, DEEP_SLEEP)
            # On the socket if batches come that way (they wake it), else on the wake Event. Announce
            # the sleep before the last look at the outbox: a sender that missed the flag queued its
            # message before this look.
            on_socket = deep or bool(self._mail)
            self._sleeping = _SOCKET if on_socket else _LIGHT
            if not self._outbox:
                if not on_socket:
                    self._wake.wait(light_sleep)
                elif self.host.wait(DEEP_SLEEP if deep else light_sleep):
                    # Rung: the message may be a moment behind its ring. Poll hot, then light,
                    # for DEEP_IDLE, as if it had come (and a peer that rang will not ring again soon).
                    self._last_received = time.perf_counter()
                    idle = 0
            self._sleeping = False
        self._finish(status)

    def _spin(self, until):
        """Drive MPI as often as it can be called (no Python step, no yield) until a batch can be
        received on a communicator, a thread queued one to send, or ``until``: as a rank blocked
        in an MPI call would, for one-sided reads of this rank's memory that need the target to
        drive MPI (``stay_hot``). Batches that come through the host socket wait until
        ``until``, so callers keep ``until`` short (``SPIN_SLICE``)."""
        MPI = mpi()
        comms = [comm for comm, _ in self._comms]
        clock = time.perf_counter
        try:
            with self._progress_lock:
                while not self._outbox and clock() < until:
                    for comm in comms:
                        if comm.Iprobe(MPI.ANY_SOURCE, TAG):
                            return
        except MPI.Exception as error:
            self._fatal_unless_peer_died(error)

    def _step(self, status):
        """Send what is queued, receive and handle what arrived (progress lock held); True if busy."""
        try:
            busy = self._flush()
            busy = self._drain(status) or busy
            if self._mail:
                busy = self._drain_mail() or busy
            if self._inflight:
                with self._send_lock:
                    self._inflight = [r for r in self._inflight if not self._test(r)]
        except mpi().Exception as error:   # a peer died (ULFM): note it and go on
            self._fatal_unless_peer_died(error)
            return True
        return busy

    def _flush(self, wait=True):
        """Send what is queued. ``wait=False``: only if no other thread is sending right now."""
        if not self._outbox:
            return False
        if not self._send_lock.acquire(wait):
            return False
        try:
            rank = self.rank
            with self._out_lock:
                outbox, self._outbox = self._outbox, {}
                if rank in outbox:
                    self._local_busy = True   # send_local queues behind these until they are handled
            for dest, messages in outbox.items():
                if dest == rank:
                    try:
                        self._deliver(dest, messages)
                    finally:
                        self._local_busy = False
                    continue
                if self.failures is not None and dest in self.failures.dead:
                    continue
                if dest in self._mail:
                    self.host.send(dest, pickle.dumps(messages, pickle.HIGHEST_PROTOCOL))
                    continue
                comm, comm_rank = self.route(dest)
                try:
                    self._inflight.append(comm.isend(messages, comm_rank, TAG))
                except mpi().Exception as error:
                    if not self._peer_failed(error):
                        raise
                    continue
                if self.host is not None:
                    now = time.perf_counter()
                    if now - self._last_sent.get(dest, 0.0) >= RING_GAP:
                        self.host.ring(dest)   # it may sleep on its socket
                    self._last_sent[dest] = now
            return True
        finally:
            self._send_lock.release()

    def _drain(self, status):
        got = False
        for comm, members in self._comms:
            for _ in range(MAX_BATCHES_PER_POLL):
                message = comm.improbe(status=status, tag=TAG)
                if message is None:
                    break
                batch = message.recv()
                self._last_received = time.perf_counter()
                source = status.Get_source()
                self._deliver(source if members is None else members[source], batch)
                got = True
        return got

    def _drain_mail(self):
        """Send what receivers' full queues refused before; receive and handle the batches that
        came through the host socket."""
        while self._forgotten:
            with self._send_lock:
                self.host.forget(self._forgotten.pop())
        if self.host.backlog:
            with self._send_lock:
                if self.host.send_unsent():
                    self._backlog_wait = BACKLOG_WAIT   # the receiver makes room: retry soon again
        got = False
        for source, data in self.host.receive():
            batch = pickle.loads(data)
            self._last_received = time.perf_counter()
            self._deliver(source, batch)
            got = True
        return got

    def _test(self, request):
        """True when a send completed (or can never complete: its destination died)."""
        try:
            return request.Test()
        except mpi().Exception as error:
            if not self._peer_failed(error):
                raise
            return True

    def _deliver(self, source, messages):
        dispatch = self._dispatch
        with self._dispatch_lock:
            for message in messages:
                try:
                    dispatch(source, message)
                except Exception:
                    sys.__stderr__.write(
                        f"mpirt rank {self.rank}: error handling {message[0]!r} from rank {source}:\n"
                        + traceback.format_exc()
                    )
            if self.after_batch is not None:
                try:
                    self.after_batch()
                except Exception:
                    sys.__stderr__.write(f"mpirt rank {self.rank}: error after a batch from rank {source}:\n"
                                         + traceback.format_exc())

    def _tick(self):
        now = time.monotonic()
        for ticker in self._tickers:
            interval, last, fn = ticker
            if now - last >= interval:
                ticker[1] = now
                try:
                    fn()
                except Exception:
                    sys.__stderr__.write(f"mpirt rank {self.rank}: ticker failed:\n{traceback.format_exc()}")

    def _finish(self, status):
        """Last flush after stop: everything queued leaves, in-flight sends complete."""
        with self._progress_lock:
            self._flush()
            deadline = time.monotonic() + 10.0
            while (self._inflight or (self._mail and self.host.backlog)) and time.monotonic() < deadline:
                with self._send_lock:
                    self._inflight = [r for r in self._inflight if not self._test(r)]
                try:
                    self._drain(status)
                except mpi().Exception as error:
                    if not self._peer_failed(error):
                        raise
                if self._mail:
                    self._drain_mail()
                time.sleep(1e-4)


def _tighten_timer_slack():
    """Linux pads every sleep of this thread by 50 us by default; the poll loop's
    short sleeps are latency, so ask for 1 us. Elsewhere this is a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, in nanoseconds
    except (OSError, AttributeError):
        pass
