"""``OptunaSearch``: Optuna's sampler (TPE by default) proposes each trial's config."""
from ... import search_space
from ..searcher import Searcher, build_config, check_metric_mode, import_optional, label, searchable_leaves


class OptunaSearch(Searcher):
    """Ask/tell over an Optuna study. ``space`` is a Tune search space (or taken from the
    Tuner's ``param_space``), a dict of Optuna distributions, or a define-by-run function
    ``space(optuna_trial) -> dict of constants | None``. Needs ``pip install optuna``."""

    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, sampler=None,
                 study_name=None, storage=None, seed=None, evaluated_rewards=None):
        self._optuna = import_optional("optuna", "Optuna must be installed! Run `pip install optuna`.")
        super().__init__(metric, mode)
        if evaluated_rewards is not None and (points_to_evaluate is None
                                              or len(evaluated_rewards) != len(points_to_evaluate)):
            raise ValueError("`evaluated_rewards` needs one reward per point of `points_to_evaluate`, got "
                             f"{evaluated_rewards!r} for {points_to_evaluate!r}")
        self._space = space
        self._points = list(points_to_evaluate or [])
        self._rewards = evaluated_rewards
        self._sampler = sampler or self._optuna.samplers.TPESampler(seed=seed)
        self._study_name, self._storage = study_name, storage
        self._study = None
        self._trials = {}
        if space is not None:
            self._setup()

    def set_search_properties(self, metric, mode, config, **spec):
        if self._study is not None:
            return False                     # it has its own space
        super().set_search_properties(metric, mode, config)
        self._space = config
        self._setup()
        return True

    def _setup(self):
        if self.metric is None or self.mode is None:
            return                           # set later by set_search_properties
        optuna = self._optuna
        self._native = isinstance(self._space, dict) and self._space and all(
            isinstance(v, optuna.distributions.BaseDistribution) for v in self._space.values())
        if callable(self._space) or self._native:
            self._leaves = []
        else:
            self._leaves = [(path, self._distribution(path, domain))
                            for path, domain in searchable_leaves(self._space, "Optuna")]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = optuna.create_study(direction="maximize" if self.mode == "max" else "minimize",
                                          sampler=self._sampler, study_name=self._study_name,
                                          storage=self._storage, load_if_exists=True)
        for number, point in enumerate(self._points):
            if self._rewards is None:
                self._study.enqueue_trial(self._flat(point))
            else:
                self.add_evaluated_point(point, self._rewards[number])
        self._points = []

    def _flat(self, point):
        return {label(path): value for path, value in search_space._walk(point)}

    def _distribution(self, path, domain):
        d = self._optuna.distributions
        if isinstance(domain, search_space.Categorical):
            return d.CategoricalDistribution(domain.categories)
        if isinstance(domain, search_space.Float):
            return d.FloatDistribution(domain.lower, domain.upper, log=domain.log,
                                       step=None if domain.log else domain.q)
        if isinstance(domain, search_space.Integer):
            upper = domain.upper if domain.q is not None else domain.upper - 1
            return d.IntDistribution(domain.lower, upper, log=domain.log, step=domain.q or 1)
        raise ValueError(f"Optuna search does not support parameters of type `{type(domain).__name__}` "
                         f"(config[{label(path)!r}] = {domain!r}); supported: choice, uniform, quniform, "
                         "loguniform, qloguniform, randint, qrandint, lograndint")

    def suggest(self, trial_id):
        if self._study is None:
            check_metric_mode(self)
            raise self._no_space_error()
        if callable(self._space):
            trial = self._study.ask()
            constants = self._space(trial) or {}
            self._trials[trial_id] = trial
            return {**trial.params, **constants}
        if self._native:
            trial = self._study.ask(fixed_distributions=self._space)
            self._trials[trial_id] = trial
            return dict(trial.params)
        trial = self._study.ask(fixed_distributions={label(p): dist for p, dist in self._leaves})
        self._trials[trial_id] = trial
        return build_config(self._space, {p: trial.params[label(p)] for p, _ in self._leaves})

    def on_trial_complete(self, trial_id, result=None, error=False):
        trial = self._trials.pop(trial_id, None)
        if trial is None:
            return
        if error or not result or self.metric not in result:
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, float(result[self.metric]))

    def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
        """Tell Optuna about a config evaluated elsewhere (``evaluated_rewards``, a resumed run)."""
        if self._study is None:
            raise RuntimeError("OptunaSearch has no search space yet: add points after set_search_properties")
        ot = self._optuna
        if self._native:
            distributions = dict(self._space)
        else:
            distributions = {label(p): dist for p, dist in self._leaves}
        flat = self._flat(parameters)
        params = {name: flat[name] for name in distributions}
        state = ot.trial.TrialState.FAIL if error else (ot.trial.TrialState.PRUNED if pruned
                                                          else ot.trial.TrialState.COMPLETE)
        self._study.add_trial(ot.trial.create_trial(
            params=params, distributions=distributions, value=None if error else float(value), state=state,
            intermediate_values=dict(enumerate(intermediate_values)) if intermediate_values else None))
