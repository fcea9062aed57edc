"""The job's status as a file: the driver rewrites ``status.json`` in the job's results directory every few seconds,
so a login node can see what a running job does (``python -m mpirt status``) with no port open anywhere.

The file is written whole to a temporary name in the same directory and moved over the old one with
``os.replace`` (atomic on POSIX file systems, NFS and Lustre included), so a reader never sees half a snapshot. A
daemon thread of the driver (``mpirt-status``) writes it and sleeps between writes; ``shutdown()`` stops it with
a last write marked ``"finished": true``. A snapshot asks every rank once (``state_query`` "summary": counts per
function, a few hundred bytes a rank whatever the number of tasks; ``store_stats_query``; ``resources_query``):
measured 9 ms median (18 ms max) on the 2-core VM with 3 ranks and a full buffer of 10000 finished tasks, so 0.2%
of one core at the default interval of 5 s; the driver's runtime lock is held only to copy its records. ``MPIRT_STATUS=0`` turns it off, ``MPIRT_STATUS_INTERVAL`` (seconds) changes the interval,
``MPIRT_RESULTS_DIR`` where results go (``slurm.job_results_dir``).

Reading: ``load`` and ``liveness`` say whether a snapshot is of a running, finished or dead (stale) job.
"""
import collections
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .. import slurm
from . import cluster_state
from .fault import process_exists
from .protocol import HEAD_RANK

FILE_NAME = "status.json"
DEFAULT_INTERVAL_S = 5.0
# A snapshot not rewritten for this many intervals (plus a margin for a slow shared file system) is stale.
STALE_INTERVALS = 3
STALE_MARGIN_S = 10.0
GATHER_TIMEOUT_S = 10.0
FINAL_GATHER_TIMEOUT_S = 5.0
FORMAT = 1


def settings(environ=os.environ) -> Optional[float]:
    """The interval in seconds from ``MPIRT_STATUS`` and ``MPIRT_STATUS_INTERVAL``, or None when turned off;
    ValueError naming the variable for a value that is neither."""
    enabled = environ.get("MPIRT_STATUS", "1").strip().lower()
    if enabled in ("0", "false", "no", "off"):
        return None
    if enabled not in ("1", "true", "yes", "on", ""):
        raise ValueError(f"MPIRT_STATUS={environ['MPIRT_STATUS']!r}: use 1 (write the status snapshot, the default) "
                         "or 0 (do not)")
    raw = environ.get("MPIRT_STATUS_INTERVAL")
    if raw is None or raw.strip() == "":
        return DEFAULT_INTERVAL_S
    try:
        interval = float(raw)
    except ValueError:
        interval = float("nan")
    if not interval > 0 or interval == float("inf"):
        raise ValueError(f"MPIRT_STATUS_INTERVAL={raw!r}: expected a positive number of seconds between status "
                         f"snapshots (default {DEFAULT_INTERVAL_S:g}); MPIRT_STATUS=0 turns them off")
    return interval


