"""Tune benchmark: mpirt.libs.tune vs Ray Tune, end to end, same trainables, same machine.

Workloads (each runtime in its own fresh subprocess, ``init(num_cpus=2)``):
  1. 200 trivial trials (grid over 200 values), each reporting one result: wall time of the
     whole experiment (search, trial start/stop, logging, result files), as trials/s and
     overhead per trial in ms,
  2. 4 trials reporting 500 results each: results/s through the experiment loop,
  3. 100 trials reporting 10 results each, end to end, the first experiment of the process (nothing
     imported or warmed by an earlier one: it runs before 1 and 2); Ray with ``reuse_actors=True``, its
     fastest setting for this shape (its default starts an actor per trial).
Both write their results to a temporary directory (mpirt: HDF5 + JSON/CSV; Ray: its usual
files). Ray is optional: without it the Ray column reads "n/a".

Run:  python benchmarks/tune_bench.py            (a minute or two, most of it Ray)
      python benchmarks/tune_bench.py --quick    (50 trials, 4 x 100 results)
      python benchmarks/tune_bench.py --runtimes mpirt
Results go to benchmarks/results/tune_bench.json (and .png with matplotlib).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

RESULT_MARKER = "tune_bench_result"
CHILD_TIMEOUT_S = 1500
FULL = dict(trials=200, long_trials=4, results_per_trial=500, short_trials=100, short_results=10)
QUICK = dict(trials=50, long_trials=4, results_per_trial=100, short_trials=100, short_results=10)


def _one_result(config):
    _REPORT({"score": config["x"]})


def _many_results(config):
    for i in range(config["n"]):
        _REPORT({"score": i})


_REPORT = None


def _experiment(runtime, trainable, space, storage, reuse_actors=None):
    """Run one experiment with ``runtime``'s Tune; return its wall time in seconds. ``reuse_actors``
    is passed to Ray only (mpirt always reuses a finished trial's actor)."""
    t0 = time.perf_counter()
    if runtime == "mpirt":
        from mpirt.libs import tune
        tune.run(trainable, config=space, local_dir=storage, name=f"exp{time.monotonic_ns()}", verbose=0)
    else:
        from ray import tune
        tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(reuse_actors=reuse_actors),
                   run_config=tune.RunConfig(storage_path=storage, name=f"exp{time.monotonic_ns()}",
                                             verbose=0)).fit()
    return time.perf_counter() - t0


def child(runtime, quick):
    global _REPORT
    cfg = QUICK if quick else FULL
    result = {RESULT_MARKER: True, "runtime": runtime, "results": {}}

    def init(name):
        return harness.init_runtime(name, num_cpus=2)

    def work(rt, result):
        global _REPORT
        if runtime == "mpirt":
            from mpirt.libs import tune
        else:
            from ray import tune
        _REPORT = tune.report
        with tempfile.TemporaryDirectory() as storage:
            trials, n = cfg["short_trials"], cfg["short_results"]
            wall = _experiment(runtime, _many_results, {"n": n, "i": tune.grid_search(list(range(trials)))},
                               storage, reuse_actors=True)
            result["results"]["short_trials_s"] = {"value": wall}
            trials = cfg["trials"]
            wall = _experiment(runtime, _one_result, {"x": tune.grid_search(list(range(trials)))}, storage)
            result["results"]["trivial_trials_per_s"] = {"value": trials / wall, "wall_s": wall}
            result["results"]["overhead_ms_per_trial"] = {"value": 1000 * wall / trials}
            n, k = cfg["results_per_trial"], cfg["long_trials"]
            wall = _experiment(runtime, _many_results, {"n": n, "i": tune.grid_search(list(range(k)))}, storage)
            result["results"]["results_per_s"] = {"value": n * k / wall, "wall_s": wall}

    return harness.run_in_child(result, runtime, init, work)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runtimes", default="mpirt,ray")
    parser.add_argument("--runtime", help=argparse.SUPPRESS)  # internal: child mode
    args = parser.parse_args(argv)
    if args.runtime:
        return child(args.runtime, args.quick)
    cfg = QUICK if args.quick else FULL
    all_results = {}
    for name in harness.runtime_names(parser, args.runtimes):
        run = harness.run_process(harness.child_command(__file__, name, args.quick), harness.child_env(),
                                  CHILD_TIMEOUT_S, RESULT_MARKER)
        all_results[name] = harness.runtime_result(run, name, CHILD_TIMEOUT_S, RESULT_MARKER)
    for name, res in all_results.items():
        harness.print_status(name, res)
        harness.print_leftovers(name, res)
    entries = [
        (f"{cfg['short_trials']} trials x {cfg['short_results']} results, first run", "s", "short_trials_s", False),
        (f"{cfg['trials']} trivial trials, end to end", "trials/s", "trivial_trials_per_s", True),
        ("overhead per trivial trial", "ms", "overhead_ms_per_trial", False),
        (f"{cfg['long_trials']} trials x {cfg['results_per_trial']} results", "results/s", "results_per_s", True),
    ]
    rows = [(label, unit, harness.value(all_results.get("mpirt"), key), harness.value(all_results.get("ray"), key),
             hib) for label, unit, key, hib in entries]
    harness.print_comparison(rows)
    doc = {"config": cfg, "results": all_results}
    harness.write_results("tune_bench", doc, lambda path: harness.save_ratio_plot(
        [(label, harness.ratio(m, r, hib)) for label, _u, m, r, hib in rows], path,
        f"tune: {harness.versions(all_results)}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
