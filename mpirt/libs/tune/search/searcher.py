"""The searcher interface (Ray's ``ray.tune.search.Searcher``) and what every wrapper shares.

A searcher suggests one config per trial and learns from results. Searchers that wrap an
optional package (Optuna, HyperOpt, BayesOpt, ...) import it when they are built and raise
Ray's message naming the package when it is missing (``MissingSearcherPackage``).
"""
import importlib

from .. import search_space


class MissingSearcherPackage(ImportError, AssertionError):
    """A searcher's optional package is not installed.

    Ray signals this with a failed ``assert`` (an ``AssertionError``); the natural thing
    to catch is ``ImportError``. This is both, with Ray's text.
    """


def import_optional(module, message):
    """``module`` imported, or ``MissingSearcherPackage(message)`` when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingSearcherPackage(message) from error


class Searcher:
    """Suggests configs one trial at a time and learns from their results."""

    FINISHED = "FINISHED"

    def __init__(self, metric=None, mode=None):
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        self._metric, self._mode = metric, mode

    # ``metric``/``mode`` as attributes, as in Ray; subclasses that skip __init__ still work.
    @property
    def metric(self):
        return getattr(self, "_metric", None)

    @metric.setter
    def metric(self, value):
        self._metric = value

    @property
    def mode(self):
        return getattr(self, "_mode", None)

    @mode.setter
    def mode(self, value):
        self._mode = value

    def set_search_properties(self, metric, mode, config, **spec):
        """Called once by tune.run with the experiment's metric, mode and param space."""
        if self.metric is None:
            self.metric = metric
        if self.mode is None:
            self.mode = mode
        return True

    def suggest(self, trial_id):
        """A config dict, None for 'not now' (e.g. a concurrency limit), or Searcher.FINISHED."""
        raise NotImplementedError

    def _no_space_error(self):
        """Ray's error for a searcher asked to suggest before it has a search space."""
        return ValueError(f"Trying to sample a configuration from {type(self).__name__}, but no search space has "
                          "been defined. Either pass the `space` argument when instantiating the search "
                          "algorithm, or pass a `param_space` to `tune.Tuner()`.")

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass

    def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
        """Tell the searcher about a config evaluated outside it (and on resume)."""
        raise NotImplementedError(f"{type(self).__name__} does not take evaluated points")

    def total_trials(self):
        """How many trials this searcher will suggest, if known (for the progress table)."""
        return None


def check_metric_mode(searcher):
    """Ray's UNDEFINED_METRIC_MODE, raised when a model-based searcher has no metric or mode."""
    if searcher.metric is None or searcher.mode is None:
        name = type(searcher).__name__
        raise ValueError(
            f"Trying to sample a configuration from {name}, but the `metric` ({searcher.metric}) or `mode` "
            f"({searcher.mode}) parameters have not been set. Either pass these arguments when instantiating the "
            "search algorithm, or pass them to `tune.TuneConfig()`.")


def searchable_leaves(space, searcher_name):
    """(path, domain) for every sampled value of ``space``; grids raise as in Ray (model-based
    searchers cannot expand them). ``sample_from`` values are left to be resolved per config."""
    leaves = []
    for path, value in search_space._walk(space):
        if search_space._is_grid(value):
            raise ValueError(f"Grid search parameters cannot be automatically converted to a {searcher_name} "
                             f"search space (config[{'/'.join(map(str, path))!r}]): use tune.choice() instead")
        if isinstance(value, search_space.Domain) and not isinstance(value, search_space.Function):
            leaves.append((path, value))
    return leaves


def label(path):
    return "/".join(map(str, path))


def build_config(space, values):
    """A copy of ``space`` with the searcher's ``values`` ({path: value}) filled in, and any
    ``sample_from`` resolved against them."""
    import copy
    import random
    config = copy.deepcopy(space)
    for path, value in values.items():
        search_space._assign(config, path, value)
    return search_space.resolve_domains(config, random.Random())
