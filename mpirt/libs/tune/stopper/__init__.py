"""Stoppers (``ray.tune.stopper``): decide when a trial, or the whole experiment, stops.

``RunConfig(stop=...)`` takes a dict of thresholds, a function ``(trial_id, result) -> bool``
or a ``Stopper``. A Stopper's ``__call__`` stops one trial; its ``stop_all()``, asked after
every result, stops every trial and starts no new one.
"""
import collections
import datetime
import logging
import time

import numpy as np

from ..trial import lookup_metric

logger = logging.getLogger(__name__)


class Stopper:
    """Subclass and define ``__call__(trial_id, result) -> bool`` and ``stop_all() -> bool``."""

    def __call__(self, trial_id, result):
        raise NotImplementedError

    def stop_all(self):
        raise NotImplementedError


class CombinedStopper(Stopper):
    """Stops a trial (or everything) when any of ``stoppers`` says so."""

    def __init__(self, *stoppers):
        for stopper in stoppers:
            if not isinstance(stopper, Stopper):
                raise TypeError(f"CombinedStopper takes Stopper objects, got {stopper!r}")
        self._stoppers = stoppers

    def __call__(self, trial_id, result):
        return any([stopper(trial_id, result) for stopper in self._stoppers])

    def stop_all(self):
        return any([stopper.stop_all() for stopper in self._stoppers])


class NoopStopper(Stopper):
    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return False


class FunctionStopper(Stopper):
    """A function ``(trial_id, result) -> bool`` as a Stopper."""

    def __init__(self, function):
        self._fn = function

    def __call__(self, trial_id, result):
        return self._fn(trial_id, result)

    def stop_all(self):
        return False

    @classmethod
    def is_valid_function(cls, fn):
        is_function = callable(fn) and not isinstance(fn, Stopper)
        if is_function and hasattr(fn, "stop_all"):
            raise ValueError("Stop object must be ray.tune.Stopper subclass to be detected correctly.")
        return is_function


class MaximumIterationStopper(Stopper):
    """Stops each trial after ``max_iter`` results."""

    def __init__(self, max_iter):
        self._max_iter = max_iter
        self._iter = collections.defaultdict(int)

    def __call__(self, trial_id, result):
        self._iter[trial_id] += 1
        return self._iter[trial_id] >= self._max_iter

    def stop_all(self):
        return False


class TimeoutStopper(Stopper):
    """Stops the whole experiment ``timeout`` seconds (or a ``timedelta``) after its first check."""

    def __init__(self, timeout):
        if isinstance(timeout, datetime.timedelta):
            self._timeout_seconds = timeout.total_seconds()
        elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            self._timeout_seconds = timeout
        else:
            raise ValueError("`timeout` parameter has to be either a number or a `datetime.timedelta` object. "
                             f"Found: {type(timeout)}")
        self._budget = self._timeout_seconds
        self._last_check = None

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        now = time.time()
        if self._last_check:
            self._budget -= now - self._last_check
        self._last_check = now
        if self._budget <= 0:
            logger.info("Reached timeout of %s seconds. Stopping all trials.", self._timeout_seconds)
            return True
        return False

    def __setstate__(self, state):
        state["_last_check"] = None
        self.__dict__.update(state)


