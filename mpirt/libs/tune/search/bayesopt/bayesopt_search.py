"""``BayesOptSearch``: a Gaussian process (the ``bayesian-optimization`` package) proposes configs.

Only continuous ``tune.uniform`` parameters can be searched (as in Ray). The first
``random_search_steps`` configs are sampled uniformly; once their results are in, each new
config maximizes the acquisition function over the results so far. BayesOpt maximizes, so a
``mode="min"`` metric is negated.
"""
import logging
import math

from ... import search_space
from ..searcher import Searcher, build_config, check_metric_mode, import_optional, label, searchable_leaves

logger = logging.getLogger(__name__)


class BayesOptSearch(Searcher):
    """Needs ``pip install bayesian-optimization`` (Ray names 1.4.3)."""

    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, utility_kwargs=None,
                 random_state=42, random_search_steps=10, verbose=0, patience=5, skip_duplicate=True,
                 analysis=None, repeat_float_precision=5):
        self._byo = import_optional("bayes_opt", "BayesOpt must be installed!. You can install BayesOpt with the "
                                                 "command: `pip install bayesian-optimization==1.4.3`.")
        super().__init__(metric, mode)
        if isinstance(repeat_float_precision, bool) or not isinstance(repeat_float_precision, int):
            raise TypeError("repeat_float_precision must be an integer.")
        if repeat_float_precision < 0:
            raise ValueError("repeat_float_precision must be non-negative.")
        if patience is not None and patience <= 0:
            raise ValueError("patience must be set to a value greater than 0!")
        self._utility_kwargs = {"kind": "ucb", "kappa": 2.576, "xi": 0.0, **(utility_kwargs or {})}
        self._random_state = random_state
        self._random_steps = random_search_steps
        self._verbose = verbose
        self._patience = patience
        self._skip_duplicate = skip_duplicate
        self._precision = repeat_float_precision
        self._points = [dict(p) for p in points_to_evaluate or []]
        self._optimizer = None
        self._live = {}
        self._seen = {}
        self._suggested_random = 0
        self._registered = 0
        if space is not None:
            self._setup(space)
        if analysis is not None:
            raise NotImplementedError("BayesOptSearch(analysis=...) is not supported by mpirt: pass the earlier "
                                      "results as points_to_evaluate or resume the experiment instead")

    def set_search_properties(self, metric, mode, config, **spec):
        if self._optimizer is not None:
            return False
        super().set_search_properties(metric, mode, config)
        self._setup(config)
        return True

    def _setup(self, space):
        self._space = space
        self._leaves = searchable_leaves(space, "BayesOpt")
        bounds = {}
        for path, domain in self._leaves:
            if not isinstance(domain, search_space.Float):
                raise ValueError(f"BayesOpt does not support parameters of type `{type(domain).__name__}` "
                                 f"(config[{label(path)!r}] = {domain!r}): only float ranges (tune.uniform)")
            if domain.q or domain.log:
                logger.warning("BayesOpt samples config[%r] uniformly between its bounds: it supports neither "
                               "quantization nor log sampling", label(path))
            bounds[label(path)] = (domain.lower, domain.upper)
        self._bounds = bounds
        self._optimizer = self._byo.BayesianOptimization(f=None, pbounds=bounds, verbose=self._verbose,
                                                         random_state=self._random_state)
        import numpy as np
        self._rng = np.random.RandomState(self._random_state)

    def _utility(self):
        return self._byo.UtilityFunction(**self._utility_kwargs)

    def suggest(self, trial_id):
        if self._optimizer is None:
            check_metric_mode(self)
            raise self._no_space_error()
        check_metric_mode(self)
        if self._points:
            flat = {label(p): v for p, v in search_space._walk(self._points.pop(0))}
            params = {name: flat[name] for name in self._bounds}
        elif self._suggested_random < self._random_steps:
            self._suggested_random += 1
            params = {name: float(self._rng.uniform(low, high)) for name, (low, high) in self._bounds.items()}
        elif self._registered < self._random_steps:
            return None                      # the random steps' results are not all in yet
        else:
            params = self._optimizer.suggest(self._utility())
        key = tuple(round(params[name], self._precision) for name in sorted(params))
        self._seen[key] = self._seen.get(key, 0) + 1
        if self._patience is not None and self._seen[key] > self._patience:
            logger.warning("BayesOptSearch is stopping early: a configuration was suggested more than `patience` "
                           "(%d) times, which usually means the search has converged.", self._patience)
            return Searcher.FINISHED
        if self._seen[key] > 1 and self._skip_duplicate:
            return None
        self._live[trial_id] = params
        return build_config(self._space, {path: params[label(path)] for path, _ in self._leaves})

    def on_trial_complete(self, trial_id, result=None, error=False):
        params = self._live.pop(trial_id, None)
        if params is None or error or not result or self.metric not in result:
            if params is not None:
                self._registered += 1        # a failed random step must not hold the search up
            return
        self._register(params, result[self.metric])

    def _register(self, params, value):
        self._registered += 1
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return
        self._optimizer.register(params=params, target=value if self.mode == "max" else -value)

    def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
        if error:
            return
        flat = {label(p): v for p, v in search_space._walk(parameters)}
        self._register({name: flat[name] for name in self._bounds}, value)
