"""How many lease grants per second the head scheduler sustains at 100 to 10,000 worker ranks.

The head (rank 1) grants every lease of the job: a submitter asks for a slot of a resource shape, runs tasks
on the granted worker rank for as long as it has tasks of that shape, then returns the lease. The head's
cost per lease therefore bounds the job's lease rate, and with it the task rate once tasks are long enough
that each lease carries few of them.

This script drives the real ``mpirt.scheduler.head.HeadScheduler`` with no MPI: a stand-in runtime takes its
messages, and a cluster of W worker ranks (1 CPU each, ``--ranks-per-node`` to a node) is kept busy by many
simulated requesters. Each step returns the oldest lease and asks for a new one (``lease_ret`` then
``lease_req``, the two messages a lease costs the head), with ``--busy`` of the cluster's CPUs held, so
``_pick`` searches a nearly full cluster as it does under load. It reports grants/s and microseconds per
lease (request + grant + return) per W, in one process, single-threaded: the head's own rate, without MPI's
message costs (measured separately: ``core_bench.py``).

The model then needs what a task costs elsewhere, measured in a real job on this machine (``--job``, on by
default: ``init()`` in this process, 2 worker ranks): CPU seconds per task on the submitter (the driver), on
the worker ranks and on the head, and tasks per lease (how many tasks a granted lease carries before it is
returned, with 10,000 no-op tasks submitted at once and in 100 batches of 100, each batch after a pause in
which the leases of the one before are returned). From them (CPU per task from the run without pauses: the
batched run's counts the ranks' idle polling in the pauses too), for W worker ranks of one CPU each and as
many submitters:

    tasks/s  <=  W / (worker CPU per task)              every worker rank busy
             <=  W / (submitter CPU per task)           every rank also submitting
             <=  grants/s(W) x tasks per lease          the head granting leases, nothing else

Tasks per lease is the workload's: a stream of tasks keeps its leases (the measured batches), while a
submitter that sends one task now and then needs a lease for each (the worst case, 1 task a lease).

Run:  python benchmarks/head_model.py                          (W = 100, 1,000, 10,000, and the job)
      python benchmarks/head_model.py --workers 100,1000 --busy 0.5 --no-job
Results: a table on stdout and benchmarks/results/head_model.json.
"""
import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (tables, result files)

sys.path.insert(0, harness.REPO_ROOT)
from mpirt.scheduler.head import HeadScheduler  # noqa: E402
from mpirt.scheduler.resources import ClusterView  # noqa: E402

SHAPE = {"CPU": 1.0}
PAUSE_S = 0.05   # between batches of the job: more than a lease lingers (submitter.LEASE_LINGER_SECONDS)
KEY = (("CPU", 1.0),)


class _Transport:
    def add_ticker(self, interval, fn):
        pass


class _Failures:
    def __init__(self):
        self.handlers = []


class _StandInRuntime:
    """What HeadScheduler uses of a Runtime: handler registration, sends (counted, and the grants kept so the
    requesters can return them), a transport for tickers, a failure monitor."""

    def __init__(self):
        self.handlers = {}
        self.transport = _Transport()
        self.failures = _Failures()
        self.sent = collections.Counter()
        self.grants = collections.deque()   # lease ids granted, oldest first

    def register(self, **handlers):
        self.handlers.update(handlers)

    def send(self, dest, message):
        self.sent[message[0]] += 1
        if message[0] == "lease_grant":
            self.grants.append(message[2])


def measure(workers, ranks_per_node, busy, seconds):
    """(grants per second, leases granted, dict of counters) for ``workers`` 1-CPU worker ranks."""
    resources = {0: {}, 1: {}}
    resources.update({rank: {"CPU": 1.0} for rank in range(2, 2 + workers)})
    cluster = ClusterView(resources, {"ranks_per_node": ranks_per_node})
    rt = _StandInRuntime()
    HeadScheduler(rt, cluster)          # registers its handlers on the stand-in runtime
    request, give_back = rt.handlers["lease_req"], rt.handlers["lease_ret"]
    held = max(1, int(busy * workers))
    requesters = 64
    for i in range(held):                       # fill the cluster to ``busy``
        request(2 + i % requesters, KEY, SHAPE, None, None)
    assert len(rt.grants) == held, (len(rt.grants), held)
    granted_before = rt.sent["lease_grant"]
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            give_back(2 + steps % requesters, rt.grants.popleft())
            request(2 + steps % requesters, KEY, SHAPE, None, None)
            steps += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    granted = rt.sent["lease_grant"] - granted_before
    assert granted == steps, (granted, steps)   # every request found a free rank at once
    return granted / elapsed, granted, dict(rt.sent)