class TrialPlateauStopper(Stopper):
    """Stops a trial once the std of its last ``num_results`` values of ``metric`` is below ``std``
    (after ``grace_period`` results, and once it passed ``metric_threshold`` if given)."""

    def __init__(self, metric, std=0.01, num_results=4, grace_period=4, metric_threshold=None, mode=None):
        self._metric, self._mode = metric, mode
        self._std = std
        self._num_results = num_results
        self._grace_period = grace_period
        self._metric_threshold = metric_threshold
        if self._metric_threshold and mode not in ("min", "max"):
            raise ValueError("When specifying a `metric_threshold`, the `mode` argument has to be one of "
                             f"[min, max]. Got: {mode}")
        self._iter = collections.defaultdict(int)
        self._trial_results = collections.defaultdict(lambda: collections.deque(maxlen=self._num_results))

    def __call__(self, trial_id, result):
        value = result.get(self._metric)
        self._trial_results[trial_id].append(value)
        self._iter[trial_id] += 1
        if self._iter[trial_id] < self._grace_period:
            return False
        if len(self._trial_results[trial_id]) < self._num_results:
            return False
        if self._metric_threshold is not None:
            if self._mode == "min" and value > self._metric_threshold:
                return False
            if self._mode == "max" and value < self._metric_threshold:
                return False
        try:
            current_std = float(np.std(list(self._trial_results[trial_id])))
        except Exception:  # noqa: BLE001 - non-numeric values never plateau
            current_std = float("inf")
        return current_std < self._std

    def stop_all(self):
        return False


class ExperimentPlateauStopper(Stopper):
    """Stops the experiment once the ``top`` best values of ``metric`` (over all trials) have a
    std below ``std`` for ``patience`` more results."""

    def __init__(self, metric, std=0.001, top=10, mode="min", patience=0):
        if mode not in ("min", "max"):
            raise ValueError("The mode parameter can only be either min or max.")
        if not isinstance(top, int) or top <= 1:
            raise ValueError("Top results to consider must be a positive integer greater than one.")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError("Patience must be a strictly positive integer.")
        if not isinstance(std, float) or std <= 0:
            raise ValueError("The standard deviation must be a strictly positive float number.")
        self._mode, self._metric = mode, metric
        self._patience = patience
        self._iterations = 0
        self._std = std
        self._top = top
        self._top_values = []

    def __call__(self, trial_id, result):
        self._top_values.append(result[self._metric])
        ordered = sorted(self._top_values)
        self._top_values = ordered[: self._top] if self._mode == "min" else ordered[-self._top:]
        self._iterations = self._iterations + 1 if self.has_plateaued() else 0
        return self.stop_all()

    def has_plateaued(self):
        return len(self._top_values) == self._top and float(np.std(self._top_values)) <= self._std

    def stop_all(self):
        return self.has_plateaued() and self._iterations >= self._patience


class DictStopper(Stopper):
    """``stop={"metric": threshold, ...}``: a trial stops once any metric reaches its threshold."""

    def __init__(self, criteria):
        self.criteria = dict(criteria)

    def missing(self, result):
        return [key for key in self.criteria if lookup_metric(result, key) is None]

    def __call__(self, trial_id, result):
        for key, threshold in self.criteria.items():
            value = lookup_metric(result, key)
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value >= threshold:
                return True
        return False

    def stop_all(self):
        return False


def as_stopper(stop):
    """What ``stop=`` means as one Stopper (None when there is nothing to stop on)."""
    import numbers
    if stop is None:
        return None
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, list):
        if not all(isinstance(s, Stopper) for s in stop):
            raise ValueError("If you pass a list as the `stop` argument to `tune.RunConfig()`, each element must be "
                             f"an instance of `tune.stopper.Stopper`. Got {[type(s) for s in stop]}.")
        return CombinedStopper(*stop)
    if isinstance(stop, dict):
        for key, threshold in stop.items():
            if not isinstance(threshold, numbers.Number) or isinstance(threshold, bool):
                raise TypeError(f"stop[{key!r}] must be a number (stop once the metric reaches it), "
                                f"got {threshold!r}")
        return DictStopper(stop)
    if callable(stop):
        if FunctionStopper.is_valid_function(stop):
            return FunctionStopper(stop)
    raise ValueError(f"Invalid stop criteria: {stop}. Must be a callable or dict. Got {type(stop)}.")


__all__ = ["Stopper", "CombinedStopper", "ExperimentPlateauStopper", "FunctionStopper", "MaximumIterationStopper",
           "NoopStopper", "TimeoutStopper", "TrialPlateauStopper"]
