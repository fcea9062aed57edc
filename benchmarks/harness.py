"""Shared plumbing for the benchmark scripts in this folder (core_bench, store_bench, scaling_bench).

Runs a benchmark child in its own session with a timeout, kills its whole process tree
on timeout or when helpers outlive it, and reads back the JSON result line the child
prints last; the child side of an mpirt-vs-Ray run; timing; table formatting; and
writing benchmarks/results/<name>.json / .png (mpirt/ray ratio bar chart).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
REPO_ROOT = os.path.dirname(HERE)
LEFTOVER_GRACE_S = 15
RATIO_NOTE = "ratio = mpirt/ray oriented so that > 1 means mpirt is better (faster / higher throughput)"


# --------------------------------------------------------------------------
# child side
# --------------------------------------------------------------------------
def init_runtime(name, **init_kwargs):
    """Import and ``init`` mpirt or Ray (quiet: no dashboard, no driver logs); return the module."""
    if name == "mpirt":
        # revision_bench.py runs this checkout's workloads on another revision's mpirt
        sys.path.insert(0, os.environ.get("MPIRT_BENCH_SOURCE", REPO_ROOT))
        import mpirt as rt

        rt.init(**init_kwargs)
        return rt
    if name == "ray":
        import logging

        import ray as rt

        rt.init(**init_kwargs, include_dashboard=False, logging_level=logging.ERROR,
                log_to_driver=False, configure_logging=True)
        return rt
    raise ValueError(f"unknown runtime {name!r}")


def timed(fn, repeats):
    """Run ``fn`` ``repeats`` times; return the wall times in seconds.

    What ``fn`` returns is kept alive until its timing ends (so e.g. dropping refs is not timed).
    """
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
        del value
    return times


def emit(result):
    """Print ``result`` as JSON on the last stdout line (what the parent looks for)."""
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_in_child(result, runtime, init, work, before_shutdown=None):
    """Child side of an mpirt-vs-Ray run: init, ``work(rt, result)``, shut down, emit ``result``.

    ``init(runtime)`` returns the runtime module; init and shutdown times and the version
    go into ``result``, and ``status`` becomes "ok", "not installed" (Ray missing) or
    "error" (the traceback goes to stderr). ``before_shutdown(result)`` runs just before
    ``rt.shutdown()``. Returns 0 (the table reports failures, not the exit code).
    """
    try:
        if runtime == "ray":
            try:
                import ray  # noqa: F401
            except ImportError as exc:
                result.update(status="not installed", error=str(exc))
                emit(result)
                return 0
        t0 = time.perf_counter()
        rt = init(runtime)
        result["init_s"] = time.perf_counter() - t0
        result["version"] = getattr(rt, "__version__", "?")
        try:
            work(rt, result)
            result["status"] = "ok"
        finally:
            if before_shutdown is not None:
                before_shutdown(result)
            t0 = time.perf_counter()
            rt.shutdown()
            result["shutdown_s"] = time.perf_counter() - t0
    except Exception as exc:  # report, don't crash the table
        import traceback

        traceback.print_exc()
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
    emit(result)
    return 0


# --------------------------------------------------------------------------
# parent side: run a child, kill its process tree, read its result
# --------------------------------------------------------------------------
def _proc_stat(pid):
    """(ppid, session id) of a live (non-zombie) ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[3])


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def family(root):
    """PIDs of ``root``'s descendants and of everything in its session (Linux /proc)."""
    if not os.path.isdir("/proc"):
        return set()
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                stats[int(entry)] = st
    found = {pid for pid, (_, sid) in stats.items() if sid == root}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    found.discard(os.getpid())
    return found


