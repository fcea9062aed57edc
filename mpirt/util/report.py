"""The job report: one self-contained HTML file that shows what a job did, for users who cannot reach a
dashboard port on a compute node.

The driver writes it at ``shutdown()`` (before the ranks stop) into the job's results directory
(``mpirt.slurm.job_results_dir()``, file ``report.html``), and on demand with ``report(path)``. It opens from a
shared file system in any browser: inline SVG drawn here (``report_svg.py``), no script, nothing fetched.
``MPIRT_REPORT=0`` turns the shutdown report off.

Its data are the ranks' trace events (``core/tracing.py``), gathered as ``mpirt.timeline()`` gathers them:
tasks and actor calls (their run times, whether they failed, the error), and each rank's store use (a counter
the store samples every second). Plots and tables are bucketed over time and capped in rows, so a long job's
report stays small (about 100 KB whatever the job's length).
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sys
import tempfile
import time
import warnings
from typing import Any

from .. import launch
from ..core import tracing
from ..core.current import runtime_for_call
from ..core.protocol import DRIVER_RANK, HEAD_RANK
from ..slurm import job, job_results_dir
from . import report_svg as svg

REPORT_FILE = "report.html"
SHUTDOWN_GATHER_SECONDS = 10.0   # at shutdown, the most time spent collecting the ranks' events
ON_DEMAND_GATHER_SECONDS = 60.0
CALL_CATEGORIES = {"task": "task", "actor": "actor call"}
MAX_BUCKETS = 150                # points per line: enough to see the shape, small for days-long jobs
MAX_SERIES = 6                   # functions drawn apart; the rest are summed as "other"
MAX_NODES_DRAWN = 10
MAX_TABLE_ROWS = 20
RECENT_FAILURES = 10
BUCKET_STEPS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200,
                86400)


def report(path: str | os.PathLike | None = None) -> str:
    """Write the HTML report of the running job to ``path`` (a file, or a directory to hold ``report.html``;
    default: ``report.html`` in ``mpirt.slurm.job_results_dir()``) and return the path written."""
    target = _target_path(path)
    write(runtime_for_call(), target, ON_DEMAND_GATHER_SECONDS)
    return target


def enabled(environ=os.environ) -> bool:
    """Whether the report is written at shutdown: unless ``MPIRT_REPORT`` is 0, false, no or off."""
    return environ.get("MPIRT_REPORT", "1").strip().lower() not in ("0", "false", "no", "off")


def _target_path(path):
    if path is None:
        return os.path.join(job_results_dir(), REPORT_FILE)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"report(path=...) must be a file or directory path (str or os.PathLike) or None for the "
                        f"job's results directory, got {path!r} ({type(path).__name__})")
    path = os.fspath(path)
    if not path:
        raise ValueError("report(path='') names no file: give a file or directory path, or None for the job's "
                         "results directory")
    return os.path.join(path, REPORT_FILE) if os.path.isdir(path) else path


def write(rt: Any, path: str, gather_seconds: float) -> None:
    """Gather every live rank's events (waiting ``gather_seconds`` at most in all) and write the report to
    ``path`` atomically (readers on a shared file system never see half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)          # first: a directory that cannot be made costs no gathering
    by_rank, missing = gather(rt, gather_seconds)
    document = render(JobFacts.of(rt, path), by_rank, missing, time.time())
    handle, temporary = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(document)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def gather(rt: Any, seconds: float) -> tuple[dict[int, list], list[int]]:
    """``({rank: its trace events}, ranks that did not answer in time)``; the ranks are asked one after the
    other (``timeline_query``) within one deadline."""
    by_rank, missing = rt.queries.ask_each("timeline_query", timeout=seconds)
    by_rank[rt.rank] = list(tracing.events)
    return by_rank, missing


def _write_at_shutdown(rt):
    """``launch``'s shutdown hook on the driver: a report that cannot be written is a warning, never an error."""
    if rt.rank != DRIVER_RANK or not enabled():
        return
    path = os.path.join(job_results_dir(), REPORT_FILE)
    try:
        write(rt, path, SHUTDOWN_GATHER_SECONDS)
    except Exception as exc:  # noqa: B902 - the shutdown goes on whatever the report met
        warnings.warn(f"mpirt: the job report could not be written to {path}: {type(exc).__name__}: {exc} "
                      f"(MPIRT_RESULTS_DIR chooses the directory, MPIRT_REPORT=0 turns the report off)",
                      stacklevel=2)
        return
    sys.stderr.write(f"mpirt: job report: {path}\n")


