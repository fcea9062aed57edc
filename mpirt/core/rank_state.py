"""What one rank knows of its tasks, actors and objects, as plain dicts for the state API (``mpirt.util.state``).

Nothing here keeps a parallel copy of live work: the submitter's ``TaskRecord``s, the actor caller's
``ActorRecord``s and call records, the executor's and actor hosts' running calls and the object table are read
when a ``state_query`` asks (on the progress thread, under the runtime lock). Only finished tasks need keeping,
because their records are dropped at completion: the submitter and the actor caller append one small tuple per
finished task or call to ``finished_tasks``, a bounded buffer as Ray's task-event buffer is bounded (the oldest
go first; ``MPIRT_TASK_EVENTS_PER_RANK``, default 10000, about 2 MB per rank). Appending costs ~0.1 us per task.

The dicts carry Ray's field names and state names (``ray.util.state.common``). What only the asking side can
know (the pid of the worker that ran a task, whether a sent task is running, an actor's class on a borrower) is
filled in when the ranks' answers are merged (``cluster_state.py``).
"""
import collections
import operator
import os
import time

from .codec import loads
from .ids import hex_id, node_id_hex, worker_id_hex
from .object_ref import owner_of
from .object_value import size as value_size

FINISHED_TASKS_PER_RANK = int(os.environ.get("MPIRT_TASK_EVENTS_PER_RANK", "10000"))
# (task id, name, function name, type, actor id or None, worker rank or None, error blob or None, end time,
#  attempt, shape or None)
finished_tasks: collections.deque = collections.deque(maxlen=max(FINISHED_TASKS_PER_RANK, 0))

# The submitter's TaskState names -> Ray's TaskStatus names.
_SUBMITTER_STATES = {"WAITING": "PENDING_ARGS_AVAIL", "QUEUED": "PENDING_NODE_ASSIGNMENT",
                     "SENT": "SUBMITTED_TO_WORKER"}
# The caller's ActorState names -> Ray's ActorState names (a borrower's LOCATING/UNKNOWN: the owner knows).
_ACTOR_STATES = {"PENDING_CREATION": "PENDING_CREATION", "ALIVE": "ALIVE", "RESTARTING": "RESTARTING",
                 "DEAD": "DEAD"}
# mpirt's exception class names -> Ray's ErrorType names (common.proto); anything else a task raised is
# TASK_EXECUTION_EXCEPTION.
ERROR_TYPES = {"WorkerCrashedError": "WORKER_DIED", "ActorDiedError": "ACTOR_DIED",
               "TaskCancelledError": "TASK_CANCELLED", "TaskUnschedulableError": "TASK_UNSCHEDULABLE_ERROR",
               "ActorUnschedulableError": "ACTOR_UNSCHEDULABLE_ERROR", "OwnerDiedError": "OWNER_DIED",
               "ObjectLostError": "OBJECT_LOST", "TaskPlacementGroupRemoved": "TASK_PLACEMENT_GROUP_REMOVED",
               "ActorPlacementGroupRemoved": "ACTOR_PLACEMENT_GROUP_REMOVED", "OutOfMemoryError": "OUT_OF_MEMORY",
               "ObjectStoreFullError": "OBJECT_STORE_FULL"}
ERROR_MESSAGE_CHARS = 2000
RECENT_ERRORS = 10


def collect(rt, what):
    """This rank's part of ``what`` ("tasks", "actors", "objects", "all" or "summary"): a dict of lists of plain
    dicts (runtime lock held: the ``state_query`` handler)."""
    return complete(rt, capture(rt, what))


def capture(rt, what):
    """The part of ``collect`` that needs the runtime lock: live records read, the finished buffer copied
    (one C-level copy, ~50 us for 10000 tasks). ``complete`` does the rest without the lock."""
    out = {"rank": rt.rank, "pid": os.getpid(), "time": time.time(), "what": what}
    if what in ("tasks", "all", "summary"):
        out["finished"] = list(finished_tasks)
        out["classes"] = _classes(rt)
    if what in ("tasks", "all"):
        out["tasks"] = _pending_tasks(rt) + _pending_calls(rt) + _creations(rt)
        out["running"] = _running_here(rt)
    if what in ("actors", "all", "summary"):
        out["actors_owned"] = _owned_actors(rt)
        out["actors_hosted"] = _hosted_actors(rt)
    if what in ("objects", "all"):
        out["objects"] = _objects(rt)
    if what == "summary":
        out["counts"] = collections.Counter((t["type"], t["func_or_class_name"], t["state"], t["actor_id"]) for t in
                                            _pending_tasks(rt) + _pending_calls(rt) + _creations(rt))
        out["running_counts"] = _running_counts(rt)
    return out


