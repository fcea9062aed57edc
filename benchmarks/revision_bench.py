"""mpirt against an earlier revision of itself: core_bench's workloads, interleaved runs.

A refactoring must not make mpirt slower. This runs ``core_bench.py``'s mpirt child for the
revision given (checked out into a temporary git worktree) and for the working tree, alternating
which goes first in each round, so that a busy stretch of the machine hits both alike. It prints
the median of each workload over the rounds, before and after, and the change (positive: the
working tree is better, whatever the workload's unit).

Noise: on the 2-core development VM, HEAD against itself (``--before HEAD``) gave medians up to
±25% apart over 7-11 rounds, and single runs 2x apart; the whole job's CPU per operation (tried)
spread as much, since idle threads poll. A 5% difference cannot be told there; compare on a
quiet machine with spare cores, or with many more rounds.

Run:  python benchmarks/revision_bench.py --before 04d571b --rounds 5
      python benchmarks/revision_bench.py --before HEAD~3 --rounds 5 --quick

Results go to benchmarks/results/revision_bench.json and, if matplotlib is installed,
revision_bench.png (the change per workload).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import harness
from core_bench import CHILD_TIMEOUT_S, RESULT_MARKER, WORKLOADS


def run_tree(tree, quick, timeout):
    """One core_bench mpirt child importing mpirt from ``tree``: {workload key: value}. The workloads are this
    checkout's for both sides, so that only the runtime differs."""
    env = harness.child_env()
    env["PYTHONPATH"] = tree + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MPIRT_BENCH_SOURCE"] = tree
    command = [sys.executable, os.path.join(harness.HERE, "core_bench.py"), "--runtime", "mpirt"]
    run = harness.run_process(command + (["--quick"] if quick else []), env, timeout, RESULT_MARKER)
    result = harness.runtime_result(run, "mpirt", timeout, RESULT_MARKER)
    if result.get("status") != "ok":
        harness.print_failure(f"run in {tree}", result)
        return {}
    return {key: harness.value(result, key) for key, *_ in WORKLOADS}


def change(before, after, higher_is_better):
    """How much better ``after`` is than ``before``, as a fraction (negative: worse)."""
    if not before or not after:
        return None
    return after / before - 1 if higher_is_better else before / after - 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the git revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side (interleaved)")
    parser.add_argument("--quick", action="store_true", help="core_bench's small N")
    parser.add_argument("--timeout", type=int, default=CHILD_TIMEOUT_S, help="per-run timeout in seconds")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="mpirt-before-") as scratch:
        before_tree = os.path.join(scratch, "tree")
        subprocess.run(["git", "worktree", "add", "--detach", before_tree, args.before], cwd=harness.REPO_ROOT,
                       check=True, capture_output=True)
        trees = {"before": before_tree, "after": harness.REPO_ROOT}
        try:
            for round_number in range(args.rounds):
                order = ("before", "after") if round_number % 2 == 0 else ("after", "before")
                for side in order:
                    print(f"round {round_number + 1}/{args.rounds}: {side} ...", file=sys.stderr, flush=True)
                    runs[side].append(run_tree(trees[side], args.quick, args.timeout))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", before_tree], cwd=harness.REPO_ROOT,
                           capture_output=True)
    rows = [("workload", "unit", f"before ({args.before})", "after", "change")]
    changes = []
    for key, label, unit, higher_is_better in WORKLOADS:
        medians = {}
        for side in ("before", "after"):
            values = [run[key] for run in runs[side] if run.get(key) is not None]
            medians[side] = statistics.median(values) if values else None
        delta = change(medians["before"], medians["after"], higher_is_better)
        changes.append((label, delta))
        rows.append((label, unit, harness.fmt(medians["before"]), harness.fmt(medians["after"]),
                     "n/a" if delta is None else f"{delta:+.1%}"))
    print(f"mpirt before/after: medians of {args.rounds} interleaved runs each "
          f"({'quick' if args.quick else 'full'} core_bench); change > 0: the working tree is better")
    harness.print_rows(rows, left=2)
    doc = {"before": args.before, "rounds": args.rounds, "quick": args.quick, "runs": runs,
           "change": {key: delta for (key, *_), (_, delta) in zip(WORKLOADS, changes)}}
    harness.write_results("revision_bench", doc, lambda path: save_plot(changes, path, args.before))


def save_plot(changes, path, before):
    """Bars of the change per workload (green: better, red: worse), lines at -5% and +5%."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    rows = [(label, delta) for label, delta in changes if delta is not None][::-1]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.4))
    values = [100 * delta for _, delta in rows]
    ax.barh(range(len(rows)), values, color=["tab:green" if v >= 0 else "tab:red" for v in values], height=0.6)
    for x in (-5, 5):
        ax.axvline(x, color="gray", linestyle="--", linewidth=1)
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    ax.set_xlabel("change of the median, % (> 0: the working tree is better)", fontsize=9)
    ax.set_title(f"mpirt: working tree vs {before}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    main()
