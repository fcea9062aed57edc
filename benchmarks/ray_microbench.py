"""Every workload of Ray's own ``ray microbenchmark``, run on mpirt and on Ray side by side.

The workloads are those of Ray 2.60's ``ray microbenchmark`` (``ray/_private/ray_perf.py``), with the
same shapes: the same remote functions and actor classes (``num_cpus=0`` actors and clients, a default
``async def`` actor), the same batch sizes (1,000 tasks, 10,000 refs, 100 MiB x 8 B puts, 10 clients x
100 puts, ``cpu_count() // 2`` actors for the 1:n and n:n rows, 4 callers of 10,000 calls) and the same
unit Ray prints (operations per second, ``multiplier`` x calls/s; GB/s for the put-gigabytes rows). Only
the timing loop is shorter: a warm-up of ``--warmup`` seconds, then ``--windows`` windows of ``--window``
seconds each; the value is the median window (Ray: 10 s of sleep, 1 s of warm-up, 4 windows of 2 s).

The put-gigabytes rows are also set against a plain memory copy of the same bytes on the same machine,
measured in the same child (``numpy.copyto`` into a buffer already written once, so no page faults are
counted): the bar is 1.5x of it.

Each runtime runs in a fresh subprocess per round; rounds are interleaved (the order rotates each round)
and the table shows the median over rounds. Ray runs under ``$RAY_PYTHON`` when set (Ray in a venv of
its own); without Ray its column reads "n/a". The goal column is issue 25's: 25x Ray for rows submitted
asynchronously (labels ending in "async", Ray's naming), 10x for every other call rate, 2x for bandwidth.

Run:  RAY_PYTHON=/work/rayvenv/bin/python python benchmarks/ray_microbench.py        (2 rounds, ~6 min)
      python benchmarks/ray_microbench.py --quick --rounds 1 --runtimes mpirt     (smoke run, ~1 min)
      python benchmarks/ray_microbench.py --only wait,refs                        (rows whose key has these)

Results go to benchmarks/results/ray_microbench.json and, with matplotlib, ray_microbench.png (the
mpirt/Ray ratio per row, log scale, lines at 1x and 10x).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

RESULT_MARKER = "ray_microbench_result"
CHILD_TIMEOUT_S = 900
GB = 1e9  # Ray's "gigabytes" rows count 10^9 bytes (8 * 0.1 GB per 100 Mi int64 array, rounded as Ray does)

# key, Ray's label, unit, goal (mpirt/Ray)
WORKLOADS = [
    ("get_calls", "single client get calls (Plasma Store)", "ops/s", 10),
    ("put_calls", "single client put calls (Plasma Store)", "ops/s", 10),
    ("multi_put_calls", "multi client put calls (Plasma Store)", "ops/s", 10),
    ("put_gb", "single client put gigabytes", "GB/s", 2),
    ("tasks_get_batch", "single client tasks and get batch", "ops/s", 10),
    ("multi_put_gb", "multi client put gigabytes", "GB/s", 2),
    ("get_10k_refs", "single client get object containing 10k refs", "ops/s", 10),
    ("wait_1k_refs", "single client wait 1k refs", "ops/s", 10),
    ("tasks_sync", "single client tasks sync", "ops/s", 10),
    ("tasks_async", "single client tasks async", "ops/s", 25),
    ("multi_tasks_async", "multi client tasks async", "ops/s", 25),
    ("actor_sync", "1:1 actor calls sync", "ops/s", 10),
    ("actor_async", "1:1 actor calls async", "ops/s", 25),
    ("actor_concurrent", "1:1 actor calls concurrent", "ops/s", 10),
    ("actor_1n_async", "1:n actor calls async", "ops/s", 25),
    ("actor_nn_async", "n:n actor calls async", "ops/s", 25),
    ("actor_nn_arg_async", "n:n actor calls with arg async", "ops/s", 25),
    ("async_actor_sync", "1:1 async-actor calls sync", "ops/s", 10),
    ("async_actor_async", "1:1 async-actor calls async", "ops/s", 25),
    ("async_actor_args_async", "1:1 async-actor calls with args async", "ops/s", 25),
    ("async_actor_1n_async", "1:n async-actor calls async", "ops/s", 25),
    ("async_actor_nn_async", "n:n async-actor calls async", "ops/s", 25),
    ("pg_create_removal", "placement group create/removal", "ops/s", 10),
]
# the plain-copy baselines of the two bandwidth rows (measured in every child, shown beside them)
COPY_BASELINES = {"put_gb": "copy_gb", "multi_put_gb": "multi_copy_gb"}
COPY_GOAL = 1.5

FULL = dict(warmup=1.0, window=1.5, windows=3)
QUICK = dict(warmup=0.2, window=0.3, windows=2)


# --------------------------------------------------------------------------
# child: one runtime, every workload
# --------------------------------------------------------------------------
def rate(fn, multiplier, cfg):
    """Operations per second of ``fn`` (x ``multiplier``): warm up, then the median of timed windows.

    Each window runs ``fn`` in steps of a tenth of the warm-up's count (at least one), as Ray's timeit
    does, so the clock is read rarely for fast calls and a slow call still ends its window.
    """
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < cfg["warmup"] or count == 0:
        fn()
        count += 1
    step = count // 10 + 1
    values = []
    for _ in range(cfg["windows"]):
        start = time.perf_counter()
        done = 0
        while time.perf_counter() - start < cfg["window"]:
            for _ in range(step):
                fn()
            done += step
        values.append(multiplier * done / (time.perf_counter() - start))
    return {"value": statistics.median(values), "windows": values}


def copy_rate(np, n_bytes, arrays, cfg, fresh_source):
    """GB/s of plain ``numpy.copyto`` of ``arrays`` arrays of ``n_bytes`` into one destination written
    once before (no page faults timed); ``fresh_source`` makes each source with ``np.zeros`` as the
    multi-client put workload does."""
    count = n_bytes // 8
    dst = np.ones(count, dtype=np.int64)
    src = np.zeros(count, dtype=np.int64)

    def copy_all():
        for _ in range(arrays):
            np.copyto(dst, np.zeros(count, dtype=np.int64) if fresh_source else src)

    return rate(copy_all, arrays * n_bytes / GB, cfg)


def define(rt):
    """The remote functions and actor classes of Ray's microbenchmark, for runtime ``rt``."""

    @rt.remote
    def small_value():
        return b"ok"

    @rt.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

        def small_value_batch(self, n):
            rt.get([small_value.remote() for _ in range(n)])

    @rt.remote
    class AsyncActor:
        async def small_value(self):
            return b"ok"

        async def small_value_with_arg(self, x):
            return b"ok"

    @rt.remote(num_cpus=0)
    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n):
            refs = []
            for s in self.servers:
                refs.extend([s.small_value.remote() for _ in range(n)])
            rt.get(refs)

        def small_value_batch_arg(self, n):
            x = rt.put(0)
            refs = []
            for s in self.servers:
                refs.extend([s.small_value_arg.remote(x) for _ in range(n)])
            rt.get(refs)

    @rt.remote
    def create_object_containing_ref():
        return [rt.put(1) for _ in range(10_000)]

    @rt.remote
    def do_put_small():
        for _ in range(100):
            rt.put(0)

    @rt.remote
    def do_put():
        import numpy as np

        for _ in range(10):
            rt.put(np.zeros(10 * 1024 * 1024, dtype=np.int64))

    @rt.remote
    def work(actors, n):
        rt.get([actors[i % len(actors)].small_value.remote() for i in range(n)])

    return dict(small_value=small_value, Actor=Actor, AsyncActor=AsyncActor, Client=Client,
                create_object_containing_ref=create_object_containing_ref, do_put_small=do_put_small,
                do_put=do_put, work=work)


