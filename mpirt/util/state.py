"""Ray's state API (``ray.util.state``) over MPI: what the tasks, actors, objects, nodes and placement groups of
the running job are doing, asked from the driver, a task or an actor.

Ray asks its dashboard server over HTTP; here every live rank is asked over MPI (``state_query``,
``core/cluster_state.py``) and answers from the records it keeps anyway (``core/rank_state.py``), so there is no
server and no port. The names, keywords, defaults, fields, state names and return types are Ray's: ``list_*``
return lists of dataclasses (attribute access, and ``obj["key"]`` as Ray allows), ``summarize_*`` dicts keyed
``"cluster"``. Detail-only fields are None unless ``detail=True``, as in Ray.

What differs, on purpose: ``address`` must be None or "auto" (the state is this job's, over MPI); finished tasks
are kept per submitting rank in a bounded buffer (``MPIRT_TASK_EVENTS_PER_RANK``, default 10000; Ray's buffer is
bounded too); an object's ``ip`` is its owner's host name; ``call_site`` is "disabled" (as in Ray without
``RAY_record_ref_creation_sites``).
"""
from __future__ import annotations

import dataclasses
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union, cast

from ..core import cluster_state, current
from .report import report  # noqa: F401 - the job report on demand: mpirt.util.state.report(path)

DEFAULT_RPC_TIMEOUT = 30
DEFAULT_LIMIT = 100
_MOST_RETURNS = 1024     # get_task(ref): how far below a return's id its task's id may be

PredicateType = str
SupportedFilterType = Union[str, bool, int, float]


class RayStateApiException(Exception):
    """The state could not be gathered (a rank did not answer, a filter names no filterable column)."""


def state_column(*, filterable: bool, detail: bool = False, **kwargs: Any) -> Any:
    """A dataclass field that says whether it is filterable and whether only ``detail=True`` shows it."""
    if detail and "default" not in kwargs:
        kwargs["default"] = None
    return field(metadata={"detail": detail, "filterable": filterable}, **kwargs)


class StateSchema:
    """What every state dataclass offers, as Ray's: column sets, ``asdict``, and dict-like access."""

    @classmethod
    def list_columns(cls, detail: bool = True) -> List[str]:
        return [f.name for f in dataclasses.fields(cast(Any, cls)) if detail or not f.metadata.get("detail", False)]

    @classmethod
    def columns(cls) -> set:
        return set(cls.list_columns(detail=True))

    @classmethod
    def filterable_columns(cls) -> set:
        return {f.name for f in dataclasses.fields(cast(Any, cls)) if f.metadata.get("filterable", False)}

    @classmethod
    def base_columns(cls) -> set:
        return set(cls.list_columns(detail=False))

    @classmethod
    def detail_columns(cls) -> set:
        return set(cls.list_columns(detail=True))

    def asdict(self) -> Dict[str, Any]:
        return dataclasses.asdict(cast(Any, self))

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass
class TaskState(StateSchema):
    task_id: str = state_column(filterable=True)
    attempt_number: int = state_column(filterable=True)
    name: str = state_column(filterable=True)
    state: str = state_column(filterable=True)
    job_id: str = state_column(filterable=True)
    actor_id: Optional[str] = state_column(filterable=True)
    type: str = state_column(filterable=True)
    func_or_class_name: str = state_column(filterable=True)
    parent_task_id: str = state_column(filterable=True)
    node_id: Optional[str] = state_column(filterable=True)
    worker_id: Optional[str] = state_column(filterable=True)
    worker_pid: Optional[int] = state_column(filterable=True)
    error_type: Optional[str] = state_column(filterable=True)
    language: Optional[str] = state_column(detail=True, filterable=True)
    required_resources: Optional[dict] = state_column(detail=True, filterable=False)
    runtime_env_info: Optional[dict] = state_column(detail=True, filterable=False)
    placement_group_id: Optional[str] = state_column(detail=True, filterable=True)
    events: Optional[List[dict]] = state_column(detail=True, filterable=False)
    profiling_data: Optional[dict] = state_column(detail=True, filterable=False)
    creation_time_ms: Optional[int] = state_column(detail=True, filterable=False)
    start_time_ms: Optional[int] = state_column(detail=True, filterable=False)
    end_time_ms: Optional[int] = state_column(detail=True, filterable=False)
    task_log_info: Optional[dict] = state_column(detail=True, filterable=False)
    error_message: Optional[str] = state_column(detail=True, filterable=False)
    is_debugger_paused: Optional[bool] = state_column(detail=True, filterable=True)
    call_site: Optional[str] = state_column(detail=True, filterable=False)
    label_selector: Optional[dict] = state_column(detail=True, filterable=False)
    fallback_strategy: Optional[dict] = state_column(detail=True, filterable=False)


