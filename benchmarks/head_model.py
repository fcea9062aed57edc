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

Run:  python benchmarks/head_model.py                          (W = 100, 1,000, 10,000)
      python benchmarks/head_model.py --workers 100,1000 --busy 0.5
Results: a table on stdout and benchmarks/results/head_model.json.
"""
import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (tables, result files)

sys.path.insert(0, harness.REPO_ROOT)
from mpirt.scheduler.head import HeadScheduler  # noqa: E402
from mpirt.scheduler.resources import ClusterView  # noqa: E402

SHAPE = {"CPU": 1.0}
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
    head = HeadScheduler(rt, cluster)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="100,1000,10000", help="comma-separated worker rank counts")
    parser.add_argument("--ranks-per-node", type=int, default=64)
    parser.add_argument("--busy", type=float, default=0.9, help="share of the CPUs held by leases meanwhile")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--repeats", type=int, default=3)
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
    harness.write_results("head_model", doc, lambda path: False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