def kill_tree(proc):
    """Kill the child, its process group/session, and every descendant."""
    pids = family(proc.pid) | {proc.pid}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGTERM:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
            pids |= family(proc.pid)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def parse_result(stdout, marker):
    """The last JSON object line of ``stdout`` that has ``marker`` set, without the marker; or None."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get(marker):
                obj.pop(marker, None)
                return obj
    return None


Run = namedtuple("Run", "result stdout stderr returncode timed_out wall_s leftovers")


def run_process(cmd, env, timeout, marker):
    """Run ``cmd`` in a new session (cwd: the repository root), killing its tree after ``timeout`` s.

    Processes still alive in its session ``LEFTOVER_GRACE_S`` s after it ends are killed
    and listed in ``leftovers`` ({pid: command line}). ``result`` is the child's parsed
    result line (see ``parse_result``) or None. Raises OSError if ``cmd`` cannot start.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=REPO_ROOT, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        stdout, stderr = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - t0
    # helpers (e.g. Open MPI's prte daemon, Ray's raylet) may take a few seconds to exit on
    # their own; whatever is still alive in the child's session after that is a leak: kill it
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while family(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = {pid: cmdline(pid) for pid in sorted(family(proc.pid))}
    if leftovers:
        kill_tree(proc)
    return Run(parse_result(stdout, marker), stdout, stderr, proc.returncode, timed_out, wall, leftovers)


def child_command(script, name, quick):
    """Command line that re-invokes ``script`` in child mode for runtime ``name``: Ray's children
    run under ``$RAY_PYTHON`` when it is set (Ray in a venv of its own, so it never hides a
    dependency mpirt lacks)."""
    python = os.environ.get("RAY_PYTHON") if name.startswith("ray") else None
    return [python or sys.executable, os.path.abspath(script), "--runtime", name] + (["--quick"] if quick else [])


def child_env():
    """Environment for a runtime child: Ray usage stats and log dedup off, unbuffered output."""
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_DEDUP_LOGS", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def runtime_result(run, name, timeout, marker, **extra):
    """The result dict of a runtime child ``run``, with wall time, exit code, ``extra`` and output tails."""
    result = run.result
    if result is None:
        result = {"runtime": name, "status": "timeout" if run.timed_out else "error",
                  "error": f"no result from child (exit code {run.returncode})"
                           + (f", killed after {timeout} s" if run.timed_out else "")}
    result["wall_s"] = run.wall_s
    result["returncode"] = run.returncode
    result.update(extra)
    if run.leftovers:
        result["leftover_pids_killed"] = run.leftovers
    extra_stdout = [l for l in run.stdout.splitlines() if l.strip() and marker not in l]
    if extra_stdout:
        result["stdout_tail"] = extra_stdout[-20:]
    if run.stderr.strip():
        result["stderr_tail"] = run.stderr.strip().splitlines()[-30:]
    return result


def runtime_names(parser, text, choices=("mpirt", "ray")):
    """The runtimes of a ``--runtimes`` value (comma-separated names from ``choices``); a parser error
    otherwise."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in choices:
            parser.error(f"unknown runtime {n!r} (choose from {', '.join(choices)})")
    return names


def add_round_arguments(parser, runtimes, timeout, quick_help="small N, for smoke runs"):
    """The options every interleaved-rounds benchmark takes: --quick, --rounds, --runtimes, --timeout, and
    the internal --runtime of its child processes."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each runtime")
    parser.add_argument("--runtimes", default=",".join(runtimes), help="comma-separated: " + ",".join(runtimes))
    parser.add_argument("--runtime", help=argparse.SUPPRESS)  # internal: child mode
    parser.add_argument("--timeout", type=int, default=timeout, help="per-child timeout in seconds")


# --------------------------------------------------------------------------
# tables and result files
# --------------------------------------------------------------------------
def fmt(v):
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def value(res, key):
    """Median value of workload ``key`` in a child's result, or None if it did not run."""
    if not res or res.get("status") != "ok":
        return None
    entry = res.get("results", {}).get(key)
    return entry["value"] if entry else None


def ratio(m, r, higher_is_better):
    """mpirt/ray oriented so that > 1 means mpirt is better; None when either is missing."""
    if m is None or r is None or m <= 0 or r <= 0:
        return None
    return m / r if higher_is_better else r / m


def versions(all_results):
    return " vs ".join(f"{n} {all_results.get(n, {}).get('version', '?')}" for n in ("mpirt", "ray"))


