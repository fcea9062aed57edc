"""Termination signals: the driver decides, the other ranks wait for it.

Slurm sends SIGTERM to every process of a job when it is preempted, requeued, cancelled or out of time (then
SIGKILL after ``KillWait``), and jobscripts forward ``--signal=B:USR1@...`` to the program. Only the driver
knows what to save, so:

- worker and scheduler ranks ignore SIGINT, SIGUSR1 and SIGUSR2 (Ctrl-C and checkpoint requests are for the
  driver; by default the USR signals would kill them) and keep serving on SIGTERM/SIGHUP, so the driver can
  still use them while it checkpoints; if the driver has not shut them down within ``MPIRT_SIGNAL_GRACE``
  seconds (default 60) they exit on their own;
- the driver turns SIGTERM, when nobody has installed a handler for it, into ``SystemExit(143)``:
  ``finally`` blocks and ``atexit`` run, ``shutdown()`` ends every rank with status 0 instead of leaving
  them to be killed;
- on the driver, the handlers installed when ``init()`` runs (Python's Ctrl-C handler among them) wait while
  the main thread is inside an mpirt call (``holds_signals``): a ``KeyboardInterrupt`` between two bytecodes
  there could leave a lock held or a task half submitted, and the job hung for good. A call that blocks
  (``get``, ``wait``) lets them run at once, outside its locks (``HOLD.pending_here``, ``HOLD.deliver``), so
  Ctrl-C still ends a long ``get``.
"""
import functools
import os
import signal
import sys
import threading

_DEFERRED = (signal.SIGTERM, signal.SIGHUP)
_IGNORED = (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
_watchdog = None


def _grace_seconds():
    try:
        return float(os.environ.get("MPIRT_SIGNAL_GRACE", 60))
    except ValueError:
        return 60.0


def serve_until_driver_says(stopped):
    """On a non-driver rank's main thread: defer termination signals to the driver. ``stopped`` is the
    runtime's event set at shutdown; the watchdog ends the process only if it is still unset after the grace
    period."""
    if threading.current_thread() is not threading.main_thread():
        return

    def deferred(signum, frame):
        global _watchdog
        if _watchdog is not None:
            return
        _watchdog = threading.Thread(target=_exit_unless_stopped, args=(stopped, signum),
                                     name="mpirt-signal-grace", daemon=True)
        _watchdog.start()

    for signum in _DEFERRED:
        signal.signal(signum, deferred)
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)


def _exit_unless_stopped(stopped, signum):
    if stopped.wait(_grace_seconds()):
        return
    sys.stderr.write(f"mpirt rank pid {os.getpid()}: {signal.Signals(signum).name} and no shutdown from the "
                     f"driver within {_grace_seconds():g} s; exiting\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def driver_exits_cleanly_on_sigterm():
    """On the driver: SIGTERM raises SystemExit(143) unless the program handles it."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum, frame):
    # Once is enough: a second SIGTERM during shutdown must not interrupt it.
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


_MAIN_THREAD_ID = threading.main_thread().ident
SIGNAL_CHECK = 0.1   # a blocked call on the main thread looks for held signals this often
RESEND_AFTER = 0.01  # held signals behind one whose handler raised come again this much later
_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class _Hold:
    """Signal handlers held back while the main thread is inside mpirt (``depth`` > 0)."""

    def __init__(self):
        self.depth = 0
        self.pending = []   # (handler, signum, frame) that came meanwhile

    def wrap(self, handler):
        def held(signum, frame):
            if self.depth:
                self.pending.append((handler, signum, frame))
            else:
                handler(signum, frame)

        held.mpirt_holds = handler
        return held

    def wait_slice(self, timeout):
        """How long a blocking wait on this thread may sleep before it looks for held signals."""
        if threading.get_ident() != _MAIN_THREAD_ID:
            return timeout
        return SIGNAL_CHECK if timeout is None else min(timeout, SIGNAL_CHECK)

    def pending_here(self):
        """True on the main thread when a held signal waits (a blocking call then lets it run)."""
        return bool(self.pending) and threading.get_ident() == _MAIN_THREAD_ID

    def deliver(self):
        """Run the held handlers, now that mpirt's state is whole: once per signal, in the order
        they came, as Python runs its own. When one raises (KeyboardInterrupt, SystemExit) the
        other signals come again a moment later (``RESEND_AFTER``): Python would run their
        handlers while the exception unwinds, after the program's ``except`` got it."""
        pending, self.pending = self.pending, []
        done = set()
        for handler, signum, frame in pending:
            if signum in done:
                continue
            done.add(signum)
            try:
                handler(signum, frame)
            except BaseException:
                rest = [other for _, other, _ in pending if other not in done]
                if rest:
                    resend = threading.Timer(RESEND_AFTER, _send_to_main_thread, (list(dict.fromkeys(rest)),))
                    resend.daemon = True
                    resend.start()
                raise


HOLD = _Hold()


def _send_to_main_thread(signums):
    for signum in signums:
        signal.pthread_kill(_MAIN_THREAD_ID, signum)


def holds_signals(function):
    """Decorator for mpirt's API calls: on the main thread, signal handlers run after the call
    (or where it blocks), not in the middle of it."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        if threading.get_ident() != _MAIN_THREAD_ID:
            return function(*args, **kwargs)
        HOLD.depth += 1
        try:
            return function(*args, **kwargs)
        finally:
            HOLD.depth -= 1
            if HOLD.pending and not HOLD.depth:
                HOLD.deliver()

    return call


def driver_holds_signals():
    """On the driver's main thread, at ``init()``: route the Python handlers now installed for
    the usual termination and checkpoint signals through ``HOLD`` (handlers installed later
    run as Python runs them)."""
    if threading.get_ident() != _MAIN_THREAD_ID:
        return
    for signum in _HELD_SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler) and not hasattr(handler, "mpirt_holds"):
            signal.signal(signum, HOLD.wrap(handler))
