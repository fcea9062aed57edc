"""Placement groups' bundle layout and lifecycle at the head, without MPI (scheduler/placement.py)."""
import pytest

from mpirt.core.lifecycle import IllegalTransition
from mpirt.scheduler.placement import CREATED, PENDING, REMOVED, Bundle, Group, fit_bundles


def nodes(*per_node, gpus=None, reserved=()):
    """``{node: (pooled, {rank: bound}, {rank: room})}``: node i has ``per_node[i]`` one-CPU ranks;
    ``gpus`` maps a rank to its GPUs; the ranks in ``reserved`` have their CPU reserved by another
    group's bundle. Ranks are numbered from 2 across the nodes, as worker ranks are."""
    capacity, rank = {}, 2
    for node, count in enumerate(per_node):
        ranks, room = {}, {}
        for _ in range(count):
            ranks[rank] = {"GPU": float((gpus or {}).get(rank, 0))} if (gpus or {}).get(rank) else {}
            room[rank] = 0.0 if rank in reserved else 1.0
            rank += 1
        capacity[node] = ({"CPU": float(count - sum(r in reserved for r in room))}, ranks, room)
    return capacity


def used_nodes(layout):
    return [node for node, _ in layout]


def test_pack_keeps_bundles_on_one_node_when_they_fit():
    layout = fit_bundles([{"CPU": 1.0}] * 3, "PACK", nodes(2, 4))
    assert used_nodes(layout) == [1, 1, 1]


def test_pack_spills_to_a_second_node_when_one_is_too_small():
    layout = fit_bundles([{"CPU": 1.0}] * 5, "PACK", nodes(2, 4))
    assert sorted(used_nodes(layout)).count(1) == 4 and used_nodes(layout).count(0) == 1


def test_strict_pack_needs_one_node_with_everything():
    assert fit_bundles([{"CPU": 1.0}] * 5, "STRICT_PACK", nodes(2, 4)) is None
    assert used_nodes(fit_bundles([{"CPU": 2.0}, {"CPU": 2.0}], "STRICT_PACK", nodes(2, 4))) == [1, 1]


def test_spread_uses_as_many_nodes_as_it_can():
    layout = fit_bundles([{"CPU": 1.0}] * 3, "SPREAD", nodes(2, 2, 2))
    assert sorted(used_nodes(layout)) == [0, 1, 2]
    layout = fit_bundles([{"CPU": 1.0}] * 4, "SPREAD", nodes(2, 2))
    assert sorted(used_nodes(layout)) == [0, 0, 1, 1]


def test_strict_spread_needs_a_node_for_each_bundle():
    assert fit_bundles([{"CPU": 1.0}] * 3, "STRICT_SPREAD", nodes(2, 2)) is None
    layout = fit_bundles([{"CPU": 2.0}, {"CPU": 1.0}], "STRICT_SPREAD", nodes(1, 2))
    assert layout[0][0] == 1 and layout[1][0] == 0     # the large bundle takes the node that can hold it


def test_bundles_on_one_node_go_to_different_ranks():
    layout = fit_bundles([{"CPU": 1.0}] * 3, "STRICT_PACK", nodes(4))
    assert len({rank for _, rank in layout}) == 3


def test_bundles_go_to_ranks_no_other_group_reserved():
    # ranks 2-4 hold another group's bundles: this group's go to 5-7, not to the lowest ranks (two
    # one-CPU actors on one rank would share its interpreter lock)
    layout = fit_bundles([{"CPU": 1.0}] * 3, "PACK", nodes(6, reserved=(2, 3, 4)))
    assert sorted(rank for _, rank in layout) == [5, 6, 7]
    # a two-CPU bundle on one-CPU ranks takes one rank's room and the pool's CPUs
    layout = fit_bundles([{"CPU": 2.0}, {"CPU": 1.0}], "PACK", nodes(4, reserved=(2,)))
    assert len({rank for _, rank in layout}) == 2 and 2 not in {rank for _, rank in layout}


def test_gpus_of_a_bundle_come_from_one_rank():
    capacity = nodes(3, gpus={2: 1, 3: 2})
    layout = fit_bundles([{"GPU": 2.0}, {"GPU": 1.0}], "PACK", capacity)
    assert layout[0] == (0, 3) and layout[1] == (0, 2)
    assert fit_bundles([{"GPU": 3.0}], "PACK", capacity) is None    # 3 on the node, not on one rank


def test_the_capacity_given_is_not_changed():
    capacity = nodes(2)
    fit_bundles([{"CPU": 2.0}], "PACK", capacity)
    assert capacity[0][0] == {"CPU": 2.0}


def test_custom_resources_must_fit_too():
    capacity = nodes(2)
    capacity[0][0]["disk"] = 1.0
    assert fit_bundles([{"CPU": 1.0, "disk": 1.0}], "PACK", capacity) == [(0, 2)]
    assert fit_bundles([{"disk": 2.0}], "PACK", capacity) is None


def test_group_lifecycle():
    group = Group(7, [{"CPU": 1.0}], "PACK", "g", "default", 0, None)
    assert group.state is PENDING
    group.created([(0, 2)])
    assert group.state is CREATED and group.bundles[0].rank == 2
    with pytest.raises(IllegalTransition):
        group.created([(0, 2)])
    group.removed()
    assert group.state is REMOVED
    with pytest.raises(IllegalTransition):
        group.removed()


def test_bundle_accounts_for_the_work_in_it():
    bundle = Bundle({"CPU": 2.0}, 0, 2)
    assert bundle.fits({"CPU": 2.0})
    bundle.take({"CPU": 1.5}, +1)
    assert not bundle.fits({"CPU": 1.0}) and bundle.fits({"CPU": 0.5})
    bundle.take({"CPU": 1.5}, -1)
    assert bundle.fits({"CPU": 2.0})