def _cpu_seconds(pid):
    """utime + stime of process ``pid`` (Linux /proc), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_job(tasks=10_000, batches=(1, 100)):
    """CPU seconds per task on the driver, the worker ranks and the head, and tasks per lease, in a real job."""
    import mpirt

    mpirt.init()
    rt = mpirt.core.current.runtime_for_call()
    grants = [0]
    on_grant = rt.handlers["lease_grant"]

    def counting(*args):
        grants[0] += 1
        return on_grant(*args)

    rt.handlers["lease_grant"] = counting

    @mpirt.remote
    def noop():
        return os.getpid()

    worker_pids = set(mpirt.get([noop.remote() for _ in range(2000)]))
    head_pid = _rank_one_pid(worker_pids)
    out = {}
    for batch_count in batches:
        per_batch = tasks // batch_count
        grants[0] = 0
        workers_before = sum(_cpu_seconds(p) for p in worker_pids)
        head_before = _cpu_seconds(head_pid) if head_pid else None
        driver_before = time.process_time()
        wall = 0.0
        for _ in range(batch_count):
            time.sleep(PAUSE_S)       # the leases of the batch before are returned meanwhile
            start = time.perf_counter()
            mpirt.get([noop.remote() for _ in range(per_batch)])
            wall += time.perf_counter() - start
        out[batch_count] = {
            "tasks_per_s": tasks / wall,
            "driver_us": (time.process_time() - driver_before) / tasks * 1e6,
            "workers_us": (sum(_cpu_seconds(p) for p in worker_pids) - workers_before) / tasks * 1e6,
            "head_us": None if head_pid is None else (_cpu_seconds(head_pid) - head_before) / tasks * 1e6,
            "leases": grants[0], "tasks_per_lease": tasks / max(1, grants[0]),
        }
    mpirt.shutdown()
    return out


def _rank_one_pid(worker_pids):
    """The head rank's process: the spawned rank beside the workers (same parent) that is not one of them."""
    parents = set()
    for pid in worker_pids:
        with open(f"/proc/{pid}/stat") as f:
            parents.add(int(f.read().rsplit(")", 1)[1].split()[1]))
    if len(parents) != 1:
        return None
    parent = parents.pop()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in worker_pids and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == parent:
                        return int(entry)
            except OSError:
                continue
    return None


def print_model(grants_by_workers, job):
    """The aggregate task rate each bound allows at each W, from the measured costs."""
    rows = [("worker ranks", "workers busy", "every rank submitting", "head, 1 task a lease",
             "head, leases as in 100 batches", "bound, batches", "bound, 1 task a lease")]
    model = {}
    for workers, grants in grants_by_workers.items():
        # CPU per task from the run without pauses (the batched run's counts idle polling in its pauses too)
        worker_bound = workers / (job[1]["workers_us"] * 1e-6)
        submit_bound = workers / (job[1]["driver_us"] * 1e-6)
        head_batches = grants * job[100]["tasks_per_lease"]
        bound = min(worker_bound, submit_bound, head_batches)
        worst = min(worker_bound, submit_bound, grants)
        model[workers] = {"workers": worker_bound, "submitters": submit_bound, "head_one_task_a_lease": grants,
                          "head_100_batches": head_batches, "bound": bound, "bound_one_task_a_lease": worst}
        rows.append((f"{workers:,}", f"{worker_bound:,.0f}", f"{submit_bound:,.0f}", f"{grants:,.0f}",
                     f"{head_batches:,.0f}", f"{bound:,.0f}", f"{worst:,.0f}"))
    print("model: aggregate tasks/s each part allows (no-op tasks, 1 CPU a rank; the least of them is the bound)")
    harness.print_rows(rows)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="100,1000,10000", help="comma-separated worker rank counts")
    parser.add_argument("--ranks-per-node", type=int, default=64)
    parser.add_argument("--busy", type=float, default=0.9, help="share of the CPUs held by leases meanwhile")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-job", dest="job", action="store_false",
                        help="measure the head alone (no mpirt job for the per-task costs and the model)")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w]
    rows = [("worker ranks", "nodes", "grants/s (median)", "us per lease", "all runs")]
    doc = {"busy": args.busy, "ranks_per_node": args.ranks_per_node, "results": {}}
    for workers in counts:
        runs = sorted(measure(workers, args.ranks_per_node, args.busy, args.seconds)[0] for _ in range(args.repeats))
        median = runs[len(runs) // 2]
        doc["results"][workers] = {"grants_per_s": median, "runs": runs}
        nodes = -(-workers // args.ranks_per_node)
        rows.append((f"{workers:,}", f"{nodes:,}", f"{median:,.0f}", f"{1e6 / median:.1f}",
                     ", ".join(f"{r:,.0f}" for r in runs)))
    print(f"head scheduler alone (no MPI): lease return + request + grant, {args.busy:.0%} of the CPUs held, "
          f"{args.ranks_per_node} ranks a node, median of {args.repeats} x {args.seconds} s")
    harness.print_rows(rows)
    if args.job:
        job = measure_job()
        doc["job"] = job
        rows = [("tasks submitted", "tasks/s", "driver CPU us/task", "workers CPU us/task", "head CPU us/task",
                 "leases", "tasks per lease")]
        for batch_count, m in job.items():
            head = "n/a" if m["head_us"] is None else f"{m['head_us']:.1f}"
            rows.append((f"10,000 in {batch_count} batch{'es' if batch_count > 1 else ''}", f"{m['tasks_per_s']:,.0f}",
                         f"{m['driver_us']:.1f}", f"{m['workers_us']:.1f}", head, f"{m['leases']:,}",
                         f"{m['tasks_per_lease']:,.0f}"))
        print("a real job on this machine (init(), 2 worker ranks):")
        harness.print_rows(rows)
        doc["model"] = print_model({w: r["grants_per_s"] for w, r in doc["results"].items()}, job)
    harness.write_results("head_model", doc, lambda path: False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
