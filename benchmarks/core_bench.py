"""Core-API micro-benchmarks: mpirt vs Ray, same code for both runtimes.

Measures, on ``init(num_cpus=2)``:
  1. sync task round trip: ``rt.get(noop.remote())`` N times (us per call),
  2. async throughput: submit 10,000 no-op tasks, then ``rt.get`` them all (tasks/s),
  3. small objects: ``rt.get(rt.put(1))`` (ops/s) and ``rt.put(small)`` x N (puts/s),
  4. ``rt.wait(refs, num_returns=len(refs))`` on 1,000 just-submitted no-op refs
     (ms per call, including waiting for the tasks), and again once they are all ready,
  5. actor calls on a no-op method: 1:1 sync ``rt.get(a.noop.remote())`` N times
     (us per call), 1:1 async (submit N calls to one actor, then get all; calls/s),
     n:n async (2 caller tasks, each driving its own actor with N/2 calls; total calls/s) and
     n:n sync (2 caller tasks, each making N/2 sequential ``rt.get(a.noop.remote())`` calls
     on its own actor; total calls/s),
  6. async tasks from many clients: 2 client tasks (``num_cpus=0``, so the no-op tasks get
     both CPUs), each submitting N/2 no-op tasks and getting them all (total tasks/s).

Together with store_bench.py this covers the core of Ray's own microbenchmark set
(``ray microbenchmark``: single/multi client tasks, put/get, 1:1 and n:n actor calls
sync/async, wait).

Each runtime runs in its own fresh subprocess (the script re-invokes itself with
``--runtime NAME``; the child prints its results as JSON on its last stdout line).
Ray is optional: without it the Ray column reads "n/a".

Run:  python benchmarks/core_bench.py            (full run, ~2.5 min on 2 cores, mostly Ray)
      python benchmarks/core_bench.py --quick    (smoke run, about 30 s with Ray)
      python benchmarks/core_bench.py --runtimes mpirt

Results go to benchmarks/results/core_bench.json and, if matplotlib is installed,
core_bench.png (horizontal bars of the mpirt/ray ratio per workload, log scale).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
REPO_ROOT = os.path.dirname(HERE)
RESULT_MARKER = "core_bench_result"
CHILD_TIMEOUT_S = 600
NUM_CPUS = 2

# key, label, unit, higher_is_better
WORKLOADS = [
    ("sync_latency", "sync round trip get(f.remote())", "us/call", False),
    ("async_throughput", "async submit N + get all", "tasks/s", True),
    ("put_get", "get(put(1)) round trip", "ops/s", True),
    ("put", "put(small) x N", "puts/s", True),
    ("wait_pending", "wait(1000 just-submitted refs)", "ms/call", False),
    ("wait_ready", "wait(1000 ready refs)", "ms/call", False),
    ("actor_sync", "1:1 actor calls sync", "us/call", False),
    ("actor_async", "1:1 actor calls async", "calls/s", True),
    ("actor_nn_async", "n:n actor calls async (2x2)", "calls/s", True),
    ("actor_nn_sync", "n:n actor calls sync (2x2)", "calls/s", True),
    ("multi_client_tasks", "async tasks from 2 client tasks", "tasks/s", True),
]

FULL = dict(sync_n=2000, async_n=10_000, put_get_n=5000, put_n=10_000, wait_n=1000,
            actor_sync_n=2000, actor_async_n=5000, actor_nn_n=5000, actor_nn_sync_n=2000,
            client_tasks_n=6000, repeats=5)
QUICK = dict(sync_n=200, async_n=1000, put_get_n=500, put_n=1000, wait_n=1000,
             actor_sync_n=200, actor_async_n=1000, actor_nn_n=1000, actor_nn_sync_n=200,
             client_tasks_n=1000, repeats=2)
N_ACTOR_PAIRS = 2  # n:n actor workloads: caller tasks = actors = 2 (fits num_cpus=2)
N_CLIENTS = 2  # async tasks from many clients: client tasks submitting no-op tasks


# --------------------------------------------------------------------------
# child: run the workloads on one runtime
# --------------------------------------------------------------------------
def _import_runtime(name):
    if name == "mpirt":
        sys.path.insert(0, REPO_ROOT)
        import mpirt as rt

        rt.init(num_cpus=NUM_CPUS)
        return rt
    if name == "ray":
        import logging

        import ray as rt

        rt.init(num_cpus=NUM_CPUS, include_dashboard=False, logging_level=logging.ERROR,
                log_to_driver=False, configure_logging=True)
        return rt
    raise ValueError(f"unknown runtime {name!r}")


def _timed(fn, repeats):
    """Run ``fn`` ``repeats`` times; return the list of wall times in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def run_workloads(rt, cfg):
    @rt.remote
    def noop():
        return None

    # warm-up: start the workers, import/serialize paths, object store
    for _ in range(20):
        rt.get(noop.remote())
    rt.get([noop.remote() for _ in range(200)])
    for _ in range(20):
        rt.get(rt.put(1))
    rt.wait([noop.remote() for _ in range(50)], num_returns=50)

    reps = cfg["repeats"]
    out = {}

    def record(key, value_of_time, times):
        values = [value_of_time(t) for t in times]
        out[key] = {"value": statistics.median(values), "runs": values}

    # 1. sync round trip latency
    n = cfg["sync_n"]

    def sync():
        for _ in range(n):
            rt.get(noop.remote())

    record("sync_latency", lambda t: t / n * 1e6, _timed(sync, reps))

    # 2. async throughput
    n_async = cfg["async_n"]

    def async_batch():
        refs = [noop.remote() for _ in range(n_async)]
        rt.get(refs)

    record("async_throughput", lambda t: n_async / t, _timed(async_batch, reps))

    # 3a. get(put(1)) round trip
    n_pg = cfg["put_get_n"]

    def put_get():
        for _ in range(n_pg):
            rt.get(rt.put(1))

    record("put_get", lambda t: n_pg / t, _timed(put_get, reps))

    # 3b. put(small) x N (refs are kept alive until the timing ends)
    n_put = cfg["put_n"]
    small = b"x" * 64

    def puts():
        refs = [rt.put(small) for _ in range(n_put)]
        return refs

    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        refs = puts()
        times.append(time.perf_counter() - t0)
        del refs
    record("put", lambda t: n_put / t, times)

    # 4. wait on 1000 refs, num_returns=len(refs)
    n_wait = cfg["wait_n"]
    pending_times, ready_times = [], []
    for _ in range(reps):
        refs = [noop.remote() for _ in range(n_wait)]
        t0 = time.perf_counter()
        ready, not_ready = rt.wait(refs, num_returns=len(refs))
        pending_times.append(time.perf_counter() - t0)
        assert len(ready) == n_wait and not not_ready
        t0 = time.perf_counter()
        ready, not_ready = rt.wait(refs, num_returns=len(refs))
        ready_times.append(time.perf_counter() - t0)
        assert len(ready) == n_wait and not not_ready
        rt.get(refs)
    record("wait_pending", lambda t: t * 1e3, pending_times)
    record("wait_ready", lambda t: t * 1e3, ready_times)

    # 5. actor calls (a no-op method). Actors hold no CPU while running in both
    # runtimes (Ray's default: 1 CPU to schedule, 0 to run), so the 2 caller tasks
    # below hold the 2 CPUs while the 2 actors, created beforehand, serve them.
    @rt.remote
    class Actor:
        def noop(self):
            return None

    @rt.remote
    def caller(actor, n):
        rt.get([actor.noop.remote() for _ in range(n)])

    actors = [Actor.remote() for _ in range(N_ACTOR_PAIRS)]
    for a in actors:  # warm-up: actor started, method path hot
        rt.get([a.noop.remote() for _ in range(200)])
    rt.get([caller.remote(a, 10) for a in actors])
    a = actors[0]

    # 5a. 1:1 sync actor calls
    n_as = cfg["actor_sync_n"]

    def actor_sync():
        for _ in range(n_as):
            rt.get(a.noop.remote())

    record("actor_sync", lambda t: t / n_as * 1e6, _timed(actor_sync, reps))

    # 5b. 1:1 async actor calls
    n_aa = cfg["actor_async_n"]

    def actor_async():
        rt.get([a.noop.remote() for _ in range(n_aa)])

    record("actor_async", lambda t: n_aa / t, _timed(actor_async, reps))

    # 5c. n:n async actor calls: each caller task drives its own actor; N calls in total
    n_per = cfg["actor_nn_n"] // N_ACTOR_PAIRS

    def actor_nn():
        rt.get([caller.remote(x, n_per) for x in actors])

    record("actor_nn_async", lambda t: n_per * N_ACTOR_PAIRS / t, _timed(actor_nn, reps))

    # 5d. n:n sync actor calls: each caller task makes sequential get(actor.noop.remote())
    # calls on its own actor; N calls in total
    @rt.remote
    def sync_caller(actor, n):
        for _ in range(n):
            rt.get(actor.noop.remote())

    rt.get([sync_caller.remote(x, 10) for x in actors])  # warm-up
    n_sync_per = cfg["actor_nn_sync_n"] // N_ACTOR_PAIRS

    def actor_nn_sync():
        rt.get([sync_caller.remote(x, n_sync_per) for x in actors])

    record("actor_nn_sync", lambda t: n_sync_per * N_ACTOR_PAIRS / t, _timed(actor_nn_sync, reps))
    del a, actors

    # 6. async tasks from many clients: each client task submits N/2 no-op tasks and gets
    # them. The clients take no CPU (num_cpus=0, same option for both runtimes), so the
    # no-op tasks can use both CPUs while the clients submit.
    @rt.remote(num_cpus=0)
    def client(n):
        rt.get([noop.remote() for _ in range(n)])

    rt.get([client.remote(50) for _ in range(N_CLIENTS)])  # warm-up
    n_client = cfg["client_tasks_n"] // N_CLIENTS

    def multi_client():
        rt.get([client.remote(n_client) for _ in range(N_CLIENTS)])

    record("multi_client_tasks", lambda t: n_client * N_CLIENTS / t, _timed(multi_client, reps))
    return out


