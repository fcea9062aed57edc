"""The head scheduler's rank choice for plain leases, without MPI: the by-node search (``_pick_pooled``) picks
the rank the scan of every rank does, whatever the cluster's occupancy and the round-robin position."""
import collections
import random

from mpirt.scheduler.head import HeadScheduler
from mpirt.scheduler.resources import ClusterView


class _StandInRuntime:
    """What HeadScheduler uses of a Runtime: handlers, sends, a transport's tickers, failure handlers, the
    cluster view."""

    def __init__(self):
        self.handlers = {}
        self.sent = []
        self.transport = type("Transport", (), {"add_ticker": lambda self, interval, fn: None})()
        self.failures = type("Failures", (), {"handlers": []})()
        self.replacement = type("Replacement", (), {"expected": lambda self: False})()

    def register(self, **handlers):
        self.handlers.update(handlers)

    def send(self, dest, message):
        self.sent.append((dest, message))


def _head(cpus_by_rank, ranks_per_node):
    resources = {0: {}, 1: {}}
    resources.update({rank: {"CPU": cpus} for rank, cpus in cpus_by_rank.items()})
    runtime, cluster = _StandInRuntime(), ClusterView(resources, {"ranks_per_node": ranks_per_node})
    runtime.cluster = cluster
    return HeadScheduler(runtime, cluster)


def _pick_by_scanning_every_rank(head, shape):
    """``_pick``'s scan of every worker rank (a workers list that is not ``head.workers`` takes that path)."""
    saved = head._round_robin
    picked = head._pick(shape, workers=list(head.workers))
    head._round_robin = saved
    return picked


def test_the_by_node_search_picks_what_the_scan_of_every_rank_picks():
    rng = random.Random(7)
    for trial in range(300):
        ranks_per_node = rng.choice([2, 3, 4, 8])
        cpus = {rank: float(rng.choice([1, 1, 2, 4])) for rank in range(2, 2 + rng.randint(1, 40))}
        head = _head(cpus, ranks_per_node)
        for rank in rng.sample(sorted(cpus), k=rng.randint(0, len(cpus))):    # some work already running
            head._take(rank, {"CPU": float(rng.choice([0.5, 1, 2]))}, +1)
        head._round_robin = rng.randrange(len(head.workers))
        held = []
        for step in range(12):      # work starting and ending between picks (the nodes' cached tops follow)
            for shape in ({"CPU": 1.0}, {"CPU": 2.0}, {"CPU": 0.5}, {}):
                expected = _pick_by_scanning_every_rank(head, shape)
                assert head._pick(shape) == expected, (trial, step, shape, cpus, head._round_robin)
                if expected is not None:       # the round-robin position moves on as the scan's would
                    assert head._round_robin == (head.workers.index(expected) + 1) % len(head.workers)
            if held and rng.random() < 0.4:
                head._take(*held.pop(rng.randrange(len(held))), -1)
            else:
                held.append((rng.choice(head.workers), {"CPU": float(rng.choice([0.5, 1, 2]))}))
                head._take(*held[-1], +1)


def test_the_by_node_search_follows_reservations_deaths_and_joins():
    """The nodes' ranking follows every change of a pool: placement group reservations, a rank dying (what it
    held goes with it) and a new rank joining a node."""
    rng = random.Random(11)
    for trial in range(100):
        cpus = {rank: float(rng.choice([1, 2, 4])) for rank in range(2, 2 + rng.randint(4, 30))}
        head = _head(cpus, rng.choice([2, 4, 8]))
        next_rank = max(cpus) + 1
        reserved = []
        for step in range(30):
            change = rng.random()
            if change < 0.3:
                node = rng.choice([node for node, pool in head.pools.items() if pool.ranks])
                worker = rng.choice(head.pools[node].ranks)
                reserved.append((node, worker, {"CPU": float(rng.choice([0.5, 1]))}))
                head.pools[node].reserve(worker, reserved[-1][2], +1)
            elif change < 0.45 and reserved:
                node, worker, shape = reserved.pop(rng.randrange(len(reserved)))
                head.pools[node].reserve(worker, shape, -1)
            elif change < 0.55 and len(head.workers) > 2:
                head._on_rank_dead(rng.choice(head.workers))
            elif change < 0.65:
                node = rng.choice(sorted(head.pools))
                head.add_rank(next_rank, {"CPU": 1.0}, node, replaces=None)
                next_rank += 1
            else:
                head._take(rng.choice(head.workers), {"CPU": float(rng.choice([0.5, 1]))}, +1)
            for shape in ({"CPU": 1.0}, {"CPU": 0.5}):
                expected = _pick_by_scanning_every_rank(head, shape)
                assert head._pick(shape) == expected, (trial, step, shape)


def test_leases_are_granted_and_returned_over_a_busy_cluster_of_a_thousand_ranks():
    head = _head({rank: 1.0 for rank in range(2, 1002)}, 64)
    request, give_back = head.rt.handlers["lease_req"], head.rt.handlers["lease_ret"]
    key, shape = (("CPU", 1.0),), {"CPU": 1.0}
    for i in range(1000):
        request(2 + i % 8, key, shape, None, None)
    grants = [m for _, m in head.rt.sent if m[0] == "lease_grant"]
    assert len(grants) == 1000 and len({m[3] for m in grants}) == 1000    # one lease on every rank
    request(2, key, shape, None, None)                                     # the cluster is full: it waits
    assert len(head.requests) == 1 and sum(m[0] == "lease_grant" for _, m in head.rt.sent) == 1000
    give_back(3, grants[500][2])
    assert not head.requests and head.rt.sent[-1][1][3] == grants[500][3]   # the freed rank takes it
    assert collections.Counter(m[0] for _, m in head.rt.sent) == {"lease_grant": 1001}
