"""Placement groups as every rank uses them: create, wait until ready, remove, look up.

The head keeps the groups and reserves their bundles (``scheduler/head.py``,
``scheduler/placement.py``); this side sends it what the API asks and turns its answers into
ObjectRefs and values. ``ready()`` is an object of the asking rank that the head's
``group_ready`` resolves once every bundle is reserved, without a task (Ray runs a task in the
group for it), so creating a group and waiting for it costs one message each way.
"""
from typing import Any, Dict, List, Optional

from ..exceptions import ErrorPayload, InfeasibleResourceError, TaskPlacementGroupRemoved
from ..scheduler.placement import describe_shapes, fit_bundles
from ..scheduler.resources import CPU, RANK_BOUND
from .codec import dumps, encode
from .object_ref import ObjectRef
from .protocol import HEAD_RANK


class PlacementGroups:
    def __init__(self, rt):
        self.rt = rt
        self.shapes: Dict[int, List[Dict[str, float]]] = {}   # group id -> its bundles' shapes, as known here
        self._handles = {}                                    # object id of a ready() ref -> the group's handle
        rt.register(group_ready=self._on_ready)

    def create(self, shapes: List[Dict[str, float]], strategy: str, name: str, namespace: Optional[str],
               lifetime: Optional[str]) -> int:
        """Ask the head for a new group; raises InfeasibleResourceError if no layout of the
        allocation could ever hold it."""
        rt = self.rt
        if fit_bundles(shapes, strategy, self._capacity()) is None:
            raise InfeasibleResourceError(self._why_infeasible(shapes, strategy))
        with rt.lock:
            group_id = rt.next_id()
            self.shapes[group_id] = shapes
        rt.send(HEAD_RANK, ("group_create", group_id, shapes, strategy, name, namespace, lifetime))
        return group_id

    def _capacity(self):
        """Every node's total resources, as ``fit_bundles`` takes them."""
        cluster = self.rt.cluster
        capacity = {}
        for rank in cluster.worker_ranks:
            offered = cluster.resources_by_rank[rank]
            pooled, ranks, room = capacity.setdefault(cluster.node_of[rank], ({}, {}, {}))
            ranks[rank] = {n: a for n, a in offered.items() if n in RANK_BOUND}
            room[rank] = offered.get(CPU, 0.0)
            for name, amount in offered.items():
                if name not in RANK_BOUND:
                    pooled[name] = pooled.get(name, 0.0) + amount
        return capacity

    def _why_infeasible(self, shapes, strategy):
        nodes = "; ".join(
            f"node {i}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(pooled.items()))
            + "".join(f", GPU {bound.get('GPU', 0.0):g} on rank {r}" for r, bound in sorted(ranks.items())
                      if bound.get("GPU"))
            for i, (pooled, ranks, _) in enumerate(self._capacity().values()))
        return (f"placement_group({describe_shapes(shapes)}, strategy={strategy!r}) can never be created: no layout "
                f"of this allocation's nodes holds it ({nodes or 'no worker ranks'}). Ask for less per bundle, "
                f"fewer bundles, another strategy, or more nodes (STRICT_PACK needs one node with all of it, "
                f"STRICT_SPREAD a node for each bundle; a bundle's GPUs must be on one rank).")

    def ready(self, handle: Any) -> ObjectRef:
        """An ObjectRef that resolves to ``handle`` once every bundle of its group is reserved."""
        rt = self.rt
        with rt.lock:
            object_id = rt.next_id()
            ref = rt.objects.owned_ref(object_id)
            self._handles[object_id] = handle
        rt.send(HEAD_RANK, ("group_wait", handle.id.value, object_id))
        return ref

    def _on_ready(self, source, object_id, removed):
        handle = self._handles.pop(object_id, None)
        if handle is None:
            return
        if removed:
            error = TaskPlacementGroupRemoved()
            self.rt.objects.set_ready(object_id, dumps(ErrorPayload(error)), True)
        else:
            self.rt.objects.set_ready(object_id, encode(handle, self.rt.store))

    def remove(self, group_id: int) -> None:
        self.rt.send(HEAD_RANK, ("group_remove", group_id))

    def table(self, group_id: Optional[int]) -> Dict[str, Any]:
        return self.rt.queries.ask(HEAD_RANK, "group_table_query", group_id)

    def lookup(self, name: str, namespace: Optional[str]) -> Optional[tuple]:
        """(group id, shapes) of the live group named ``name`` in ``namespace``, or None."""
        found = self.rt.queries.ask(HEAD_RANK, "group_name_query", namespace, name)
        if found is not None:
            self.shapes[found[0]] = found[1]
        return found

    def shapes_of(self, group_id: int) -> List[Dict[str, float]]:
        shapes = self.shapes.get(group_id)
        if shapes is None:
            entry = self.table(group_id)
            shapes = [entry["bundles"][i] for i in sorted(entry["bundles"])] if entry else []
            self.shapes[group_id] = shapes
        return shapes
