"""Placement groups and scheduling strategies as Ray documents them, on real ranks.

One mpirt of 4 one-CPU workers (spawned) serves the module; emulated nodes (``MPIRT_RANKS_PER_NODE``)
run under mpirun for the strategies that need more than one node.
"""
import time

import pytest

import mpirt
from conftest import run_app
from mpirt.exceptions import ActorDiedError, InfeasibleResourceError, TaskPlacementGroupRemoved
from mpirt.util.placement_group import (PlacementGroup, get_current_placement_group, get_placement_group,
                                        placement_group, placement_group_table, remove_placement_group)
from mpirt.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def four():
    mpirt.init(num_cpus=4)
    yield mpirt
    mpirt.shutdown()


def in_group(pg, index=-1, capture=None):
    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index,
                                            placement_group_capture_child_tasks=capture)


@mpirt.remote
def current():
    return get_current_placement_group()


@mpirt.remote(num_cpus=1)
def spans(seconds):
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def test_ready_wait_table_and_remove(four):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert mpirt.get(pg.ready(), timeout=20) == pg
    assert pg.wait(10) is True
    assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 1.0}] and pg.bundle_count == 2
    entry = placement_group_table(pg)
    assert entry["state"] == "CREATED" and entry["strategy"] == "PACK"
    assert entry["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}
    assert entry["placement_group_id"] == pg.id.hex() and pg.id.hex() in placement_group_table()
    assert set(entry["bundles_to_node_id"].values()) == {mpirt.get_runtime_context().get_node_id()}
    assert mpirt.available_resources().get("CPU") == 2.0      # the reservation is taken from the node
    ready, _ = mpirt.wait([pg.ready()], timeout=10)
    assert len(ready) == 1
    remove_placement_group(pg)
    deadline = time.monotonic() + 10
    while placement_group_table(pg)["state"] != "REMOVED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert mpirt.available_resources().get("CPU") == 4.0


def test_tasks_in_a_bundle_use_only_its_resources(four):
    pg = placement_group([{"CPU": 2}])
    pg.wait(20)
    runs = mpirt.get([spans.options(scheduling_strategy=in_group(pg, 0)).remote(0.5) for _ in range(4)], timeout=60)
    most_at_once = max(sum(1 for s, e in runs if s <= t < e) for t, _ in runs)
    assert most_at_once == 2       # two CPUs in the bundle: the other two tasks waited
    remove_placement_group(pg)


def test_a_group_waits_until_all_its_bundles_fit_at_once(four):
    big = placement_group([{"CPU": 3}])
    assert big.wait(20)
    waiting = placement_group([{"CPU": 1}, {"CPU": 1}])     # one CPU is free: not enough for both bundles
    assert waiting.wait(0.5) is False
    assert placement_group_table(waiting)["state"] == "PENDING"
    remove_placement_group(big)
    assert waiting.wait(20) is True
    remove_placement_group(waiting)


def test_a_group_no_layout_could_hold_raises_at_creation(four):
    with pytest.raises(InfeasibleResourceError, match=r"\[\{CPU: 100\}\].*can never be created.*node 0: CPU 4"):
        placement_group([{"CPU": 100}])
    with pytest.raises(ValueError, match="STRICT_SPREAD a node for each bundle"):
        placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")     # one node only
    with pytest.raises(InfeasibleResourceError, match="can never be created"):
        placement_group([{"CPU": 2}, {"CPU": 3}], strategy="STRICT_PACK")


@pytest.mark.parametrize("bundles,strategy,message", [
    ([{"CPU": 1}], "BEST", "Invalid placement group strategy BEST"),
    ([], "PACK", "Bundles must be a non-empty list"),
    ({"CPU": 1}, "PACK", "Placement group bundles must be a list"),
    ([{}], "PACK", "Bundles cannot be an empty dictionary or resources with only 0 values"),
    ([{"CPU": 0}], "PACK", "Bundles cannot be an empty dictionary"),
    ([{"CPU": -1}], "PACK", "negative amount of CPU"),
    ([{"CPU": "1"}], "PACK", "Bundles must be a non-empty list of resource dictionaries"),
])
def test_bad_bundles_and_strategies(four, bundles, strategy, message):
    with pytest.raises(ValueError, match=message):
        placement_group(bundles, strategy=strategy)


def test_bad_uses_of_a_group(four):
    with pytest.raises(ValueError, match="`lifetime` argument must be either `None` or 'detached'"):
        placement_group([{"CPU": 1}], lifetime="forever")
    pg = placement_group([{"CPU": 1}])
    with pytest.raises(ValueError, match="bundle index 1 is invalid. Valid placement group indexes: 0-1"):
        current.options(scheduling_strategy=in_group(pg, 1)).remote()
    with pytest.raises(ValueError, match="bundle index -2 is invalid"):
        current.options(scheduling_strategy=in_group(pg, -2)).remote()
    with pytest.raises(ValueError, match="cannot fit into any bundles for the placement group"):
        spans.options(num_cpus=2, scheduling_strategy=in_group(pg)).remote(0)
    with pytest.raises(ValueError, match="Please supply a non-empty value to get_placement_group"):
        get_placement_group("")
    with pytest.raises(ValueError, match="Failed to look up placement group with name: nobody"):
        get_placement_group("nobody")
    with pytest.raises(ValueError, match="timeout_seconds=-1"):
        pg.wait(-1)
    with pytest.raises(ValueError, match='Invalid scheduling_strategy value BEST'):
        current.options(scheduling_strategy="BEST").remote()
    remove_placement_group(pg)


def test_removing_a_group_kills_its_actors_and_fails_its_work(four):
    @mpirt.remote(num_cpus=1)
    class Member:
        def group(self):
            return get_current_placement_group()

    pg = placement_group([{"CPU": 1}])
    member = Member.options(scheduling_strategy=in_group(pg, 0)).remote()
    assert mpirt.get(member.group.remote(), timeout=20) == pg
    remove_placement_group(pg)
    with pytest.raises(ActorDiedError, match="placement group .* was removed"):
        for _ in range(100):        # removal is asynchronous, as in Ray
            mpirt.get(member.group.remote(), timeout=20)
            time.sleep(0.05)
    with pytest.raises(TaskPlacementGroupRemoved):
        mpirt.get(current.options(scheduling_strategy=in_group(pg)).remote(), timeout=20)
    with pytest.raises(TaskPlacementGroupRemoved):
        mpirt.get(pg.ready(), timeout=20)
    late = Member.options(scheduling_strategy=in_group(pg)).remote()
    with pytest.raises(ActorDiedError, match="placement group .* was removed"):
        mpirt.get(late.group.remote(), timeout=20)
    assert mpirt.available_resources().get("CPU") == 4.0


def test_current_group_and_child_tasks_captured(four):
    @mpirt.remote
    def parent():
        child = mpirt.get(current.remote())
        return get_current_placement_group(), child, mpirt.get_runtime_context().get_placement_group_id()

    pg = placement_group([{"CPU": 2}])
    assert get_current_placement_group() is None and mpirt.get_runtime_context().get_placement_group_id() is None
    own, child, pg_hex = mpirt.get(parent.options(scheduling_strategy=in_group(pg, capture=True)).remote(), timeout=30)
    assert own == pg and child == pg and pg_hex == pg.id.hex()
    own, child, _ = mpirt.get(parent.options(scheduling_strategy=in_group(pg)).remote(), timeout=30)
    assert own == pg and child is None          # not captured: the child runs outside the group
    remove_placement_group(pg)


def test_named_groups_and_the_deprecated_options(four):
    pg = placement_group([{"CPU": 1}], name="trainers", lifetime="detached")
    assert get_placement_group("trainers") == pg and isinstance(pg, PlacementGroup)
    assert mpirt.get(current.options(placement_group=pg, placement_group_bundle_index=0).remote(), timeout=20) == pg
    remove_placement_group(pg)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            get_placement_group("trainers")
        except ValueError:
            break
        time.sleep(0.05)
    with pytest.raises(ValueError, match="Failed to look up placement group with name: trainers"):
        get_placement_group("trainers")


NODES_APP = r"""
import mpirt
from mpirt.exceptions import InfeasibleResourceError
from mpirt.util.placement_group import placement_group, placement_group_table
from mpirt.util.scheduling_strategies import NodeAffinitySchedulingStrategy

mpirt.init()

@mpirt.remote(num_cpus=0)
def node():
    return mpirt.get_runtime_context().get_node_id()

@mpirt.remote(num_cpus=1)
class Pinned:
    def node(self):
        return mpirt.get_runtime_context().get_node_id()

workers = sorted({n["NodeID"] for n in mpirt.nodes() if n["Resources"].get("CPU")})
print("worker nodes", len(workers))
spread = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
assert spread.wait(30)
print("strict spread nodes", len(set(placement_group_table(spread)["bundles_to_node_id"].values())))
try:
    placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
except InfeasibleResourceError as exc:
    print("three on two nodes:", "STRICT_SPREAD" in str(exc))
packed = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
print("strict pack waits", packed.wait(0.5))     # the spread group holds a CPU of each node
from mpirt.util.placement_group import remove_placement_group
remove_placement_group(spread)
print("strict pack after", packed.wait(30), len(set(placement_group_table(packed)["bundles_to_node_id"].values())))
remove_placement_group(packed)
for target in workers:
    got = {mpirt.get(node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(target, soft=False)).remote())
           for _ in range(4)}
    print("affinity", got == {target})
print("soft to a gone node", mpirt.get(node.options(
    scheduling_strategy=NodeAffinitySchedulingStrategy("4e" + "0" * 54, soft=True)).remote()) in workers)
try:
    node.options(scheduling_strategy=NodeAffinitySchedulingStrategy("4e" + "0" * 54, soft=False)).remote()
except ValueError as exc:
    print("hard to a gone node:", "no such node" in str(exc))
actors = [Pinned.options(scheduling_strategy="SPREAD").remote() for _ in range(2)]
print("spread actors on", len({mpirt.get(a.node.remote()) for a in actors}), "nodes")
mpirt.shutdown()
"""


def test_strategies_across_emulated_nodes(tmp_path):
    """Ranks 2,3 and 4,5 play two nodes: STRICT_SPREAD puts a bundle on each, STRICT_PACK both on one
    (and waits while neither node has two CPUs free), node affinity runs on the node named, SPREAD
    puts two actors on different nodes."""
    proc = run_app(tmp_path, NODES_APP, ranks=6, env={"MPIRT_RANKS_PER_NODE": "2"}, timeout=150)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "worker nodes 2" in out
    assert "strict spread nodes 2" in out
    assert "three on two nodes: True" in out
    assert "strict pack waits False" in out
    assert "strict pack after True 1" in out
    assert out.count("affinity True") == 2
    assert "soft to a gone node True" in out
    assert "hard to a gone node: True" in out
    assert "spread actors on 2 nodes" in out
