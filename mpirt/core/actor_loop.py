"""The event loop of an async actor, whose thread drives MPI for a moment before it would block.

An idle threaded actor's thread polls MPI itself before it sleeps (``Transport.idle_poll``), so a caller's
next call arrives on the thread that runs it. An async actor's loop thread does the same through its
selector: when the loop has nothing ready and would block in ``select``, it first polls MPI until a call is
queued for it, a callback is scheduled from another thread, or ``POLL_BUDGET`` (or the next timer) is due.
Without it every call crossed from the progress thread to the loop through the loop's self-pipe, and every
reply back through the progress thread: two thread hand-offs per call, which made calls to ``async def``
methods half as fast as calls to plain ones.

While it polls, the loop does not look at its file descriptors: a socket the actor's own code waits on may
be served up to ``POLL_BUDGET`` (1 ms) late, and only right after the loop went idle.
"""
import asyncio
import selectors
import threading


class _PollFirstSelector(selectors.BaseSelector):
    """A selector that, before a blocking ``select``, lets ``idle_poll`` run until ``has_work()``."""

    def __init__(self, idle_poll, has_work):
        self._selector = selectors.DefaultSelector()
        self._idle_poll = idle_poll
        self._has_work = has_work

    def select(self, timeout=None):
        if timeout is None or timeout > 0:
            self._idle_poll(self._has_work, timeout)
            if self._has_work():
                timeout = 0
        return self._selector.select(timeout)

    def register(self, fileobj, events, data=None):
        return self._selector.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._selector.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._selector.modify(fileobj, events, data)

    def get_key(self, fileobj):
        return self._selector.get_key(fileobj)

    def get_map(self):
        return self._selector.get_map()

    def close(self):
        self._selector.close()


class ActorLoop:
    """An async actor's event loop and the thread that runs it.

    ``submit(fn, *args)`` runs a plain callable on the loop; ``start(coroutine)`` queues a call's coroutine in
    an inbox that the loop empties in arrival order. From another thread the loop is woken (its self-pipe)
    only when the inbox was empty; on the loop's own thread (a call dispatched while it polled) nothing is
    written anywhere."""

    def __init__(self, name, idle_poll):
        self.inbox = []            # coroutines of calls not yet started
        self._woken = False        # the loop is asked to empty the inbox
        self.loop = asyncio.SelectorEventLoop(_PollFirstSelector(idle_poll, self._has_work))
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def _has_work(self):
        # A callback call_soon_threadsafe queued (an executor's result, a cancel) is in the loop's ready queue.
        return bool(self.inbox) or bool(self.loop._ready)

    def on_loop_thread(self):
        return threading.current_thread() is self._thread

    def submit(self, fn, *args):
        if self.on_loop_thread():
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def start(self, coroutine):
        self.inbox.append(coroutine)
        if not self._woken:
            self._woken = True
            self.submit(self._start_inbox)

    def _start_inbox(self):
        """The flag is cleared before the inbox is read, so a call queued after the last read wakes the loop
        again (at worst one wake-up finds nothing)."""
        self._woken = False
        inbox, self.inbox = self.inbox, []
        create_task = self.loop.create_task
        for coroutine in inbox:
            create_task(coroutine)

    def stop(self):
        self.submit(self.loop.stop)
