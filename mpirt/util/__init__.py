"""Utilities on top of the core API: Ray's ``ray.util`` names that make sense here (``ActorPool``,
``as_completed``, ``map_unordered``, ``get_node_ip_address``, ``list_named_actors``)."""
import collections
import socket

from ..actor import list_named_actors  # noqa: F401 - Ray's ray.util.list_named_actors
from ..api import get, put, wait
from ..core.object_ref import ObjectRef
from ..exceptions import GetTimeoutError
from . import report  # noqa: F401 - registers the job report written at shutdown
from . import scheduling_strategies  # noqa: F401 - ray.util.scheduling_strategies works without an import, as in Ray
from . import state  # noqa: F401 - mpirt.util.state works without an import; task slots forward to it by name
from .placement_group import (get_current_placement_group, get_placement_group,  # noqa: F401 - Ray's ray.util names
                              placement_group, placement_group_table, remove_placement_group)

# Results ``as_completed``/``map_unordered`` wait for at a time, and tasks ``map_unordered`` keeps in flight:
# Ray's defaults.
DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def get_node_ip_address(address="8.8.8.8:53"):
    """The IP address of this node: the one its traffic towards ``address`` would leave from (a UDP socket is
    connected, nothing is sent), else the host name's, else 127.0.0.1."""
    host, _, port = address.rpartition(":")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, int(port)))
            return probe.getsockname()[0]
    except (OSError, ValueError):
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def as_completed(refs, *, chunk_size=DEFAULT_CHUNK_SIZE, yield_obj_refs=False, **kwargs):
    """Yield the results of ``refs`` as they become ready, ``chunk_size`` at a time (their refs with
    ``yield_obj_refs=True``); ``kwargs`` go to ``wait`` (``timeout``, ``fetch_local``)."""
    _check_chunk_size(chunk_size, kwargs)
    refs = list(refs)
    while refs:
        ready, refs = _next_batch(refs, chunk_size, yield_obj_refs, kwargs)
        yield from ready


def map_unordered(fn, items, *, backpressure_size=DEFAULT_BACKPRESSURE_SIZE, chunk_size=DEFAULT_CHUNK_SIZE,
                  yield_obj_refs=False, **kwargs):
    """``fn.remote(item)`` for each item, yielding results as they complete; at most ``backpressure_size``
    tasks are in flight (None: no limit)."""
    if backpressure_size is None:
        backpressure_size = float("inf")
    elif backpressure_size <= 0:
        raise ValueError("backpressure_size must be positive.")
    _check_chunk_size(chunk_size, kwargs)
    refs = []
    for item in items:
        refs.append(fn.remote(item))
        if len(refs) >= backpressure_size:
            ready, refs = _next_batch(refs, chunk_size, yield_obj_refs, kwargs)
            yield from ready
    yield from as_completed(refs, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **kwargs)


def _check_chunk_size(chunk_size, kwargs):
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    if "num_returns" in kwargs:
        raise ValueError("Use the `chunk_size` argument instead of `num_returns`.")


def _next_batch(refs, chunk_size, yield_obj_refs, kwargs):
    ready, rest = wait(refs, num_returns=min(chunk_size, len(refs)), **kwargs)
    return (ready if yield_obj_refs else get(ready)), rest


class ActorPool:
    """Spread work over a fixed set of actors, one call per idle actor. ``fn(actor, value)`` must start a
    call on ``actor`` and return its ObjectRef."""

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
        """Queue ``fn(actor, value)``; it starts as soon as an actor is idle. If ``fn`` raises (or returns
        something other than an ObjectRef) here, the error comes from ``submit`` and the pool is as before."""
        if not callable(fn):
            raise TypeError(f"ActorPool.submit(fn={fn!r}): fn must be a callable taking (actor, value) and "
                            f"returning the ObjectRef of a call, e.g. lambda actor, value: actor.method.remote(value)")
        if self._idle:
            actor = self._idle.pop()
            try:
                ref = _started_call(fn, actor, value)
            except BaseException:
                self._idle.append(actor)
                raise
            self._record(self._next_index, ref, actor)
        else:
            self._waiting.append((self._next_index, fn, value))
        self._next_index += 1

    def _start(self, index, fn, value, actor):
        """Start a queued call on an actor that just became idle; an error in ``fn`` becomes that call's result
        (raised by the get_next that reaches it) and the actor stays in the pool."""
        try:
            ref = _started_call(fn, actor, value)
        except Exception as exc:   # noqa: B902 - any error of the user's fn is that call's result
            ref = put(_FailedSubmit(exc))
            self._record(index, ref, None)
            self.push(actor)
            return
        self._record(index, ref, actor)

    def _record(self, index, ref, actor):
        self._running[ref] = (index, actor)
        self._ref_of_index[index] = ref

    def _finish(self, ref):
        index, actor = self._running.pop(ref)
        del self._ref_of_index[index]
        if actor is not None:
            self.push(actor)

    @staticmethod
    def _value(ref):
        value = get(ref)
        if isinstance(value, _FailedSubmit):
            raise value.error
        return value

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
        return self._value(ref)

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
        return self._value(ref)

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


class _FailedSubmit:
    """The result of a queued ActorPool call whose ``fn`` raised when an actor became free for it."""

    def __init__(self, error):
        self.error = error


def _started_call(fn, actor, value):
    ref = fn(actor, value)
    if not isinstance(ref, ObjectRef):
        raise ValueError(f"ActorPool: fn(actor, value) must return the ObjectRef of an actor call, e.g. "
                         f"lambda actor, value: actor.method.remote(value); it returned {ref!r} for value={value!r}")
    return ref