def workload_functions(rt, np, d, n_cpu):
    """key -> () -> (fn, multiplier): each sets up its actors and objects when called, so only the rows
    selected are set up, one at a time, and their actors go when the next row starts."""
    small_value, Actor, AsyncActor, Client = d["small_value"], d["Actor"], d["AsyncActor"], d["Client"]

    def get_calls():
        value = rt.put(0)
        return lambda: rt.get(value), 1

    def put_calls():
        return lambda: rt.put(0), 1

    def multi_put_calls():
        return lambda: rt.get([d["do_put_small"].remote() for _ in range(10)]), 1000

    def put_gb():
        arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
        return lambda: rt.put(arr), 8 * 0.1

    def tasks_get_batch():
        return lambda: rt.get([small_value.remote() for _ in range(1000)]), 1

    def multi_put_gb():
        return lambda: rt.get([d["do_put"].remote() for _ in range(10)]), 10 * 8 * 0.1

    def get_10k_refs():
        ref = d["create_object_containing_ref"].remote()
        rt.get(ref)
        return lambda: rt.get(ref), 1

    def wait_1k_refs():
        def wait_each():
            not_ready = [small_value.remote() for _ in range(1000)]
            for _ in range(1000):
                _, not_ready = rt.wait(not_ready)
        return wait_each, 1

    def tasks_sync():
        return lambda: rt.get(small_value.remote()), 1

    def tasks_async():
        return lambda: rt.get([small_value.remote() for _ in range(1000)]), 1000

    def multi_tasks_async():
        actors = [Actor.remote() for _ in range(4)]
        return lambda: rt.get([a.small_value_batch.remote(10_000) for a in actors]), 10_000 * 4

    def actor_sync():
        a = Actor.remote()
        return lambda: rt.get(a.small_value.remote()), 1

    def actor_async():
        a = Actor.remote()
        return lambda: rt.get([a.small_value.remote() for _ in range(1000)]), 1000

    def actor_concurrent():
        a = Actor.options(max_concurrency=16).remote()
        return lambda: rt.get([a.small_value.remote() for _ in range(1000)]), 1000

    def actor_1n_async():
        client = Client.remote([Actor.remote() for _ in range(n_cpu)])
        return lambda: rt.get(client.small_value_batch.remote(5000)), 5000 * n_cpu

    def actor_nn_async():
        actors = [Actor.remote() for _ in range(n_cpu)]
        return lambda: rt.get([d["work"].remote(actors, 5000) for _ in range(4)]), 4 * 5000

    def actor_nn_arg_async():
        clients = [Client.remote(Actor.remote()) for _ in range(n_cpu)]
        return lambda: rt.get([c.small_value_batch_arg.remote(1000) for c in clients]), 1000 * n_cpu

    def async_actor_sync():
        a = AsyncActor.remote()
        return lambda: rt.get(a.small_value.remote()), 1

    def async_actor_async():
        a = AsyncActor.remote()
        return lambda: rt.get([a.small_value.remote() for _ in range(1000)]), 1000

    def async_actor_args_async():
        a = AsyncActor.remote()
        return lambda: rt.get([a.small_value_with_arg.remote(i) for i in range(1000)]), 1000

    def async_actor_1n_async():
        client = Client.remote([AsyncActor.remote() for _ in range(n_cpu)])
        return lambda: rt.get(client.small_value_batch.remote(5000)), 5000 * n_cpu

    def async_actor_nn_async():
        actors = [AsyncActor.remote() for _ in range(n_cpu)]
        return lambda: rt.get([d["work"].remote(actors, 5000) for _ in range(4)]), 4 * 5000

    keys = {w[0] for w in WORKLOADS}
    return {k: fn for k, fn in locals().items() if k in keys}


