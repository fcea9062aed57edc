"""The head scheduler (rank 1): keeps one resource pool per node and grants leases from it.

As in Ray, resources belong to nodes and worker processes (here the node's worker ranks) are executors: a
lease or actor fits if its node's pool has the shape, and runs on one rank of that node, so a task may hold
more CPUs than one rank offers (the node's other ranks then get less). GPUs are the exception: a process
sees only its own GPUs, so they are counted per rank (``RANK_BOUND``) and a GPU request runs on a rank that
has them free.

A lease is one slot of a resource shape. Submitters send their tasks straight to leased workers and return
the lease when they run out of work, so the head sees one message pair per lease, not per task. A task that
blocks in ``get`` hands its CPU back (``cpu_release``) and takes it again when it resumes
(``cpu_reacquire``), which may briefly oversubscribe its node.
"""
import bisect
import collections
import itertools
import time

from ..core.ids import node_id_hex
from .collectives import HeadCollectives
from .placement import REMOVED, HeadGroups
from .resources import CPU, RANK_BOUND, summed

_CPU_ONLY = {CPU}
ACTOR_WAIT_NOTICE_S = 10.0   # an actor not placed after this long: its owner is told why (once)


class NodePool:
    """One node's resources: pooled ones (CPU, custom) shared by its ranks, rank-bound ones
    (GPU) per rank, and how much CPU the tasks executing on each rank hold."""

    def __init__(self, ranks, resources_by_rank):
        self.ranks = []
        self.total, self.free, self.rank_total, self.rank_free = {}, {}, {}, {}
        self.own_cpus, self.cpus_used = {}, {}
        self.unreserved_cpus = {}    # rank -> its CPUs no placement group bundle placed on it reserves
        self._top_spare = None       # (the most spare CPUs of one of its ranks, those ranks); None: to be counted
        self.on_change = None        # called with the pool after its free resources or spare CPUs changed
        for rank in ranks:
            self.add_rank(rank, resources_by_rank[rank])

    def _changed(self):
        if self.on_change is not None:
            self.on_change(self)

    def fits_now(self, rank, shape):
        return self._fits(self.free, self.rank_free[rank], shape)

    def could_fit(self, rank, shape):
        return self._fits(self.total, self.rank_total[rank], shape)

    def fits_pooled(self, shape):
        """Whether the node's pool has ``shape`` free now; for a shape with no rank-bound resource this is
        ``fits_now`` of every rank of the node."""
        return self._fits(self.free, {}, shape)

    def top_spare(self):
        """``(most, ranks)``: the most spare CPUs (``spare_cpus``, rounded as ``_pick`` compares them) of a rank
        of the node, and the ranks that have that many, in the node's order; ``(None, [])`` for a node with no
        rank. Counted when first asked and after a rank joined or left; ``_spare_changed`` keeps it up to date
        as work starts and ends."""
        if self._top_spare is None:
            spare = {r: round(self.own_cpus[r] - self.cpus_used[r], 6) for r in self.ranks}
            most = max(spare.values(), default=None)
            self._top_spare = (most, [r for r in self.ranks if spare[r] == most])
        return self._top_spare

    def _spare_changed(self, rank):
        """Keep ``top_spare`` up to date after ``rank``'s spare CPUs changed: only that rank moves in or out of
        the top (counting the node's ranks again every time was half of a lease's cost at 64 ranks a node)."""
        if self._top_spare is None:
            return
        most, ranks = self._top_spare
        spare = round(self.own_cpus[rank] - self.cpus_used[rank], 6)
        if spare > most:
            self._top_spare = (spare, [rank])
        elif spare == most:
            if rank not in ranks:
                bisect.insort(ranks, rank, key=self.ranks.index)
        elif rank in ranks:
            ranks.remove(rank)
            if not ranks:
                self._top_spare = None

    @staticmethod
    def _fits(pooled, bound, shape):
        for name, amount in shape.items():
            if (bound if name in RANK_BOUND else pooled).get(name, 0.0) + 1e-9 < amount:
                return False
        return True

    def take(self, rank, shape, sign=1):
        """Hold (``sign`` 1) or give back (-1) ``shape`` for work executing on ``rank``."""
        bound = self.rank_free.get(rank)
        if bound is None:        # the rank died: what it held went with it
            return
        for name, amount in shape.items():
            target = bound if name in RANK_BOUND else self.free
            target[name] = target.get(name, 0.0) - sign * amount
        self.cpus_used[rank] += sign * shape.get(CPU, 0.0)
        self._spare_changed(rank)
        self._changed()

    def occupy(self, rank, cpus, sign):
        """Work holding ``cpus`` of a placement group's bundle starts (``sign`` 1) or ends (-1) on
        ``rank``: the node's pool gave those CPUs to the bundle already, the rank's room changes."""
        if rank in self.cpus_used:
            self.cpus_used[rank] += sign * cpus
            self._spare_changed(rank)
            self._changed()

    def reserve(self, rank, shape, sign):
        """Set aside (``sign`` 1) or give back (-1) a placement group bundle's ``shape`` on ``rank``: pooled
        resources from the node's pool, rank-bound ones from the rank's."""
        if rank in self.unreserved_cpus:
            self.unreserved_cpus[rank] -= sign * shape.get(CPU, 0.0)
        for name, amount in shape.items():
            if name in RANK_BOUND:
                if rank in self.rank_free:     # else the rank died, and its GPUs with it
                    self.rank_free[rank][name] = self.rank_free[rank].get(name, 0.0) - sign * amount
            else:
                self.free[name] = self.free.get(name, 0.0) - sign * amount
        self._changed()

    def spare_cpus(self, rank):
        """CPUs ``rank`` itself offers that no work on it holds: its room as an executor."""
        return self.own_cpus[rank] - self.cpus_used[rank]

    def add_rank(self, rank, offered):
        """A worker rank of the node (at start, or one that joined in place of a dead one)."""
        self.ranks.append(rank)
        self.rank_total[rank] = {n: a for n, a in offered.items() if n in RANK_BOUND}
        self.rank_free[rank] = dict(self.rank_total[rank])
        self.own_cpus[rank] = offered.get(CPU, 0.0)
        self.unreserved_cpus[rank] = self.own_cpus[rank]
        self.cpus_used[rank] = 0.0
        self._top_spare = None
        for name, amount in offered.items():
            if name not in RANK_BOUND:
                self.total[name] = self.total.get(name, 0.0) + amount
                self.free[name] = self.free.get(name, 0.0) + amount
        self._changed()

    def remove_rank(self, rank, offered):
        """``rank`` died (what ran there was given back first): the pool loses what it offered."""
        if rank not in self.rank_free:
            return
        self.ranks.remove(rank)
        for name, amount in offered.items():
            if name not in RANK_BOUND:
                self.total[name] -= amount
                self.free[name] -= amount   # may go below 0 until work elsewhere on the node ends
        for table in (self.rank_total, self.rank_free, self.own_cpus, self.cpus_used, self.unreserved_cpus):
            del table[rank]
        self._top_spare = None
        self._changed()

    def available(self):
        """Free resources, rank-bound ones summed over the ranks; none of a resource free leaves
        it out, as Ray's tables do (``available_resources()`` has no "CPU" while all are held)."""
        parts = (self.free, *self.rank_free.values())
        return summed({name: amount for name, amount in res.items() if amount > 1e-9} for res in parts)