@dataclass
class ActorState(StateSchema):
    actor_id: str = state_column(filterable=True)
    class_name: str = state_column(filterable=True)
    state: str = state_column(filterable=True)
    job_id: str = state_column(filterable=True)
    name: Optional[str] = state_column(filterable=True)
    node_id: Optional[str] = state_column(filterable=True)
    pid: Optional[int] = state_column(filterable=True)
    ray_namespace: Optional[str] = state_column(filterable=True)
    serialized_runtime_env: Optional[str] = state_column(filterable=False, detail=True)
    required_resources: Optional[dict] = state_column(filterable=False, detail=True)
    death_cause: Optional[dict] = state_column(filterable=False, detail=True)
    is_detached: Optional[bool] = state_column(filterable=False, detail=True)
    placement_group_id: Optional[str] = state_column(detail=True, filterable=True)
    repr_name: Optional[str] = state_column(detail=True, filterable=True)
    num_restarts: int = state_column(filterable=False, detail=True)
    num_restarts_due_to_lineage_reconstruction: int = state_column(filterable=False, detail=True)
    num_restarts_due_to_node_preemption: int = state_column(filterable=False, detail=True)
    call_site: Optional[str] = state_column(detail=True, filterable=False)
    label_selector: Optional[dict] = state_column(detail=True, filterable=False)
    fallback_strategy: Optional[dict] = state_column(detail=True, filterable=False)


@dataclass
class ObjectState(StateSchema):
    object_id: str = state_column(filterable=True)
    object_size: int = state_column(filterable=True)
    task_status: str = state_column(filterable=True)
    attempt_number: int = state_column(filterable=True)
    reference_type: str = state_column(filterable=True)
    call_site: str = state_column(filterable=True)
    type: str = state_column(filterable=True)
    pid: int = state_column(filterable=True)
    ip: str = state_column(filterable=True)


@dataclass
class NodeState(StateSchema):
    node_id: str = state_column(filterable=True)
    node_ip: str = state_column(filterable=True)
    is_head_node: bool = state_column(filterable=True)
    state: str = state_column(filterable=True)
    state_message: Optional[str] = state_column(filterable=False)
    node_name: str = state_column(filterable=True)
    resources_total: dict = state_column(filterable=False)
    labels: dict = state_column(filterable=False)
    start_time_ms: Optional[int] = state_column(filterable=False, detail=True)
    end_time_ms: Optional[int] = state_column(filterable=False, detail=True)


@dataclass
class PlacementGroupState(StateSchema):
    placement_group_id: str = state_column(filterable=True)
    name: str = state_column(filterable=True)
    creator_job_id: str = state_column(filterable=True)
    state: str = state_column(filterable=True)
    bundles: Optional[List[dict]] = state_column(filterable=False, detail=True)
    is_detached: Optional[bool] = state_column(filterable=True, detail=True)
    stats: Optional[dict] = state_column(filterable=False, detail=True)
    topology_strategy: Optional[dict] = state_column(filterable=False, detail=True)
    topology_assignments: Optional[dict] = state_column(filterable=False, detail=True)


# -- arguments -------------------------------------------------------------------------------------------------
def _runtime(address: Optional[str]) -> Any:
    if address not in (None, "auto"):
        raise ValueError(f"address={address!r}: mpirt's state API reads the job it runs in, over MPI; pass "
                         "address=None (or 'auto'). From a login node, read a job's status with "
                         "`python -m mpirt status`.")
    rt = current.runtime()
    if rt is None:
        raise ConnectionError("Could not find any running mpirt instance in this process: call mpirt.init() "
                              "first (or use `python -m mpirt status` to read a job's status snapshot).")
    return rt


