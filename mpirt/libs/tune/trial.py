"""A trial: one config of one experiment, its status, results and latest checkpoint."""
import numbers

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"


class Trial:
    def __init__(self, trial_id, name, config, resources, index=0):
        self.trial_id = trial_id
        self.trial_name = name
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
        self.local_path = None         # the trial's directory in the experiment
        self.restarts = 0

    @property
    def is_finished(self):
        return self.status in (TERMINATED, ERROR)

    def metric_value(self, metric, scope="last"):
        """This trial's ``metric``: its last value, or over all results (``scope`` max/min/avg/all)."""
        values = [r[metric] for r in self.results if isinstance(r.get(metric), numbers.Number)]
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
        raise ValueError(f"unknown scope {scope!r} (last, last-5-avg, last-10-avg, avg, max, min, all)")

    def __repr__(self):
        return self.trial_name