class NodeRanking:
    """The nodes in the order ``_pick_pooled`` compares them, kept as they change: by the most spare CPUs of one
    of their ranks, then by free CPUs (``key``). Nodes with the same key share a bucket, and the distinct keys
    are kept sorted, so a pick looks at the best keys' nodes only, not at every node (at 10,000 ranks, 157
    nodes of 64, the look at every node was ~220 us of a lease's cost at the head)."""

    def __init__(self):
        self.keys = []            # the distinct keys of the nodes, ascending
        self.nodes_by_key = {}    # key -> {pool: None}, the nodes that have it
        self.key_of = {}          # pool -> its key (a pool with no rank has none)

    @staticmethod
    def key(pool):
        top = pool.top_spare()[0]
        return None if top is None else (top, round(pool.free.get(CPU, 0.0), 6))

    def update(self, pool):
        new, old = self.key(pool), self.key_of.get(pool)
        if new == old:
            return
        if old is not None:
            members = self.nodes_by_key[old]
            del members[pool]
            if not members:
                del self.nodes_by_key[old]
                del self.keys[bisect.bisect_left(self.keys, old)]
            del self.key_of[pool]
        if new is not None:
            self.key_of[pool] = new
            members = self.nodes_by_key.get(new)
            if members is None:
                members = self.nodes_by_key[new] = {}
                bisect.insort(self.keys, new)
            members[pool] = None

    def best(self, shape):
        """The nodes whose pool has ``shape`` free now and whose key is the best of those."""
        cpus_only = shape.keys() <= _CPU_ONLY   # then the nodes of one key, with the same free CPUs, all fit or none
        for key in reversed(self.keys):
            members = self.nodes_by_key[key]
            if cpus_only:
                if next(iter(members)).fits_pooled(shape):
                    return list(members)
                continue
            fitting = [pool for pool in members if pool.fits_pooled(shape)]
            if fitting:
                return fitting
        return []


