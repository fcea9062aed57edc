"""``python -m mpirt status [DIR | SLURM_JOB_ID] [--watch [SECONDS]] [--json]``: a job's status from its snapshot
file (``core/status_snapshot.py``), printed like ``ray status`` followed by ``ray summary tasks``. It reads a file
only, so it runs anywhere the results directory is visible (a login node), with nothing listening in the job.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from .core import status_snapshot

RULE = "-" * 72


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpirt", description="mpirt command-line tools")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    status = commands.add_parser(
        "status", help="print a job's status from its status snapshot",
        description="Print a job's status from the status.json its driver rewrites every few seconds. TARGET: the "
                    "job's directory (or its status.json), a Slurm job id, or nothing for the newest job in the "
                    "results directory ($MPIRT_RESULTS_DIR, else $SLURM_SUBMIT_DIR/mpirt_results, else "
                    "~/mpirt_results).")
    status.add_argument("target", nargs="?", metavar="DIR | SLURM_JOB_ID")
    status.add_argument("--watch", nargs="?", const=2.0, type=_seconds, metavar="SECONDS",
                        help="print again every SECONDS (default 2) until Ctrl-C")
    status.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")
    args = parser.parse_args(argv)
    if args.command != "status":
        parser.print_help(sys.stderr)
        return 2
    try:
        return _status(args.target, args.watch, args.json)
    except (FileNotFoundError, ValueError, PermissionError) as exc:
        print(f"python -m mpirt status: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:   # piped into head(1) or less, which quit: nothing wrong
        sys.stdout = open(os.devnull, "w")
        return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--watch {text}: expected a positive number of seconds, e.g. --watch 5")
    return value


def _status(target: Optional[str], watch: Optional[float], as_json: bool) -> int:
    while True:
        path = status_snapshot.find(target)
        snapshot = status_snapshot.load(path)
        text = json.dumps(snapshot, indent=1) if as_json else render(snapshot, path)
        if watch is not None and sys.stdout.isatty():
            sys.stdout.write("\033[H\033[2J")
        print(text, flush=True)
        if watch is None:
            return 0
        time.sleep(watch)


# -- the text ---------------------------------------------------------------------------------------------------------
def render(snapshot: Dict[str, Any], path: str = "", now: Optional[float] = None) -> str:
    """The status as ``ray status`` and ``ray summary tasks`` print theirs."""
    now = time.time() if now is None else now
    state, age = status_snapshot.liveness(snapshot, now)
    lines = [f"======== Job status: {_when(snapshot['update_time'])} ========"]
    if state == "finished":
        lines.append(f"FINISHED: the job ended {_duration(age)} ago (this is its last snapshot)")
    elif state == "stale":
        lines.append(f"STALE: not updated for {_duration(age)} and not marked finished: the job probably died "
                     f"(its driver, pid {snapshot.get('pid')} on {snapshot.get('hostname')}, stopped writing)")
    else:
        lines.append(f"RUNNING: updated {_duration(age)} ago")
    up = snapshot["update_time"] - (snapshot.get("start_time") or snapshot["update_time"])
    lines.append(f"Job {snapshot.get('job_id')}  driver pid {snapshot.get('pid')} on {snapshot.get('hostname')}  "
                 f"started {_when(snapshot.get('start_time'))} (up {_duration(up)})")
    if path:
        lines.append(f"Snapshot: {path}")
    if snapshot.get("snapshot_error"):
        lines.append(f"Last snapshot incomplete: {snapshot['snapshot_error']}")
    lines += _nodes(snapshot) + _resources(snapshot) + _store(snapshot) + _actors(snapshot) + _errors(snapshot)
    lines += _task_summary(snapshot)
    return "\n".join(lines)


def _nodes(snapshot):
    ranks = snapshot.get("ranks", {})
    lines = ["Node status", RULE, "Active:"]
    for node in snapshot.get("nodes", []):
        head = " (head)" if node.get("is_head_node") else ""
        lines.append(f" 1 node_{node['node_id']} {node.get('hostname', '')}{head}")
    lines.append(f"Ranks: {ranks.get('live', '?')} live, dead: {ranks.get('dead') or 'none'}"
                 + (f", not answering: {ranks['not_answering']}" if ranks.get("not_answering") else ""))
    return lines


def _resources(snapshot):
    resources = snapshot.get("resources", {})
    total, in_use = resources.get("total", {}), resources.get("in_use", {})
    lines = ["", "Resources", RULE, "Usage:"]
    for name in sorted(total):
        lines.append(f" {_number(in_use.get(name, 0.0))}/{_number(total[name])} {name}")
    return lines


def _store(snapshot):
    lines = ["", "Object store (per node)", RULE]
    for node in snapshot.get("object_store", []):
        lines.append(f" node {node.get('node')} (ranks {node.get('ranks')}): {_bytes(node.get('used_bytes', 0))}/"
                     f"{_bytes(node.get('capacity_bytes', 0))} used, {node.get('objects_in_memory', 0)} objects in "
                     f"memory, {node.get('objects_on_disk', 0)} on disk ({_bytes(node.get('disk_bytes', 0))}); "
                     f"spilled {node.get('spilled_objects', 0)} ({_bytes(node.get('spilled_bytes', 0))}), restored "
                     f"{node.get('restored_objects', 0)}")
    return lines


def _actors(snapshot):
    actors = snapshot.get("actors", {})
    lines = ["", "Actors", RULE]
    by_state = actors.get("by_state", {})
    lines.append(" " + ("  ".join(f"{state}: {n}" for state, n in sorted(by_state.items())) or "none"))
    for cls, counts in sorted(actors.get("by_class", {}).items()):
        lines.append(f"   {cls}: " + ", ".join(f"{state} {n}" for state, n in sorted(counts.items())))
    return lines


def _errors(snapshot):
    errors = snapshot.get("errors", [])
    lines = ["", "Recent errors", RULE]
    if not errors:
        return lines + [" none"]
    for error in errors:
        message = [line for line in (error.get("error_message") or "").splitlines() if line.strip()]
        lines.append(f" {_when(error.get('time'))} {error.get('func_or_class_name')} {error.get('error_type')}: "
                     f"{message[-1].strip()[:100] if message else ''}")   # a traceback's last line: the error
    return lines


def _task_summary(snapshot):
    tasks = snapshot.get("tasks", {})
    rows = sorted(tasks.get("by_function", {}).values(), key=lambda r: r["func_or_class_name"])
    totals = {"total_tasks": 0, "total_actor_tasks": 0, "total_actor_scheduled": 0}
    kinds = {"NORMAL_TASK": "total_tasks", "ACTOR_TASK": "total_actor_tasks",
             "ACTOR_CREATION_TASK": "total_actor_scheduled"}
    for row in rows:
        if row["type"] in kinds:
            totals[kinds[row["type"]]] += sum(row["state_counts"].values())
    lines = ["", "======== Tasks Summary: ========", "Stats:", RULE]
    lines += [f"{key}: {value}" for key, value in sorted(totals.items())]
    lines += ["", "Table (group by func_name):", RULE]
    table = [("", "FUNC_OR_CLASS_NAME", "STATE_COUNTS", "TYPE")]
    for i, row in enumerate(rows):
        counts = ", ".join(f"{state}: {n}" for state, n in sorted(row["state_counts"].items()))
        table.append((str(i), row["func_or_class_name"], counts, row["type"]))
    widths = [max(len(r[c]) for r in table) for c in range(4)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip() for r in table]
    by_state = tasks.get("by_state", {})
    lines.append("By state: " + (", ".join(f"{state}: {n}" for state, n in sorted(by_state.items())) or "none"))
    return lines


def _when(seconds):
    return "?" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _duration(seconds):
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes}m {seconds}s" if hours else f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def _number(value):
    return f"{value:.1f}"


def _bytes(size):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


if __name__ == "__main__":
    sys.exit(main())
