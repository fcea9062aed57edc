"""Search algorithms: where trial configs come from.

``BasicVariantGenerator`` expands grids and samples domains (Ray's default
grid/random search). ``OptunaSearch`` asks Optuna's TPE sampler for each new
config and tells it each finished trial's metric.
"""
import random

from . import search_space


class Searcher:
    """Suggests configs one trial at a time and learns from their results."""

    FINISHED = "FINISHED"
    metric = None
    mode = None

    def set_search_properties(self, metric, mode, config):
        """Called once by tune.run with the experiment's metric, mode and param space."""
        if self.metric is None:
            self.metric = metric
        if self.mode is None:
            self.mode = mode
        return True

    def suggest(self, trial_id):
        """A config dict, None for 'not now' (e.g. a concurrency limit), or Searcher.FINISHED."""
        raise NotImplementedError

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass

    def total_trials(self):
        """How many trials this searcher will suggest, if known (for the progress table)."""
        return None


class BasicVariantGenerator(Searcher):
    """Grid search over ``grid_search`` values times ``num_samples`` random samples of the domains."""

    def __init__(self, random_state=None):
        self._rng = random.Random(random_state)
        self._variants = None

    def set_search_properties(self, metric, mode, config, num_samples=1):
        super().set_search_properties(metric, mode, config)
        self._variants = list(search_space.generate_variants(config, num_samples, self._rng))
        self._next = 0
        return True

    def suggest(self, trial_id):
        if self._next >= len(self._variants):
            return Searcher.FINISHED
        config = self._variants[self._next]
        self._next += 1
        return config

    def skip(self, count):
        """On resume: the first ``count`` variants were already made into trials."""
        self._next = min(self._next + count, len(self._variants))

    def total_trials(self):
        return len(self._variants)


class ConcurrencyLimiter(Searcher):
    """Wraps a searcher so that at most ``max_concurrent`` of its trials are live at once."""

    def __init__(self, searcher, max_concurrent):
        if max_concurrent < 1:
            raise ValueError(f"ConcurrencyLimiter needs max_concurrent >= 1, got {max_concurrent}")
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self._live = set()

    def set_search_properties(self, metric, mode, config, **kwargs):
        self.metric, self.mode = metric, mode
        return self.searcher.set_search_properties(metric, mode, config, **kwargs)

    def suggest(self, trial_id):
        if len(self._live) >= self.max_concurrent:
            return None
        config = self.searcher.suggest(trial_id)
        if isinstance(config, dict):
            self._live.add(trial_id)
        return config

    def on_trial_result(self, trial_id, result):
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self._live.discard(trial_id)
        self.searcher.on_trial_complete(trial_id, result, error)

    def total_trials(self):
        return self.searcher.total_trials()


class OptunaSearch(Searcher):
    """Optuna's sampler (TPE by default) proposes configs; needs ``pip install optuna``."""

    def __init__(self, space=None, metric=None, mode=None, sampler=None, seed=None):
        try:
            import optuna
        except ImportError as error:
            raise ImportError("OptunaSearch needs optuna: pip install 'mpirt[tune]' (or pip install optuna)") from error
        self._optuna = optuna
        self._space = space
        self.metric, self.mode = metric, mode
        self._sampler = sampler or optuna.samplers.TPESampler(seed=seed)
        self._study = None
        self._trials = {}
        self._num_samples = None
        self._suggested = 0

    def set_search_properties(self, metric, mode, config, num_samples=1):
        super().set_search_properties(metric, mode, config)
        if self.metric is None or self.mode is None:
            raise ValueError("OptunaSearch needs metric= and mode= (pass them to tune.run or the searcher)")
        if self._space is None:
            self._space = config
        self._num_samples = num_samples
        self._distributions = {path: self._to_distribution(path, value)
                               for path, value in search_space._walk(self._space)
                               if isinstance(value, search_space.Domain) or search_space._is_grid(value)}
        self._optuna.logging.set_verbosity(self._optuna.logging.WARNING)
        direction = "maximize" if self.mode == "max" else "minimize"
        self._study = self._optuna.create_study(direction=direction, sampler=self._sampler)
        return True

    def _to_distribution(self, path, value):
        d = self._optuna.distributions
        where = ".".join(map(str, path))
        if search_space._is_grid(value):
            return d.CategoricalDistribution(value["grid_search"])
        if isinstance(value, search_space.Categorical):
            return d.CategoricalDistribution(value.categories)
        if isinstance(value, search_space.Float):
            return d.FloatDistribution(value.lower, value.upper, log=value.log,
                                       step=None if value.log else value.q)
        if isinstance(value, search_space.Integer):
            upper = value.upper if value.q is not None else value.upper - 1
            return d.IntDistribution(value.lower, upper, log=value.log, step=value.q or 1)
        raise ValueError(f"OptunaSearch cannot search config[{where!r}] = {value!r} "
                         "(supported: choice, uniform, quniform, loguniform, randint, qrandint, grid_search)")

    def suggest(self, trial_id):
        if self._num_samples is not None and self._suggested >= self._num_samples:
            return Searcher.FINISHED
        trial = self._study.ask(fixed_distributions={".".join(map(str, p)): dist
                                                     for p, dist in self._distributions.items()})
        self._trials[trial_id] = trial
        self._suggested += 1
        import copy
        config = copy.deepcopy(self._space)
        for path in self._distributions:
            search_space._assign(config, path, trial.params[".".join(map(str, path))])
        return search_space.resolve_domains(config, random.Random())

    def on_trial_complete(self, trial_id, result=None, error=False):
        trial = self._trials.pop(trial_id, None)
        if trial is None:
            return
        if error or not result or self.metric not in result:
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, float(result[self.metric]))

    def add_evaluated(self, config, value):
        """On resume: tell Optuna about a trial finished in an earlier run."""
        params = {}
        for path, dist in self._distributions.items():
            node = config
            for key in path:
                node = node[key]
            params[".".join(map(str, path))] = node
        distributions = {".".join(map(str, p)): d for p, d in self._distributions.items()}
        self._study.add_trial(self._optuna.trial.create_trial(params=params, distributions=distributions,
                                                              value=float(value)))
        self._suggested += 1

    def total_trials(self):
        return self._num_samples