launch.on_shutdown(_write_at_shutdown)


@dataclasses.dataclass
class JobFacts:
    """What the report needs of the job beside its events: the node of each rank (``node_of[rank]``, a node
    named by its lowest rank), host names by node, the number of worker ranks, the driver's node's pool size,
    and where the report goes."""
    node_of: list
    hosts: dict
    workers: int
    capacity: int
    path: str = ""

    @classmethod
    def of(cls, rt: Any, path: str) -> "JobFacts":
        node_of = list(rt.store.arena.node_of)
        info = rt.config.get("rank_info") or {}
        pairs = info.items() if isinstance(info, dict) else enumerate(info)
        hosts = {_node(node_of, rank): entry.get("hostname", "?") for rank, entry in pairs if isinstance(entry, dict)}
        return cls(node_of, hosts, len(rt.cluster.worker_ranks), rt.store.arena.capacity, os.path.abspath(path))


# -- what the events say ---------------------------------------------------------------------
def calls_of(by_rank):
    """The task and actor-call events of every rank: ``(rank, category, name, start, end, args)`` each."""
    return [(rank, event[0], event[1], event[2], event[3], event[5])
            for rank, events in by_rank.items() for event in events if event[0] in CALL_CATEGORIES]


def time_window(by_rank, now):
    """``(the earliest event's start, now)``: the time the report covers."""
    start = min((event[2] for events in by_rank.values() for event in events), default=now)
    return min(start, now), now


def bucket_width(span):
    """The first of ``BUCKET_STEPS`` that cuts ``span`` seconds into at most ``MAX_BUCKETS`` buckets."""
    return next((step for step in BUCKET_STEPS if span / step <= MAX_BUCKETS), span / MAX_BUCKETS)


def series_label(category, name):
    return name if category == "task" else f"{name} (actor)"


def throughput(calls, t0, t1):
    """Finished calls per second in buckets of time, by function (the most frequent ``MAX_SERIES - 1`` apart
    when there are more), with a total line when there are several: ``([(label, points)], bucket width)``."""
    width = bucket_width(t1 - t0)
    buckets = int((t1 - t0) / width) + 1
    counts = collections.Counter(series_label(c[1], c[2]) for c in calls)
    kept = [label for label, _ in counts.most_common(MAX_SERIES if len(counts) <= MAX_SERIES else MAX_SERIES - 1)]
    per_label = {label: [0] * buckets for label in kept}
    total = [0] * buckets
    for call in calls:
        index = min(int((call[4] - t0) / width), buckets - 1)
        label = series_label(call[1], call[2])
        per_label.setdefault(label if label in kept else "other", [0] * buckets)[index] += 1
        total[index] += 1
    lines = [(label, values) for label, values in per_label.items()]
    if len(lines) > 1:
        lines.insert(0, ("all", total))
    return [(label, [(t0 + (i + 0.5) * width, n / width) for i, n in enumerate(values)])
            for label, values in lines], width


def busy_seconds(intervals):
    """Seconds covered by at least one of the ``(start, end)`` intervals (overlaps counted once)."""
    busy, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            busy += end - start
            reach = end
        elif end > reach:
            busy += end - reach
            reach = end
    return busy


def busy_by_rank(calls):
    """``{rank: (busy seconds, calls, seconds summed over calls)}``."""
    intervals = collections.defaultdict(list)
    for call in calls:
        intervals[call[0]].append((call[3], call[4]))
    return {rank: (busy_seconds(spans), len(spans), sum(end - start for start, end in spans))
            for rank, spans in intervals.items()}


