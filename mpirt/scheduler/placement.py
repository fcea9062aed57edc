"""Placement groups at the head: where a group's bundles go, and the group's lifecycle.

A group's bundles are reserved all at once (gang) or not at all: ``fit_bundles`` lays them out
on the nodes' free resources by the group's strategy, and the head takes them from the node
pools only when every bundle has a place. The same function run on the nodes' totals says
whether any layout of the allocation could ever hold the group: the creator raises at once for
one that could not (Ray leaves it pending for ever).

A bundle belongs to a node, as in Ray: its CPUs and custom resources come from the node's pool,
and the work placed in it runs on any of the node's ranks. Its GPUs belong to one rank (a
process sees only its own GPUs), the bundle's ``rank``; a bundle without GPUs gets a rank too:
one whose own CPUs no other bundle reserved, where there is one, and a rank of its own among the
group's bundles on the node where it can, so that actors in bundles (of this group or of others) do
not share an interpreter lock. Work in the bundle goes to that rank while it has room.
"""
import enum

from ..core.lifecycle import refuse
from .resources import CPU, RANK_BOUND

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class GroupState(enum.IntEnum):
    PENDING = 0    # waiting until every bundle fits at once
    CREATED = 1    # every bundle reserved
    REMOVED = 2    # removed: its reservation is free again, its actors killed


PENDING, CREATED, REMOVED = GroupState


class Bundle:
    """One bundle of a created group: where it is and what of it no work holds."""

    __slots__ = ("shape", "node", "rank", "free")

    def __init__(self, shape, node, rank):
        self.shape = shape
        self.node = node
        self.rank = rank
        self.free = dict(shape)

    def fits(self, shape):
        free = self.free
        return all(free.get(name, 0.0) + 1e-9 >= amount for name, amount in shape.items())

    def take(self, shape, sign):
        for name, amount in shape.items():
            self.free[name] = self.free.get(name, 0.0) - sign * amount


class Group:
    """A placement group as the head keeps it. Its state changes through ``created`` and
    ``removed``, each of which checks the state it leaves."""

    __slots__ = ("group_id", "shapes", "strategy", "name", "namespace", "owner", "lifetime", "state", "bundles",
                 "waiters", "work")

    def __init__(self, group_id, shapes, strategy, name, namespace, owner, lifetime):
        self.group_id = group_id
        self.shapes = shapes             # one resource shape per bundle
        self.strategy = strategy
        self.name = name
        self.namespace = namespace
        self.owner = owner
        self.lifetime = lifetime
        self.state = PENDING
        self.bundles = []                # Bundle per shape, once created
        self.waiters = []                # (rank, object id) of ready() refs to resolve
        self.work = set()                # ("lease", id) and ("actor", id) placed in it

    def created(self, layout):
        """PENDING -> CREATED on ``layout``, a (node, rank) per bundle."""
        if self.state is not PENDING:
            refuse(f"placement group {self.group_id:x}", self.state, (PENDING,), GroupState)
        self.bundles = [Bundle(shape, node, rank) for shape, (node, rank) in zip(self.shapes, layout)]
        self.state = CREATED

    def removed(self):
        """PENDING or CREATED -> REMOVED."""
        if self.state is REMOVED:
            refuse(f"placement group {self.group_id:x}", self.state, (PENDING, CREATED), GroupState)
        self.state = REMOVED

    def table_entry(self, node_hex):
        """Ray's ``placement_group_table()`` entry (``node_hex``: a node's id as ``nodes()`` has it)."""
        return {
            "placement_group_id": format(self.group_id, "036x"),
            "name": self.name,
            "bundles": {i: dict(shape) for i, shape in enumerate(self.shapes)},
            "bundles_to_node_id": {i: node_hex(b.node) for i, b in enumerate(self.bundles)},
            "bundles_to_rank": {i: b.rank for i, b in enumerate(self.bundles)},
            "strategy": self.strategy,
            "state": self.state.name,
            "stats": {"scheduling_state": "FINISHED" if self.state is CREATED else self.state.name},
        }


def fit_bundles(shapes, strategy, capacity):
    """A (node, rank) for each of ``shapes`` by ``strategy``, or None if they do not all fit.

    ``capacity`` is ``{node: (pooled, {rank: bound}, {rank: room})}``: what each node has of its
    pooled resources, each of its ranks of its rank-bound ones (GPUs), and each rank's own CPUs that no
    bundle reserved yet (its room). It is not changed.
    PACK puts the bundles on as few nodes as it can, SPREAD on as many, STRICT_PACK on one,
    STRICT_SPREAD each on a node of its own."""
    trial = {node: (dict(pooled), {rank: dict(bound) for rank, bound in ranks.items()}, dict(room))
             for node, (pooled, ranks, room) in capacity.items()}
    order = sorted(range(len(shapes)), key=lambda i: -sum(shapes[i].values()))   # largest first
    if strategy == "STRICT_SPREAD":
        return _distinct_nodes(shapes, order, trial)
    if strategy in ("STRICT_PACK", "PACK"):
        for node in _by_free_cpu(trial):
            layout = _all_on(node, shapes, order, trial)
            if layout is not None:
                return layout
        if strategy == "STRICT_PACK":
            return None
    layout = [None] * len(shapes)
    used = {}                        # node -> bundles of this group on it
    for i in order:
        nodes = _by_free_cpu(trial)
        if strategy == "PACK":       # nodes already used first, the fullest of them first
            nodes.sort(key=lambda node: -used.get(node, 0))
        else:                        # SPREAD: nodes with fewest of the group's bundles first
            nodes.sort(key=lambda node: used.get(node, 0))
        for node in nodes:
            rank = _take_on(node, shapes[i], trial, layout)
            if rank is not None:
                layout[i] = (node, rank)
                used[node] = used.get(node, 0) + 1
                break
        else:
            return None
    return layout


