"""A light pool of threads for tasks and actor calls.

``concurrent.futures`` builds a Future (a Condition, an RLock) per call: a third of a worker's time on short
actor calls. Here a call is a tuple in a SimpleQueue. A submit claims an idle thread or starts a new one (up
to ``max_threads``), so a call never waits behind a blocked one unless the limit says so; with
``max_threads=1`` calls run one at a time in submission order.
"""
import queue
import threading

_STOP = object()

# How many times a thread handed work to another waiting one (a call queued for an idle thread, a waiting
# get woken). A thread driving MPI that just did so gives up its core for a moment (Transport.poll): on 2
# cores it would otherwise keep spinning while the thread it woke waits for one.
handoffs = [0]


class WorkerThreads:
    def __init__(self, name, max_threads=None, idle_poll=None):
        self._name = name
        self._max = max_threads
        # ``idle_poll(ready)``: called by a thread that found nothing queued, before it sleeps; it may bring
        # in work itself (drive MPI) until ``ready()``.
        self._idle_poll = idle_poll
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0       # threads waiting for work that no submit has claimed yet
        self._count = 0

    def submit(self, fn, *args):
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
                handoffs[0] += 1
            else:
                start = self._max is None or self._count < self._max
                self._count += start
        self._queue.put((fn, args))
        if start:
            threading.Thread(target=self._loop, name=f"{self._name}-{self._count}", daemon=True).start()

    def going_idle(self):
        """True for a one-thread pool with nothing queued: the work its thread just did is the last for now.
        (With several threads, others are likely still working, and what they produce can go together.)"""
        return self._max == 1 and self._queue.empty()

    def stop(self):
        """Let every thread finish what is queued, then end."""
        with self._lock:
            count = self._count
        for _ in range(count):
            self._queue.put(_STOP)

    def _loop(self):
        queue = self._queue
        while True:
            if self._idle_poll is not None and queue.empty():
                self._idle_poll(lambda: not queue.empty())
            item = queue.get()
            if item is _STOP:
                return
            fn, args = item
            fn(*args)
            with self._lock:
                self._idle += 1