def store_use_by_node(by_rank, node_of, t0, t1):
    """Store bytes per node over time: each rank's samples held until its next, summed over the node's ranks,
    the peak of each bucket: ``({node: [(time, bytes)]}, bucket width)``."""
    width = bucket_width(t1 - t0)
    buckets = int((t1 - t0) / width) + 1
    changes = collections.defaultdict(list)   # node -> [(time, rank, bytes)]
    for rank, events in by_rank.items():
        for event in events:
            if event[0] == tracing.COUNTER and "used_bytes" in event[5]:
                changes[_node(node_of, rank)].append((event[2], rank, event[5]["used_bytes"]))
    result = {}
    for node, samples in changes.items():
        samples.sort()
        peaks, held, total, i = [0.0] * buckets, {}, 0, 0
        for index in range(buckets):
            end = t0 + (index + 1) * width
            peak = total
            while i < len(samples) and samples[i][0] < end:
                _, rank, used = samples[i]
                total += used - held.get(rank, 0)
                held[rank] = used
                peak = max(peak, total)
                i += 1
            peaks[index] = peak
        result[node] = [(t0 + (index + 0.5) * width, value) for index, value in enumerate(peaks)]
    return result, width


def _node(node_of, rank):
    return node_of[rank] if rank < len(node_of) and node_of[rank] is not None else rank


def function_stats(calls):
    """Per function, slowest mean first: ``(label, count, mean, p50, p95, max, total)`` seconds."""
    durations = collections.defaultdict(list)
    for call in calls:
        durations[series_label(call[1], call[2])].append(max(call[4] - call[3], 0.0))
    rows = []
    for label, values in durations.items():
        values.sort()
        total = sum(values)
        rows.append((label, len(values), total / len(values), _percentile(values, 50), _percentile(values, 95),
                     values[-1], total))
    rows.sort(key=lambda row: row[2], reverse=True)
    return rows


def _percentile(ordered, percent):
    """The nearest-rank percentile of an ascending list."""
    index = max(0, min(len(ordered) - 1, -(-len(ordered) * percent // 100) - 1))
    return ordered[int(index)]


def failures(calls):
    """``(Counter of (function, error type), the most recent failed calls, newest first)``."""
    failed = [call for call in calls if call[5].get("failed")]
    counts = collections.Counter((series_label(c[1], c[2]), c[5].get("error", "?")) for c in failed)
    recent = sorted(failed, key=lambda call: call[4], reverse=True)[:RECENT_FAILURES]
    return counts, recent


# -- the page ---------------------------------------------------------------------------------
def render(facts: JobFacts, by_rank: dict[int, list], missing: list[int], now: float) -> str:
    """The report's HTML from the gathered events ``{rank: events}`` (``missing``: ranks that did not answer)."""
    calls = calls_of(by_rank)
    t0, t1 = time_window(by_rank, now)
    sections = [_throughput_section(calls, t0, t1), _busy_section(calls, by_rank, facts.node_of, t0, t1),
                _store_section(facts, by_rank, t0, t1), _slowest_section(calls), _failures_section(calls, t0)]
    return svg.page("mpirt job report", _subtitle(t0, now), _facts(facts, by_rank, calls),
                    _warnings(by_rank, missing), sections)


def _subtitle(t0, now):
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t0))} to "
            f"{time.strftime('%H:%M:%S %Z', time.localtime(now))} ({svg.duration_text(now - t0)})")


def _facts(facts, by_rank, calls):
    slurm = job()
    tasks = sum(1 for call in calls if call[1] == "task")
    failed = sum(1 for call in calls if call[5].get("failed"))
    nodes = {_node(facts.node_of, rank) for rank in by_rank}
    shown = [("this file", facts.path)] if facts.path else []
    if slurm:
        shown.append(("Slurm job", f"{slurm['job_id']} ({slurm['name']}) on {', '.join(slurm['nodes'][:8])}"))
    shown += [("ranks", f"{len(by_rank)} answered of a driver, a scheduler and {facts.workers} workers"),
              ("nodes", str(len(nodes))),
              ("tasks finished", f"{tasks:,}"), ("actor calls finished", f"{len(calls) - tasks:,}"),
              ("failed", f"{failed:,}"),
              ("trace events", f"{sum(len(events) for events in by_rank.values()):,}")]
    return shown


def _warnings(by_rank, missing):
    notes = []
    if missing:
        notes.append(f"{_ranks(missing)} did not answer in time: their tasks and store use are not in this "
                     "report.")
    full = [rank for rank, events in by_rank.items() if len(events) >= tracing.MAX_EVENTS_PER_RANK]
    if full:
        notes.append(f"{_ranks(sorted(full))} kept only the last "
                     f"{tracing.MAX_EVENTS_PER_RANK:,} events: their earlier work is missing here.")
    return notes


def _ranks(ranks):
    return f"Rank {ranks[0]}" if len(ranks) == 1 else f"Ranks {', '.join(map(str, ranks))}"


