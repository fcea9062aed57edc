"""The current API: ``Tuner(trainable, param_space=, tune_config=, run_config=).fit()``.

A Tuner saves itself (its configs and param space, pickled) beside the experiment as
``tuner.pkl``, so ``Tuner.restore(path, trainable=...)`` continues the experiment with
the settings it started with, as in Ray.
"""
import os

import cloudpickle

from .analysis import ResultGrid
from .config import CheckpointConfig, FailureConfig, ResumeConfig, RunConfig, TuneConfig  # noqa: F401
from .run import run
from .storage import JOURNAL
from .trainable_util import with_parameters, with_resources  # noqa: F401

TUNER_FILE = "tuner.pkl"


def _as_param_space(param_space):
    """A dict param space; an object with ``to_dict()`` (e.g. RLlib's AlgorithmConfig) becomes its dict."""
    if param_space is None:
        return {}
    if not isinstance(param_space, dict) and callable(getattr(param_space, "to_dict", None)):
        param_space = param_space.to_dict()
    if not isinstance(param_space, dict):
        raise ValueError(f"The `param_space` passed to the `Tuner` must be a dict. Got '{type(param_space)}' instead.")
    if "run_config" in param_space:
        raise ValueError("`RunConfig` cannot be tuned as part of the `param_space`! Move the run config to be a "
                         "parameter of the `Tuner`: Tuner(..., run_config=RunConfig(...))")
    return param_space


class Tuner:
    def __init__(self, trainable=None, *, param_space=None, tune_config=None, run_config=None):
        from .runner import TuneError
        if trainable is None:
            raise TuneError("You need to provide a trainable to tune.")
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TypeError(f"tune_config must be a tune.TuneConfig, got {tune_config!r}")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TypeError(f"run_config must be a tune.RunConfig, got {run_config!r}")
        if callable(getattr(trainable, "as_trainable", None)):   # a Train trainer: one trial runs it
            run_config = run_config or trainable.run_config
            trainable = trainable.as_trainable()
        self._trainable = trainable
        self._param_space = _as_param_space(param_space)
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        self._resume_config = None          # set by restore
        self._restore_path = None
        self._results = None

    # Ray's Tuner.restore is a classmethod that cannot be reached through an instance.
    def __getattribute__(self, item):
        if item == "restore":
            raise AttributeError("`Tuner.restore()` is a classmethod and cannot be called on an instance. Use "
                                 "`tuner = Tuner.restore(...)` to instantiate the Tuner instead.")
        return super().__getattribute__(item)

    @classmethod
    def restore(cls, path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False,
                param_space=None, storage_filesystem=None, _resume_config=None):
        """Continue the experiment saved at ``path``: finished trials keep their results; unfinished
        ones resume from their last checkpoint (``resume_unfinished=False``: they are marked
        TERMINATED); errored ones stay as they are unless ``resume_errored`` (resume from their
        checkpoint) or ``restart_errored`` (start over). ``param_space`` re-specifies the original
        space, e.g. with fresh object references (its keys must be the same)."""
        if storage_filesystem is not None:
            raise NotImplementedError("Tuner.restore(storage_filesystem=...) is not supported by mpirt: restore "
                                      "from a local or shared file system path")
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not cls.can_restore(path):
            raise ValueError(f"Could not find a Tune experiment to restore at {path!r} (looked for {JOURNAL}): "
                             "pass the directory of an experiment, <storage_path>/<name>")
        kind = ResumeConfig.ResumeType
        resume_config = _resume_config or ResumeConfig(
            unfinished=kind.RESUME if resume_unfinished else kind.SKIP,
            errored=kind.RESUME if resume_errored else (kind.RESTART if restart_errored else kind.SKIP))
        saved = _load_tuner_state(path)
        original_space = saved.get("param_space", {})
        if param_space is not None:
            param_space = _as_param_space(param_space)
            _check_same_keys(param_space, original_space)
        tune_config = saved.get("tune_config") or TuneConfig()
        run_config = saved.get("run_config") or RunConfig()
        run_config.name, run_config.storage_path = os.path.basename(path), os.path.dirname(path)
        _check_same_trainable(trainable, saved.get("trainable_name"))
        tuner = cls(trainable, param_space=param_space if param_space is not None else original_space,
                    tune_config=tune_config, run_config=run_config)
        tuner._resume_config = resume_config
        tuner._restore_path = path
        tuner._new_refs = param_space is not None
        return tuner

    @classmethod
    def can_restore(cls, path, storage_filesystem=None):
        """Whether ``path`` holds a Tune experiment that ``Tuner.restore`` can continue."""
        return os.path.exists(os.path.join(os.path.expanduser(os.fspath(path)), JOURNAL))

    def fit(self):
        """Run (or continue) the experiment; failed trials are in the ResultGrid's ``errors``."""
        tc, rc = self._tune_config, self._run_config
        cc, fc = rc.checkpoint_config, rc.failure_config
        if rc.storage_filesystem is not None:
            raise NotImplementedError("RunConfig(storage_filesystem=...) is not supported by mpirt: use a local or "
                                      "shared file system storage_path")
        analysis = run(self._trainable, config=self._param_space, metric=tc.metric, mode=tc.mode,
                       num_samples=tc.num_samples, scheduler=tc.scheduler, search_alg=tc.search_alg,
                       max_concurrent_trials=tc.max_concurrent_trials or None, time_budget_s=tc.time_budget_s,
                       seed=tc.seed, trial_name_creator=tc.trial_name_creator,
                       trial_dirname_creator=tc.trial_dirname_creator, name=rc.name,
                       storage_path=rc.storage_path, stop=rc.stop, callbacks=rc.callbacks,
                       progress_reporter=rc.progress_reporter, checkpoint_config=cc,
                       max_failures=fc.max_failures, fail_fast=fc.fail_fast, verbose=rc.verbose,
                       progress_interval=rc.progress_interval, resume_config=self._resume_config,
                       _refresh_configs=getattr(self, "_new_refs", False),
                       _on_start=self._save_state, raise_on_failed_trial=False)
        self._results = ResultGrid(analysis)
        return self._results

    def get_results(self):
        """The ResultGrid of the last ``fit()``, or of the restored experiment as it was saved."""
        if self._results is not None:
            return self._results
        if self._restore_path is not None:
            from .analysis import ExperimentAnalysis
            return ResultGrid(ExperimentAnalysis.from_path(self._restore_path))
        raise RuntimeError("Can't return results as experiment has not been run, yet. Call `Tuner.fit()` to run "
                           "the experiment first.")

    def _save_state(self, path, trainable_name):
        """Written when the experiment starts: what ``restore`` needs to continue it as it was."""
        state = {"trainable_name": trainable_name, "param_space": self._param_space,
                 "tune_config": self._tune_config, "run_config": self._run_config}
        try:
            data = cloudpickle.dumps(state)
        except Exception:  # noqa: BLE001 - an unpicklable config: keep what can be kept
            data = cloudpickle.dumps({"trainable_name": trainable_name})
        tmp = os.path.join(path, TUNER_FILE + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(path, TUNER_FILE))


