"""What an experiment returns: ``ExperimentAnalysis`` (tune.run) and ``ResultGrid`` (Tuner.fit)."""
import numbers

from .storage import flatten


def _best_trial(trials, metric, mode, scope="last", filter_nan_and_inf=True):
    if not metric or mode not in ("max", "min"):
        raise ValueError("pass metric= and mode='max'|'min' (here or to tune.run/TuneConfig) to pick a best trial")
    scored = []
    for trial in trials:
        value = trial.metric_value(metric, scope)
        if value is None or (filter_nan_and_inf and (value != value or abs(value) == float("inf"))):
            continue
        scored.append((value, trial))
    if not scored:
        raise ValueError(f"no trial reported the metric {metric!r}")
    pick = max if mode == "max" else min
    return pick(scored, key=lambda pair: pair[0])[1]


def _dataframe(rows):
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


class Result:
    """One trial's outcome: last ``metrics``, ``config``, latest ``checkpoint``, ``error``, ``path``."""

    def __init__(self, trial):
        self._trial = trial
        self.metrics = dict(trial.last_result)
        self.config = trial.config
        self.checkpoint = trial.latest_checkpoint
        self.error = trial.error if trial.status == "ERROR" else None
        self.path = trial.local_path
        self.status = trial.status

    @property
    def metrics_dataframe(self):
        return _dataframe([flatten({k: v for k, v in r.items() if k != "config"}) for r in self._trial.results])

    def __repr__(self):
        shown = {k: v for k, v in self.metrics.items() if isinstance(v, numbers.Number)}
        return f"Result(status={self.status}, metrics={shown}, path={self.path!r})"


class ExperimentAnalysis:
    """Trials of a finished (or interrupted) experiment, with Ray's helpers to pick the best."""

    def __init__(self, trials, experiment_path, default_metric=None, default_mode=None):
        self.trials = list(trials)
        self.experiment_path = experiment_path
        self.default_metric, self.default_mode = default_metric, default_mode

    def get_best_trial(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        return _best_trial(self.trials, metric or self.default_metric, mode or self.default_mode, scope,
                           filter_nan_and_inf)

    def get_best_config(self, metric=None, mode=None, scope="last"):
        return self.get_best_trial(metric, mode, scope).config

    def get_best_checkpoint(self, trial=None, metric=None, mode=None):
        trial = trial or self.get_best_trial(metric, mode)
        return trial.latest_checkpoint

    @property
    def best_trial(self):
        return self.get_best_trial()

    @property
    def best_config(self):
        return self.get_best_config()

    @property
    def best_checkpoint(self):
        return self.get_best_checkpoint()

    @property
    def best_result(self):
        return dict(self.best_trial.last_result)

    @property
    def best_logdir(self):
        return self.best_trial.local_path

    @property
    def results(self):
        return {t.trial_id: dict(t.last_result) for t in self.trials}

    def dataframe(self, metric=None, mode=None):
        """One row per trial: its last result (or its best, given metric and mode) and config."""
        rows = []
        for trial in self.trials:
            result = trial.last_result
            if metric and mode and trial.results:
                candidates = [r for r in trial.results if isinstance(r.get(metric), numbers.Number)]
                if candidates:
                    pick = max if mode == "max" else min
                    result = pick(candidates, key=lambda r: r[metric])
            row = flatten({k: v for k, v in result.items() if k != "config"})
            row.update({f"config/{k}": v for k, v in flatten(trial.config).items()})
            row.update(trial_id=trial.trial_id, status=trial.status, logdir=trial.local_path)
            rows.append(row)
        return _dataframe(rows)

    @property
    def results_df(self):
        return self.dataframe()

    @property
    def trial_dataframes(self):
        return {t.trial_id: Result(t).metrics_dataframe for t in self.trials}


class ResultGrid:
    """Tuner.fit()'s answer: a list of Results with ``get_best_result`` and ``get_dataframe``."""

    def __init__(self, analysis):
        self._analysis = analysis
        self._results = [Result(t) for t in analysis.trials]
        self.experiment_path = analysis.experiment_path

    def __len__(self):
        return len(self._results)

    def __getitem__(self, index):
        return self._results[index]

    def __iter__(self):
        return iter(self._results)

    def get_best_result(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        trial = self._analysis.get_best_trial(metric, mode, scope, filter_nan_and_inf)
        return self._results[self._analysis.trials.index(trial)]

    def get_dataframe(self, filter_metric=None, filter_mode=None):
        return self._analysis.dataframe(filter_metric, filter_mode)

    @property
    def errors(self):
        return [r.error for r in self._results if r.error]

    @property
    def num_errors(self):
        return len(self.errors)

    @property
    def num_terminated(self):
        return sum(1 for r in self._results if r.status == "TERMINATED")
