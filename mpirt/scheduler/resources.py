"""Resource requests ("shapes"), and the cluster as node pools that worker ranks execute for."""
import numbers

from ..core.protocol import DRIVER_RANK, HEAD_RANK
from ..exceptions import InfeasibleResourceError

CPU = "CPU"
GPU = "GPU"


def make_shape(num_cpus=1, num_gpus=0, resources=None):
    """Validate a request and return it as ``{name: amount}`` without zero entries.

    ``None`` means the default (1 CPU, no GPU), as in Ray. Errors are Ray's: TypeError for an
    amount that is not a number, ValueError for a negative one or a fraction above 1."""
    shape = {}
    for name, label, amount in ((CPU, "num_cpus", 1 if num_cpus is None else num_cpus),
                                (GPU, "num_gpus", num_gpus or 0)):
        _check_amount(label, amount)
        if amount:
            shape[name] = float(amount)
    for name, amount in (resources or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resource names must be non-empty strings, got {name!r}")
        if name in (CPU, GPU):
            raise ValueError(f"Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' in "
                             f"'resources' keyword: use num_cpus/num_gpus instead of resources={{'{name}': ...}}")
        _check_amount(f"resources[{name!r}]", amount)
        if amount:
            shape[name] = float(amount)
    return shape


def _check_amount(label, amount):
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(f"The type of keyword '{label}' must be int or float, but received type "
                        f"{type(amount).__name__}: {label}={amount!r}")
    if amount < 0:
        raise ValueError(f"The keyword '{label}' only accepts None, 0 or a positive number, got {amount!r}")
    if amount > 1 and amount != int(amount):
        raise ValueError(f"{label}: resource quantities >1 must be whole numbers, got {amount!r} "
                         f"(ask for at most 1, or a whole number)")


def shape_key(shape):
    return tuple(sorted(shape.items()))


# Resources that belong to one process rather than to its node's pool: a worker process sees only
# its own GPUs (CUDA_VISIBLE_DEVICES is read once per process, and tasks are threads of it), so the
# GPU part of a request must fit the GPUs of the one rank that runs it.
RANK_BOUND = frozenset((GPU,))


def node_of_ranks(config, ranks):
    """``{rank: node}`` for ``ranks``, the node named by its lowest rank, grouped as the object
    store groups them (``store/arena.py``): ``ranks_per_node`` emulated nodes, else hostnames."""
    joined = config.get("joined_nodes") or {}     # ranks that replaced dead ones (replacement.py)
    per_node = config.get("ranks_per_node")
    if per_node:
        return {rank: joined.get(rank, rank // per_node * per_node) for rank in ranks}
    info = config.get("rank_info") or {}
    first_on_host = {}
    for rank in sorted(info):
        first_on_host.setdefault(info[rank]["hostname"], rank)
    return {rank: joined[rank] if rank in joined else first_on_host.get(info[rank]["hostname"], rank)
            if rank in info else rank for rank in ranks}


class ClusterView:
    """What every rank knows of the cluster: what each worker rank adds to its node's pool.

    Ray's model: a node has one pool of resources and its worker processes (here its worker
    ranks) execute what the pool grants. A request fits a rank if the rank's node has it in
    total and, for rank-bound resources (GPUs), the rank itself has it.
    """

    def __init__(self, resources_by_rank, config=None):
        self.resources_by_rank = {int(r): dict(res) for r, res in resources_by_rank.items()}
        # Every rank but the driver and the head executes tasks, even one offering nothing
        # (``init(num_cpus=0)``: it runs the 0-CPU tasks and actors).
        self.worker_ranks = sorted(r for r in self.resources_by_rank if r not in (DRIVER_RANK, HEAD_RANK))
        self.node_of = node_of_ranks(config or {}, self.worker_ranks)
        self._feasible = set()  # shape keys known to fit somewhere (cleared when a rank dies)
        self._node_totals = None
        self.lost = {}          # dead worker rank -> what it offered (its replacement offers the same)
        self.replacements_expected = lambda: False   # replacement.py says whether lost ranks come back

    def remove_rank(self, rank):
        """``rank`` died: it offers nothing any more."""
        if rank in self.resources_by_rank:
            if rank in self.worker_ranks:
                self.lost[rank] = self.resources_by_rank[rank]
            self.resources_by_rank[rank] = {}
        if rank in self.worker_ranks:
            self.worker_ranks.remove(rank)
        self._feasible.clear()
        self._node_totals = None

    def add_rank(self, rank, resources, node):
        """A worker rank that joined (``replacement.py``) offers ``resources`` to ``node``."""
        self.resources_by_rank[rank] = dict(resources)
        self.worker_ranks = sorted(self.worker_ranks + [rank])
        self.node_of[rank] = node
        self._node_totals = None

    def totals(self):
        return summed(self.resources_by_rank.values())

    def node_totals(self):
        """``{node: resources}`` of the nodes with live worker ranks."""
        if self._node_totals is None:
            by_node = {}
            for rank in self.worker_ranks:
                by_node.setdefault(self.node_of[rank], []).append(self.resources_by_rank[rank])
            self._node_totals = {node: summed(parts) for node, parts in by_node.items()}
        return self._node_totals

    def rank_could_run(self, rank, shape, node_totals=None):
        """Whether ``rank`` could ever execute ``shape`` (its node's total, its own GPUs)."""
        if rank not in self.node_of or rank not in self.worker_ranks:
            return False
        node_total = (node_totals or self.node_totals())[self.node_of[rank]]
        own = self.resources_by_rank[rank]
        return all((own if name in RANK_BOUND else node_total).get(name, 0.0) + 1e-9 >= amount
                   for name, amount in shape.items())

    def _replacements_could_run(self, shape):
        """Whether the replacements on their way for dead worker ranks (``replacement.py``), each
        offering what its dead rank offered on the same node, could run ``shape``."""
        if not self.lost or not self.replacements_expected():
            return False
        totals = {node: dict(res) for node, res in self.node_totals().items()}
        for rank, res in self.lost.items():
            node = self.node_of[rank]
            totals[node] = summed([totals.get(node, {}), res])
        return any(all((own if name in RANK_BOUND else totals[self.node_of[rank]]).get(name, 0.0) + 1e-9 >= amount
                       for name, amount in shape.items())
                   for rank, own in self.lost.items())

    def check_feasible(self, shape, what="task", key=None):
        """Raise InfeasibleResourceError if no node (no rank, for GPUs) could ever run ``shape``.

        Ray keeps such a request pending with a warning; with no autoscaler to add nodes, mpirt
        says so at submission instead."""
        if key is not None and key in self._feasible:
            return
        node_totals = self.node_totals()
        if any(self.rank_could_run(rank, shape, node_totals) for rank in self.worker_ranks) \
                or self._replacements_could_run(shape):
            if key is not None:
                self._feasible.add(key)
            return
        have = self.totals()
        for name, amount in shape.items():
            if name in RANK_BOUND:
                best = max((self.resources_by_rank[r].get(name, 0.0) for r in self.worker_ranks), default=0.0)
                on_node = max((res.get(name, 0.0) for res in node_totals.values()), default=0.0)
                if best + 1e-9 < amount:
                    raise InfeasibleResourceError(
                        f"{what} asks for {name}={amount:g}, but no worker rank has that many {name}s of its "
                        f"own (most on one rank: {best:g}; most on one node: {on_node:g}; cluster resources: "
                        f"{_fmt(have)}). A task's {name}s must belong to the rank that runs it (each worker "
                        f"process sees only its own through CUDA_VISIBLE_DEVICES): ask for at most {best:g}, "
                        "or start fewer worker ranks per node with more GPUs each (MPIRT_NUM_GPUS, "
                        "init(num_gpus=...) under mpirun)")
            else:
                best = max((res.get(name, 0.0) for res in node_totals.values()), default=0.0)
                if best + 1e-9 < amount:
                    raise InfeasibleResourceError(
                        f"{what} asks for {name}={amount:g}, but no node has that much "
                        f"(largest on one node: {best:g}; cluster total: {have.get(name, 0.0):g}; "
                        f"cluster resources: {_fmt(have)})")
        raise InfeasibleResourceError(
            f"{what} asks for {_fmt(shape)} together, but no single node offers all of it "
            f"(nodes: {', '.join(_fmt(res) for _, res in sorted(node_totals.items()))}; "
            f"GPUs must also be on the one rank that runs it)")


def summed(tables):
    total = {}
    for res in tables:
        for name, amount in res.items():
            total[name] = total.get(name, 0.0) + amount
    return total


def _fmt(res):
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(res.items())) + "}"