class HeadScheduler:
    def __init__(self, runtime, cluster):
        self.rt = runtime
        self.offered = {r: dict(cluster.resources_by_rank[r]) for r in cluster.worker_ranks}
        ranks_of_node = collections.defaultdict(list)
        for rank in cluster.worker_ranks:
            ranks_of_node[cluster.node_of[rank]].append(rank)
        self.pools = {node: NodePool(ranks, self.offered) for node, ranks in sorted(ranks_of_node.items())}
        self.ranking = NodeRanking()
        for pool in self.pools.values():
            self._rank_nodes(pool)
        self.pool_of = {rank: self.pools[cluster.node_of[rank]] for rank in cluster.worker_ranks}
        self.workers = list(cluster.worker_ranks)
        self._worker_index = None            # worker -> its position in self.workers (None: to be made again)
        self._ever_fits = {}                 # (shape, constraint) -> _could_ever_fit's answer, while no rank
                                             # dies or joins
        # (submitter, shape_key, shape to fit, shape to hold, actor_id or None for a lease, preferred rank,
        #  constraint: options.placement_constraint's, or None)
        self.requests = collections.deque()
        # The work granted, and the placement group bundle it holds its resources in (None: the node's pool).
        self.leases = {}                     # lease_id -> (worker, shape, bundle)
        self.actors = {}                     # actor_id -> (worker, shape held for its life, bundle)
        self.actors_on = collections.Counter()  # worker -> live actors placed there
        self.names = {}                      # (namespace, name) -> actor handle state
        self.name_of_actor = {}              # actor_id -> (namespace, name)
        self._lease_ids = itertools.count(1)
        self._round_robin = 0
        # Dead worker ranks whose replacements are on their way (replacement.py): node, what it
        # offered. Work that only they could hold waits for them instead of being refused.
        self.coming = {}
        self.groups = HeadGroups(self)
        self.collectives = HeadCollectives(runtime)
        self._actors_waiting = {}            # actor_id -> [owner, since (monotonic), owner told]
        runtime.transport.add_ticker(ACTOR_WAIT_NOTICE_S / 2, self._tell_owners_of_waiting_actors)
        runtime.register(lease_req=self._on_lease_request, lease_ret=self._on_lease_return,
                         cpu_release=self._on_cpu_release, cpu_reacquire=self._on_cpu_reacquire,
                         resources_query=self._on_resources_query, actor_place=self._on_actor_place,
                         actor_dead=self._on_actor_dead, actor_name_query=self._on_actor_name_query,
                         actor_names_query=self._on_actor_names_query, actor_where=self._on_actor_where)
        runtime.failures.handlers.append(self._on_rank_dead)

    def _on_lease_request(self, source, key, shape, preferred, constraint):
        self.requests.append((source, key, shape, shape, None, preferred, constraint))
        self.grant()

    def _on_actor_place(self, source, actor_id, placement, held, constraint):
        """An actor needs ``placement`` free to be placed and holds ``held`` while it lives."""
        self.requests.append((source, None, placement, held, actor_id, None, constraint))
        self.grant()

    def _on_actor_dead(self, source, actor_id):
        placed = self.actors.pop(actor_id, None)
        if placed is not None:
            self.actors_on[placed[0]] -= 1
            self._release(*placed)
        name = self.name_of_actor.pop(actor_id, None)
        if name is not None:
            self.names.pop(name, None)
        self.grant()

    def _on_actor_name_query(self, source, request_id, namespace, name, state):
        """Look up a named actor (``state`` None) or register one unless the name is taken."""
        key = (namespace, name)
        existing = self.names.get(key)
        if state is not None and existing is None:
            self.names[key] = state
            self.name_of_actor[state[0]] = key
        self.rt.queries.answer(source, request_id, existing)

    def _on_actor_names_query(self, source, request_id, namespace):
        """``list_named_actors``: (namespace, name) of every live named actor, in ``namespace`` or all."""
        pairs = sorted(key for key in self.names if namespace is None or key[0] == namespace)
        self.rt.queries.answer(source, request_id, pairs)

    def _on_actor_where(self, source, actor_id):
        """Where an actor whose owner died lives (its callers cannot ask the owner): the rank
        it was placed on, or None once it is gone."""
        placed = self.actors.get(actor_id)
        self.rt.send(source, ("actor_location", actor_id, placed[0] if placed is not None else None, 0))

    def node_hex(self, node):
        """``node``'s id as ``nodes()`` reports it."""
        return node_id_hex(self.rt.session, node)

    def group_removed(self, group):
        """``group`` was removed: its actors are killed, and requests waiting for it are refused
        (actors) or dropped (leases: their submitters hear ``group_removed``)."""
        bundles = {id(bundle) for bundle in group.bundles}
        for actor_id, (worker, _, bundle) in list(self.actors.items()):
            if bundle is not None and id(bundle) in bundles:
                self.rt.send(worker, ("actor_kill", actor_id, f"its placement group {group.group_id:036x} was "
                                                               "removed (remove_placement_group)"))
        kept = collections.deque()
        for request in self.requests:
            constraint = request[6]
            if constraint is None or constraint[0] != "pg" or constraint[1] != group.group_id:
                kept.append(request)
            elif request[4] is not None:
                self.rt.send(request[0], ("actor_unplaceable", request[4], f"its placement group "
                                          f"{group.group_id:036x} was removed before the actor was placed"))
        self.requests = kept
        self.grant()

    def _on_rank_dead(self, rank):
        """A worker died: grant nothing there again; its leases and actors are gone with it
        (their owners retry the tasks and restart the actors), and its node's pool shrinks."""
        for lease_id in [i for i, (worker, _, _) in self.leases.items() if worker == rank]:
            self._release(*self.leases.pop(lease_id))
        for actor_id in [a for a, (worker, _, _) in self.actors.items() if worker == rank]:
            self._release(*self.actors.pop(actor_id))
        pool = self.pool_of.pop(rank, None)
        if pool is not None:
            offered = self.offered.pop(rank)
            pool.remove_rank(rank, offered)
            self.workers.remove(rank)
            self._workers_changed()
            if self.rt.replacement.expected():
                self.coming[rank] = (self.rt.cluster.node_of[rank], offered)
        self.actors_on.pop(rank, None)
        self.requests = collections.deque(r for r in self.requests if r[0] != rank)
        self.groups.rank_dead(rank)
        self.collectives.rank_dead(rank)
        self.grant()

    def add_rank(self, rank, offered, node, replaces):
        """``rank`` joined ``node`` in place of the dead ``replaces``: grant work there."""
        self.coming.pop(replaces, None)
        pool = self.pools.get(node)
        if pool is None:
            pool = self.pools[node] = NodePool([], {})
            self._rank_nodes(pool)
        pool.add_rank(rank, offered)
        self.offered[rank] = dict(offered)
        self.pool_of[rank] = pool
        self.workers.append(rank)
        self._workers_changed()
        self.grant()

    def replacements_failed(self):
        """No replacement comes after all: refuse what only they could have held."""
        self.coming.clear()
        self._ever_fits.clear()
        self.grant()

    def _workers_changed(self):
        self._worker_index = None
        self._ever_fits.clear()

    def _could_ever_fit(self, shape, constraint=None):
        """Whether a live worker rank, or a replacement on its way, could hold ``shape`` (on the
        node a hard node affinity names). Asked for every request that waits, at every grant: the answer
        is kept until a rank dies or joins (what ranks could hold changes only then)."""
        memo = (tuple(sorted(shape.items())), constraint if constraint is None or constraint[0] == "node" else None)
        answer = self._ever_fits.get(memo)
        if answer is None:
            answer = self._ever_fits[memo] = self._could_ever_fit_now(shape, constraint)
        return answer

    def _could_ever_fit_now(self, shape, constraint):
        only = constraint[1] if constraint is not None and constraint[0] == "node" else None
        node_of = self.rt.cluster.node_of
        if any(self.pool_of[w].could_fit(w, shape) for w in self.workers if only is None or node_of.get(w) == only):
            return True
        for node, offered in self.coming.values():
            if only is not None and node != only:
                continue
            pool = self.pools.get(node)
            pooled = summed([pool.total if pool is not None else {}, offered])   # its rank-bound part: not read
            if NodePool._fits(pooled, {n: a for n, a in offered.items() if n in RANK_BOUND}, shape):
                return True
        return False

    def _on_lease_return(self, source, lease_id):
        if lease_id not in self.leases:
            return
        self._release(*self.leases.pop(lease_id))
        self.grant()

    def _on_cpu_release(self, source, shape):
        self._take(source, shape, -1)
        self.grant()

    def _on_cpu_reacquire(self, source, shape):
        self._take(source, shape, +1)

    def _on_resources_query(self, source, request_id):
        self.rt.queries.answer(source, request_id, self.available_totals())

    @property
    def available(self):
        """Free resources per node (``{node: {name: amount}}``), for ``MPIRT_DEBUG_DUMP``."""
        return {node: pool.available() for node, pool in self.pools.items()}

    def available_totals(self):
        return summed(pool.available() for pool in self.pools.values())

    def _take(self, worker, shape, sign):
        pool = self.pool_of.get(worker)
        if pool is not None:     # else the worker died
            pool.take(worker, shape, sign)

    def _hold(self, worker, shape, bundle):
        """Work of ``shape`` starts on ``worker``, from the node's pool or from ``bundle``'s reservation."""
        if bundle is None:
            self._take(worker, shape, +1)
        else:
            bundle.take(shape, +1)
            self.pool_of[worker].occupy(worker, shape.get(CPU, 0.0), +1)

    def _release(self, worker, shape, bundle):
        if bundle is None:
            self._take(worker, shape, -1)
            return
        bundle.take(shape, -1)
        pool = self.pool_of.get(worker)
        if pool is not None:
            pool.occupy(worker, shape.get(CPU, 0.0), -1)

    def grant(self):
        if self.groups.pending:
            self.groups.reserve_pending()
        if not self.requests:
            return
        waiting = collections.deque()
        full = set()    # plain lease shapes no rank has free now: grants only take, so later ones wait too
        while self.requests:
            request = self.requests.popleft()
            source, key, shape, held, actor_id, preferred, constraint = request
            bundle = None
            if constraint is None:
                known_full = actor_id is None and key in full
                worker = None if known_full else self._pick(shape, preferred, actor_id is not None, not held)
                if worker is None and actor_id is None:
                    full.add(key)
            elif constraint[0] == "pg":
                picked = self.groups.pick(source, constraint, shape, actor_id is not None)
                if picked is REMOVED:
                    if actor_id is not None:
                        self.rt.send(source, ("actor_unplaceable", actor_id, f"its placement group "
                                              f"{constraint[1]:036x} was removed"))
                    else:
                        self.rt.send(source, ("group_removed", constraint[1]))
                    continue
                worker, bundle = picked if picked is not None else (None, None)
                if worker is None:
                    self._still_waiting(request, waiting)
                    continue
            else:
                worker = self._pick_constrained(shape, preferred, actor_id is not None, not held, constraint)
            if worker is None:
                if not self._could_ever_fit(shape, constraint):
                    # Its capacity died with worker ranks and no replacement comes: refuse it rather
                    # than let it wait for ever; the owner fails the actor or the tasks.
                    if constraint is not None and constraint[0] == "node":
                        why = (f"NodeAffinitySchedulingStrategy(node_id={self.node_hex(constraint[1])!r}, soft=False): "
                               f"no live worker rank of that node can hold {_describe(shape)}")
                    else:
                        why = (f"no live worker rank can hold {_describe(shape)}: the ranks that could have died, "
                               "and they are not replaced (replacement needs ULFM and is off with "
                               "MPIRT_REPLACE_RANKS=0, or failed: see the job's output)")
                    if actor_id is not None:
                        self._actors_waiting.pop(actor_id, None)
                        self.rt.send(source, ("actor_unplaceable", actor_id, why))
                    else:
                        self.rt.send(source, ("lease_unschedulable", key, why))
                    continue
                self._still_waiting(request, waiting)
                continue
            self._hold(worker, held, bundle)
            if actor_id is None:
                lease_id = next(self._lease_ids)
                self.leases[lease_id] = (worker, shape, bundle)
                self.rt.send(source, ("lease_grant", key, lease_id, worker))
            else:
                self._actors_waiting.pop(actor_id, None)
                self.actors[actor_id] = (worker, held, bundle)
                self.actors_on[worker] += 1
                self.rt.send(source, ("actor_placed", actor_id, worker))
        self.requests = waiting

    def _still_waiting(self, request, waiting):
        waiting.append(request)
        actor_id = request[4]
        if actor_id is not None and actor_id not in self._actors_waiting:
            self._actors_waiting[actor_id] = [request[0], time.monotonic(), False]

    def _tell_owners_of_waiting_actors(self):
        """Progress thread's ticker: an actor waiting long to be placed is not an error (resources may come
        free), but a silent wait looks like a hang: its owner is told once what it waits for (Ray's
        driver prints a similar warning about pending resource requests)."""
        now = time.monotonic()
        with self.rt.lock:
            waiting = {r[4]: r for r in self.requests if r[4] is not None}
            for actor_id, entry in list(self._actors_waiting.items()):
                request = waiting.get(actor_id)
                if request is None:
                    del self._actors_waiting[actor_id]     # placed or refused meanwhile, or its owner died
                    continue
                owner, since, told = entry
                if told or now - since < ACTOR_WAIT_NOTICE_S:
                    continue
                entry[2] = True
                self.rt.send(owner, ("actor_pending", actor_id, self._why_waiting(request), round(now - since)))

    def _why_waiting(self, request):
        shape, constraint = request[3] or request[2], request[6]
        free = self.available_totals()
        why = f"it needs {_describe(shape)} free on one worker rank; free now: {_describe(free)}"
        reserved = summed(summed(group.shapes) for group in self.groups.groups.values()
                          if group.state is not REMOVED and group.bundles)
        if reserved.get(CPU):
            why += f"; placement groups reserve {_describe(reserved)}"
        if constraint is not None and constraint[0] == "pg":
            why += f"; it must run in placement group {constraint[1]:036x}, bundle {constraint[2]}"
        return why

    def _pick_constrained(self, shape, preferred, actor, holds_nothing, constraint):
        """``_pick`` for "SPREAD" (nodes with most free CPUs first) and node affinity (the node's
        ranks only; a soft affinity to a node that could never hold ``shape`` places anywhere)."""
        if constraint[0] == "spread":
            return self._pick(shape, None, actor, holds_nothing, spread=True)
        _, node, soft = constraint
        on_node = [w for w in self.workers if self.rt.cluster.node_of.get(w) == node]
        if soft and not any(self.pool_of[w].could_fit(w, shape) for w in on_node):
            return self._pick(shape, preferred, actor, holds_nothing)
        return self._pick(shape, preferred, actor, holds_nothing, workers=on_node)

    def _pick(self, shape, preferred=None, actor=False, holds_nothing=False, workers=None, spread=False):
        """The worker rank to execute ``shape``: its node's pool must have it free (and the rank its
        rank-bound part).

        ``preferred`` (where the task's data is) wins if it fits and has room of its own (spare CPUs for the
        task, or all of its own for a task larger than one rank). Otherwise the rank with the most spare
        CPUs of its own (an idle executor before a busy one), then the node with the most free CPUs; ties
        broken round-robin to spread load.

        An actor goes to a fitting rank with the fewest actors first: actors of one rank share its
        interpreter lock (two busy actors on one rank run at half speed each). An actor that holds nothing
        while it lives (Ray's default: 1 CPU to be placed, 0 to run) needs ``shape`` free on some node, as
        in Ray, but may then go to any rank whose node's total fits it: a CPU that a lingering lease holds
        for a moment must not pile every new actor onto the other ranks.

        ``workers`` limits the choice to those ranks; ``spread`` puts the node with most free CPUs
        before the rank with most spare ones ("SPREAD")."""
        pool = self.pool_of.get(preferred) if workers is None else None
        if pool is not None and pool.fits_now(preferred, shape) \
                and pool.spare_cpus(preferred) + 1e-9 >= min(shape.get(CPU, 0.0), pool.own_cpus[preferred]):
            return preferred
        if workers is None and not actor and not spread and RANK_BOUND.isdisjoint(shape):
            return self._pick_pooled(shape)
        anywhere = actor and holds_nothing
        workers = self.workers if workers is None else workers
        if anywhere and not any(self.pool_of[w].fits_now(w, shape) for w in workers):
            return None
        best, best_key = None, None
        n = len(workers)
        for i in range(n):
            worker = workers[(self._round_robin + i) % n]
            pool = self.pool_of[worker]
            if not (pool.could_fit(worker, shape) if anywhere else pool.fits_now(worker, shape)):
                continue
            key = (-self.actors_on[worker] if actor else 0, round(pool.spare_cpus(worker), 6),
                   round(pool.free.get(CPU, 0.0), 6))
            if spread:
                key = (key[0], key[2], key[1])
            if best is None or key > best_key:
                best, best_key = worker, key
        if best is not None and workers is self.workers:
            self._round_robin = (self._position(best) + 1) % n
        return best

    def _rank_nodes(self, pool):
        """Keep ``pool``'s node in ``self.ranking`` from now on."""
        pool.on_change = self.ranking.update
        self.ranking.update(pool)

    def _pick_pooled(self, shape):
        """``_pick`` of a lease whose shape has only pooled resources (CPU, custom), by node instead of by rank:
        such a shape fits every rank of a node whose pool has it, so the best rank (most spare CPUs of its own,
        then the node with most free CPUs, ties to the first in round-robin order, as ``_pick``) is found from
        each node's cached ``top_spare`` and the ranks of the best nodes only. A scan of every rank took
        1.3 ms a lease at 1,000 worker ranks (``benchmarks/head_model.py``); the best nodes come from
        ``self.ranking``, kept up to date as work starts and ends, instead of a look at every node."""
        best_ranks = [pool.top_spare()[1] for pool in self.ranking.best(shape)]
        if not best_ranks:
            return None
        # Of each best node, its first top rank at or after the round-robin start (a node's ranks are in
        # self.workers' order: both were listed, and grow, in the same order), else its first one.
        # Only a node whose top ranks lie on both sides of the start needs a search among them.
        n, start, position = len(self.workers), self._round_robin, self._positions().__getitem__
        best, best_turn = None, n
        for ranks in best_ranks:
            first = position(ranks[0])
            if first >= start:
                worker, turn = ranks[0], first - start
            elif position(ranks[-1]) < start:
                worker, turn = ranks[0], first - start + n
            else:
                worker = ranks[bisect.bisect_left(ranks, start, key=position)]
                turn = position(worker) - start
            if turn < best_turn:
                best, best_turn = worker, turn
        self._round_robin = (position(best) + 1) % n
        return best

    def _position(self, worker):
        return self._positions()[worker]

    def _positions(self):
        """worker -> its position in ``self.workers``."""
        if self._worker_index is None:
            self._worker_index = {w: i for i, w in enumerate(self.workers)}
        return self._worker_index


def _describe(shape):
    return ", ".join(f"{name}={amount:g}" for name, amount in sorted(shape.items())) or "nothing"
