"""What an experiment returns: ``ExperimentAnalysis`` (tune.run) and ``ResultGrid`` (Tuner.fit).

Both read the trials the loop kept in memory (or, ``ExperimentAnalysis.from_path``, the ones
its journal holds). Checkpoints other than a trial's latest are read from their HDF5 files
only when asked for (``Result.best_checkpoints``).
"""
import logging
import math
import numbers
import os

from .result import AUTO_RESULT_KEYS
from .storage import flatten
from .trial import ERROR, TERMINATED, lookup_metric

logger = logging.getLogger(__name__)

_SCOPES = ("all", "last", "avg", "last-5-avg", "last-10-avg")
_NOT_SHOWN = set(AUTO_RESULT_KEYS) | {"trial_id", "done", "experiment_tag", "date", "timestamp", "pid", "hostname",
                                      "node_ip", "time_this_iter_s", "time_total_s", "iterations_since_restore"}


def _dataframe(rows):
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def _is_nan_or_inf(value):
    return isinstance(value, float) and (math.isnan(value) or math.isinf(value))


def _trial_error(trial):
    """The trial's exception (kept while this process ran it), else a TuneError with its traceback text."""
    if trial.status != ERROR:
        return None
    if trial.exception is not None:
        return trial.exception
    from .runner import TuneError
    return TuneError(trial.error or "the trial failed")


class Result:
    """One trial's outcome: last ``metrics``, ``config``, latest ``checkpoint``, ``error`` (the
    exception, or None), ``path``, ``metrics_dataframe`` and ``best_checkpoints``."""

    _items_to_repr = ("error", "metrics", "path", "checkpoint")

    def __init__(self, trial):
        self._trial = trial
        self.metrics = dict(trial.last_result)
        self.checkpoint = trial.latest_checkpoint
        self.error = _trial_error(trial)
        self.path = trial.local_path
        self.status = trial.status

    @property
    def config(self):
        return self._trial.config

    @property
    def filesystem(self):
        return None

    @property
    def metrics_dataframe(self):
        return _dataframe([flatten({k: v for k, v in r.items() if k != "config"}) for r in self._trial.results])

    @property
    def best_checkpoints(self):
        """[(Checkpoint, metrics at its iteration)] for every checkpoint kept on disk, oldest first."""
        from .storage import ExperimentStorage
        by_iteration = {r.get("training_iteration"): r for r in self._trial.results}
        pairs = []
        for iteration, file in self._trial.checkpoints:
            if os.path.exists(file):
                pairs.append((ExperimentStorage.load_checkpoint(file), dict(by_iteration.get(iteration, {}))))
        return pairs

    def get_best_checkpoint(self, metric, mode):
        """The kept checkpoint whose result had the best ``metric``."""
        pairs = self.best_checkpoints
        if not pairs:
            raise RuntimeError("No checkpoint exists in the trial directory!")
        if mode not in ("max", "min"):
            raise ValueError(f'Unsupported mode: {mode}. Please choose from ["min", "max"]!')
        valid = [pair for pair in pairs if lookup_metric(pair[1], metric) is not None]
        if not valid:
            raise RuntimeError(f"Invalid metric name {metric}! You may choose from the following metrics: "
                               f"{self.metrics.keys()}.")
        pick = max if mode == "max" else min
        return pick(valid, key=lambda pair: lookup_metric(pair[1], metric))[0]

    def _repr(self, indent=0):
        shown = {}
        if self.error is not None:
            shown["error"] = type(self.error).__name__
        shown["metrics"] = {k: v for k, v in self.metrics.items() if k not in _NOT_SHOWN}
        shown["path"] = self.path
        shown["filesystem"] = "local"
        shown["checkpoint"] = self.checkpoint
        pad, inner = " " * indent, " " * (indent + 2)
        body = ",\n".join(f"{inner}{key}={value!r}" for key, value in shown.items())
        return f"{pad}Result(\n{body}\n{pad})"

    def __repr__(self):
        return self._repr()