def complete(rt, part):
    """``capture``'s part made whole: the finished tasks as task dicts, or (summary) counted."""
    finished = part.pop("finished", None)
    if finished is None:
        return part
    if part["what"] == "summary":
        counts = part["counts"]
        counts.update(_finished_counts(finished))
        part["counts"] = dict(counts)
        part["errors"] = _recent_errors(rt, finished, RECENT_ERRORS)
    else:
        part["tasks"] += _finished(rt, finished)
    return part


def _finished_counts(finished):
    """(type, function, FINISHED or FAILED, actor id) -> count. Counted in C (``itemgetter`` keys; a failed task's
    key holds its error blob, whose hash bytes cache), ~1 ms for 10000 tasks, then the few keys merged."""
    raw = collections.Counter(map(operator.itemgetter(3, 2, 4, 6), finished))
    counts: dict = collections.Counter()
    for (kind, function_name, actor_id, error), n in raw.items():
        counts[(kind, function_name, "FINISHED" if error is None else "FAILED",
                hex_id(actor_id) if actor_id is not None else None)] += n
    return counts


def _recent_errors(rt, finished, errors):
    """The latest ``errors`` failures among ``finished``, oldest first."""
    recent = []
    for task_id, name, function_name, kind, actor_id, worker, error, end, _, _ in reversed(finished):
        if error is None:
            continue
        error_type, message = error_of(error)
        recent.append({"time": end, "func_or_class_name": function_name, "error_type": error_type,
                       "error_message": message, "worker_rank": worker, "owner_rank": rt.rank,
                       "actor_id": hex_id(actor_id) if actor_id is not None else None})
        if len(recent) == errors:
            break
    return recent[::-1]


def _running_counts(rt):
    """(type, function or ``Class.method``) -> calls running on this rank now. A task whose function this rank
    never unpickled (it runs in a slot process) is counted under its task name."""
    running: dict = collections.Counter()
    if rt.executor is not None:
        for task in list(rt.executor.running.values()):
            if task.state.name != "FINISHED":
                running[("NORMAL_TASK", getattr(task.function, "__name__", None) or task.name)] += 1
    if rt.actor_host is not None:
        for actor in list(rt.actor_host.actors.values()):
            for call in list(actor.running.values()):
                running[("ACTOR_TASK", f"{actor.class_name}.{call.method}")] += 1
    return dict(running)


def error_of(blob):
    """(Ray's error_type, the error's text) of a failed task's result blob."""
    from_blob = _decode_error(blob)
    if from_blob is None:
        return "TASK_EXECUTION_EXCEPTION", None
    name = type(from_blob).__name__
    kind = next((ERROR_TYPES[base.__name__] for base in type(from_blob).__mro__ if base.__name__ in ERROR_TYPES),
                "TASK_EXECUTION_EXCEPTION")
    return kind, f"{name}: {from_blob}"[:ERROR_MESSAGE_CHARS]


def _decode_error(blob):
    try:
        value = loads(blob) if isinstance(blob, (bytes, bytearray, memoryview)) else None
    except Exception:   # an error class that cannot be imported here: still a failure
        return None
    return getattr(value, "error", value)


def _task(rt, task_id, name, function_name, kind, state, actor_id=None, worker=None, shape=None, attempt=0,
          parent=None, placement=None, error=None, end=None):
    job = format(rt.session, "08x")
    error_type, message = error_of(error) if error is not None else (None, None)
    return {"task_id": hex_id(task_id), "attempt_number": attempt, "name": name, "state": state, "job_id": job,
            "actor_id": hex_id(actor_id) if actor_id is not None else None, "type": kind,
            "func_or_class_name": function_name, "parent_task_id": hex_id(parent) if parent is not None else "",
            "worker_rank": worker, "error_type": error_type, "language": "PYTHON",
            "required_resources": dict(shape) if shape else {}, "placement_group_id":
            format(placement[0], "036x") if placement else None, "end_time_ms":
            int(end * 1000) if end is not None else None, "error_message": message, "owner_rank": rt.rank}


def _pending_tasks(rt):
    out = []
    for rec in rt.submitter.tasks.values():
        state = _SUBMITTER_STATES.get(rec.state.name)
        if state is None:
            continue
        worker = rec.lease.worker if rec.lease is not None else None
        parent = getattr(rec.parent, "task_id", None)
        out.append(_task(rt, rec.task_id, rec.name, getattr(rec.function, "function_name", rec.name), "NORMAL_TASK",
                         state, worker=worker, shape=rec.shape, attempt=rec.retries_used, parent=parent,
                         placement=rec.placement))
    return out


def _pending_calls(rt):
    out = []
    actors = rt.actors
    for rec in actors.calls.values():
        worker = actors.location_of(rec.actor_id)
        out.append(_task(rt, rec.call_id, rec.method, rec.method, "ACTOR_TASK", "SUBMITTED_TO_WORKER",
                         rec.actor_id, worker, attempt=rec.retries_used))
    for record in actors.actors.values():
        for rec in record.queue:
            if rec.kind != "call":
                continue
            state = "PENDING_ARGS_AVAIL" if rec.deps_left else "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"
            out.append(_task(rt, rec.call_id, rec.method, rec.method, "ACTOR_TASK", state, rec.actor_id,
                             attempt=rec.retries_used))
    return out