def _by_free_cpu(trial):
    return sorted(trial, key=lambda node: (-trial[node][0].get(CPU, 0.0), node))


def _saved(trial, node):
    pooled, ranks, room = trial[node]
    return dict(pooled), {rank: dict(bound) for rank, bound in ranks.items()}, dict(room)


def _all_on(node, shapes, order, trial):
    saved = _saved(trial, node)
    layout = [None] * len(shapes)
    for i in order:
        rank = _take_on(node, shapes[i], trial, layout)
        if rank is None:
            trial[node] = saved
            return None
        layout[i] = (node, rank)
    return layout


def _distinct_nodes(shapes, order, trial, placed=None, depth=0):
    """STRICT_SPREAD: a node of its own for each bundle (backtracking over the nodes)."""
    placed = [None] * len(shapes) if placed is None else placed
    if depth == len(order):
        return placed
    i = order[depth]
    taken = {spot[0] for spot in placed if spot is not None}
    for node in _by_free_cpu(trial):
        if node in taken:
            continue
        saved = _saved(trial, node)
        rank = _take_on(node, shapes[i], trial, placed)
        if rank is None:
            continue
        placed[i] = (node, rank)
        if _distinct_nodes(shapes, order, trial, placed, depth + 1) is not None:
            return placed
        placed[i] = None
        trial[node] = saved
    return None


def _take_on(node, shape, trial, layout):
    """Take ``shape`` from ``node`` in ``trial`` and return the rank the bundle gets, or None
    if it does not fit. Its GPUs come from the rank with most of them free. A bundle without GPUs
    gets a rank with room for its CPUs (unreserved own CPUs) if the node has one, then the rank
    holding fewest of this group's bundles, then the one with most room, then the lowest."""
    pooled, ranks, room = trial[node]
    if not ranks:
        return None
    for name, amount in shape.items():
        if name not in RANK_BOUND and pooled.get(name, 0.0) + 1e-9 < amount:
            return None
    bound_part = {name: amount for name, amount in shape.items() if name in RANK_BOUND}
    cpus = shape.get(CPU, 0.0)
    if bound_part:
        fitting = [rank for rank, bound in ranks.items()
                   if all(bound.get(name, 0.0) + 1e-9 >= amount for name, amount in bound_part.items())]
        if not fitting:
            return None
        rank = max(fitting, key=lambda r: (sum(ranks[r].values()), -r))
        for name, amount in bound_part.items():
            ranks[rank][name] -= amount
    else:
        here = [spot[1] for spot in layout if spot is not None and spot[0] == node]
        rank = min(ranks, key=lambda r: (room.get(r, 0.0) + 1e-9 < cpus, here.count(r), -room.get(r, 0.0), r))
    if rank in room:
        room[rank] -= cpus
    for name, amount in shape.items():
        if name not in RANK_BOUND:
            pooled[name] = pooled.get(name, 0.0) - amount
    return rank


def describe_shapes(shapes):
    return "[" + ", ".join("{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(s.items())) + "}" for s in shapes) + "]"



