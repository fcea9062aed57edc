"""``tune.run`` and the seed API's ``run_experiments``: check the inputs, then run the loop."""
import inspect
import numbers
import os
import random
import signal
import threading
import uuid

import mpirt

from . import search as search_mod
from . import search_space
from .analysis import ExperimentAnalysis
from .progress import ProgressReporter
from .registry import as_trainable_class
from .runner import TrialRunner, TuneError, TuneInterrupted, concurrency_limit
from .schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from .storage import ExperimentStorage, default_local_dir, default_name
from .trial import ERROR, PENDING, TERMINATED, Trial


def _normalize_resources(resources):
    if resources is None:
        return {"cpu": 1}
    if not isinstance(resources, dict):
        raise TypeError(f"resources_per_trial must be a dict like {{'cpu': 1, 'gpu': 0}}, got {resources!r}")
    normalized = {}
    for key, amount in resources.items():
        if not isinstance(amount, numbers.Number) or amount < 0:
            raise ValueError(f"resources_per_trial[{key!r}] must be a number >= 0, got {amount!r}")
        name = {"CPU": "cpu", "GPU": "gpu"}.get(key, key)
        normalized[name] = amount
    normalized.setdefault("cpu", 1)
    return normalized


def _check_stop(stop):
    if stop is None or callable(stop):
        return stop
    if not isinstance(stop, dict):
        raise TypeError(f"stop must be a dict of metric thresholds, a function (trial_id, result) -> bool or a "
                        f"Stopper, got {stop!r}")
    for key, threshold in stop.items():
        if not isinstance(threshold, numbers.Number):
            raise TypeError(f"stop[{key!r}] must be a number (stop once the metric reaches it), got {threshold!r}")
    return dict(stop)


def _trainable_name(run_or_experiment, trainable_cls):
    if isinstance(run_or_experiment, str):
        return run_or_experiment
    return getattr(run_or_experiment, "__name__", trainable_cls.__name__)


