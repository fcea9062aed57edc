"""Scaling benchmark (mpirt only): throughput against the number of MPI ranks.

For each rank count K (default 3..8) the script launches one mpirt program under
``mpirun -n K`` (rank 0 = driver, rank 1 = scheduler, ranks 2..K-1 = K-2 workers with
1 CPU each) and measures, after a warm-up that reaches every worker:
  1. async no-op task throughput: submit N no-op tasks (default 10,000), then ``get``
     them all (tasks/s, median of the repeats),
  2. 1:1 async actor calls: submit M calls (default 5,000) to one actor's no-op method,
     then ``get`` them all (calls/s, median). One actor, so this measures the driver ->
     actor path and should stay flat as ranks are added; it is a control for the task
     numbers.

Each K runs in its own subprocess (its own session / process group) with a timeout; on
timeout the whole group and every descendant is killed, and anything still alive 15 s
after a run ends is killed and reported. On a machine with fewer cores than ranks the
numbers cannot scale (the ranks share the cores); run it on a bigger node or allocation.

Run (one machine):
    python benchmarks/scaling_bench.py                       # K = 3..8
    python benchmarks/scaling_bench.py --ranks 3,5,9,17 --tasks 20000
As root the script sets OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 for
Open MPI (unless already set). The default launcher is
``mpirun --oversubscribe -n {ranks}``; ``--launcher`` takes any command template with
``{ranks}`` in it, followed by ``python <this script> --child ...``.

Run on Slurm (inside an allocation with enough tasks for the largest K):
    salloc -N 2 --ntasks-per-node=32
    python benchmarks/scaling_bench.py --ranks 4,8,16,32,64 --launcher "srun -n {ranks} --mpi=pmix"
  or with the MPI library's own launcher inside the allocation:
    python benchmarks/scaling_bench.py --ranks 4,8,16,32,64 --launcher "mpirun -n {ranks}"
  or as a batch job (output in slurm-<jobid>.out):
    sbatch -N 2 --ntasks-per-node=32 --time=00:30:00 --wrap \\
        "python benchmarks/scaling_bench.py --ranks 4,8,16,32,64 --launcher 'srun -n {ranks} --mpi=pmix'"
  mpi4py must be built against the site MPI (pip install --no-binary mpi4py mpi4py), and the
  repository must be on a filesystem every node sees.

Results: a table on stdout, benchmarks/results/scaling_bench.json and (with matplotlib)
benchmarks/results/scaling_bench.png (tasks/s and actor calls/s against ranks).
"""
import argparse
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

RESULT_MARKER = "scaling_bench_result"
DEFAULT_RANKS = "3,4,5,6,7,8"
DEFAULT_LAUNCHER = "mpirun --oversubscribe -n {ranks}"
RUN_TIMEOUT_S = 300


# --------------------------------------------------------------------------
# child: one mpirt program under the launcher (every rank runs this)
# --------------------------------------------------------------------------
def child_main(args):
    sys.path.insert(0, harness.REPO_ROOT)
    import mpirt as rt

    result = {RESULT_MARKER: True}
    t0 = time.perf_counter()
    rt.init()  # under mpirun: only the driver (rank 0) returns; the other ranks serve, then exit
    result["init_s"] = time.perf_counter() - t0
    try:
        result["version"] = getattr(rt, "__version__", "?")
        result["cluster_cpus"] = rt.cluster_resources().get("CPU")
        result["results"] = run_workloads(rt, args.tasks, args.actor_calls, args.repeats)
        result["status"] = "ok"
    except Exception as exc:  # report, don't crash the table
        import traceback

        traceback.print_exc()
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
    finally:
        t0 = time.perf_counter()
        rt.shutdown()
        result["shutdown_s"] = time.perf_counter() - t0
    harness.emit(result)
    return 0


def run_workloads(rt, n_tasks, n_calls, repeats):
    @rt.remote
    def noop():
        return None

    @rt.remote
    class Actor:
        def noop(self):
            return None

    workers = max(1, int(rt.cluster_resources().get("CPU", 1)))
    # warm-up: every worker started and its task path hot, then one full-size batch
    for _ in range(20):
        rt.get(noop.remote())
    rt.get([noop.remote() for _ in range(200 * workers)])
    rt.get([noop.remote() for _ in range(n_tasks)])
    actor = Actor.remote()
    rt.get([actor.noop.remote() for _ in range(500)])

    def timed(fn, n):
        rates = [n / t for t in harness.timed(fn, repeats)]
        return {"value": statistics.median(rates), "runs": rates}

    out = {}
    out["tasks"] = timed(lambda: rt.get([noop.remote() for _ in range(n_tasks)]), n_tasks)
    out["actor_calls"] = timed(lambda: rt.get([actor.noop.remote() for _ in range(n_calls)]), n_calls)
    return out