def placement_group_rate(rt, cfg):
    """Ray's placement-group row: 100 one-bundle groups of a custom resource created, waited on, removed."""
    def create_and_remove():
        pgs = [rt.util.placement_group([{"custom": 0.001}]) for _ in range(100)]
        for pg in pgs:
            pg.wait(timeout_seconds=30)
        for pg in pgs:
            rt.util.remove_placement_group(pg)

    return rate(create_and_remove, 100, cfg)


def selected(only):
    keys = [w[0] for w in WORKLOADS]
    if not only:
        return keys
    words = [w for w in only.split(",") if w]
    return [k for k in keys if any(w in k for w in words)]


def child_main(name, quick, only):
    import numpy as np

    cfg = QUICK if quick else FULL
    keys = selected(only)
    n_cpu = max(1, (os.cpu_count() or 2) // 2)  # Ray's: multiprocessing.cpu_count() // 2

    def work(rt, result):
        out = result["results"]
        errors = result["errors"]
        functions = workload_functions(rt, np, define(rt), n_cpu)
        for key in keys:
            if key == "pg_create_removal":
                continue
            try:
                fn, multiplier = functions[key]()
                out[key] = rate(fn, multiplier, cfg)
                del fn
            except Exception as exc:  # one row's failure is reported, the others still run
                errors[key] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"{name}: {key} {out.get(key, {}).get('value')}", file=sys.stderr, flush=True)
        out["copy_gb"] = copy_rate(np, 100 * 1024 * 1024 * 8, 1, cfg, fresh_source=False)
        out["multi_copy_gb"] = copy_rate(np, 10 * 1024 * 1024 * 8, 100, cfg, fresh_source=True)

    def init(runtime):
        return harness.init_runtime(runtime)

    def placement_groups(result):
        # Ray starts a second session with a custom resource for this row; so does this child
        if "pg_create_removal" not in keys or result.get("status") == "error":
            return
        rt = sys.modules["mpirt" if name == "mpirt" else "ray"]
        rt.shutdown()
        try:
            harness.init_runtime(name, resources={"custom": 100})
            result["results"]["pg_create_removal"] = placement_group_rate(rt, cfg)
        except Exception as exc:
            result["errors"]["pg_create_removal"] = f"{type(exc).__name__}: {exc}"[:500]

    result = {RESULT_MARKER: True, "runtime": name, "config": cfg, "n_cpu": n_cpu, "results": {},
              "errors": {}}
    return harness.run_in_child(result, name, init, work, before_shutdown=placement_groups)


