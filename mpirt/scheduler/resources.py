"""Resource requests ("shapes") and the cluster's per-rank resource table."""
import numbers

CPU = "CPU"
GPU = "GPU"


def make_shape(num_cpus=1, num_gpus=0, resources=None):
    """Validate a request and return it as ``{name: amount}`` without zero entries."""
    shape = {}
    for name, label, amount in ((CPU, "num_cpus", num_cpus), (GPU, "num_gpus", num_gpus)):
        _check_amount(label, amount)
        if amount:
            shape[name] = float(amount)
    for name, amount in (resources or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resource names must be non-empty strings, got {name!r}")
        if name in (CPU, GPU):
            raise ValueError(f"use num_cpus/num_gpus instead of resources={{'{name}': ...}}")
        _check_amount(f"resources[{name!r}]", amount)
        if amount:
            shape[name] = float(amount)
    return shape


def _check_amount(label, amount):
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or amount < 0:
        raise ValueError(f"{label} must be a non-negative number, got {amount!r}")
    if amount > 1 and amount != int(amount):
        raise ValueError(f"{label}: amounts above 1 must be whole numbers, got {amount!r}")


def shape_key(shape):
    return tuple(sorted(shape.items()))


def fits(available, shape):
    for name, amount in shape.items():
        if available.get(name, 0.0) + 1e-9 < amount:
            return False
    return True


class ClusterView:
    """What every rank knows of the cluster: the resources each rank offers."""

    def __init__(self, resources_by_rank):
        self.resources_by_rank = {int(r): dict(res) for r, res in resources_by_rank.items()}
        self.worker_ranks = sorted(r for r, res in self.resources_by_rank.items() if res)
        self._feasible = set()  # shape keys known to fit somewhere (cleared when a rank dies)

    def remove_rank(self, rank):
        """``rank`` died: it offers nothing any more."""
        if rank in self.resources_by_rank:
            self.resources_by_rank[rank] = {}
        if rank in self.worker_ranks:
            self.worker_ranks.remove(rank)
        self._feasible.clear()

    def totals(self):
        total = {}
        for res in self.resources_by_rank.values():
            for name, amount in res.items():
                total[name] = total.get(name, 0.0) + amount
        return total

    def check_feasible(self, shape, what="task", key=None):
        """Raise if no single rank could ever run ``shape``."""
        if key is not None and key in self._feasible:
            return
        if any(fits(res, shape) for res in self.resources_by_rank.values()):
            if key is not None:
                self._feasible.add(key)
            return
        from ..exceptions import InfeasibleResourceError

        have = self.totals()
        per_rank = max((res.get(n, 0.0) for res in self.resources_by_rank.values() for n in shape), default=0)
        for name, amount in shape.items():
            best = max((res.get(name, 0.0) for res in self.resources_by_rank.values()), default=0.0)
            if best + 1e-9 < amount:
                raise InfeasibleResourceError(
                    f"{what} asks for {name}={amount:g}, but no rank has that much "
                    f"(largest on one rank: {best:g}; cluster total: {have.get(name, 0.0):g}; "
                    f"cluster resources: {_fmt(have)})"
                )
        raise InfeasibleResourceError(
            f"{what} asks for {_fmt(shape)} together, but no single rank offers all of it "
            f"(cluster resources: {_fmt(have)}, max per rank {per_rank:g})"
        )


def _fmt(res):
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(res.items())) + "}"