def _empty(text):
    return f'<p class="empty">{svg.escape(text)}</p>'


def _throughput_section(calls, t0, t1):
    if not calls:
        return svg.figure("tasks-per-second", "Finished tasks per second", _empty("No task or actor call ran."), 0)
    lines, width = throughput(calls, t0, t1)
    body, points = svg.line_chart(lines, (t0, t1), "time since start", "finished per second")
    return svg.figure("tasks-per-second", "Finished tasks and actor calls per second", body, points,
                      f"Counted when they finished, in buckets of {svg.duration_text(width)}.")


def _busy_section(calls, by_rank, node_of, t0, t1):
    busy = busy_by_rank(calls)
    ranks = sorted(set(busy) | {rank for rank in by_rank if rank not in (DRIVER_RANK, HEAD_RANK)})
    wall = max(t1 - t0, 1e-9)
    rows = []
    for rank in ranks:
        seconds, count, summed = busy.get(rank, (0.0, 0, 0.0))
        rows.append((f"rank {rank} (node {_node(node_of, rank)})", seconds / wall,
                     f"rank {rank}: running calls {svg.duration_text(seconds)} of {svg.duration_text(wall)}; "
                     f"{count:,} calls, {svg.duration_text(summed)} summed over calls"))
    if not rows:
        return svg.figure("busy-per-rank", "Busy time per rank", _empty("No worker rank answered."), 0)
    body, bars = svg.bar_chart(rows, lambda share: f"{share:.0%}")
    return svg.figure("busy-per-rank", "Busy time per rank", body, bars,
                      "Share of the report's time in which the rank ran at least one task or actor call (a task "
                      "blocked in get/wait counts as running).")


def _store_section(facts, by_rank, t0, t1):
    by_node, width = store_use_by_node(by_rank, facts.node_of, t0, t1)
    if not by_node:
        return svg.figure("store-use", "Object store use per node", _empty("No rank stored an object in the "
                                                                            "store (values over 100 KB)."), 0)
    hosts = facts.hosts
    ordered = sorted(by_node.items(), key=lambda item: max(v for _, v in item[1]), reverse=True)
    lines = [(f"node {node} ({hosts.get(node, '?')})", points) for node, points in ordered[:MAX_NODES_DRAWN]]
    body, points = svg.line_chart(lines, (t0, t1), "time since start", "store bytes", svg.bytes_text)
    note = (f"Peak of each {svg.duration_text(width)} bucket, sampled once a second per rank; the pool of the "
            f"driver's node holds {svg.bytes_text(facts.capacity)}.")
    if len(ordered) > MAX_NODES_DRAWN:
        note += f" The {MAX_NODES_DRAWN} nodes with the highest peaks of {len(ordered)} are drawn."
    return svg.figure("store-use", "Object store use per node", body, points, note)


def _slowest_section(calls):
    rows = function_stats(calls)
    if not rows:
        return svg.figure("slowest-functions", "Slowest functions", _empty("No task or actor call ran."), 0)
    text = [(label, f"{count:,}", *(svg.duration_text(v) for v in values))
            for label, count, *values in rows[:MAX_TABLE_ROWS]]
    body = svg.table(("function", "count", "mean", "p50", "p95", "max", "total"), text)
    note = f"The {MAX_TABLE_ROWS} slowest by mean of {len(rows)}." if len(rows) > MAX_TABLE_ROWS else ""
    return svg.figure("slowest-functions", "Slowest functions", body, len(text), note)


def _failures_section(calls, t0):
    counts, recent = failures(calls)
    if not counts:
        return svg.figure("failures", "Failures", _empty("No task or actor call failed."), 0)
    by_kind = svg.table(("function", "error", "count"),
                        [(label, error, f"{n:,}") for (label, error), n in counts.most_common(MAX_TABLE_ROWS)],
                        numeric_from=2)
    latest = svg.table(("when", "rank", "function", "error", "message"),
                       [(svg.duration_text(call[4] - t0), call[0], series_label(call[1], call[2]),
                         call[5].get("error", "?"), call[5].get("message", "")) for call in recent], numeric_from=9)
    body = f"{by_kind}<h3>Most recent</h3>{latest}"
    return svg.figure("failures", "Failures", body, sum(counts.values()),
                      "Tasks and actor calls that raised (a retried task counts each try).")