def _check_options(filters: Any, limit: Any, timeout: Any) -> List[Tuple[str, str, Any]]:
    if filters is None:
        filters = []
    if not isinstance(filters, (list, tuple)):
        raise TypeError(f"filters={filters!r}: expected a list of (key, predicate, value) tuples, e.g. "
                        "[('state', '=', 'RUNNING')]")
    checked = []
    for item in filters:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise TypeError(f"filters: {item!r} is not a (key, predicate, value) tuple, e.g. ('state', '=', "
                            "'RUNNING')")
        key, predicate, value = item
        if predicate != "=" and predicate != "!=":
            raise ValueError(f"Unsupported filter predicate {predicate} is given. Available predicates: =, !=.")
        checked.append((key, predicate, value))
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit <= 0:
        raise ValueError(f"limit={limit!r}: expected a positive int (Ray's default is {DEFAULT_LIMIT})")
    _check_timeout(timeout)
    return checked


def _check_timeout(timeout: Any) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not float(timeout) > 0:
        raise ValueError(f"timeout={timeout!r}: expected a positive number of seconds (Ray's default is "
                         f"{DEFAULT_RPC_TIMEOUT})")


def _matches(datum: Dict[str, Any], key: str, predicate: str, value: Any) -> bool:
    """Ray's comparison: strings case-insensitively, a string value against a bool or int column converted."""
    have = datum.get(key)
    if isinstance(value, str) and isinstance(have, str):
        equal = have.lower() == value.lower()
    elif isinstance(value, str) and isinstance(have, bool):
        equal = have == (value.lower() == "true")
    elif isinstance(value, str) and isinstance(have, int):
        try:
            equal = have == int(value)
        except ValueError:
            equal = False
    else:
        equal = have == value
    return equal if predicate == "=" else not equal


def _filtered(rows: List[Dict[str, Any]], schema: type[StateSchema], filters, detail: bool) -> List[Dict[str, Any]]:
    filterable = schema.filterable_columns()
    keys = []
    for key, predicate, value in filters:
        column = str(key).lower()
        if column not in filterable:
            raise RayStateApiException(
                f"The given filter column {column} is not supported. Enter filters with --filter key=value or "
                f"--filter key!=value Supported filter columns: {filterable}")
        keys.append((column, predicate, value))
    columns = schema.list_columns(detail=detail)
    out = []
    for row in rows:
        if all(column in row and _matches(row, column, predicate, value) for column, predicate, value in keys):
            out.append({column: row.get(column) for column in columns})
    return out


def _listed(rows: List[Dict[str, Any]], schema: type, filters, limit: int, detail: bool,
            explain: bool) -> List[Any]:
    """The first ``limit`` rows that pass ``filters``; as in Ray, a cut is said only with ``_explain=True``."""
    rows = _filtered(rows, schema, filters, detail)
    if len(rows) > limit:
        if explain:
            warnings.warn(f"Limit last {limit} entries (Total {len(rows)}). Use `--filter` to reduce the amount of "
                          "data to return or setting a higher limit with `--limit` to see all data. ", stacklevel=3)
        rows = rows[:limit]
    return [schema(**row) for row in rows]


def _gathered(rt: Any, what: str, timeout: float, raise_on_missing_output: bool) -> List[Dict[str, Any]]:
    answers, missing = cluster_state.gather(rt, what, timeout)
    if missing:
        message = (f"ranks {missing} did not answer the state query within timeout={timeout} s: their {what} are "
                   "missing from the output")
        if raise_on_missing_output:
            raise RayStateApiException(message + " (raise_on_missing_output=False returns the rest)")
        warnings.warn(message, UserWarning, stacklevel=3)
    return answers


# -- lists -------------------------------------------------------------------------------------------------------
def list_tasks(address: Optional[str] = None, filters: Optional[List[Tuple[str, PredicateType, SupportedFilterType]]]
               = None, limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False,
               raise_on_missing_output: bool = True, _explain: bool = False) -> List[TaskState]:
    """Tasks, actor calls and actor creations of the job: those not finished, and the latest finished ones
    each rank keeps. ``state``: PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, RUNNING,
    PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY, FINISHED, FAILED."""
    rt = _runtime(address)
    checked = _check_options(filters, limit, timeout)
    answers = _gathered(rt, "tasks", timeout, raise_on_missing_output)
    return _listed(cluster_state.tasks(rt, answers), TaskState, checked, limit, detail, _explain)


def list_actors(address: Optional[str] = None, filters: Optional[List[Tuple[str, PredicateType, SupportedFilterType]]]
                = None, limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                raise_on_missing_output: bool = True, _explain: bool = False) -> List[ActorState]:
    """Actors of the job, ``state`` PENDING_CREATION, ALIVE, RESTARTING or DEAD, as their owners see them."""
    rt = _runtime(address)
    checked = _check_options(filters, limit, timeout)
    answers = _gathered(rt, "actors", timeout, raise_on_missing_output)
    return _listed(cluster_state.actors(rt, answers), ActorState, checked, limit, detail, _explain)