class ExperimentAnalysis:
    """Trials of a finished (or interrupted) experiment, with Ray's helpers to pick the best."""

    def __init__(self, trials, experiment_path, default_metric=None, default_mode=None):
        self.trials = list(trials)
        self.experiment_path = experiment_path
        self.default_metric, self.default_mode = default_metric, default_mode

    @classmethod
    def from_path(cls, path):
        """The experiment saved at ``path`` as its journal says (results, statuses, checkpoints)."""
        from .execution.placement_groups import resources_from_json
        from .storage import ExperimentStorage
        from .trial import Trial
        path = os.path.abspath(os.path.expanduser(path))
        storage = ExperimentStorage(os.path.dirname(path), os.path.basename(path))
        if not storage.exists():
            raise ValueError(f"no Tune experiment at {path!r}")
        meta, states = storage.replay()
        trials = []
        for state in states:
            trial = Trial(state["id"], state["name"], state["config"], resources_from_json(state["resources"]),
                          state["index"])
            trial.dirname = state["dir"]
            trial.local_path = os.path.join(path, trial.dirname)
            trial.status, trial.num_failures, trial.error = state["status"], state["failures"], state["error"]
            trial.results = state["results"]
            trial.last_result = trial.results[-1] if trial.results else {}
            trial.checkpoints = [tuple(c) for c in state["checkpoints"]]
            if state["checkpoint"] and os.path.exists(state["checkpoint"]):
                trial.latest_checkpoint = storage.load_checkpoint(state["checkpoint"])
                trial.checkpoint_iteration = state["checkpoint_iteration"]
            trials.append(trial)
        return cls(trials, path, meta.get("metric") or None, meta.get("mode") or None)

    def _validate_metric(self, metric):
        if not metric and not self.default_metric:
            raise ValueError("No `metric` has been passed and  `default_metric` has not been set. Please specify "
                             "the `metric` parameter.")
        return metric or self.default_metric

    def _validate_mode(self, mode):
        if not mode and not self.default_mode:
            raise ValueError("No `mode` has been passed and  `default_mode` has not been set. Please specify the "
                             "`mode` parameter.")
        if mode and mode not in ("min", "max"):
            raise ValueError("If set, `mode` has to be one of [min, max]")
        return mode or self.default_mode

    def get_best_trial(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        """The trial with the best ``metric`` (None, with a warning, when no trial reported it)."""
        if len(self.trials) == 1:
            return self.trials[0]
        metric = self._validate_metric(metric)
        mode = self._validate_mode(mode)
        if scope not in _SCOPES:
            raise ValueError(f"ExperimentAnalysis: attempting to get best trial for metric {metric} for scope "
                             f'{scope} not in ["all", "last", "avg", "last-5-avg", "last-10-avg"]. If you didn\'t '
                             "pass a `metric` parameter to `tune.run()`, you have to pass one when fetching the "
                             "best trial.")
        best, best_score = None, None
        for trial in self.trials:
            score = trial.metric_value(metric, scope, mode)
            if score is None or (filter_nan_and_inf and _is_nan_or_inf(float(score))):
                continue
            if best_score is None or (mode == "max" and score > best_score) or (mode == "min" and score < best_score):
                best, best_score = trial, score
        if best is None:
            logger.warning("Could not find best trial. Did you pass the correct `metric` parameter?")
        return best

    def get_best_config(self, metric=None, mode=None, scope="last"):
        trial = self.get_best_trial(metric, mode, scope)
        return trial.config if trial else None

    def get_best_checkpoint(self, trial=None, metric=None, mode=None):
        trial = trial or self.get_best_trial(metric, mode)
        return trial.latest_checkpoint if trial else None

    def _require(self, what):
        if not self.default_metric or not self.default_mode:
            raise ValueError(f"To fetch the `{what}`, pass a `metric` and `mode` parameter to `tune.run()`. "
                             f"Alternatively, use the `get_best_trial(metric, mode)` method to set the metric and "
                             "mode explicitly.")

    @property
    def best_trial(self):
        self._require("best_trial")
        return self.get_best_trial()

    @property
    def best_config(self):
        self._require("best_config")
        return self.get_best_config()

    @property
    def best_checkpoint(self):
        self._require("best_checkpoint")
        return self.get_best_checkpoint()

    @property
    def best_result(self):
        self._require("best_result")
        trial = self.best_trial
        return dict(trial.last_result) if trial else None

    @property
    def best_logdir(self):
        trial = self.best_trial
        return trial.local_path if trial else None

    @property
    def results(self):
        return {t.trial_id: dict(t.last_result) for t in self.trials}

    def get_all_configs(self):
        return {t.local_path: t.config for t in self.trials}

    def dataframe(self, metric=None, mode=None):
        """One row per trial: its last result (or its best, given metric and mode) and config."""
        if mode and mode not in ("min", "max"):
            raise ValueError("If set, `mode` has to be one of [min, max]")
        if mode and not metric:
            raise ValueError("If a `mode` is passed to `ExperimentAnalysis.dataframe(), you'll also have to pass a "
                             "`metric`!")
        rows = []
        for trial in self.trials:
            result = trial.last_result
            if metric and mode and trial.results:
                candidates = [r for r in trial.results if isinstance(lookup_metric(r, metric), numbers.Number)]
                if candidates:
                    pick = max if mode == "max" else min
                    result = pick(candidates, key=lambda r: lookup_metric(r, metric))
            row = flatten({k: v for k, v in result.items() if k != "config"})
            row.update({f"config/{k}": v for k, v in flatten(trial.config or {}).items()})
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

    def __init__(self, experiment_analysis):
        self._experiment_analysis = experiment_analysis
        self._results = [Result(t) for t in experiment_analysis.trials]

    @property
    def experiment_path(self):
        return self._experiment_analysis.experiment_path

    @property
    def filesystem(self):
        return None

    def __len__(self):
        return len(self._results)

    def __getitem__(self, index):
        return self._results[index]

    def __iter__(self):
        return iter(self._results)

    def get_best_result(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        analysis = self._experiment_analysis
        if len(analysis.trials) == 1:
            return self._results[0]
        if not metric and not analysis.default_metric:
            raise ValueError("No metric is provided. Either pass in a `metric` arg to `get_best_result` or specify a "
                             "metric in the `TuneConfig` of your `Tuner`.")
        if not mode and not analysis.default_mode:
            raise ValueError("No mode is provided. Either pass in a `mode` arg to `get_best_result` or specify a mode "
                             "in the `TuneConfig` of your `Tuner`.")
        trial = analysis.get_best_trial(metric, mode, scope, filter_nan_and_inf)
        if trial is None:
            message = (f"No best trial found for the given metric: {metric or analysis.default_metric}. This means "
                       "that no trial has reported this metric")
            message += (", or all values reported for this metric are NaN. To not ignore NaN values, you can set the "
                        "`filter_nan_and_inf` arg to False." if filter_nan_and_inf else ".")
            raise RuntimeError(message)
        return self._results[analysis.trials.index(trial)]

    def get_dataframe(self, filter_metric=None, filter_mode=None):
        return self._experiment_analysis.dataframe(metric=filter_metric, mode=filter_mode)

    @property
    def errors(self):
        """The exceptions of the trials that failed."""
        return [result.error for result in self if result.error]

    @property
    def num_errors(self):
        return sum(1 for t in self._experiment_analysis.trials if t.status == ERROR)

    @property
    def num_terminated(self):
        return sum(1 for t in self._experiment_analysis.trials if t.status == TERMINATED)

    def __repr__(self):
        inner = ",\n".join(result._repr(indent=2) for result in self)
        return f"ResultGrid<[\n{inner}\n]>"