def _load_tuner_state(path):
    file = os.path.join(path, TUNER_FILE)
    if not os.path.exists(file):
        return {}                            # an experiment started with tune.run
    with open(file, "rb") as f:
        try:
            return cloudpickle.load(f)
        except Exception:  # noqa: BLE001 - e.g. object references of a finished session
            return {}


def _flat_keys(space, prefix=""):
    keys = []
    for key, value in space.items():
        if isinstance(value, dict) and set(value) != {"grid_search"}:
            keys += _flat_keys(value, f"{prefix}{key}/")
        else:
            keys.append(f"{prefix}{key}")
    return sorted(keys)


def _check_same_keys(new, original):
    if original and _flat_keys(new) != _flat_keys(original):
        raise ValueError("Invalid `param_space` input to `Tuner.restore()`. To fix this error, pass in the same "
                         "`param_space` that was used to initialize the Tuner. Only re-specify the `param_space` to "
                         "refresh Ray object references that no longer exist due to restoring from a new Ray "
                         "cluster session. It should not be used to introduce new hyperparameters to tune."
                         f"\n\nGot: {_flat_keys(new)}\nExpected: {_flat_keys(original)}")


def _check_same_trainable(trainable, expected):
    from .run import trainable_name
    if expected and trainable_name(trainable) != expected:
        raise ValueError("Invalid `trainable` input to `Tuner.restore()`. To fix this error, pass in the same "
                         "trainable that was used to initialize the Tuner. Got a trainable with identifier "
                         f"'{trainable_name(trainable)}' but expected '{expected}'.")
