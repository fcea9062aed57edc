"""The object API: put, get, wait, cancel, and cluster queries."""
from __future__ import annotations

import bisect
import inspect
import itertools
import math
import numbers
import operator
import os
from typing import Any, Iterable, SupportsIndex

from .actor import ActorClass
from .core import cluster_state, current, object_ref, tracing
from .core.current import runtime_for_call
from .core.ids import node_id_hex
from .core.object_ref import ObjectRef
from .core.protocol import DRIVER_RANK, HEAD_RANK
from .core.signals import holds_signals
from .core.streams import ObjectRefGenerator
from .remote_function import RemoteFunction
from .runtime_context import gpu_ids


def remote(*args: Any, **options: Any) -> Any:
    """``@remote`` or ``@remote(num_cpus=..., ...)`` on a function."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("@remote takes either a function or keyword options only, e.g. @remote(num_cpus=2)")

    def decorator(target):
        return _make_remote(target, options)

    return decorator


def _make_remote(target, options):
    if inspect.isclass(target):
        return ActorClass(target, options)
    if not callable(target):
        raise TypeError(f"@remote needs a function, got {type(target).__name__}")
    return RemoteFunction(target, options)


@holds_signals
def put(value: Any) -> ObjectRef:
    """Store ``value`` and return an ObjectRef owned by this rank."""
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef is not allowed; pass the ref itself instead")
    return runtime_for_call().put(value)


@holds_signals
def get(object_refs: ObjectRef | list[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value(s) of ``object_refs`` (a ref or a list of refs), waiting for them. Raises the task's error (a TaskError
    that is also an instance of the original exception class) as soon as any requested object failed, and
    GetTimeoutError if ``timeout`` seconds pass first (``timeout=0``: only if one is not ready now). As in Ray, anything
    but an ObjectRef or a list (a tuple too) is a ValueError, and a list holding something else a TypeError."""
    single = isinstance(object_refs, ObjectRef)
    refs = [object_refs] if single else object_refs
    if not isinstance(refs, list):
        hint = " Pass list(object_refs)." if isinstance(refs, (tuple, set, frozenset)) else ""
        raise ValueError(f"Invalid type of object refs, {type(object_refs)}, is given. 'object_refs' must either be "
                         f"an ObjectRef or a list of ObjectRefs.{hint}")
    for ref in refs:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"Attempting to call `get` on the value {_short(ref)}, which is not an ray.ObjectRef.")
    timeout = _checked_timeout("get", timeout)
    values = runtime_for_call().get(refs, timeout)
    return values[0] if single else values