def run(run_or_experiment, *, name=None, metric=None, mode=None, stop=None, time_budget_s=None, config=None,
        resources_per_trial=None, num_samples=1, local_dir=None, storage_path=None, search_alg=None,
        scheduler=None, keep_checkpoints_num=None, checkpoint_freq=0, checkpoint_at_end=False, verbose=1,
        progress_reporter=None, progress_interval=5.0, max_failures=0, resume=False,
        max_concurrent_trials=None, raise_on_failed_trial=True, seed=None):
    """Run an experiment: every config from ``config``/``search_alg``, ``num_samples`` times each.

    Trials run as actors holding ``resources_per_trial``, as many at once as the cluster holds
    (or ``max_concurrent_trials``). Results land in ``<local_dir>/<name>/`` (experiment.h5 and
    per-trial logs); ``resume=True`` (or "AUTO") continues an interrupted experiment there.
    """
    trainable_cls = as_trainable_class(run_or_experiment)
    resources = _normalize_resources(getattr(trainable_cls, "_tune_resources", None) or resources_per_trial)
    config = {} if config is None else config
    search_space.validate(config)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    if mode not in (None, "max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if metric is not None and mode is None:
        raise ValueError(f"metric={metric!r} needs mode='max' or mode='min'")
    stop = _check_stop(stop)
    if resume not in (False, True, "AUTO", "LOCAL", "must"):
        raise ValueError(f"resume must be False, True or 'AUTO', got {resume!r}")
    scheduler = scheduler or FIFOScheduler()
    if not isinstance(scheduler, TrialScheduler):
        raise TypeError(f"scheduler must be a tune scheduler (e.g. ASHAScheduler()), got {scheduler!r}")
    scheduler.set_search_properties(metric, mode)
    metric = metric or scheduler.metric
    mode = mode or scheduler.mode
    if search_alg is not None and not isinstance(search_alg, search_mod.Searcher):
        raise TypeError(f"search_alg must be a tune Searcher (e.g. OptunaSearch()), got {search_alg!r}")
    if max_concurrent_trials is not None and max_concurrent_trials < 1:
        raise ValueError(f"max_concurrent_trials must be >= 1, got {max_concurrent_trials}")

    trainable_name = _trainable_name(run_or_experiment, trainable_cls)
    storage = ExperimentStorage(storage_path or local_dir or default_local_dir(), name or default_name(trainable_name))
    resuming = resume in (True, "LOCAL", "must") or (resume == "AUTO" and storage.exists())
    if resuming and not storage.exists():
        raise ValueError(f"resume={resume!r} but there is no experiment at {storage.path} "
                         "(use resume='AUTO' to start one when none exists)")
    if not resuming and storage.exists():
        raise ValueError(f"an experiment already exists at {storage.path}: pass resume=True (or 'AUTO') to "
                         "continue it, or choose another name=")

    cluster = mpirt.cluster_resources()
    limit = concurrency_limit(resources, cluster)
    if max_concurrent_trials:
        limit = min(limit, max_concurrent_trials)

    previous_meta, states = storage.replay() if resuming else ({}, [])
    seed = previous_meta.get("seed", seed if seed is not None else random.randrange(2 ** 31))
    meta = {"name": storage.name, "trainable": trainable_name, "metric": metric or "", "mode": mode or "",
            "num_samples": num_samples, "seed": seed,
            "experiment_id": previous_meta.get("experiment_id") or uuid.uuid4().hex[:5]}
    searcher = search_alg or search_mod.BasicVariantGenerator(random_state=seed)
    kwargs = {"num_samples": num_samples} if "num_samples" in inspect.signature(searcher.set_search_properties).parameters else {}
    searcher.set_search_properties(metric, mode, config, **kwargs)

    storage.open(fresh=not resuming)
    if resuming:
        storage.record_event("resume")
    else:
        storage.record_start(meta)
    reporter = progress_reporter or ProgressReporter(metric, mode, interval=progress_interval if verbose else None)
    runner = TrialRunner(trainable_cls, searcher, scheduler, storage, reporter, resources=resources, stopper=stop,
                         metric=metric, mode=mode, max_concurrent=limit, checkpoint_freq=checkpoint_freq,
                         checkpoint_at_end=checkpoint_at_end, max_failures=max_failures,
                         keep_checkpoints_num=keep_checkpoints_num, meta=meta, trial_name_prefix=trainable_name,
                         experiment_id=meta["experiment_id"], time_budget_s=time_budget_s)
    if resuming:
        _restore_trials(runner, storage, states, searcher, scheduler, metric)

    _run_with_signals(runner)
    analysis = ExperimentAnalysis(runner.trials, storage.path, metric, mode)
    if runner.interrupted is not None:
        raise TuneInterrupted(f"experiment {storage.name} interrupted by {runner.interrupted}; its state is saved "
                              f"in {storage.path}: run it again with resume=True (or 'AUTO') to continue")
    failed = [t for t in runner.trials if t.status == ERROR]
    if failed and raise_on_failed_trial:
        raise TuneError(f"{len(failed)} of {len(runner.trials)} trials failed ({', '.join(map(str, failed[:5]))}); "
                        f"the others finished and are saved in {storage.path}. First error:\n{failed[0].error}")
    return analysis


_REPLAYABLE = (AsyncHyperBandScheduler, MedianStoppingRule)


def _restore_trials(runner, storage, states, searcher, scheduler, metric):
    """Rebuild trials from the journal: finished ones as they were, the rest pending from their checkpoint."""
    for state in states:
        trial = Trial(state["id"], state["name"], state["config"], state["resources"], state["index"])
        trial.local_path = os.path.join(storage.path, state["name"])
        trial.num_failures = state["failures"]
        trial.error = state["error"]
        trial.results = state["results"]
        finished = state["status"] in (TERMINATED, ERROR)
        if not finished:
            checkpoint_file = state["checkpoint"]
            if checkpoint_file and os.path.exists(checkpoint_file):
                trial.latest_checkpoint = storage.load_checkpoint(checkpoint_file)
                trial.checkpoint_iteration = state["checkpoint_iteration"]
            else:
                trial.checkpoint_iteration = 0
            kept = [r for r in trial.results if r.get("training_iteration", 0) <= trial.checkpoint_iteration]
            if len(kept) != len(trial.results):
                trial.results = kept
                storage.record_truncate(trial, trial.checkpoint_iteration)
        trial.last_result = trial.results[-1] if trial.results else {}
        trial.status = state["status"] if finished else PENDING
        storage.trial_files(trial).rewrite(trial.results)   # the logs may have missed the last lines
        runner.trials.append(trial)
        scheduler.on_trial_add(runner, trial)
        for result in trial.results:
            searcher.on_trial_result(trial.trial_id, result)
            if isinstance(scheduler, _REPLAYABLE):   # pure bookkeeping: rebuild rungs and histories
                scheduler.on_trial_result(runner, trial, result)
        if finished and isinstance(searcher, search_mod.OptunaSearch) and metric in trial.last_result:
            searcher.add_evaluated(trial.config, trial.last_result[metric])
        if not finished:
            storage.record_status(trial)
    if hasattr(searcher, "skip"):
        searcher.skip(len(states))


def _run_with_signals(runner):
    """SIGTERM/SIGUSR1 (Slurm's preemption and time-limit warnings) and Ctrl-C end the loop cleanly."""
    def handler(signum, _frame):
        runner.interrupted = signal.Signals(signum).name

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, handler)
    try:
        runner.run()
    except KeyboardInterrupt:
        runner.interrupted = "SIGINT"
        runner.storage.flush(runner.trials, runner.meta)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_SPEC_KEYS = {"run", "config", "stop", "num_samples", "repeat", "resources", "resources_per_trial",
              "trial_resources", "local_dir", "storage_path", "checkpoint_freq", "checkpoint_at_end",
              "max_failures", "keep_checkpoints_num", "max_concurrent_trials"}


