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
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

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
    return harness.init_runtime(name, num_cpus=NUM_CPUS)


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

    record("sync_latency", lambda t: t / n * 1e6, harness.timed(sync, reps))

    # 2. async throughput
    n_async = cfg["async_n"]

    def async_batch():
        refs = [noop.remote() for _ in range(n_async)]
        rt.get(refs)

    record("async_throughput", lambda t: n_async / t, harness.timed(async_batch, reps))

    # 3a. get(put(1)) round trip
    n_pg = cfg["put_get_n"]

    def put_get():
        for _ in range(n_pg):
            rt.get(rt.put(1))

    record("put_get", lambda t: n_pg / t, harness.timed(put_get, reps))

    # 3b. put(small) x N (refs are kept alive until the timing ends)
    n_put = cfg["put_n"]
    small = b"x" * 64

    def puts():
        return [rt.put(small) for _ in range(n_put)]

    record("put", lambda t: n_put / t, harness.timed(puts, reps))

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

    record("actor_sync", lambda t: t / n_as * 1e6, harness.timed(actor_sync, reps))

    # 5b. 1:1 async actor calls
    n_aa = cfg["actor_async_n"]

    def actor_async():
        rt.get([a.noop.remote() for _ in range(n_aa)])

    record("actor_async", lambda t: n_aa / t, harness.timed(actor_async, reps))

    # 5c. n:n async actor calls: each caller task drives its own actor; N calls in total
    n_per = cfg["actor_nn_n"] // N_ACTOR_PAIRS

    def actor_nn():
        rt.get([caller.remote(x, n_per) for x in actors])

    record("actor_nn_async", lambda t: n_per * N_ACTOR_PAIRS / t, harness.timed(actor_nn, reps))

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

    record("actor_nn_sync", lambda t: n_sync_per * N_ACTOR_PAIRS / t, harness.timed(actor_nn_sync, reps))
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

    record("multi_client_tasks", lambda t: n_client * N_CLIENTS / t, harness.timed(multi_client, reps))
    return out


def child_main(name, quick):
    cfg = QUICK if quick else FULL

    def work(rt, result):
        result["results"] = run_workloads(rt, cfg)

    result = {RESULT_MARKER: True, "runtime": name, "config": cfg}
    return harness.run_in_child(result, name, _import_runtime, work)


# --------------------------------------------------------------------------
# parent: run each runtime in a fresh subprocess, print the table
# --------------------------------------------------------------------------
def run_child(name, quick, timeout):
    run = harness.run_process(harness.child_command(__file__, name, quick), harness.child_env(),
                              timeout, RESULT_MARKER)
    return harness.runtime_result(run, name, timeout, RESULT_MARKER)


def _ratio_of(all_results, key, higher_is_better):
    return harness.ratio(harness.value(all_results.get("mpirt"), key), harness.value(all_results.get("ray"), key),
                         higher_is_better)


def print_table(all_results, cfg):
    print(f"mpirt vs Ray core benchmark (num_cpus={NUM_CPUS}, median of {cfg['repeats']} repeats; "
          f"async N={cfg['async_n']:,}, sync N={cfg['sync_n']:,}, put N={cfg['put_n']:,}, wait refs={cfg['wait_n']:,}; "
          f"actor calls: sync N={cfg['actor_sync_n']:,}, async N={cfg['actor_async_n']:,}, "
          f"n:n async N={cfg['actor_nn_n']:,} / sync N={cfg['actor_nn_sync_n']:,} total; "
          f"{N_CLIENTS} clients x {cfg['client_tasks_n'] // N_CLIENTS:,} tasks)")
    harness.print_comparison([(label, unit, harness.value(all_results.get("mpirt"), key),
                               harness.value(all_results.get("ray"), key), hib)
                              for key, label, unit, hib in WORKLOADS])
    harness.print_runs(all_results)


def save_plot(all_results, cfg, path):
    rows = [(f"{label} ({unit})", _ratio_of(all_results, key, hib)) for key, label, unit, hib in WORKLOADS]
    title = (f"core API: {harness.versions(all_results)}, num_cpus={NUM_CPUS}, median of {cfg['repeats']}"
             + (" (quick run)" if cfg is QUICK else ""))
    return harness.save_ratio_plot(rows, path, title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, for smoke runs")
    parser.add_argument("--runtimes", default="mpirt,ray", help="comma-separated: mpirt,ray")
    parser.add_argument("--runtime", help=argparse.SUPPRESS)  # internal: child mode
    parser.add_argument("--timeout", type=int, default=CHILD_TIMEOUT_S, help="per-runtime timeout in seconds")
    args = parser.parse_args(argv)

    if args.runtime:
        return child_main(args.runtime, args.quick)

    names = harness.runtime_names(parser, args.runtimes)
    all_results = {}
    for n in names:
        print(f"running {n} ...", file=sys.stderr, flush=True)
        all_results[n] = run_child(n, args.quick, args.timeout)

    cfg = QUICK if args.quick else FULL
    print_table(all_results, cfg)

    doc = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": args.quick,
        "num_cpus": NUM_CPUS,
        "config": cfg,
        "python": sys.version.split()[0],
        "workloads": [{"key": k, "label": l, "unit": u, "higher_is_better": h} for k, l, u, h in WORKLOADS],
        "runtimes": all_results,
        "ratio_mpirt_over_ray": {k: _ratio_of(all_results, k, h) for k, _, _, h in WORKLOADS},
    }
    harness.write_results("core_bench", doc, lambda path: save_plot(all_results, cfg, path))
    return 0 if all(r.get("status") in ("ok", "not installed") for r in all_results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