class HeadGroups:
    """The head's placement groups: their reservations in the node pools, and the work in them.

    Its handlers answer the ``group_*`` messages; the head asks ``pick`` where a request with a
    ``("pg", group id, bundle index)`` constraint goes, and ``reserve_pending`` before granting,
    so that a group waiting for resources gets them before single tasks take them again."""

    def __init__(self, head):
        self.head = head
        self.rt = head.rt
        self.groups = {}                   # group id -> Group (removed ones stay, as Ray's table shows them)
        self.names = {}                    # (namespace, name) -> group id of a live named group
        self.pending = []                  # ids of PENDING groups, oldest first
        self.early = {}                    # group id not yet created -> [(rank, object id)] waiting for it
        self.users = {}                    # group id -> ranks that asked for leases in it
        self.rt.register(group_create=self._on_create, group_wait=self._on_wait, group_remove=self._on_remove,
                         group_table_query=self._on_table_query, group_name_query=self._on_name_query)

    # -- messages ------------------------------------------------------------
    def _on_create(self, source, group_id, shapes, strategy, name, namespace, lifetime):
        if group_id in self.groups:        # removed before its creation arrived
            return
        group = self.groups[group_id] = Group(group_id, shapes, strategy, name, namespace, source, lifetime)
        group.waiters.extend(self.early.pop(group_id, ()))
        if name:
            self.names.setdefault((namespace, name), group_id)
        self.pending.append(group_id)
        self.head.grant()

    def _on_wait(self, source, group_id, object_id):
        group = self.groups.get(group_id)
        if group is None:
            self.early.setdefault(group_id, []).append((source, object_id))
        elif group.state is PENDING:
            group.waiters.append((source, object_id))
        else:
            self.rt.send(source, ("group_ready", object_id, group.state is REMOVED))

    def _on_remove(self, source, group_id):
        group = self.groups.get(group_id)
        if group is None:                  # its creation is still on its way: it arrives removed
            group = self.groups[group_id] = Group(group_id, [], "PACK", "", None, source, None)
            group.removed()
            return
        if group.state is REMOVED:
            return
        self._release_reservation(group)
        group.removed()
        if group_id in self.pending:
            self.pending.remove(group_id)
        if self.names.get((group.namespace, group.name)) == group_id:
            del self.names[(group.namespace, group.name)]
        for rank, object_id in group.waiters + self.early.pop(group_id, []):
            self.rt.send(rank, ("group_ready", object_id, True))
        group.waiters = []
        self.head.group_removed(group)
        for rank in self.users.pop(group_id, ()):
            self.rt.send(rank, ("group_removed", group_id))

    def _on_table_query(self, source, request_id, group_id):
        node_hex = self.head.node_hex
        if group_id is not None:
            group = self.groups.get(group_id)
            answer = group.table_entry(node_hex) if group is not None and group.shapes else {}
        else:
            answer = {format(gid, "036x"): group.table_entry(node_hex)
                      for gid, group in self.groups.items() if group.shapes}
        self.rt.queries.answer(source, request_id, answer)

    def _on_name_query(self, source, request_id, namespace, name):
        group_id = self.names.get((namespace, name))
        answer = None if group_id is None else (group_id, self.groups[group_id].shapes)
        self.rt.queries.answer(source, request_id, answer)

    # -- reservations ----------------------------------------------------------
    def reserve_pending(self):
        """Reserve every pending group that fits now, oldest first."""
        for group_id in list(self.pending):
            group = self.groups[group_id]
            layout = fit_bundles(group.shapes, group.strategy, self._free_capacity())
            if layout is None:
                continue
            self.pending.remove(group_id)
            for shape, (node, rank) in zip(group.shapes, layout):
                self._hold(node, rank, shape, +1)
            group.created(layout)
            for rank, object_id in group.waiters:
                self.rt.send(rank, ("group_ready", object_id, False))
            group.waiters = []

    def _free_capacity(self):
        return {node: (pool.free, pool.rank_free, pool.unreserved_cpus)
                for node, pool in self.head.pools.items() if pool.ranks}

    def _hold(self, node, rank, shape, sign):
        """Take (``sign`` 1) or give back (-1) a bundle's reservation from its node's pool."""
        pool = self.head.pools.get(node)
        if pool is not None:
            pool.reserve(rank, shape, sign)

    def _release_reservation(self, group):
        if group.state is CREATED:
            for bundle in group.bundles:
                self._hold(bundle.node, bundle.rank, bundle.shape, -1)

    # -- work in groups --------------------------------------------------------
    def pick(self, source, constraint, shape, actor):
        """Where work of ``shape`` runs in the group ``constraint`` names: ``(rank, bundle)``,
        None to wait (the group is pending, or its bundles are busy), or REMOVED."""
        _, group_id, index = constraint
        if not actor:
            self.users.setdefault(group_id, set()).add(source)
        group = self.groups.get(group_id)
        if group is None or group.state is PENDING:
            return None
        if group.state is REMOVED:
            return REMOVED
        head = self.head
        best, best_key = None, None
        for i, bundle in enumerate(group.bundles):
            if (index != -1 and i != index) or not bundle.fits(shape):
                continue
            pool = head.pools.get(bundle.node)
            if pool is None:
                continue
            if any(name in RANK_BOUND for name in shape):
                ranks = [bundle.rank] if bundle.rank in pool.rank_free else []
            else:
                ranks = pool.ranks
            for rank in ranks:
                # the bundle's own rank while it has room, then the rank with fewest actors and most room
                own = rank == bundle.rank and pool.spare_cpus(rank) + 1e-9 >= min(shape.get(CPU, 0.0),
                                                                                   pool.own_cpus[rank])
                key = (own, -head.actors_on[rank] if actor else 0, round(pool.spare_cpus(rank), 6), rank == bundle.rank)
                if best is None or key > best_key:
                    best, best_key = (rank, bundle), key
        return best

    def rank_dead(self, rank):
        """Groups whose creator was a task or actor on ``rank`` go with it unless detached (Ray's
        fate sharing)."""
        for group in list(self.groups.values()):
            if group.owner == rank and group.lifetime != "detached" and group.state is not REMOVED:
                self._on_remove(rank, group.group_id)
        for ranks in self.users.values():
            ranks.discard(rank)