# --------------------------------------------------------------------------
# parent: interleaved rounds, table, files
# --------------------------------------------------------------------------
def run_child(name, args):
    cmd = harness.child_command(__file__, name, args.quick) + (["--only", args.only] if args.only else [])
    run = harness.run_process(cmd, harness.child_env(), args.timeout, RESULT_MARKER)
    return harness.runtime_result(run, name, args.timeout, RESULT_MARKER)


def _value(merged, name, key):
    return harness.value(merged.get(name), key)


def table_rows(merged, keys):
    rows = [("workload (Ray's name)", "unit", "mpirt", "ray", "mpirt/ray", "goal", "met", "copy GB/s",
             "copy/mpirt")]
    for key, label, unit, goal in WORKLOADS:
        if key not in keys:
            continue
        m, r = _value(merged, "mpirt", key), _value(merged, "ray", key)
        q = harness.ratio(m, r, True)
        met = "n/a" if q is None else ("yes" if q >= goal else "NO")
        copy_cells = ("", "")
        if key in COPY_BASELINES:
            c = _value(merged, "mpirt", COPY_BASELINES[key])
            copy_q = None if c is None or not m else c / m
            copy_cells = (harness.fmt(c), "n/a" if copy_q is None else
                          f"{copy_q:.2f}x ({'yes' if copy_q <= COPY_GOAL else 'NO'})")
        rows.append((label, unit, harness.fmt(m), harness.fmt(r), "n/a" if q is None else f"{q:.1f}x",
                     f"{goal}x", met) + copy_cells)
    return rows


def print_table(merged, cfg, rounds, keys):
    print(f"Ray's microbenchmark workloads, mpirt vs Ray: median over {rounds} interleaved round(s) of each "
          f"child's median of {cfg['windows']} windows of {cfg['window']} s (after {cfg['warmup']} s warm-up)")
    print("mpirt/ray > 1: mpirt faster; copy GB/s: numpy.copyto of the same bytes in the mpirt child "
          f"(goal: put within {COPY_GOAL}x of it)")
    harness.print_rows(table_rows(merged, keys), left=2)
    harness.print_runs(merged)
    for name in ("mpirt", "ray"):
        for key, error in (merged.get(name, {}).get("errors") or {}).items():
            print(f"{name}: {key} failed: {error}")


def save_plot(merged, keys, path, title):
    rows = [(f"{label} ({unit})", harness.ratio(_value(merged, "mpirt", key), _value(merged, "ray", key), True))
            for key, label, unit, _ in WORKLOADS if key in keys]
    return harness.save_ratio_plot(rows, path, title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_round_arguments(parser, ("mpirt", "ray"), CHILD_TIMEOUT_S,
                                quick_help="short windows, for smoke runs")
    parser.set_defaults(rounds=2)
    parser.add_argument("--only", default="", help="comma-separated parts of workload keys to run (default: all)")
    args = parser.parse_args(argv)
    if args.runtime:
        return child_main(args.runtime, args.quick, args.only)
    names = harness.runtime_names(parser, args.runtimes)
    keys = selected(args.only)
    if not keys:
        parser.error(f"--only {args.only!r} matches no workload; keys: {', '.join(w[0] for w in WORKLOADS)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    runs = harness.interleaved_rounds(names, args.rounds, lambda n: run_child(n, args))
    all_keys = keys + list(COPY_BASELINES.values())
    merged = {n: harness.merge_rounds(rs, all_keys) for n, rs in runs.items()}
    for n, rs in runs.items():  # a row that failed in any round is reported
        merged[n]["errors"] = {k: v for r in rs for k, v in (r.get("errors") or {}).items()}
    cfg = QUICK if args.quick else FULL
    print_table(merged, cfg, args.rounds, keys)
    title = (f"Ray's microbenchmark: {harness.versions(merged)}, {os.cpu_count()} cores, "
             f"{args.rounds} round(s)" + (" (quick)" if args.quick else ""))
    doc = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick, "config": cfg,
           "rounds": args.rounds, "cores": os.cpu_count(), "python": sys.version.split()[0],
           "workloads": [{"key": k, "label": l, "unit": u, "goal": g} for k, l, u, g in WORKLOADS if k in keys],
           "runtimes": runs, "merged": merged}
    # a partial run (--only) keeps the whole table's file as it was
    stem = "ray_microbench" + ("_quick" if args.quick else "") + ("_only" if args.only else "")
    harness.write_results(stem, doc, lambda path: save_plot(merged, keys, path, title))
    return 0 if all(r.get("status") in ("ok", "not installed") for r in merged.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
