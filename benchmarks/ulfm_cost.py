"""What ULFM costs: benchmarks/core_bench.py's mpirt workloads with fault tolerance on and off.

A plain ``python app.py`` turns ULFM on by default (``mpirt/core/fault.py``); this measures what
that costs on the core API. Each round runs core_bench's mpirt child twice, once with
``OMPI_MCA_mpi_ft_enable=1`` (mpirt's default) and once with ``=0`` (the user turned it off),
alternating which goes first, so drift on the machine hits both settings alike. The table
shows the median over rounds of each setting and on/off (> 1: ULFM slower, for every row).

Run:  python benchmarks/ulfm_cost.py              (3 rounds of the quick workload set)
      python benchmarks/ulfm_cost.py --rounds 5 --full
Results go to benchmarks/results/ulfm_cost.json (and .png with matplotlib).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import core_bench  # noqa: E402
import harness  # noqa: E402

SETTINGS = {"on": "1", "off": "0"}


def run_once(setting, quick, timeout):
    env = harness.child_env()
    env["OMPI_MCA_mpi_ft_enable"] = SETTINGS[setting]
    run = harness.run_process(harness.child_command(core_bench.__file__, "mpirt", quick), env, timeout,
                              core_bench.RESULT_MARKER)
    return harness.runtime_result(run, "mpirt", timeout, core_bench.RESULT_MARKER)


def cost(on, off, higher_is_better):
    """How many times slower ULFM makes a workload (> 1: slower)."""
    if on is None or off is None or on <= 0 or off <= 0:
        return None
    return off / on if higher_is_better else on / off


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="core_bench's full sizes (default: --quick sizes)")
    parser.add_argument("--timeout", type=int, default=core_bench.CHILD_TIMEOUT_S)
    args = parser.parse_args(argv)
    quick = not args.full
    values = {setting: {key: [] for key, *_ in core_bench.WORKLOADS} for setting in SETTINGS}
    failures = []
    for round_index in range(args.rounds):
        order = ("on", "off") if round_index % 2 == 0 else ("off", "on")
        for setting in order:
            print(f"round {round_index + 1}/{args.rounds}: ULFM {setting} ...", file=sys.stderr, flush=True)
            result = run_once(setting, quick, args.timeout)
            if result.get("status") != "ok":
                failures.append((setting, result))
                continue
            for key, *_ in core_bench.WORKLOADS:
                measured = harness.value(result, key)
                if measured is not None:
                    values[setting][key].append(measured)

    medians = {setting: {key: statistics.median(v) if v else None for key, v in by_key.items()}
               for setting, by_key in values.items()}
    rows = [("workload", "unit", "ULFM off", "ULFM on", "on/off cost")]
    costs = []
    for key, label, unit, higher_is_better in core_bench.WORKLOADS:
        on, off = medians["on"][key], medians["off"][key]
        c = cost(on, off, higher_is_better)
        costs.append((f"{label} ({unit})", c))
        rows.append((label, unit, harness.fmt(off), harness.fmt(on), "n/a" if c is None else f"{c:.2f}x"))
    print(f"ULFM cost on core_bench ({'quick' if quick else 'full'} sizes, median of {args.rounds} interleaved "
          f"rounds per setting; cost > 1: slower with ULFM)")
    harness.print_rows(rows, left=2)
    for setting, result in failures:
        harness.print_failure(f"ULFM {setting}", result)
    doc = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick, "rounds": args.rounds,
           "values": values, "medians": medians, "cost_on_over_off": dict(zip([k for k, *_ in core_bench.WORKLOADS],
                                                                               [c for _, c in costs]))}
    # the shared ratio plot reads "> 1: better"; here the bar is off/on speed, so > 1 means ULFM is faster
    harness.write_results("ulfm_cost", doc, lambda path: harness.save_ratio_plot(
        [(label, 1 / c if c else None) for label, c in costs], path, "core_bench: ULFM on vs off",
        xlabel="speed with ULFM / without (< 1: ULFM costs; log scale)"))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