def child_main(name, quick):
    cfg = QUICK if quick else FULL
    result = {RESULT_MARKER: True, "runtime": name, "config": cfg}
    try:
        if name == "ray":
            try:
                import ray  # noqa: F401
            except ImportError as exc:
                result.update(status="not installed", error=str(exc))
                _emit(result)
                return 0
        t0 = time.perf_counter()
        rt = _import_runtime(name)
        result["init_s"] = time.perf_counter() - t0
        result["version"] = getattr(rt, "__version__", "?")
        try:
            result["results"] = run_workloads(rt, cfg)
            result["status"] = "ok"
        finally:
            t0 = time.perf_counter()
            rt.shutdown()
            result["shutdown_s"] = time.perf_counter() - t0
    except Exception as exc:  # report, don't crash the table
        import traceback

        traceback.print_exc()
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
    _emit(result)
    return 0


def _emit(result):
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# parent: run each runtime in a fresh subprocess, print the table
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


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def _family(root):
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


def _kill_tree(proc):
    """Kill the child, its process group/session, and every descendant."""
    pids = _family(proc.pid) | {proc.pid}
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
            pids |= _family(proc.pid)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def run_child(name, quick, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--runtime", name] + (["--quick"] if quick else [])
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_DEDUP_LOGS", "0")
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=REPO_ROOT, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        stdout, stderr = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - t0
    # helpers (e.g. Open MPI's prte daemon) may take a few seconds to exit on their own;
    # whatever is still alive in the child's session after that is a leak: kill it too
    deadline = time.monotonic() + 15
    while _family(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = {pid: _cmdline(pid) for pid in sorted(_family(proc.pid))}
    if leftovers:
        _kill_tree(proc)

    result = None
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get(RESULT_MARKER):
                result = obj
                break
    if result is None:
        result = {"runtime": name, "status": "timeout" if timed_out else "error",
                  "error": f"no result from child (exit code {proc.returncode})"
                           + (f", killed after {timeout} s" if timed_out else "")}
    result.pop(RESULT_MARKER, None)
    result["wall_s"] = wall
    result["returncode"] = proc.returncode
    if leftovers:
        result["leftover_pids_killed"] = leftovers
    extra_stdout = [l for l in stdout.splitlines() if l.strip() and RESULT_MARKER not in l]
    if extra_stdout:
        result["stdout_tail"] = extra_stdout[-20:]
    if stderr.strip():
        result["stderr_tail"] = stderr.strip().splitlines()[-30:]
    return result


def _fmt(v):
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def _value(res, key):
    if not res or res.get("status") != "ok":
        return None
    entry = res.get("results", {}).get(key)
    return entry["value"] if entry else None


def _ratio(m, r, higher_is_better):
    if m is None or r is None or m <= 0 or r <= 0:
        return None
    return m / r if higher_is_better else r / m


def print_table(all_results, cfg):
    print(f"mpirt vs Ray core benchmark (num_cpus={NUM_CPUS}, median of {cfg['repeats']} repeats; "
          f"async N={cfg['async_n']:,}, sync N={cfg['sync_n']:,}, put N={cfg['put_n']:,}, wait refs={cfg['wait_n']:,}; "
          f"actor calls: sync N={cfg['actor_sync_n']:,}, async N={cfg['actor_async_n']:,}, "
          f"n:n async N={cfg['actor_nn_n']:,} / sync N={cfg['actor_nn_sync_n']:,} total; "
          f"{N_CLIENTS} clients x {cfg['client_tasks_n'] // N_CLIENTS:,} tasks)")
    print("ratio = mpirt/ray oriented so that > 1 means mpirt is better (faster / higher throughput)")
    rows = [("workload", "unit", "mpirt", "ray", "mpirt/ray")]
    for key, label, unit, hib in WORKLOADS:
        m = _value(all_results.get("mpirt"), key)
        r = _value(all_results.get("ray"), key)
        ratio = _ratio(m, r, hib)
        rows.append((label, unit, _fmt(m), _fmt(r), "n/a" if ratio is None else f"{ratio:.2f}x"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])] + [c.rjust(w) for c, w in zip(row[2:], widths[2:])]
        print(" | ".join(cells))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    for name in ("mpirt", "ray"):
        res = all_results.get(name)
        if res is None:
            continue
        status = res.get("status")
        if status == "ok":
            print(f"{name} {res.get('version', '?')}: init {res.get('init_s', 0):.2f} s, "
                  f"shutdown {res.get('shutdown_s', 0):.2f} s, child wall {res['wall_s']:.1f} s")
        elif status == "not installed":
            print(f"{name}: not installed (pip install 'ray==2.*' to compare)")
        else:
            print(f"{name}: {status}: {res.get('error')}")
            for line in res.get("stderr_tail", [])[-10:]:
                print(f"  | {line}")
        if res.get("leftover_pids_killed"):
            print(f"{name}: killed {len(res['leftover_pids_killed'])} process(es) still alive 15 s after the child "
                  f"exited: {', '.join(res['leftover_pids_killed'].values())}")


def _versions(all_results):
    return " vs ".join(f"{n} {all_results.get(n, {}).get('version', '?')}" for n in ("mpirt", "ray"))


def save_ratio_plot(rows, path, title):
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
    ax.set_xlabel("mpirt / ray (> 1: mpirt better; log scale, lines at 1x and 10x)", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def save_plot(all_results, cfg, path):
    rows = [(f"{label} ({unit})", _ratio(_value(all_results.get("mpirt"), key), _value(all_results.get("ray"), key), hib))
            for key, label, unit, hib in WORKLOADS]
    title = (f"core API: {_versions(all_results)}, num_cpus={NUM_CPUS}, median of {cfg['repeats']}"
             + (" (quick run)" if cfg is QUICK else ""))
    return save_ratio_plot(rows, path, title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, for smoke runs")
    parser.add_argument("--runtimes", default="mpirt,ray", help="comma-separated: mpirt,ray")
    parser.add_argument("--runtime", help=argparse.SUPPRESS)  # internal: child mode
    parser.add_argument("--timeout", type=int, default=CHILD_TIMEOUT_S, help="per-runtime timeout in seconds")
    args = parser.parse_args(argv)

    if args.runtime:
        return child_main(args.runtime, args.quick)

    names = [n.strip() for n in args.runtimes.split(",") if n.strip()]
    for n in names:
        if n not in ("mpirt", "ray"):
            parser.error(f"unknown runtime {n!r} (choose from mpirt, ray)")
    all_results = {}
    for n in names:
        print(f"running {n} ...", file=sys.stderr, flush=True)
        all_results[n] = run_child(n, args.quick, args.timeout)

    cfg = QUICK if args.quick else FULL
    print_table(all_results, cfg)

    os.makedirs(RESULTS_DIR, exist_ok=True)
    doc = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": args.quick,
        "num_cpus": NUM_CPUS,
        "config": cfg,
        "python": sys.version.split()[0],
        "workloads": [{"key": k, "label": l, "unit": u, "higher_is_better": h} for k, l, u, h in WORKLOADS],
        "runtimes": all_results,
        "ratio_mpirt_over_ray": {k: _ratio(_value(all_results.get("mpirt"), k), _value(all_results.get("ray"), k), h)
                                 for k, _, _, h in WORKLOADS},
    }
    json_path = os.path.join(RESULTS_DIR, "core_bench.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=2)
    written = [json_path]
    png_path = os.path.join(RESULTS_DIR, "core_bench.png")
    if save_plot(all_results, cfg, png_path):
        written.append(png_path)
    print("wrote " + ", ".join(os.path.relpath(p, REPO_ROOT) for p in written))
    return 0 if all(r.get("status") in ("ok", "not installed") for r in all_results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
