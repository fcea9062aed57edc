"""Ray's ``ray.util.placement_group``: reserve bundles of resources all at once, then run tasks
and actors in them (``PlacementGroupSchedulingStrategy``).

Where mpirt differs from Ray, on purpose: a group that no layout of the allocation's nodes could
ever hold raises ``InfeasibleResourceError`` (a ``ValueError``) at ``placement_group()``, naming
the bundles and what the nodes have; Ray leaves it pending for ever. A group that only has to
wait for resources to free pends, as in Ray. See docs/ray_compat.md, "Placement groups".
"""
import warnings
from typing import Dict, List, Optional

from ..core.call_context import current_placement
from ..core.current import runtime_for_call
from ..scheduler.placement import STRATEGIES
from ..scheduler.resources import make_shape
from ..scheduler.strategies import PlacementGroup, PlacementGroupID

__all__ = ["PlacementGroup", "placement_group", "remove_placement_group", "get_placement_group",
           "placement_group_table", "get_current_placement_group"]

_BUNDLE_EXAMPLE = '`[{"CPU": 1.0}, {"GPU": 1.0}]`'
# Resources a bundle may name that mpirt does not schedule by (Ray's memory reservations).
_UNSCHEDULED = ("memory", "object_store_memory")


def placement_group(bundles: List[Dict[str, float]], strategy: Optional[str] = None, name: str = "",
                    lifetime: Optional[str] = None, _soft_target_node_id: Optional[str] = None,
                    bundle_label_selector: Optional[List[Dict[str, str]]] = None,
                    topology_strategy: Optional[Dict[str, str]] = None) -> PlacementGroup:
    """Reserve ``bundles`` (a list of ``{resource: amount}``) together, by ``strategy``: "PACK"
    (the default: as few nodes as possible), "SPREAD" (as many as possible), "STRICT_PACK" (one
    node), "STRICT_SPREAD" (a node for each bundle). Returns at once; ``pg.ready()`` and
    ``pg.wait()`` tell when every bundle is reserved."""
    if topology_strategy is not None:
        raise NotImplementedError("placement_group(topology_strategy=...): mpirt's nodes carry no topology labels; "
                                  "use strategy=")
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: "
                         f"{set(STRATEGIES)}.")
    strategy = strategy or "PACK"
    if _soft_target_node_id and strategy != "STRICT_PACK":
        raise ValueError(f"_soft_target_node_id currently only works with STRICT_PACK but got {strategy}")
    shapes = _bundle_shapes(bundles)
    if bundle_label_selector is not None and len(bundle_label_selector) != len(bundles):
        raise ValueError(f"Invalid bundle label selector {bundle_label_selector}. The length of "
                         f"`bundle_label_selector` should equal the length of `bundles`.")
    if lifetime not in (None, "detached"):
        raise ValueError(f"Placement group `lifetime` argument must be either `None` or 'detached'. Got {lifetime}.")
    if not isinstance(name, str):
        raise TypeError(f"placement_group(name={name!r}): the name must be a string")
    rt = runtime_for_call()
    group_id = rt.groups.create(shapes, strategy, name, rt.config.get("namespace") or "default", lifetime)
    return PlacementGroup(PlacementGroupID(group_id), [dict(shape) for shape in shapes])


def _bundle_shapes(bundles):
    """Ray's checks of ``bundles``, and each bundle as a resource shape."""
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError(f"Bundles must be a non-empty list of resource dictionaries. For example: {_BUNDLE_EXAMPLE}. "
                         f"Got empty list instead.")
    shapes = []
    for bundle in bundles:
        if not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle) \
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bundle.values()):
            raise ValueError(f"Bundles must be a non-empty list of resource dictionaries. For example: "
                             f"{_BUNDLE_EXAMPLE}. Got {bundle!r}.")
        if not bundle or all(amount == 0 for amount in bundle.values()):
            raise ValueError(f"Bundles cannot be an empty dictionary or resources with only 0 values. "
                             f"Bundles: {bundles}")
        negative = {k: v for k, v in bundle.items() if v < 0}
        if negative:
            raise ValueError(f"Bundle {bundle} asks for a negative amount of {', '.join(negative)}: resource "
                             f"amounts must be >= 0")
        if "object_store_memory" in bundle:
            warnings.warn("Setting 'object_store_memory' for bundles is deprecated since it doesn't actually "
                          "reserve the required object store memory.", DeprecationWarning, stacklevel=3)
        custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU") + _UNSCHEDULED}
        try:
            shape = make_shape(bundle.get("CPU", 0), bundle.get("GPU", 0), custom)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Bundle {bundle}: {exc}") from None
        shapes.append(shape)
    return shapes


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove the group: its reservation is freed, its actors are killed, and tasks still
    waiting to run in it fail with ``TaskPlacementGroupRemoved``."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group() takes a PlacementGroup, got {placement_group!r}")
    runtime_for_call().groups.remove(placement_group.id.value)


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group named ``placement_group_name`` in this job's namespace."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    rt = runtime_for_call()
    found = rt.groups.lookup(placement_group_name, rt.config.get("namespace") or "default")
    if found is None:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    group_id, shapes = found
    return PlacementGroup(PlacementGroupID(group_id), [dict(shape) for shape in shapes])


def placement_group_table(placement_group: Optional[PlacementGroup] = None) -> dict:
    """The state of ``placement_group`` (Ray's fields: placement_group_id, name, bundles,
    bundles_to_node_id, strategy, state, stats), or of every group by id if None."""
    if placement_group is not None and not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"placement_group_table(placement_group={placement_group!r}): give a PlacementGroup (from "
                        f"placement_group() or get_placement_group()), or None for every group")
    group_id = placement_group.id.value if placement_group is not None else None
    return runtime_for_call().groups.table(group_id)


def get_current_placement_group() -> Optional[PlacementGroup]:
    """The group the running task or actor was placed in; None on the driver and outside groups."""
    placement = current_placement()
    if placement is None:
        return None
    return PlacementGroup(PlacementGroupID(placement[0]))
