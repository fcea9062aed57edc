"""Placement groups and streaming generators: mpirt vs Ray, in the same run.

Workloads (each runtime started with 2 CPUs):
  1. placement groups created and removed per second, as Ray's microbenchmark measures it: N groups of
     one ``{"CPU": 0.01}`` bundle created, ``get`` of every ``pg.ready()``, then every group removed;
  2. one group at a time: create, ``pg.wait()``, remove (the latency a Tune trial pays), groups/s;
  3. streaming generator items per second: a task yielding N small ints, the driver iterating the
     ``ObjectRefGenerator`` and getting every item;
  4. the same with 1 MB numpy items (through the object store), items/s.

Each runtime runs in a fresh subprocess per round, rounds interleaved (this 2-core VM's speed drifts);
the table shows per workload the median over the rounds of each child's median. Ray runs under
``$RAY_PYTHON`` when set (Ray in a venv of its own); without Ray its column reads "n/a".

Run:  RAY_PYTHON=/work/rayvenv/bin/python python benchmarks/placement_bench.py      (3 rounds, ~2 min)
      python benchmarks/placement_bench.py --quick --rounds 1 --runtimes mpirt

Results go to benchmarks/results/placement_bench.json and, with matplotlib, placement_bench.png.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

RESULT_MARKER = "placement_bench_result"
CHILD_TIMEOUT_S = 300
RUNTIMES = ("mpirt", "ray")

# key, label, unit, higher_is_better
WORKLOADS = [
    ("pg_batch", "placement groups: create N, ready, remove N", "groups/s", True),
    ("pg_one", "placement group: create, wait, remove (one)", "groups/s", True),
    ("stream_small", "streaming generator: small items", "items/s", True),
    ("stream_large", "streaming generator: 1 MB items", "items/s", True),
]
FULL = dict(groups=200, one=50, items=5000, large_items=100, repeats=5)
QUICK = dict(groups=50, one=10, items=500, large_items=20, repeats=2)


def run_workloads(ray, cfg):
    import numpy as np

    if ray.__name__ == "ray":
        from ray.util.placement_group import placement_group, remove_placement_group
    else:
        from mpirt.util.placement_group import placement_group, remove_placement_group
    out = {}

    def record(key, value_of_time, times):
        values = [value_of_time(t) for t in times]
        out[key] = {"value": statistics.median(values), "values": values}

    def batch():
        groups = [placement_group([{"CPU": 0.01}]) for _ in range(cfg["groups"])]
        ray.get([pg.ready() for pg in groups])
        for pg in groups:
            remove_placement_group(pg)

    def one_at_a_time():
        for _ in range(cfg["one"]):
            pg = placement_group([{"CPU": 1}])
            assert pg.wait(30)
            remove_placement_group(pg)

    batch()
    record("pg_batch", lambda t: cfg["groups"] / t, harness.timed(batch, cfg["repeats"]))
    one_at_a_time()
    record("pg_one", lambda t: cfg["one"] / t, harness.timed(one_at_a_time, cfg["repeats"]))

    @ray.remote
    def small(n):
        for i in range(n):
            yield i

    @ray.remote
    def large(n):
        block = np.ones(1 << 17)          # 1 MB of float64
        for _ in range(n):
            yield block

    def consume(gen, n):
        count = 0
        for ref in gen:
            ray.get(ref)
            count += 1
        assert count == n

    consume(small.remote(100), 100)
    record("stream_small", lambda t: cfg["items"] / t,
           harness.timed(lambda: consume(small.remote(cfg["items"]), cfg["items"]), cfg["repeats"]))
    consume(large.remote(5), 5)
    record("stream_large", lambda t: cfg["large_items"] / t,
           harness.timed(lambda: consume(large.remote(cfg["large_items"]), cfg["large_items"]), cfg["repeats"]))
    return out


def child_main(name, quick):
    cfg = QUICK if quick else FULL

    def work(rt, result):
        result["results"] = run_workloads(rt, cfg)

    result = {RESULT_MARKER: True, "runtime": name, "config": cfg}
    return harness.run_in_child(result, name, lambda runtime: harness.init_runtime(runtime, num_cpus=2), work)


def run_child(name, quick, timeout):
    run = harness.run_process(harness.child_command(__file__, name, quick), harness.child_env(), timeout,
                              RESULT_MARKER)
    return harness.runtime_result(run, name, timeout, RESULT_MARKER)


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
    print(f"Placement groups and streaming generators: median over {args.rounds} interleaved round(s) of each "
          f"run's median of {cfg['repeats']}; {cfg['groups']} groups a batch, {cfg['one']} one at a time, "
          f"{cfg['items']:,} small and {cfg['large_items']} large items")
    entries = [(label, unit, harness.value(merged.get("mpirt"), key), harness.value(merged.get("ray"), key), hib)
               for key, label, unit, hib in WORKLOADS]
    harness.print_comparison(entries)
    for name in names:
        harness.print_status(name, merged[name])
        harness.print_leftovers(name, merged[name])
    doc = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick, "config": cfg,
           "rounds": args.rounds, "python": sys.version.split()[0],
           "workloads": [{"key": k, "label": l, "unit": u, "higher_is_better": h} for k, l, u, h in WORKLOADS],
           "runtimes": merged, "runs": runs}
    rows = [(label, harness.ratio(m, r, hib)) for label, unit, m, r, hib in entries]
    harness.write_results("placement_bench", doc,
                          lambda path: harness.save_ratio_plot(rows, path, "Placement groups, generators: mpirt vs Ray"))
    return 0 if all(r.get("status") in ("ok", "not installed") for r in merged.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
