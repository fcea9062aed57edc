"""A trial: one config of one experiment, its status, results and latest checkpoint."""
import numbers

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"


class Trial:
    """One trial as the loop, schedulers, searchers and callbacks see it (``ray.tune.experiment.Trial``)."""

    PENDING, RUNNING, PAUSED, TERMINATED, ERROR = PENDING, RUNNING, PAUSED, TERMINATED, ERROR

    def __init__(self, trial_id, name, config, resources, index=0):
        self.trial_id = trial_id
        self.trial_name = name
        self.dirname = name            # the trial's directory in the experiment (trial_dirname_creator)
        self.index = index
        self.config = config
        self.resources = resources
        self.status = PENDING
        self.results = []              # every result, in order
        self.last_result = {}
        self.latest_checkpoint = None  # Checkpoint, on the driver
        self.checkpoint_iteration = 0
        self.num_failures = 0
        self.error = None              # traceback text of the last failure
        self.exception = None          # the exception itself, while this process has it
        self.checkpoints = []          # [(iteration, checkpoint file)] kept on disk, oldest first
        self.local_path = None         # the trial's directory in the experiment
        self.restarts = 0
        self.experiment_tag = str(index)

    @property
    def placement_group_factory(self):
        """The trial's resource request as Ray states it: its PlacementGroupFactory (a resource dict
        gives a one-bundle factory; mpirt runs such trials as plain actors, without a group). None for
        a trial that asks for nothing at all (no factory can say that)."""
        from .execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory
        if isinstance(self.resources, PlacementGroupFactory):
            return self.resources
        try:
            return resource_dict_to_pg_factory(self.resources)
        except ValueError:
            return None

    @property
    def path(self):
        return self.local_path

    @property
    def checkpoint(self):
        return self.latest_checkpoint

    @property
    def is_finished(self):
        return self.status in (TERMINATED, ERROR)

    def metric_value(self, metric, scope="last", mode=None):
        """This trial's ``metric``: its last value, or over all results (``scope`` avg, last-5-avg,
        last-10-avg; ``all`` is its best by ``mode``, and ``max``/``min`` as named)."""
        values = [v for v in (lookup_metric(r, metric) for r in self.results) if isinstance(v, numbers.Number)]
        if not values:
            return None
        if scope in ("last", "last-5-avg", "last-10-avg"):
            span = {"last": 1, "last-5-avg": 5, "last-10-avg": 10}[scope]
            tail = values[-span:]
            return sum(tail) / len(tail)
        if scope == "avg":
            return sum(values) / len(values)
        if scope == "max":
            return max(values)
        if scope == "min":
            return min(values)
        if scope == "all":
            return max(values) if mode == "max" else min(values)
        raise ValueError(f"unknown scope {scope!r} (last, last-5-avg, last-10-avg, avg, max, min, all)")

    def __str__(self):
        return self.trial_name

    def __repr__(self):
        return self.trial_name


def lookup_metric(result, key):
    """``result[key]``; a ``a/b`` key reaches into nested dicts, as Ray's flattened metrics do."""
    if key in result:
        return result[key]
    node = result
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