def print_rows(rows, left=0):
    """Print ``rows`` (the first is the header) as a table: the first ``left`` columns left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(" | ".join(c.ljust(w) if j < left else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def print_comparison(entries):
    """The mpirt vs Ray table; ``entries``: (label, unit, mpirt value, ray value, higher_is_better)."""
    print(RATIO_NOTE)
    rows = [("workload", "unit", "mpirt", "ray", "mpirt/ray")]
    for label, unit, m, r, hib in entries:
        q = ratio(m, r, hib)
        rows.append((label, unit, fmt(m), fmt(r), "n/a" if q is None else f"{q:.2f}x"))
    print_rows(rows, left=2)


def print_failure(prefix, res):
    print(f"{prefix}: {res.get('status')}: {res.get('error')}")
    for line in res.get("stderr_tail", [])[-10:]:
        print(f"  | {line}")


def print_status(name, res, suffix=""):
    """One line on how runtime child ``name`` went (plus its stderr tail if it failed)."""
    status = res.get("status")
    if status == "ok":
        print(f"{name} {res.get('version', '?')}: init {res.get('init_s', 0):.2f} s, "
              f"shutdown {res.get('shutdown_s', 0):.2f} s, child wall {res['wall_s']:.1f} s{suffix}")
    elif status == "not installed":
        print(f"{name}: not installed (pip install 'ray==2.*' to compare)")
    else:
        print_failure(name, res)


def print_leftovers(prefix, res, after="the child exited"):
    killed = res.get("leftover_pids_killed")
    if killed:
        print(f"{prefix}: killed {len(killed)} process(es) still alive {LEFTOVER_GRACE_S} s after {after}: "
              f"{', '.join(killed.values())}")


def print_runs(results, names=("mpirt", "ray")):
    """How each runtime child of ``results`` went and what it left behind, in ``names`` order."""
    for name in names:
        res = results.get(name)
        if res is not None:
            print_status(name, res)
            print_leftovers(name, res)


def save_ratio_plot(rows, path, title, xlabel="mpirt / ray (> 1: mpirt better; log scale, lines at 1x and 10x)"):
    """Horizontal bars of the mpirt/ray ratio per workload (log x, lines at 1x and 10x).

    ``rows``: (label, ratio or None) in table order; None (n/a) rows are skipped.
    Returns False when matplotlib is missing or there is nothing to plot.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except Exception:
        return False
    rows = [(label, ratio) for label, ratio in rows if ratio is not None and ratio > 0]
    if not rows:
        return False
    labels = [label for label, _ in rows][::-1]  # first table row at the top
    ratios = [ratio for _, ratio in rows][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.4))
    colors = ["tab:green" if r >= 1 else "tab:red" for r in ratios]
    ax.barh(range(len(rows)), ratios, color=colors, height=0.6)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}x"))
    lo = min(min(ratios), 1.0) / 1.6
    hi = max(max(ratios), 10.0) * 2.5
    ax.set_xlim(lo, hi)
    for x, style in ((1, "-"), (10, "--")):
        ax.axvline(x, color="black" if x == 1 else "gray", linestyle=style, linewidth=1)
    for y, r in enumerate(ratios):
        ax.text(r * 1.08, y, f"{r:.2f}x" if r < 10 else f"{r:.1f}x", va="center", fontsize=8,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def interleaved_rounds(names, rounds, run_one):
    """``{name: [result per round]}``: ``run_one(name)`` for each runtime in each round, the order rotated
    every round so that a slow stretch of the machine hits every runtime alike."""
    runs = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            print(f"round {round_number + 1}/{rounds}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(run_one(name))
    return runs


def merge_rounds(rounds, keys):
    """One runtime's rounds as one result: per workload key the median of the rounds' medians (the rounds
    that worked); the last round as it is if none did."""
    ok = [r for r in rounds if r.get("status") == "ok"]
    if not ok:
        return rounds[-1]
    merged = dict(ok[-1])
    merged["results"] = {}
    for key in keys:
        values = [r["results"][key]["value"] for r in ok if key in r.get("results", {})]
        if values:
            merged["results"][key] = {"value": statistics.median(values), "rounds": values}
    merged["rounds"] = len(ok)
    merged["failed_rounds"] = [r for r in rounds if r.get("status") != "ok"]
    return merged


def write_results(stem, doc, save_plot):
    """Write results/<stem>.json and, if ``save_plot(path)`` draws one, results/<stem>.png; say what was written."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    json_path = os.path.join(RESULTS_DIR, stem + ".json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=2)
    written = [json_path]
    png_path = os.path.join(RESULTS_DIR, stem + ".png")
    if save_plot(png_path):
        written.append(png_path)
    print("wrote " + ", ".join(os.path.relpath(p, REPO_ROOT) for p in written))