def _creations(rt):
    """One ACTOR_CREATION_TASK per actor this rank owns (its id is the actor's)."""
    out = []
    for actor_id, record in rt.actors.actors.items():
        if owner_of(actor_id) != rt.rank:
            continue
        state = {"PENDING_CREATION": "PENDING_NODE_ASSIGNMENT", "RESTARTING": "PENDING_NODE_ASSIGNMENT"}.get(
            record.state.name, "FINISHED")
        name = getattr(record, "class_name", None) or ""
        out.append(_task(rt, actor_id, f"{name}.__init__", f"{name}.__init__", "ACTOR_CREATION_TASK", state,
                         actor_id, record.location, record.held, record.restarts))
    return out


def _finished(rt, finished):
    out = []
    for task_id, name, function_name, kind, actor_id, worker, error, end, attempt, shape in finished:
        state = "FAILED" if error is not None else "FINISHED"
        out.append(_task(rt, task_id, name, function_name, kind, state, actor_id, worker, shape, attempt,
                         error=error, end=end))
    return out


def _running_here(rt):
    """Ids of the tasks and actor calls running on this rank now (their submitters see them only as sent)."""
    running = []
    if rt.executor is not None:
        running += [task_id for task_id, task in list(rt.executor.running.items()) if task.state.name != "FINISHED"]
    if rt.actor_host is not None:
        for actor in list(rt.actor_host.actors.values()):
            running += list(actor.running)
    return [hex_id(task_id) for task_id in running]


def _classes(rt):
    """Actor id (hex) -> class name for the actors this rank owns or hosts: a caller's record names only the method."""
    names = {hex_id(actor_id): record.class_name for actor_id, record in rt.actors.actors.items()
             if getattr(record, "class_name", None)}
    if rt.actor_host is not None:
        names.update((hex_id(actor_id), actor.class_name) for actor_id, actor in rt.actor_host.actors.items())
    return names


def _owned_actors(rt):
    out = []
    for actor_id, record in rt.actors.actors.items():
        if owner_of(actor_id) != rt.rank:
            continue
        out.append({"actor_id": hex_id(actor_id), "state": _ACTOR_STATES.get(record.state.name, "PENDING_CREATION"),
                    "worker_rank": record.location, "class_name": getattr(record, "class_name", None),
                    "name": getattr(record, "name", None) or "", "required_resources": dict(record.held or {}),
                    "num_restarts": record.restarts, "owner_rank": rt.rank,
                    "death_cause": _death_cause(record.dead_blob)})
    return out


def _death_cause(blob):
    if blob is None:
        return None
    _, message = error_of(blob)
    return {"actor_died_error_context": {"error_message": message}}


def _hosted_actors(rt):
    if rt.actor_host is None:
        return []
    out = []
    for actor_id, actor in rt.actor_host.actors.items():
        out.append({"actor_id": hex_id(actor_id), "class_name": actor.class_name, "name": actor.name,
                    "alive": actor.dead_error is None, "worker_rank": rt.rank, "pid": os.getpid(),
                    "is_detached": actor.detached, "num_restarts": actor.restarts,
                    "placement_group_id": format(actor.placement[0], "036x") if actor.placement else None,
                    "repr_name": ""})
    return out


def _objects(rt):
    out = []
    task_of = rt.submitter.task_of_object
    tasks = rt.submitter.tasks
    kind = "DRIVER" if rt.rank == 0 else "WORKER"
    for object_id, entry in list(rt.objects.entries.items()):
        if owner_of(object_id) != rt.rank:
            continue
        task = tasks.get(task_of.get(object_id))
        if task is not None:
            status = _SUBMITTER_STATES.get(task.state.name, "NIL")
        else:
            status = "FINISHED" if entry.ready else "NIL"
        size = value_size(entry.blob) if entry.ready and entry.blob is not None else -1
        out.append({"object_id": hex_id(object_id), "object_size": size, "task_status": status,
                    "attempt_number": 0, "reference_type": "LOCAL_REFERENCE", "call_site": "disabled",
                    "type": kind, "pid": os.getpid(), "owner_rank": rt.rank})
    return out


def node_hex(rt, rank):
    """The node id (hex) of ``rank``, or None when it is not known (a rank not in the store's table)."""
    node_of = rt.store.arena.node_of
    node = node_of[rank] if rank is not None and 0 <= rank < len(node_of) else None
    return None if node is None else node_id_hex(rt.session, node)


def worker_hex(rt, rank):
    return None if rank is None else worker_id_hex(rt.session, rank)