# --------------------------------------------------------------------------
# parent: one subprocess per rank count
# --------------------------------------------------------------------------
def run_one(ranks, args):
    launcher = shlex.split(args.launcher.format(ranks=ranks))
    cmd = launcher + [sys.executable, os.path.abspath(__file__), "--child",
                      "--tasks", str(args.tasks), "--actor-calls", str(args.actor_calls),
                      "--repeats", str(args.repeats)]
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.pop("MPIRT_RANKS_PER_NODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    try:
        run = harness.run_process(cmd, env, args.timeout, RESULT_MARKER)
    except OSError as exc:
        return {"ranks": ranks, "workers": ranks - 2, "command": cmd, "status": "error", "wall_s": 0.0,
                "error": f"cannot start {cmd[0]!r}: {exc}"}
    result = run.result
    if result is None:
        result = {"status": "timeout" if run.timed_out else "error",
                  "error": f"no result from the run (exit code {run.returncode})"
                           + (f", killed after {args.timeout} s" if run.timed_out else "")}
    elif run.returncode != 0 and result.get("status") == "ok":
        result["warning"] = f"launcher exit code {run.returncode}"
    result.update(ranks=ranks, workers=ranks - 2, command=cmd, wall_s=run.wall_s, returncode=run.returncode)
    if run.leftovers:
        result["leftover_pids_killed"] = run.leftovers
    if run.stderr.strip():
        result["stderr_tail"] = run.stderr.strip().splitlines()[-30:]
    return result


def print_table(runs, args):
    print(f"mpirt scaling benchmark: launcher {args.launcher!r}; no-op tasks N={args.tasks:,}, "
          f"1:1 async actor calls N={args.actor_calls:,}; median of {args.repeats} repeats after warm-up")
    rows = [("ranks", "workers", "tasks/s", "actor calls/s", "run wall s")]
    for r in runs:
        rows.append((str(r["ranks"]), str(r["workers"]), harness.fmt(harness.value(r, "tasks")),
                     harness.fmt(harness.value(r, "actor_calls")), f"{r['wall_s']:.1f}"))
    harness.print_rows(rows)
    cores = os.cpu_count()
    if cores and max(r["ranks"] for r in runs) > cores:
        print(f"note: this machine has {cores} cores; runs with more ranks than cores share them "
              "(oversubscribed), so throughput cannot scale here")
    for r in runs:
        if r.get("status") != "ok":
            harness.print_failure(f"ranks={r['ranks']}", r)
        elif r.get("cluster_cpus") != r["workers"]:
            print(f"ranks={r['ranks']}: note: cluster_resources()['CPU'] = {r.get('cluster_cpus')}, "
                  f"expected {r['workers']}")
        if r.get("warning"):
            print(f"ranks={r['ranks']}: {r['warning']}")
        harness.print_leftovers(f"ranks={r['ranks']}", r, after="the run")


def save_plot(runs, args, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label, marker in (("tasks", f"async no-op tasks (N={args.tasks:,})", "o"),
                               ("actor_calls", f"1:1 async actor calls (N={args.actor_calls:,})", "s")):
        pts = [(r["ranks"], harness.value(r, key)) for r in ok if harness.value(r, key)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
    ranks = [r["ranks"] for r in ok]
    ax.set_xticks(ranks)
    ax.set_xticklabels([f"{k}\n({k - 2}w)" for k in ranks], fontsize=8)
    ax.set_xlabel("MPI ranks (workers = ranks - 2)")
    ax.set_ylabel("per second (median)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    version = ok[0].get("version", "?")
    cores = os.cpu_count()
    ax.set_title(f"mpirt {version} scaling, launcher '{args.launcher}', {cores} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _parse_ranks(text, parser):
    try:
        ranks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--ranks must be comma-separated integers, got {text!r}")
    if not ranks or min(ranks) < 3:
        parser.error("--ranks: every rank count must be >= 3 (driver, scheduler, one worker)")
    return ranks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--ranks", default=DEFAULT_RANKS, help=f"comma-separated rank counts (default {DEFAULT_RANKS})")
    parser.add_argument("--launcher", default=DEFAULT_LAUNCHER,
                        help=f"launcher command template with {{ranks}} (default {DEFAULT_LAUNCHER!r})")
    parser.add_argument("--tasks", type=int, default=10_000, help="no-op tasks per timed batch (default 10000)")
    parser.add_argument("--actor-calls", type=int, default=5000, help="actor calls per timed batch (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per workload (default 3)")
    parser.add_argument("--timeout", type=int, default=RUN_TIMEOUT_S, help="per-run timeout in seconds")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # internal: under the launcher
    args = parser.parse_args(argv)

    if args.child:
        return child_main(args)
    if "{ranks}" not in args.launcher:
        parser.error("--launcher must contain {ranks}, e.g. \"srun -n {ranks} --mpi=pmix\"")
    ranks = _parse_ranks(args.ranks, parser)

    runs = []
    for k in ranks:
        print(f"running ranks={k} ...", file=sys.stderr, flush=True)
        runs.append(run_one(k, args))
    print_table(runs, args)

    doc = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "launcher": args.launcher,
        "tasks": args.tasks,
        "actor_calls": args.actor_calls,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "runs": runs,
    }
    harness.write_results("scaling_bench", doc, lambda path: save_plot(runs, args, path))
    return 0 if all(r.get("status") == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
