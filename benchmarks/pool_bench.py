"""Pool benchmark: mpirt's Pool vs the standard library's multiprocessing.Pool vs Ray's Pool.

The same code for the three (``Pool(processes=2)``, each runtime started with 2 CPUs):
  1. ``pool.map(square, range(10_000))`` (default chunksize), items/s: the headline;
  2. ``list(pool.imap(square, range(N)))`` with chunksize=1 (one call per item), items/s;
  3. ``[r.get() for r in [pool.apply_async(square, (i,)) for i in range(N)]]``, items/s;
  4. starting the pool: ``Pool(2)`` plus a first ``map`` of 2 items (s), the runtime already up.

Each runtime runs in a fresh subprocess per round; the rounds are interleaved (the order rotates
every round) because this 2-core VM's speed drifts from minute to minute; the table shows, per
workload, the median over the rounds of each child's median. Ray runs under ``$RAY_PYTHON`` when set
(Ray in a venv of its own); without Ray its column reads "n/a".

Run:  RAY_PYTHON=/work/rayvenv/bin/python python benchmarks/pool_bench.py            (3 rounds, ~2 min)
      python benchmarks/pool_bench.py --quick --rounds 1
      python benchmarks/pool_bench.py --runtimes mpirt,multiprocessing

Results go to benchmarks/results/pool_bench.json and, with matplotlib, pool_bench.png (items/s per
runtime and workload, log scale).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

RESULT_MARKER = "pool_bench_result"
CHILD_TIMEOUT_S = 300
PROCESSES = 2
RUNTIMES = ("mpirt", "multiprocessing", "ray")

# key, label, unit, higher_is_better
WORKLOADS = [
    ("map", "map(square, 10,000 items)", "items/s", True),
    ("imap", "imap(square, N items, chunksize=1)", "items/s", True),
    ("apply_async", "apply_async x N, then get each", "items/s", True),
    ("start", "Pool(2) + first map", "s", False),
]
FULL = dict(map_n=10_000, n=2000, repeats=5)
QUICK = dict(map_n=10_000, n=300, repeats=2)


def square(x):
    return x * x


# --------------------------------------------------------------------------
# child: one runtime
# --------------------------------------------------------------------------
def _pool_class(name):
    if name == "mpirt":
        sys.path.insert(0, harness.REPO_ROOT)
        from mpirt.util.multiprocessing import Pool
    elif name == "ray":
        from ray.util.multiprocessing import Pool
    else:
        from multiprocessing import Pool
    return Pool


def run_workloads(name, cfg):
    Pool = _pool_class(name)
    out = {}

    def record(key, value_of_time, times):
        values = [value_of_time(t) for t in times]
        out[key] = {"value": statistics.median(values), "values": values}

    starts = []
    for _ in range(2):
        t0 = time.perf_counter()
        pool = Pool(PROCESSES)
        pool.map(square, [1, 2])
        starts.append(time.perf_counter() - t0)
        pool.terminate()
    record("start", lambda t: t, starts)

    pool = Pool(PROCESSES)
    items = list(range(cfg["map_n"]))
    expected = [x * x for x in items]
    assert pool.map(square, items) == expected                # warm-up, and a check
    record("map", lambda t: cfg["map_n"] / t, harness.timed(lambda: pool.map(square, items), cfg["repeats"]))
    n = cfg["n"]
    list(pool.imap(square, range(50)))
    record("imap", lambda t: n / t, harness.timed(lambda: list(pool.imap(square, range(n), 1)), cfg["repeats"]))

    def apply_each():
        results = [pool.apply_async(square, (i,)) for i in range(n)]
        return [r.get() for r in results]

    apply_each()
    record("apply_async", lambda t: n / t, harness.timed(apply_each, cfg["repeats"]))
    pool.terminate()
    return out


class _NoRuntime:
    """The standard library needs no runtime started: a stand-in with ``shutdown``."""
    __version__ = sys.version.split()[0]

    def shutdown(self):
        pass


def child_main(name, quick):
    cfg = QUICK if quick else FULL

    def init(runtime):
        if runtime == "multiprocessing":
            return _NoRuntime()
        return harness.init_runtime(runtime, num_cpus=PROCESSES)

    def work(rt, result):
        result["results"] = run_workloads(name, cfg)

    result = {RESULT_MARKER: True, "runtime": name, "config": cfg}
    return harness.run_in_child(result, name, init, work)


# --------------------------------------------------------------------------
# parent: interleaved rounds, table, files
# --------------------------------------------------------------------------
def run_child(name, quick, timeout):
    run = harness.run_process(harness.child_command(__file__, name, quick), harness.child_env(), timeout,
                              RESULT_MARKER)
    return harness.runtime_result(run, name, timeout, RESULT_MARKER)


def print_table(merged, cfg, rounds):
    print(f"Pool benchmark: {PROCESSES} processes, median over {rounds} interleaved round(s) of each run's median of "
          f"{cfg['repeats']}; map N={cfg['map_n']:,}, imap/apply_async N={cfg['n']:,}")
    print("ratios: mpirt over the other, oriented so that > 1 means mpirt is better")
    rows = [("workload", "unit", "mpirt", "multiprocessing", "ray", "mpirt/multiprocessing", "mpirt/ray")]
    for key, label, unit, hib in WORKLOADS:
        m, s, r = (harness.value(merged.get(n), key) for n in RUNTIMES)
        cells = [label, unit, harness.fmt(m), harness.fmt(s), harness.fmt(r)]
        for other in (s, r):
            q = harness.ratio(m, other, hib)
            cells.append("n/a" if q is None else f"{q:.2f}x")
        rows.append(tuple(cells))
    harness.print_rows(rows, left=2)
    harness.print_runs(merged, RUNTIMES)


def save_plot(merged, path):
    """Grouped bars: items/s per workload and runtime (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    workloads = [(key, label) for key, label, unit, _ in WORKLOADS if unit == "items/s"]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(RUNTIMES)
    drew = False
    for i, name in enumerate(RUNTIMES):
        values = [harness.value(merged.get(name), key) or 0 for key, _ in workloads]
        if any(values):
            drew = True
        ax.bar([j + i * width for j in range(len(workloads))], values, width, label=name)
    if not drew:
        plt.close(fig)
        return False
    ax.set_yscale("log")
    ax.set_xticks([j + width for j in range(len(workloads))])
    ax.set_xticklabels([label for _, label in workloads], fontsize=8)
    ax.set_ylabel("items/s (log scale)")
    ax.set_title(f"Pool({PROCESSES}): mpirt vs multiprocessing vs Ray", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_round_arguments(parser, RUNTIMES, CHILD_TIMEOUT_S)
    args = parser.parse_args(argv)
    if args.runtime:
        return child_main(args.runtime, args.quick)
    names = harness.runtime_names(parser, args.runtimes, RUNTIMES)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    runs = harness.interleaved_rounds(names, args.rounds, lambda n: run_child(n, args.quick, args.timeout))
    merged = {n: harness.merge_rounds(rs, [key for key, *_ in WORKLOADS]) for n, rs in runs.items()}
    cfg = QUICK if args.quick else FULL
    print_table(merged, cfg, args.rounds)
    doc = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick, "processes": PROCESSES,
           "config": cfg, "rounds": args.rounds, "python": sys.version.split()[0],
           "workloads": [{"key": k, "label": l, "unit": u, "higher_is_better": h} for k, l, u, h in WORKLOADS],
           "runtimes": merged, "runs": runs}
    harness.write_results("pool_bench", doc, lambda path: save_plot(merged, path))
    return 0 if all(r.get("status") in ("ok", "not installed") for r in merged.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
