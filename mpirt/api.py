"""The object API: put, get, wait, cancel, and cluster queries."""
import inspect
import numbers

from .launch import runtime_for_call
from .object_ref import ObjectRef
from .remote_function import RemoteFunction
from .runtime import HEAD_RANK
from .signals import holds_signals
from .store.manager import ObjectStoreFullError, encode


def remote(*args, **options):
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
        from .actor import ActorClass

        return ActorClass(target, options)
    if not callable(target):
        raise TypeError(f"@remote needs a function, got {type(target).__name__}")
    return RemoteFunction(target, options)


@holds_signals
def put(value):
    """Store ``value`` and return an ObjectRef owned by this rank."""
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef is not allowed; pass the ref itself instead")
    rt = runtime_for_call()
    try:
        blob = encode(value, rt.store)
    except ObjectStoreFullError:
        raise
    except Exception as exc:
        raise TypeError(f"Could not serialize the value given to put() (type {type(value).__name__}): {exc}") from exc
    with rt.lock:
        object_id = rt.next_id()
        rt.objects.create_owned(object_id)
        rt.objects.set_ready(object_id, blob)
        return ObjectRef(object_id)


@holds_signals
def get(object_refs, *, timeout=None):
    """The value(s) of ``object_refs`` (a ref or a list of refs), waiting for them.

    Raises the task's error (a TaskError that is also an instance of the original
    exception class) as soon as any requested object failed, and
    GetTimeoutError if ``timeout`` seconds pass first.
    """
    single = isinstance(object_refs, ObjectRef)
    refs = [object_refs] if single else object_refs
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, ObjectRef) for r in refs):
        raise TypeError(f"get() takes an ObjectRef or a list of ObjectRefs, got {_describe(object_refs)}")
    _check_timeout(timeout)
    rt = runtime_for_call()
    if refs:
        rt.wait_objects(refs, len(refs), timeout, fail_fast=True)
        rt.raise_first_error(refs)
    values = [rt.value_of(ref) for ref in refs]
    return values[0] if single else values


@holds_signals
def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    """Split ``object_refs`` into (ready, not_ready) once ``num_returns`` are ready
    or ``timeout`` seconds passed; both lists keep the input order."""
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() takes a list of ObjectRefs, got {_describe(object_refs)}")
    if not all(isinstance(r, ObjectRef) for r in object_refs):
        raise TypeError("wait() takes a list of ObjectRefs; found " +
                        ", ".join(sorted({type(r).__name__ for r in object_refs if not isinstance(r, ObjectRef)})))
    if len(set(object_refs)) != len(object_refs):
        raise ValueError("wait() got the same ObjectRef more than once")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 1:
        raise ValueError(f"wait(num_returns=...) must be a positive integer, got {num_returns!r}")
    if num_returns > len(object_refs):
        raise ValueError(f"wait(num_returns={num_returns}) is more than the {len(object_refs)} refs given")
    _check_timeout(timeout)
    rt = runtime_for_call()
    flags = rt.wait_objects(list(object_refs), num_returns, timeout, fail_fast=False)
    ready, not_ready = [], []
    for ref, flag in zip(object_refs, flags):
        (ready if flag and len(ready) < num_returns else not_ready).append(ref)
    return ready, not_ready


@holds_signals
def cancel(object_ref, *, force=False, recursive=True):
    """Cancel the task that produces ``object_ref``; ``get`` then raises TaskCancelledError.

    A task not started yet never runs; a running task gets TaskCancelledError
    raised inside it (pure-Python code stops at its next bytecode).
    """
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() takes an ObjectRef, got {_describe(object_ref)}")
    rt = runtime_for_call()
    rt.submitter.cancel(object_ref.id, force)


def cluster_resources():
    """Total resources of all ranks, e.g. ``{"CPU": 4.0}``."""
    return runtime_for_call().cluster.totals()


def available_resources():
    """Resources not held by leases right now, as the head scheduler sees them."""
    return runtime_for_call().query(HEAD_RANK, "resources_query")


def object_store_stats():
    """Object store figures per node and per rank. Each node shows its pool: capacity (and why
    that size: ``capacity_reason``), bytes in use by objects, bytes reserved in chunks by its
    ranks, free bytes, fragmentation (reserved but unused, as a fraction of reserved), where the
    memory and spill files live; and the ranks' counters summed: objects stored, spilled to
    disk, restored, reads served from disk, local zero-copy reads, cross-node RMA gets."""
    rt = runtime_for_call()
    ranks = [rt.store.local_stats()]
    ranks += [rt.query(rank, "store_stats_query") for rank in range(rt.size) if rank != rt.rank]
    nodes = {}
    for stats in sorted(ranks, key=lambda s: s["rank"]):
        node = nodes.setdefault(stats["node"], {"ranks": [], **stats["node_store"]})
        node["ranks"].append(stats["rank"])
        for key, value in stats.items():
            if key not in ("rank", "node", "node_store") and key not in stats["node_store"]:
                node[key] = node.get(key, 0) + value
    for node in nodes.values():
        node["free_bytes"] = node["capacity_bytes"] - node["used_bytes"]
        # used_bytes sums the ranks' figures, each read at its own moment, so it can briefly
        # exceed the table's reserved_bytes; fragmentation is then 0, not negative
        reserved = node["reserved_bytes"]
        node["fragmentation"] = max(0.0, 1 - node["used_bytes"] / reserved) if reserved else 0.0
    return {"nodes": nodes, "ranks": sorted(ranks, key=lambda s: s["rank"])}


def get_gpu_ids():
    """The GPU ids assigned to the current task or actor ([] if it asked for none).

    GPUs belong to worker ranks (shared out by node-local rank); the process sees
    only its own through CUDA_VISIBLE_DEVICES, so device 0 there is the first id here.
    """
    from .runtime import task_context

    rt = runtime_for_call()
    if not getattr(task_context, "num_gpus", 0.0):
        return []
    ids = rt.config["rank_info"][rt.rank]["gpu_ids"]
    return [int(i) if i.isdigit() else i for i in ids]


def nodes():
    """One entry per node: its ranks, hostname and total resources, as Ray's ``nodes()``."""
    rt = runtime_for_call()
    node_of = rt.store.arena.node_of
    info = rt.config["rank_info"]
    result = {}
    for rank, node in enumerate(node_of):
        entry = result.setdefault(node, {"NodeID": node, "Alive": True, "Ranks": [], "Resources": {},
                                         "NodeManagerHostname": info[rank]["hostname"], "GPUIds": []})
        entry["Ranks"].append(rank)
        entry["GPUIds"] += info[rank]["gpu_ids"]
        for name, amount in rt.cluster.resources_by_rank[rank].items():
            entry["Resources"][name] = entry["Resources"].get(name, 0.0) + amount
    return [result[node] for node in sorted(result)]


def timeline(filename=None):
    """Tasks, actor calls and waits of every rank as Chrome trace events; written to
    ``filename`` as JSON when given (open it in Perfetto or chrome://tracing)."""
    from . import tracing
    from .runtime import DRIVER_RANK

    rt = runtime_for_call()
    by_rank = {rt.rank: list(tracing.events)}
    for rank in range(rt.size):
        if rank != rt.rank:
            by_rank[rank] = rt.query(rank, "timeline_query")
    roles = {DRIVER_RANK: "driver", HEAD_RANK: "scheduler"}
    events = tracing.chrome_trace(by_rank, roles)
    if filename is not None:
        tracing.write(filename, events)
    return events


def _check_timeout(timeout):
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0):
        raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")


def _describe(value):
    return f"{type(value).__name__} {value!r}"[:200]