def list_objects(address: Optional[str] = None, filters: Optional[List[Tuple[str, PredicateType, SupportedFilterType]]]
                 = None, limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                 raise_on_missing_output: bool = True, _explain: bool = False) -> List[ObjectState]:
    """Objects the live ranks own (``object_size`` in bytes, -1 while not made yet)."""
    rt = _runtime(address)
    checked = _check_options(filters, limit, timeout)
    answers = _gathered(rt, "objects", timeout, raise_on_missing_output)
    return _listed(cluster_state.objects(rt, answers), ObjectState, checked, limit, detail, _explain)


def list_nodes(address: Optional[str] = None, filters: Optional[List[Tuple[str, PredicateType, SupportedFilterType]]]
               = None, limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False,
               raise_on_missing_output: bool = True, _explain: bool = False) -> List[NodeState]:
    """Nodes with a live rank (``node_id`` as ``nodes()`` and ``get_runtime_context().get_node_id()`` give it)."""
    rt = _runtime(address)
    checked = _check_options(filters, limit, timeout)
    return _listed(cluster_state.nodes(rt), NodeState, checked, limit, detail, _explain)


def list_placement_groups(address: Optional[str] = None,
                          filters: Optional[List[Tuple[str, PredicateType, SupportedFilterType]]] = None,
                          limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                          raise_on_missing_output: bool = True, _explain: bool = False) -> List[PlacementGroupState]:
    """Placement groups of the job, ``state`` PENDING, CREATED or REMOVED, from the head scheduler."""
    rt = _runtime(address)
    checked = _check_options(filters, limit, timeout)
    try:
        rows = cluster_state.placement_groups(rt, timeout)
    except TimeoutError as exc:
        raise RayStateApiException(f"the head scheduler did not answer within timeout={timeout} s") from exc
    return _listed(rows, PlacementGroupState, checked, limit, detail, _explain)


# -- one by id (Ray's get_*: a list filtered by the id, with detail) -------------------------------------------------
def _by_id(lister: Any, key: str, id: Any, address: Optional[str], timeout: int, _explain: bool) -> List[Any]:
    if not isinstance(id, str):
        raise TypeError(f"id={id!r}: pass the id as the hex string list_* shows ({key})")
    return lister(address=address, filters=[(key, "=", id)], timeout=timeout, detail=True, _explain=_explain)


def _one_by_id(lister: Any, key: str, id: Any, address: Optional[str], timeout: int, _explain: bool) -> Any:
    found = _by_id(lister, key, id, address, timeout, _explain)
    return found[0] if found else None


def get_actor(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
              _explain: bool = False) -> Optional[ActorState]:
    """The actor ``id`` (hex, as ``list_actors`` shows it) with detail, or None."""
    return _one_by_id(list_actors, "actor_id", id, address, timeout, _explain)


def get_task(id: Any, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False) -> Optional[TaskState]:
    """The task ``id`` (hex), or the task that makes the ObjectRef ``id`` (one this process submitted), with
    detail; None if it is not known. mpirt keeps one row per task (its last attempt), so this is never the
    list of attempts Ray may return."""
    if not isinstance(id, str) and type(id).__name__ == "ObjectRef":
        return _task_making(id, address, timeout, _explain)
    return _one_by_id(list_tasks, "task_id", id, address, timeout, _explain)


def _task_making(ref: Any, address: Optional[str], timeout: int, _explain: bool) -> Optional[TaskState]:
    """The task whose return ``ref`` is. A submitter numbers a task and then its returns from one counter
    under one lock (``TaskSubmitter.submit``, ``ActorCaller.call``), so it is the submitter's task with the
    highest id below the ref's, within ``_MOST_RETURNS`` (ids of other ranks differ in their high bits)."""
    candidates = [row for row in list_tasks(address=address, limit=1 << 30, timeout=timeout, detail=True,
                                            _explain=_explain)
                  if 0 < ref.id - int(row.task_id, 16) <= _MOST_RETURNS]
    return max(candidates, key=lambda row: int(row.task_id, 16)) if candidates else None


