"""The head scheduler (rank 1): tracks free resources per rank and grants leases.

A lease is one slot of a resource shape on one worker rank. Submitters send
their tasks straight to leased workers and return the lease when they run out
of work, so the head sees one message pair per lease, not per task. A task that
blocks in ``get`` hands its CPU back (``cpu_release``) and takes it again when
it resumes (``cpu_reacquire``), which may briefly oversubscribe its rank.
"""
import collections
import itertools

from .resources import fits


class HeadScheduler:
    def __init__(self, runtime, cluster):
        self.rt = runtime
        self.total = {r: dict(cluster.resources_by_rank[r]) for r in cluster.worker_ranks}
        self.available = {r: dict(res) for r, res in self.total.items()}
        # (submitter, shape_key, shape to fit, shape to hold, actor_id or None for a lease, preferred rank)
        self.requests = collections.deque()
        self.leases = {}                     # lease_id -> (worker, shape)
        self.actors = {}                     # actor_id -> (worker, shape held for its life)
        self.actors_on = collections.Counter()  # worker -> live actors placed there
        self.names = {}                      # (namespace, name) -> actor handle state
        self.name_of_actor = {}              # actor_id -> (namespace, name)
        self._lease_ids = itertools.count(1)
        self._round_robin = 0
        runtime.handlers.update(
            lease_req=self._on_lease_request,
            lease_ret=self._on_lease_return,
            cpu_release=self._on_cpu_release,
            cpu_reacquire=self._on_cpu_reacquire,
            resources_query=self._on_resources_query,
            actor_place=self._on_actor_place,
            actor_dead=self._on_actor_dead,
            actor_name_query=self._on_actor_name_query,
        )
        runtime.failures.handlers.append(self._on_rank_dead)

    def _on_lease_request(self, source, key, shape, preferred=None):
        self.requests.append((source, key, shape, shape, None, preferred))
        self._grant()

    def _on_actor_place(self, source, actor_id, placement, held):
        """An actor needs ``placement`` free to be placed and holds ``held`` while it lives."""
        self.requests.append((source, None, placement, held, actor_id, None))
        self._grant()

    def _on_actor_dead(self, source, actor_id):
        placed = self.actors.pop(actor_id, None)
        if placed is not None:
            self.actors_on[placed[0]] -= 1
            if placed[0] in self.available:
                self._adjust(placed[0], placed[1], +1)
        name = self.name_of_actor.pop(actor_id, None)
        if name is not None:
            self.names.pop(name, None)
        self._grant()

    def _on_actor_name_query(self, source, request_id, namespace, name, state):
        """Look up a named actor (``state`` None) or register one unless the name is taken."""
        key = (namespace, name)
        existing = self.names.get(key)
        if state is not None and existing is None:
            self.names[key] = state
            self.name_of_actor[state[0]] = key
        self.rt.send(source, ("query_reply", request_id, existing))

    def _on_rank_dead(self, rank):
        """A worker died: grant nothing there again; its leases and actors are gone with it
        (their owners retry the tasks and restart the actors)."""
        self.available.pop(rank, None)
        self.total.pop(rank, None)
        for lease_id in [i for i, (worker, _) in self.leases.items() if worker == rank]:
            del self.leases[lease_id]
        for actor_id in [a for a, (worker, _) in self.actors.items() if worker == rank]:
            del self.actors[actor_id]
        self.actors_on.pop(rank, None)
        self.requests = collections.deque(r for r in self.requests if r[0] != rank)
        self._grant()

    def _on_lease_return(self, source, lease_id):
        if lease_id not in self.leases:
            return
        worker, shape = self.leases.pop(lease_id)
        self._adjust(worker, shape, +1)
        self._grant()

    def _on_cpu_release(self, source, shape):
        self._adjust(source, shape, +1)
        self._grant()

    def _on_cpu_reacquire(self, source, shape):
        self._adjust(source, shape, -1)

    def _on_resources_query(self, source, request_id):
        self.rt.send(source, ("query_reply", request_id, self.available_totals()))

    def available_totals(self):
        total = {}
        for res in self.available.values():
            for name, amount in res.items():
                total[name] = total.get(name, 0.0) + max(amount, 0.0)
        return total

    def _adjust(self, worker, shape, sign):
        res = self.available.get(worker)
        if res is None:          # the worker died
            return
        for name, amount in shape.items():
            res[name] = res.get(name, 0.0) + sign * amount

    def _grant(self):
        if not self.requests:
            return
        waiting = collections.deque()
        workers = list(self.available)
        while self.requests:
            request = self.requests.popleft()
            source, key, shape, held, actor_id, preferred = request
            worker = self._pick(workers, shape, preferred, actor_id is not None, not held)
            if worker is None:
                waiting.append(request)
                continue
            self._adjust(worker, held, -1)
            if actor_id is None:
                lease_id = next(self._lease_ids)
                self.leases[lease_id] = (worker, shape)
                self.rt.send(source, ("lease_grant", key, lease_id, worker))
            else:
                self.actors[actor_id] = (worker, held)
                self.actors_on[worker] += 1
                self.rt.send(source, ("actor_placed", actor_id, worker))
        self.requests = waiting

    def _pick(self, workers, shape, preferred=None, actor=False, holds_nothing=False):
        """``preferred`` (where the task's data is) if it fits, else the fitting rank
        with the most free CPU; ties broken round-robin to spread load.

        An actor goes to a fitting rank with the fewest actors first: actors of one rank
        share its interpreter lock (two busy actors on one rank run at half speed each).
        An actor that holds nothing while it lives (Ray's default: 1 CPU to be placed, 0
        to run) needs ``shape`` free on some rank, as in Ray, but may then go to any rank
        whose total fits it: a CPU that a lingering lease holds for a moment must not
        pile every new actor onto the other ranks."""
        if preferred in self.available and fits(self.available[preferred], shape):
            return preferred
        candidates = self.available
        if actor and holds_nothing:
            if not any(fits(res, shape) for res in self.available.values()):
                return None
            candidates = self.total
        best, best_key = None, None
        n = len(workers)
        for i in range(n):
            worker = workers[(self._round_robin + i) % n]
            res = self.available[worker]
            if fits(candidates[worker], shape):
                key = (-self.actors_on[worker] if actor else 0, res.get("CPU", 0.0))
                if best is None or key[0] > best_key[0] or (key[0] == best_key[0] and key[1] > best_key[1] + 1e-9):
                    best, best_key = worker, key
        if best is not None:
            self._round_robin = (workers.index(best) + 1) % n
        return best