class StatusWriter:
    """The driver's writer thread. ``start`` writes a first snapshot at once; ``stop`` writes the last one."""

    def __init__(self, rt: Any, directory: str, interval: float):
        self.rt = rt
        self.directory = directory
        self.path = os.path.join(directory, FILE_NAME)
        self.interval = interval
        self.started = time.time()
        self.job_id = os.environ.get("SLURM_JOB_ID") or format(rt.session, "08x")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mpirt-status", daemon=True)
        self._last: Dict[str, Any] = {}
        self.write_error: Optional[str] = None

    def start(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then write the last snapshot, marked finished (ranks still up: called before they stop)."""
        self._stop.set()
        self._thread.join(timeout=GATHER_TIMEOUT_S + 5)
        self.write_once(finished=True, timeout=FINAL_GATHER_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.write_once(finished=False, timeout=GATHER_TIMEOUT_S)
            self._stop.wait(self.interval)

    def write_once(self, finished: bool, timeout: float) -> None:
        try:
            snapshot = self.snapshot(timeout)
        except Exception as exc:   # a rank died meanwhile, the job is ending: keep the last figures
            snapshot = dict(self._last, snapshot_error=f"{type(exc).__name__}: {exc}")
        snapshot.update(self._header(finished))
        self._last = snapshot
        try:
            write_atomically(self.path, snapshot)
            self.write_error = None
        except OSError as exc:
            if self.write_error is None:   # said once, not every interval
                sys.stderr.write(f"mpirt: cannot write the status snapshot {self.path}: {exc} (MPIRT_RESULTS_DIR "
                                 "moves it, MPIRT_STATUS=0 turns it off)\n")
            self.write_error = str(exc)

    def _header(self, finished: bool) -> Dict[str, Any]:
        now = time.time()
        return {"format": FORMAT, "job_id": self.job_id, "session": format(self.rt.session, "08x"),
                "hostname": socket.gethostname(), "pid": os.getpid(), "start_time": self.started,
                "update_time": now, "interval_s": self.interval, "finished": finished,
                "finished_time": now if finished else None}

    def snapshot(self, timeout: float) -> Dict[str, Any]:
        """The job's figures now (without the header)."""
        rt = self.rt
        answers, missing = cluster_state.gather(rt, "summary", timeout)
        total = rt.cluster.totals()
        available = rt.queries.ask(HEAD_RANK, "resources_query", timeout=timeout)
        in_use = {name: max(0.0, amount - available.get(name, 0.0)) for name, amount in total.items()}
        return {"resources": {"total": total, "available": available, "in_use": in_use},
                "nodes": [{"node_id": n["node_id"], "hostname": n["node_name"], "resources": n["resources_total"],
                           "is_head_node": n["is_head_node"]} for n in cluster_state.nodes(rt)],
                "ranks": {"live": len(rt.live_ranks()), "dead": sorted(rt.failures.dead), "not_answering": missing},
                **task_and_actor_counts(rt, answers),
                "object_store": store_by_node(cluster_state.object_store_stats(rt))}


def task_and_actor_counts(rt: Any, answers: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Tasks by state and by function (Ray's ``summarize_tasks`` form), actors by state and class, recent errors,
    from the ranks' "summary" answers."""
    classes: Dict[str, str] = {}
    for answer in answers:
        classes.update(answer.get("classes", {}))
    counts: collections.Counter = collections.Counter()
    for answer in answers:
        for (kind, function_name, state, actor_id), n in answer["counts"].items():
            cls = classes.get(actor_id) if kind == "ACTOR_TASK" else None
            counts[(kind, f"{cls}.{function_name}" if cls else function_name, state)] += n
    for answer in answers:   # a sent task is RUNNING when a rank runs it (counted there, by function)
        for (kind, name), n in answer["running_counts"].items():
            moved = min(n, counts.get((kind, name, "SUBMITTED_TO_WORKER"), 0))
            if moved:
                counts[(kind, name, "SUBMITTED_TO_WORKER")] -= moved
                counts[(kind, name, "RUNNING")] += moved
    by_function: Dict[str, Dict[str, Any]] = {}
    by_state: collections.Counter = collections.Counter()
    for (kind, name, state), n in sorted(counts.items()):
        if n <= 0:
            continue
        entry = by_function.setdefault(name, {"func_or_class_name": name, "type": kind, "state_counts": {}})
        entry["state_counts"][state] = n
        by_state[state] += n
    actors_by_state: collections.Counter = collections.Counter()
    actors_by_class: Dict[str, Dict[str, int]] = {}
    for actor in cluster_state.actors(rt, answers):
        cls = actor["class_name"] or "?"
        actors_by_state[actor["state"]] += 1
        per_class = actors_by_class.setdefault(cls, {})
        per_class[actor["state"]] = per_class.get(actor["state"], 0) + 1
    errors = sorted((e for answer in answers for e in answer["errors"]), key=lambda e: e["time"])
    for error in errors:
        if error.get("actor_id") in classes:
            error["func_or_class_name"] = f"{classes[error['actor_id']]}.{error['func_or_class_name']}"
    return {"tasks": {"by_state": dict(by_state), "by_function": by_function},
            "actors": {"by_state": dict(actors_by_state), "by_class": actors_by_class},
            "errors": errors[-10:]}


def store_by_node(stats: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The figures of ``object_store_stats()`` per node that a status line needs."""
    keep = ("capacity_bytes", "used_bytes", "free_bytes", "objects_in_memory", "objects_on_disk", "disk_bytes",
            "stored_objects", "spilled_objects", "spilled_bytes", "restored_objects", "restored_bytes",
            "spill_directory", "memory_directory", "fragmentation")
    out = []
    for node, figures in sorted(stats["nodes"].items(), key=lambda item: str(item[0])):
        entry = {key: figures[key] for key in keep if key in figures}
        entry.update(node=node, ranks=figures["ranks"])
        out.append(entry)
    return out


def write_atomically(path: str, snapshot: Dict[str, Any]) -> None:
    """``path`` replaced by ``snapshot`` as JSON in one step: a reader sees the old file or the new one."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(snapshot, f, indent=1, default=str)
    os.replace(temporary, path)


# -- reading (python -m mpirt status) ---------------------------------------------------------------------------------
def load(path: str) -> Dict[str, Any]:
    """The snapshot in ``path`` (a ``status.json``); ValueError naming the file when it is not one."""
    with open(path) as f:
        try:
            snapshot = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not an mpirt status snapshot (not JSON: {exc})") from None
    if not isinstance(snapshot, dict) or "update_time" not in snapshot:
        raise ValueError(f"{path} is not an mpirt status snapshot (no update_time)")
    return snapshot


def liveness(snapshot: Dict[str, Any], now: Optional[float] = None) -> Tuple[str, float]:
    """("finished" | "running" | "stale", seconds since the last update). Stale: no finished mark, and either not
    rewritten for ``STALE_INTERVALS`` intervals, or its writer's pid is gone on this very host."""
    now = time.time() if now is None else now
    age = max(0.0, now - snapshot["update_time"])
    if snapshot.get("finished"):
        return "finished", age
    interval = snapshot.get("interval_s") or DEFAULT_INTERVAL_S
    if age > STALE_INTERVALS * interval + STALE_MARGIN_S:
        return "stale", age
    if snapshot.get("hostname") == socket.gethostname() and not _alive(snapshot.get("pid")):
        return "stale", age
    return "running", age


def _alive(pid: Any) -> bool:
    """Whether the writer's process lives (True when the snapshot names none to check)."""
    return not isinstance(pid, int) or pid <= 0 or process_exists(pid)


def find(target: Optional[str], environ=os.environ) -> str:
    """The ``status.json`` that ``python -m mpirt status [DIR | SLURM_JOB_ID]`` means: a directory holding one (or
    the file itself), a Slurm job id (``job-<id>`` under the results directory), or with no target the newest job
    in the results directory. FileNotFoundError saying where it looked."""
    root = slurm.default_results_dir(environ)
    if target is None:
        candidates = []
        if os.path.isdir(root):
            for name in os.listdir(root):
                path = os.path.join(root, name, FILE_NAME)
                if name.startswith("job-") and os.path.isfile(path):
                    candidates.append((os.path.getmtime(path), path))
        if not candidates:
            raise FileNotFoundError(f"no job status in {root} (no job-*/{FILE_NAME}); name a directory or a Slurm "
                                    "job id, or set MPIRT_RESULTS_DIR to where the job wrote its results")
        return max(candidates)[1]
    if os.path.isfile(target):
        return target
    if os.path.isdir(target):
        path = os.path.join(target, FILE_NAME)
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(f"{target} holds no {FILE_NAME}: name a job's directory (job-*) under {root}")
    if target.isdigit() or target.replace("_", "").isdigit():
        path = os.path.join(root, f"job-{target}", FILE_NAME)
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(f"no status of Slurm job {target}: {path} does not exist (set MPIRT_RESULTS_DIR "
                                "if the job wrote its results elsewhere)")
    raise FileNotFoundError(f"{target!r} is neither a directory, a status file nor a Slurm job id")
