"""Utilities on top of the core API."""
import collections

from ..actor import list_named_actors  # noqa: F401 - Ray's ray.util.list_named_actors
from ..api import get, wait
from ..exceptions import GetTimeoutError


class ActorPool:
    """Spread work over a fixed set of actors, one call per idle actor.

    ``fn(actor, value)`` must start a call on ``actor`` and return its ObjectRef.
    """

    def __init__(self, actors):
        self._idle = list(actors)
        if not self._idle:
            raise ValueError("ActorPool needs at least one actor")
        self._running = {}                   # ref -> (index, actor)
        self._ref_of_index = {}
        self._waiting = collections.deque()  # (index, fn, value) not started: no idle actor yet
        self._next_index = 0
        self._next_return = 0

    def submit(self, fn, value):
        """Queue ``fn(actor, value)``; it starts as soon as an actor is idle."""
        index = self._next_index
        self._next_index += 1
        if self._idle:
            self._start(index, fn, value, self._idle.pop())
        else:
            self._waiting.append((index, fn, value))

    def _start(self, index, fn, value, actor):
        ref = fn(actor, value)
        self._running[ref] = (index, actor)
        self._ref_of_index[index] = ref

    def _finish(self, ref):
        index, actor = self._running.pop(ref)
        del self._ref_of_index[index]
        if self._waiting:
            self._start(*self._waiting.popleft(), actor)
        else:
            self._idle.append(actor)

    def has_next(self):
        return bool(self._running) or bool(self._waiting)

    def has_free(self):
        return bool(self._idle) and not self._waiting

    def get_next(self, timeout=None):
        """The next result in submission order."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        ref = self._ref_of_index[self._next_return]
        ready, _ = wait([ref], timeout=timeout)
        if not ready:
            raise GetTimeoutError(f"ActorPool.get_next() timed out after {timeout} s")
        self._next_return += 1
        self._finish(ref)
        return get(ref)

    def get_next_unordered(self, timeout=None):
        """Whichever result is ready first."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        ready, _ = wait(list(self._running), num_returns=1, timeout=timeout)
        if not ready:
            raise GetTimeoutError(f"ActorPool.get_next_unordered() timed out after {timeout} s")
        ref = ready[0]
        self._finish(ref)
        # Ordered and unordered retrieval don't mix; keep the ordered cursor past what is gone.
        while self._next_return < self._next_index and self._next_return not in self._ref_of_index \
                and not any(i == self._next_return for i, _, _ in self._waiting):
            self._next_return += 1
        return get(ref)

    def map(self, fn, values):
        """Results of ``fn(actor, v)`` for each value, in order."""
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn, values):
        """Results of ``fn(actor, v)`` for each value, as they complete."""
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next_unordered()

    def push(self, actor):
        """Add an actor to the pool."""
        if self._waiting:
            self._start(*self._waiting.popleft(), actor)
        else:
            self._idle.append(actor)

    def pop_idle(self):
        """Remove and return an idle actor, or None."""
        return self._idle.pop() if self.has_free() else None