@holds_signals
def wait(object_refs: list[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Split ``object_refs`` into (ready, not_ready) once ``num_returns`` are ready or ``timeout`` seconds
    passed; both lists keep the input order; ``wait([])`` is ``([], [])``. Checks and messages are Ray's: a list
    of distinct refs (TypeError, ValueError), ``1 <= num_returns <= len(object_refs)`` (ValueError), timeout >= 0.

    ``fetch_local`` is accepted and has no effect: an object is ready once its owner knows it is, and ``get``
    reads it from wherever it is (same-node reads map the store, so there is nothing to fetch ahead)."""
    if isinstance(object_refs, ObjectRef):
        raise TypeError(f"wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator, got a single "
                        f"ray.ObjectRef or ray.ObjectRefGenerator {object_refs}. Pass [{object_refs}].")
    if not isinstance(object_refs, list):
        hint = " Pass list(object_refs)." if isinstance(object_refs, (tuple, set, frozenset)) else ""
        raise TypeError(f"wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator, got "
                        f"{type(object_refs)}.{hint}")
    timeout = _checked_timeout("wait", timeout)
    if type(object_refs) is NotReadyRefs and object_refs and getattr(object_refs, "checked_in", None) is not None:
        rt = runtime_for_call()
        if object_refs.checked_in == rt.session:   # what an earlier wait returned, nothing added since
            return _wait_checked(rt, object_refs, _checked_num_returns(num_returns, len(object_refs)), timeout)
    # The common case (plain refs only) is checked with C-level loops: wait on 1,000 refs is a workload of its own.
    plain = bool(object_refs) and set(map(type, object_refs)) <= object_ref.REF_CLASSES
    if not plain:
        for ref in object_refs:
            if not isinstance(ref, (ObjectRef, ObjectRefGenerator)):
                raise TypeError(f"wait() expected a list of ray.ObjectRef or ray.ObjectRefGenerator, got list "
                                f"containing {type(ref)}: {_short(ref)}")
    if not object_refs:
        return [], []
    distinct = set(map(object_ref.id_of, object_refs)) if plain else set(object_refs)
    if len(distinct) != len(object_refs):
        twice = next(ref for i, ref in enumerate(object_refs) if ref in object_refs[:i])
        raise ValueError(f"Wait requires a list of unique ray_waitables. {twice} is in the list more than once.")
    num_returns = _checked_num_returns(num_returns, len(object_refs))
    rt = runtime_for_call()
    if plain and object_ref.all_in_session(distinct, rt.session):
        return _wait_checked(rt, object_refs, num_returns, timeout)
    waitables = object_refs if plain else [ref.waitable() if isinstance(ref, ObjectRefGenerator) else ref
                                           for ref in object_refs]
    flags = rt.wait_objects(waitables, num_returns, timeout, fail_fast=False)
    return _split_ready(object_refs, flags, num_returns)


class NotReadyRefs(list):
    """The not-ready list that ``wait`` returns: a list (a subclass, as ``isinstance`` sees) of refs that ``wait``
    found to be refs, distinct, and of this session. Handed back unchanged, as in the loop ``ready, rest =
    wait(rest)``, it skips those checks: each is a pass over every ref, ~30 of the ~36 us that a wait on 500 refs
    took. Whatever adds to it (append, insert, extend, ``+=``, ``*=``, item assignment) clears the mark, so the
    next ``wait`` checks it again; taking refs out keeps them distinct. Copies and pickles are plain lists."""

    __slots__ = ("checked_in",)    # the session of the wait that made it, or None once something was added

    def append(self, item):
        self.checked_in = None
        list.append(self, item)

    def extend(self, items):
        self.checked_in = None
        list.extend(self, items)

    def insert(self, index, item):
        self.checked_in = None
        list.insert(self, index, item)

    def __setitem__(self, index, value):
        self.checked_in = None
        list.__setitem__(self, index, value)

    def __iadd__(self, items: Iterable[Any]) -> NotReadyRefs:  # type: ignore[misc]
        self.checked_in = None
        return list.__iadd__(self, items)

    def __imul__(self, times: SupportsIndex) -> NotReadyRefs:
        self.checked_in = None
        return list.__imul__(self, times)

    def __reduce__(self):
        return list, (list(self),)


def _wait_checked(rt, refs: list, num_returns: int, timeout) -> tuple[list, list]:
    """``wait`` on ``refs`` once they are known to be distinct refs of this session."""
    ready_at = rt.first_ready(refs, num_returns)
    if ready_at is not None:
        ready, not_ready = _split_at(refs, ready_at)
    else:
        ready, not_ready = _split_ready(refs, rt.wait_objects(refs, num_returns, timeout, fail_fast=False),
                                        num_returns)
    not_ready = NotReadyRefs(not_ready)
    not_ready.checked_in = rt.session
    return ready, not_ready


def _split_at(refs: list, positions: list[int]) -> tuple[list, list]:
    """``wait``'s answer when the refs at ``positions`` (ascending) are the ready ones it returns: the others
    are slices of ``refs`` between them (a copy of pointers, no per-ref step)."""
    not_ready, start = [], 0
    for position in positions:
        not_ready += refs[start:position]
        start = position + 1
    not_ready += refs[start:]
    return [refs[position] for position in positions], not_ready


def _split_ready(refs: list, flags: list[bool], num_returns: int) -> tuple[list, list]:
    """``wait``'s answer: the first ``num_returns`` ready refs, and the others, each list in input order, in
    C-level passes only (``wait`` is called once per result in a loop over 1,000 refs in Ray's microbenchmark)."""
    if flags.count(True) > num_returns:
        cut = bisect.bisect_left(list(itertools.accumulate(flags)), num_returns) + 1
        head, head_flags = refs[:cut], flags[:cut]
        return (list(itertools.compress(head, head_flags)),
                list(itertools.compress(head, map(operator.not_, head_flags))) + refs[cut:])
    return list(itertools.compress(refs, flags)), list(itertools.compress(refs, map(operator.not_, flags)))


@holds_signals
def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task (or actor call) that produces ``object_ref``; a finished one is left alone. As in Ray,
    it returns at once, and ``get`` then raises TaskCancelledError:

    - a task not started yet never runs;
    - a running task gets KeyboardInterrupt raised in its thread (as Ray raises it in the worker): Python code
      stops at its next bytecode, a blocking C call (``time.sleep``, I/O) first returns; a task that catches
      it and returns a value has that value;
    - ``force=True``: its results fail at once, whatever the task still does (Ray kills the worker process;
      here a rank also runs other tasks and actors, so the task is interrupted as above and its slot is free
      once it stops);
    - ``recursive=True`` (the default): the tasks it submitted are cancelled too; ``recursive=False`` leaves
      them running.
    """
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"ray.cancel() only supported for object refs. For actors, try ray.kill(). "
                        f"Got: {type(object_ref)}.")
    runtime_for_call().submitter.cancel(object_ref.id, bool(force), bool(recursive))


def cluster_resources() -> dict[str, float]:
    """Total resources of all ranks, e.g. ``{"CPU": 4.0}``."""
    return runtime_for_call().cluster.totals()


def available_resources() -> dict[str, float]:
    """Resources not held by leases right now, as the head scheduler sees them."""
    return runtime_for_call().queries.ask(HEAD_RANK, "resources_query")


def object_store_stats() -> dict[str, Any]:
    """Object store figures per node and per rank. Each node shows its pool: capacity (and why that size:
    ``capacity_reason``), bytes in use by objects, bytes reserved in chunks by its ranks, free bytes,
    fragmentation (reserved but unused, as a fraction of reserved), where the memory and spill files live; and
    the ranks' counters summed: objects stored, spilled to disk, restored, reads served from disk, local
    zero-copy reads, cross-node RMA gets."""
    return cluster_state.object_store_stats(runtime_for_call())


def get_gpu_ids() -> list:
    """The GPU ids assigned to the current task or actor ([] if it asked for none). GPUs belong to worker
    ranks (shared out by node-local rank); the process sees only its own through CUDA_VISIBLE_DEVICES, so
    device 0 there is the first id here."""
    return gpu_ids(runtime_for_call())


def nodes() -> list[dict[str, Any]]:
    """One entry per node: its ranks, hostname and total resources, as Ray's ``nodes()``. ``NodeID`` is a hex
    string, as ``get_runtime_context().get_node_id()`` returns it."""
    rt = runtime_for_call()
    node_of = rt.store.arena.node_of
    info = rt.config["rank_info"]
    result: dict[Any, dict[str, Any]] = {}
    for rank in rt.live_ranks():
        node = node_of[rank]
        entry = result.setdefault(node, {"NodeID": node_id_hex(rt.session, node), "Alive": True, "Ranks": [],
                                         "Resources": {}, "NodeManagerHostname": info[rank]["hostname"], "GPUIds": []})
        entry["Ranks"].append(rank)
        entry["GPUIds"] += info[rank]["gpu_ids"]
        for name, amount in rt.cluster.resources_by_rank[rank].items():
            entry["Resources"][name] = entry["Resources"].get(name, 0.0) + amount
    return [result[node] for node in sorted(result)]


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """What every rank did, as Chrome trace events (Ray's ``timeline``): tasks, actor calls, waits, object
    transfers between ranks, spills and restores. Returns the events, or writes them to ``filename`` as JSON
    (open it in Perfetto or chrome://tracing) and returns None. RuntimeError before ``init()``, as in Ray. A
    ``filename`` that is not a path (an int would be taken by ``open`` as a file descriptor of the process, and
    closed) is a TypeError before anything is gathered."""
    if filename is not None and not isinstance(filename, (str, os.PathLike)):
        raise TypeError(f"timeline(filename={_short(filename)}): give the path of the JSON file to write (a str or "
                        f"os.PathLike), or None to get the events back")
    rt = current.runtime()
    if rt is None:
        raise RuntimeError("mpirt has not been started yet. Timeline requires mpirt to be initialized first "
                           "(call mpirt.init()).")
    by_rank = {rt.rank: list(tracing.events)}
    by_rank.update((rank, rt.queries.ask(rank, "timeline_query")) for rank in rt.live_ranks() if rank != rt.rank)
    events = tracing.chrome_trace(by_rank, {DRIVER_RANK: "driver", HEAD_RANK: "scheduler"})
    if filename is None:
        return events
    tracing.write(filename, events)
    return None


def _checked_timeout(where, timeout):
    """``timeout`` as the waits take it: None (no limit) or seconds >= 0."""
    if timeout is None:
        return None
    if not isinstance(timeout, numbers.Real):
        raise TypeError(f"{where}(timeout=...) must be None or a number of seconds, got {_short(timeout)} "
                        f"({type(timeout).__name__})")
    if not timeout >= 0:   # NaN too
        raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")
    return None if timeout == math.inf else float(timeout)


def _checked_num_returns(num_returns, count):
    """Ray takes any whole number (1.0, numpy integers, True as 1); a text or None is a TypeError."""
    if not (isinstance(num_returns, numbers.Integral)
            or isinstance(num_returns, numbers.Real) and float(num_returns).is_integer()):
        raise TypeError(f"wait(num_returns=...) must be a whole number, got {_short(num_returns)} "
                        f"({type(num_returns).__name__})")
    value = int(num_returns)
    if value <= 0:
        raise ValueError(f"Invalid number of objects to return {value}.")
    if value > count:
        raise ValueError(f"num_returns cannot be greater than the number of ray_waitables provided to ray.wait. "
                         f"(num_returns={value}, {count} refs given)")
    return value


def _short(value):
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


object_ref.set_get(get)   # ref.future() and `await ref` get through the API (forwarded in a task slot)