class Experiment:
    """The seed API's experiment spec as an object: ``Experiment(name, run, config=..., stop=...)``."""

    def __init__(self, name, run, **spec):
        self.name = name
        self.spec = {"run": run, **spec}

    @classmethod
    def from_json(cls, name, spec):
        if not isinstance(spec, dict):
            raise TypeError(f"experiment {name!r}: its spec must be a dict, got {spec!r}")
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise ValueError(f"experiment {name!r}: unknown keys {sorted(unknown)} (known: {sorted(_SPEC_KEYS)})")
        if "run" not in spec:
            raise ValueError(f"experiment {name!r} needs 'run': a registered trainable name, function or class")
        return cls(name, **spec)


def run_experiments(experiments, scheduler=None, verbose=1, resume=False, raise_on_failed_trial=True):
    """The seed API: ``run_experiments({"name": {"run": "my_func", "config": ..., "stop": ...}})``.

    Returns the list of all trials of all experiments.
    """
    if isinstance(experiments, Experiment):
        experiments = [experiments]
    if isinstance(experiments, dict):
        experiments = [Experiment.from_json(name, spec) for name, spec in experiments.items()]
    trials = []
    for experiment in experiments:
        spec = dict(experiment.spec)
        Experiment.from_json(experiment.name, spec)
        analysis = run(spec.pop("run"), name=experiment.name, config=spec.pop("config", None),
                       stop=spec.pop("stop", None),
                       num_samples=spec.pop("num_samples", spec.pop("repeat", 1)),
                       resources_per_trial=spec.pop("resources", None) or spec.pop("resources_per_trial", None)
                       or spec.pop("trial_resources", None),
                       local_dir=spec.pop("local_dir", None) or spec.pop("storage_path", None),
                       checkpoint_freq=spec.pop("checkpoint_freq", 0),
                       checkpoint_at_end=spec.pop("checkpoint_at_end", False),
                       max_failures=spec.pop("max_failures", 0),
                       keep_checkpoints_num=spec.pop("keep_checkpoints_num", None),
                       max_concurrent_trials=spec.pop("max_concurrent_trials", None),
                       scheduler=scheduler, verbose=verbose, resume=resume,
                       raise_on_failed_trial=raise_on_failed_trial)
        trials.extend(analysis.trials)
    return trials
