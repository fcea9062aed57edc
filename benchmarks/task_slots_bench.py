"""Task-slot benchmark: do a job's CPUs run Python whatever the rank layout? (issue 19)

The same total number of CPUs T is laid out as R worker ranks x C CPUs each (R * C = T), under
``mpirun -n R+2`` with ``MPIRT_NUM_CPUS=C``; ranks of more than one CPU run tasks in slot
processes (``MPIRT_TASK_SLOTS=auto``, mpirt's default) or, for comparison, as threads of the
rank (``MPIRT_TASK_SLOTS=thread``, how mpirt ran them before). Ray runs on the same machine
with ``num_cpus=T``. Workloads, each after a warm-up, median of the repeats:

  python tasks   T*4 tasks of a pure-Python loop (~50 ms each on an idle core): tasks/s
  T at once      T such tasks together, time relative to one task alone (1.0 = perfect)
  numpy tasks    T*4 tasks of 400x400 float64 matrix products (BLAS releases the GIL; BLAS
                 threads pinned to 1, so a task uses one CPU): tasks/s
  no-op tasks    2,000 empty tasks: tasks/s (what the slot's process hop costs)
  python actors  T actors, T*8 calls of a ~10 ms pure-Python method: calls/s (actors run in
                 their rank's process in every layout, as a Ray actor is one process)

Run:
    python benchmarks/task_slots_bench.py                  # T = os.cpu_count()
    python benchmarks/task_slots_bench.py --cpus 4 --runtimes mpirt
    RAY_PYTHON=/path/to/ray/venv/bin/python python benchmarks/task_slots_bench.py
Results: a table on stdout and benchmarks/results/task_slots_bench.json. On a machine with
fewer cores than T the layouts share the cores and nothing can reach T CPUs' worth of work.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (process-tree cleanup, tables, result files)

RESULT_MARKER = "task_slots_bench_result"
RUN_TIMEOUT_S = 400
# One BLAS thread per process: a numpy task then uses the one CPU it asked for, in every layout.
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# --------------------------------------------------------------------------
# child: one runtime, one layout
# --------------------------------------------------------------------------
def spin(loops):
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def calibrate(seconds=0.05):
    """Loop count of ``spin`` that takes ``seconds`` here (measured before the runtime starts)."""
    loops = 100_000
    while True:
        started = time.perf_counter()
        spin(loops)
        elapsed = time.perf_counter() - started
        if elapsed > 0.02:
            return int(loops * seconds / elapsed)
        loops *= 2


def workloads(rt, cpus, loops, repeats):
    import numpy as np

    @rt.remote
    def python_task(n):
        return spin(n)

    @rt.remote
    def numpy_task(seed):
        a = np.random.default_rng(seed).random((400, 400))
        for _ in range(6):
            a = a @ a
            a /= np.abs(a).max()
        return float(a[0, 0])

    @rt.remote
    def noop():
        return None

    @rt.remote
    class PythonActor:
        def work(self, n):
            return spin(n)

    def rate(fn, count):
        runs = [count / t for t in harness.timed(fn, repeats)]
        return {"value": statistics.median(runs), "runs": runs}

    # Warm-up: every slot process and thread started, functions unpickled everywhere.
    rt.get([python_task.remote(1000) for _ in range(cpus * 4)])
    rt.get([numpy_task.remote(i) for i in range(cpus * 2)])
    rt.get([noop.remote() for _ in range(500)])
    out = {}
    one = statistics.median(harness.timed(lambda: rt.get(python_task.remote(loops)), repeats))
    together = statistics.median(harness.timed(lambda: rt.get([python_task.remote(loops) for _ in range(cpus)]),
                                               repeats))
    out["one_task_s"] = {"value": one}
    out["t_at_once"] = {"value": together / one}
    n = cpus * 4
    out["python_tasks"] = rate(lambda: rt.get([python_task.remote(loops) for _ in range(n)]), n)
    out["numpy_tasks"] = rate(lambda: rt.get([numpy_task.remote(i) for i in range(n)]), n)
    out["noop_tasks"] = rate(lambda: rt.get([noop.remote() for _ in range(2000)]), 2000)
    actors = [PythonActor.remote() for _ in range(cpus)]
    rt.get([a.work.remote(10) for a in actors])
    calls = cpus * 8
    out["actor_calls"] = rate(lambda: rt.get([actors[i % cpus].work.remote(loops // 5) for i in range(calls)]),
                              calls)
    return out


def child_main(args):
    loops = args.loops
    result = {RESULT_MARKER: True, "loops": loops}
    if args.runtime == "ray":
        init = lambda name: harness.init_runtime(name, num_cpus=args.cpus)  # noqa: E731
    else:
        init = lambda name: harness.init_runtime(name)  # noqa: E731  (mpirun: layout from the environment)
    return harness.run_in_child(result, args.runtime, init,
                                lambda rt, res: res.update(results=workloads(rt, args.cpus, loops, args.repeats)))


# --------------------------------------------------------------------------
# parent: one child per layout
# --------------------------------------------------------------------------
def layouts(total):
    """(label, ranks, cpus per rank, MPIRT_TASK_SLOTS) for every split of ``total`` CPUs."""
    found = []
    for cpus in range(1, total + 1):
        if total % cpus:
            continue
        ranks = total // cpus
        found.append((f"{ranks} x {cpus} CPU", ranks, cpus, "auto"))
        if cpus > 1:
            found.append((f"{ranks} x {cpus} CPU, threads", ranks, cpus, "thread"))
    return found


def run_layout(label, ranks, cpus, slots, args):
    script = os.path.abspath(__file__)
    cmd = ["mpirun", "--oversubscribe", "-n", str(ranks + 2), sys.executable, script, "--child",
           "--runtime", "mpirt", "--cpus", str(args.cpus), "--repeats", str(args.repeats), "--loops", str(args.loops)]
    env = {**harness.child_env(), **ONE_THREAD, "MPIRT_NUM_CPUS": str(cpus), "MPIRT_TASK_SLOTS": slots}
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.pop("MPIRT_RANKS_PER_NODE", None)
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.path.exists(mpirun):
        cmd[0] = mpirun
    run = harness.run_process(cmd, env, RUN_TIMEOUT_S, RESULT_MARKER)
    return harness.runtime_result(run, "mpirt", RUN_TIMEOUT_S, RESULT_MARKER, layout=label)


def run_ray(args):
    cmd = harness.child_command(__file__, "ray", False) + ["--child", "--cpus", str(args.cpus),
                                                           "--repeats", str(args.repeats), "--loops", str(args.loops)]
    env = {**harness.child_env(), **ONE_THREAD}
    run = harness.run_process(cmd, env, RUN_TIMEOUT_S, RESULT_MARKER)
    return harness.runtime_result(run, "ray", RUN_TIMEOUT_S, RESULT_MARKER, layout=f"ray num_cpus={args.cpus}")


COLUMNS = (("python_tasks", "python tasks/s"), ("t_at_once", "T at once / one"), ("numpy_tasks", "numpy tasks/s"),
           ("noop_tasks", "no-op tasks/s"), ("actor_calls", "python actor calls/s"))


def print_table(runs, args):
    print(f"task slots: T = {args.cpus} CPUs in every layout; {os.cpu_count()} cores here; python task = "
          f"{args.loops:,} loops; median of "
          f"{args.repeats} repeats; 'T at once / one': T pure-Python tasks together over one alone (1.0: all "
          "CPUs used; T: one CPU)")
    rows = [("layout",) + tuple(title for _, title in COLUMNS)]
    for run in runs:
        rows.append((run["layout"],) + tuple(harness.fmt(harness.value(run, key)) for key, _ in COLUMNS))
    harness.print_rows(rows, left=1)
    for run in runs:
        if run.get("status") != "ok":
            harness.print_failure(run["layout"], run)
        harness.print_leftovers(run["layout"], run, after="the run")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="total CPUs T of every layout")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtimes", default="mpirt,ray")
    parser.add_argument("--loops", type=int, default=0, help="loop count of a pure-Python task (default: ~50 ms "
                        "here, measured once before the runs, so every layout runs the same work)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default="mpirt", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)
    names = harness.runtime_names(parser, args.runtimes)
    args.loops = args.loops or calibrate()
    runs = []
    if "mpirt" in names:
        for label, ranks, cpus, slots in layouts(args.cpus):
            print(f"running {label} ...", flush=True)
            runs.append(run_layout(label, ranks, cpus, slots, args))
    if "ray" in names:
        print("running ray ...", flush=True)
        runs.append(run_ray(args))
    print_table(runs, args)
    harness.write_results("task_slots_bench", {"cpus": args.cpus, "cores": os.cpu_count(), "loops": args.loops,
                                               "runs": runs},
                          lambda path: False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