def get_objects(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                _explain: bool = False) -> List[ObjectState]:
    """The object ``id`` (hex, ``ObjectRef.hex()``) as its owner holds it: a list, as in Ray (empty if unknown)."""
    return _by_id(list_objects, "object_id", id, address, timeout, _explain)


def get_node(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False) -> Optional[NodeState]:
    return _one_by_id(list_nodes, "node_id", id, address, timeout, _explain)


def get_placement_group(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                        _explain: bool = False) -> Optional[PlacementGroupState]:
    return _one_by_id(list_placement_groups, "placement_group_id", id, address, timeout, _explain)


# -- summaries ---------------------------------------------------------------------------------------------------
def summarize_tasks(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> Dict:
    """Tasks counted by function (or ``Class.method``) and state: Ray's ``TaskSummaries`` as a dict under
    ``"cluster"``."""
    rt = _runtime(address)
    _check_timeout(timeout)
    tasks = cluster_state.tasks(rt, _gathered(rt, "tasks", timeout, raise_on_missing_output))
    return {"cluster": task_summaries(tasks)}


def task_summaries(tasks: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Ray's ``TaskSummaries.to_summary_by_func_name`` of task dicts, as a dict."""
    summary: Dict[str, Dict[str, Any]] = {}
    total_tasks = total_actor_tasks = total_actor_scheduled = 0
    for task in tasks:
        key = task["func_or_class_name"]
        entry = summary.setdefault(key, {"func_or_class_name": key, "type": task["type"], "state_counts": {}})
        entry["state_counts"][task["state"]] = entry["state_counts"].get(task["state"], 0) + 1
        if task["type"] == "NORMAL_TASK":
            total_tasks += 1
        elif task["type"] == "ACTOR_TASK":
            total_actor_tasks += 1
        elif task["type"] == "ACTOR_CREATION_TASK":
            total_actor_scheduled += 1
    return {"summary": summary, "total_tasks": total_tasks, "total_actor_tasks": total_actor_tasks,
            "total_actor_scheduled": total_actor_scheduled, "summary_by": "func_name"}


def summarize_actors(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> Dict:
    """Actors counted by class and state: Ray's ``ActorSummaries`` as a dict under ``"cluster"``."""
    rt = _runtime(address)
    _check_timeout(timeout)
    actors = cluster_state.actors(rt, _gathered(rt, "actors", timeout, raise_on_missing_output))
    summary: Dict[str, Dict[str, Any]] = {}
    for actor in actors:
        entry = summary.setdefault(actor["class_name"], {"class_name": actor["class_name"], "state_counts": {}})
        entry["state_counts"][actor["state"]] = entry["state_counts"].get(actor["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(actors), "summary_by": "class"}}


def summarize_objects(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                      raise_on_missing_output: bool = True, _explain: bool = False) -> Dict:
    """Objects counted by call site (all "disabled" here, as in Ray without call-site recording): Ray's
    ``ObjectSummaries`` as a dict under ``"cluster"``."""
    rt = _runtime(address)
    _check_timeout(timeout)
    objects = cluster_state.objects(rt, _gathered(rt, "objects", timeout, raise_on_missing_output))
    summary: Dict[str, Dict[str, Any]] = {}
    workers: Dict[str, set] = {}
    hosts: Dict[str, set] = {}
    total_mb = 0.0
    for obj in objects:
        key = obj["call_site"]
        entry = summary.setdefault(key, {"total_objects": 0, "total_size_mb": 0.0, "total_num_workers": 0,
                                         "total_num_nodes": 0, "task_state_counts": {},
                                         "task_attempt_number_counts": {}, "ref_type_counts": {}})
        for counts, name in ((entry["task_state_counts"], obj["task_status"]),
                             (entry["task_attempt_number_counts"], str(obj["attempt_number"])),
                             (entry["ref_type_counts"], obj["reference_type"])):
            counts[name] = counts.get(name, 0) + 1
        entry["total_objects"] += 1
        if obj["object_size"] != -1:
            entry["total_size_mb"] += obj["object_size"] / 1024 ** 2
            total_mb += obj["object_size"] / 1024 ** 2
        workers.setdefault(key, set()).add(obj["pid"])
        hosts.setdefault(key, set()).add(obj["ip"])
    for key, entry in summary.items():
        entry["total_num_workers"], entry["total_num_nodes"] = len(workers[key]), len(hosts[key])
    return {"cluster": {"summary": summary, "total_objects": len(objects), "total_size_mb": total_mb,
                        "callsite_enabled": False, "summary_by": "callsite"}}
