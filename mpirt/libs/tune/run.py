"""``tune.run`` and the seed API's ``run_experiments``: check the inputs, then run the loop."""
import datetime
import inspect
import logging
import os
import random
import signal
import threading
import uuid

import mpirt

from . import search as search_mod
from . import search_space
from .analysis import ExperimentAnalysis
from .callback import CallbackList
from .config import CheckpointConfig, ResumeConfig, resume_config_from_legacy
from .execution.placement_groups import PlacementGroupFactory, as_group_request, as_trial_resources
from .progress import ProgressReporter
from .registry import as_trainable_class
from .runner import TrialRunner, TuneError, TuneInterrupted, concurrency_limit
from .schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from .stopper import as_stopper
from .storage import ExperimentStorage, default_local_dir, reserve_default_name
from .trainable import FunctionTrainable, Trainable, _resources_of_config
from .trainable_util import resources_of
from .trial import ERROR, PENDING, TERMINATED, Trial

logger = logging.getLogger(__name__)


def _resource_spec(run_or_experiment, trainable_cls, resources_per_trial):
    """What each trial runs with, by Ray's precedence: ``resources_per_trial`` (Ray's ``tune.run`` applies
    it with ``with_resources``), then ``with_resources``, then the trainable's
    ``default_resource_request(config)`` (the RL algorithms'), then 1 CPU. A dict or a
    PlacementGroupFactory is the same for every trial; a function of the config (a ``with_resources``
    function, ``default_resource_request``) is asked per trial and its answer becomes a
    PlacementGroupFactory, as in Ray."""
    explicit = resources_per_trial
    if explicit is None:
        explicit = resources_of(run_or_experiment)
    if explicit is None:
        explicit = getattr(trainable_cls, "_resources", None)
    if explicit is None and _overrides_resource_request(trainable_cls):
        explicit = trainable_cls.default_resource_request
    if callable(explicit) and not isinstance(explicit, (dict, PlacementGroupFactory)):
        function = explicit
        return lambda config: as_group_request(_resources_of_config(function, config), "resources of the trial")
    return as_trial_resources(explicit)


def _overrides_resource_request(trainable_cls):
    own = getattr(trainable_cls.default_resource_request, "__func__", None)
    return own is not None and own is not Trainable.default_resource_request.__func__


def trainable_name(trainable):
    """The name results are filed under: a registered name, or the function's or class's name."""
    if isinstance(trainable, str):
        return trainable
    return getattr(trainable, "__name__", None) or type(trainable).__name__


def _check_checkpointing(trainable_cls, checkpoint_config):
    if issubclass(trainable_cls, FunctionTrainable):
        if checkpoint_config.checkpoint_at_end:
            raise ValueError("'checkpoint_at_end' cannot be used with a function trainable. You should include one "
                             "last call to `ray.tune.report(metrics=..., checkpoint=...)` at the end of your "
                             "training loop to get this behavior.")
        if checkpoint_config.checkpoint_frequency:
            raise ValueError("'checkpoint_frequency' cannot be set for a function trainable. You will need to report "
                             "a checkpoint every `checkpoint_frequency` iterations within your training loop using "
                             "`ray.tune.report(metrics=..., checkpoint=...)` to get this behavior.")


def run(run_or_experiment, *, name=None, metric=None, mode=None, stop=None, time_budget_s=None, config=None,
        resources_per_trial=None, num_samples=1, storage_path=None, storage_filesystem=None, search_alg=None,
        scheduler=None, checkpoint_config=None, verbose=1, progress_reporter=None, log_to_file=False,
        trial_name_creator=None, trial_dirname_creator=None, sync_config=None, export_formats=None,
        max_failures=0, fail_fast=False, restore=None, resume=False, resume_config=None, reuse_actors=None,
        raise_on_failed_trial=True, callbacks=None, max_concurrent_trials=None, keep_checkpoints_num=None,
        checkpoint_score_attr=None, checkpoint_freq=0, checkpoint_at_end=False, local_dir=None,
        progress_interval=5.0, seed=None, _refresh_configs=False, _on_start=None):
    """Run an experiment: every config from ``config``/``search_alg``, ``num_samples`` times each.

    Trials run as actors holding ``resources_per_trial`` (a dict, or a ``tune.PlacementGroupFactory``
    whose group each trial reserves before it starts), as many at once as the cluster holds (or
    ``max_concurrent_trials``). Results land in ``<storage_path>/<name>/`` (experiment.h5 and
    per-trial logs); ``resume=True`` (or "AUTO") continues an interrupted experiment there.
    ``sync_config``, ``export_formats``, ``log_to_file`` and ``reuse_actors`` are accepted
    without effect (see docs/tune.md); ``progress_interval`` and ``seed`` are mpirt's.
    """
    if storage_filesystem is not None:
        raise NotImplementedError("storage_filesystem is not supported by mpirt: use a local or shared file system "
                                  "storage_path")
    if restore is not None:
        raise DeprecationWarning("tune.run(restore=...) is deprecated: use Tuner.restore(path, trainable) (or "
                                 "tune.run(..., resume=True) with the same storage_path and name)")
    trainable_cls = as_trainable_class(run_or_experiment)
    resources = _resource_spec(run_or_experiment, trainable_cls, resources_per_trial)
    config = {} if config is None else config
    search_space.validate(config)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    if mode not in (None, "max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    stopper = as_stopper(stop)
    if isinstance(time_budget_s, datetime.timedelta):
        time_budget_s = time_budget_s.total_seconds()
    if resume_config is None:
        resume_config = resume_config_from_legacy(resume)
    elif not isinstance(resume_config, ResumeConfig):
        raise TypeError(f"resume_config must be a tune.ResumeConfig, got {resume_config!r}")
    if checkpoint_config is None:
        checkpoint_config = CheckpointConfig(num_to_keep=keep_checkpoints_num,
                                             checkpoint_frequency=checkpoint_freq or 0,
                                             checkpoint_at_end=checkpoint_at_end or None)
        if checkpoint_score_attr:
            order = "min" if checkpoint_score_attr.startswith("min-") else "max"
            checkpoint_config.checkpoint_score_attribute = checkpoint_score_attr[4:] if order == "min" \
                else checkpoint_score_attr
            checkpoint_config.checkpoint_score_order = order
    elif not isinstance(checkpoint_config, CheckpointConfig):
        raise TypeError(f"checkpoint_config must be a tune.CheckpointConfig, got {checkpoint_config!r}")
    _check_checkpointing(trainable_cls, checkpoint_config)
    if isinstance(fail_fast, str) and fail_fast.upper() != "RAISE" or not isinstance(fail_fast, (bool, str)):
        raise ValueError(f"fail_fast must be one of {{bool, 'raise'}}. Got {fail_fast}.")
    if fail_fast and max_failures != 0:
        raise ValueError(f"max_failures must be 0 if fail_fast={fail_fast!r}.")
    scheduler = scheduler or FIFOScheduler()
    if not isinstance(scheduler, TrialScheduler):
        raise TypeError(f"scheduler must be a tune scheduler (e.g. ASHAScheduler()), got {scheduler!r}")
    scheduler.set_search_properties(metric, mode)
    metric = metric or scheduler.metric
    mode = mode or scheduler.mode
    if isinstance(search_alg, str):
        search_alg = search_mod.create_searcher(search_alg, metric=metric, mode=mode)
    if search_alg is not None and not isinstance(search_alg, search_mod.Searcher):
        raise TypeError(f"search_alg must be a tune Searcher (e.g. OptunaSearch()), got {search_alg!r}")
    if max_concurrent_trials is not None and (not isinstance(max_concurrent_trials, int)
                                              or max_concurrent_trials < 0):
        raise ValueError(f"max_concurrent_trials must be an integer >= 0 (0 or None: no limit), "
                         f"got {max_concurrent_trials!r}")
    callbacks = CallbackList(callbacks)

    if isinstance(resources, dict):
        limit = concurrency_limit(resources, mpirt.cluster_resources())
    else:           # placement groups: as many trials run as have their group reserved
        limit = 1_000_000
    if max_concurrent_trials:
        limit = min(limit, max_concurrent_trials)

    name_of_trainable = trainable_name(run_or_experiment)
    root = storage_path or local_dir or default_local_dir()
    reserved = name is None
    if reserved:
        name = reserve_default_name(root, name_of_trainable)
    storage = ExperimentStorage(root, name)
    try:
        searcher, limit, resuming, meta, states = _prepare(
            storage, resume, resume_config, search_alg, seed, limit, metric, mode, config, num_samples,
            name_of_trainable)
    except BaseException:
        if reserved and os.path.isdir(storage.path) and not os.listdir(storage.path):
            os.rmdir(storage.path)       # no experiment was started in the directory reserved for it
        raise
    storage.open(fresh=not resuming)
    if resuming:
        storage.record_event("resume")
    else:
        storage.record_start(meta)
    if _on_start is not None:
        _on_start(storage.path, name_of_trainable)
    reporter = progress_reporter or ProgressReporter(metric, mode, interval=progress_interval if verbose else None,
                                                       quiet=not verbose)
    runner = TrialRunner(trainable_cls, searcher, scheduler, storage, reporter, resources=resources, stopper=stopper,
                         metric=metric, mode=mode, max_concurrent=limit, checkpoint_config=checkpoint_config,
                         max_failures=max_failures, fail_fast=fail_fast, meta=meta,
                         trial_name_prefix=name_of_trainable, experiment_id=meta["experiment_id"],
                         time_budget_s=time_budget_s, callbacks=callbacks, num_samples=num_samples,
                         trial_name_creator=trial_name_creator, trial_dirname_creator=trial_dirname_creator)
    if resuming:
        _restore_trials(runner, storage, states, searcher, scheduler, metric, resume_config, _refresh_configs)

    callbacks.setup(stop=stopper, num_samples=num_samples, total_num_samples=searcher.total_trials())
    _run_with_signals(runner)
    callbacks.on_experiment_end(trials=runner.trials)
    analysis = ExperimentAnalysis(runner.trials, storage.path, metric, mode)
    if runner.interrupted is not None:
        raise TuneInterrupted(f"experiment {storage.name} interrupted by {runner.interrupted}; its state is saved "
                              f"in {storage.path}: run it again with resume=True (or 'AUTO') to continue")
    failed = [t for t in runner.trials if t.status == ERROR]
    if failed and isinstance(fail_fast, str):
        raise failed[0].exception or TuneError(failed[0].error)
    if failed and raise_on_failed_trial:
        raise TuneError(f"{len(failed)} of {len(runner.trials)} trials failed ({', '.join(map(str, failed[:5]))}); "
                        f"the others finished and are saved in {storage.path}. First error:\n{failed[0].error}")
    return analysis


def _prepare(storage, resume, resume_config, search_alg, seed, limit, metric, mode, config, num_samples,
             name_of_trainable):
    """Decide between a new and a resumed experiment, and set up its searcher."""
    resuming_possible = resume_config is not None
    resuming = resuming_possible and storage.exists()
    if resume is True and not resuming:
        raise ValueError(f"resume={resume!r} but there is no experiment at {storage.path} "
                         "(use resume='AUTO' to start one when none exists)")
    if not resuming and storage.exists():
        storage.archive_previous()

    previous_meta, states = storage.replay() if resuming else ({}, [])
    seed = previous_meta.get("seed", seed if seed is not None else random.randrange(2 ** 31))
    meta = {"name": storage.name, "trainable": name_of_trainable, "metric": metric or "", "mode": mode or "",
            "num_samples": num_samples, "seed": seed,
            "experiment_id": previous_meta.get("experiment_id") or uuid.uuid4().hex[:5]}
    searcher = search_alg or search_mod.BasicVariantGenerator(random_state=seed)
    if isinstance(searcher, search_mod.BasicVariantGenerator):
        searcher.seed_if_unseeded(seed)
        if searcher.max_concurrent:
            limit = min(limit, searcher.max_concurrent)
    accepted = inspect.signature(searcher.set_search_properties).parameters
    spec = {"num_samples": num_samples} if "num_samples" in accepted or any(
        p.kind == p.VAR_KEYWORD for p in accepted.values()) else {}
    if not searcher.set_search_properties(metric, mode, config, **spec) and search_space.has_domains(config):
        raise ValueError(f"You passed a `param_space` with search space definitions to the Tuner, but "
                         f"{type(searcher).__name__} already has its own search space: pass it to one of them only")

    return searcher, limit, resuming, meta, states


_REPLAYABLE = (AsyncHyperBandScheduler, MedianStoppingRule)


def _restore_trials(runner, storage, states, searcher, scheduler, metric, resume_config, refresh_configs):
    """Rebuild trials from the journal. Each kind of trial (finished, unfinished, errored) is
    skipped (kept as it ended; an unfinished one is marked TERMINATED), resumed from its last
    checkpoint (results after that checkpoint are dropped: they will be produced again), or
    restarted from scratch, as ``resume_config`` says."""
    kind = resume_config.ResumeType
    variants = getattr(searcher, "variant", None)
    for state in states:
        trial = Trial(state["id"], state["name"], state["config"], state["resources"], state["index"])
        trial.dirname = state["dir"]
        if refresh_configs and variants is not None and variants(state["index"]) is not None:
            trial.config = variants(state["index"])   # the same config, with the new object references
        if trial.config is None:
            raise ValueError(f"trial {trial.trial_name}'s config could not be read back from {storage.journal_path}: "
                             "pass the original param_space to Tuner.restore(param_space=...)")
        trial.resources = runner.trial_resources(trial)
        trial.local_path = os.path.join(storage.path, trial.dirname)
        trial.num_failures = state["failures"]
        trial.error = state["error"]
        trial.results = state["results"]
        trial.checkpoints = [tuple(c) for c in state["checkpoints"]]
        status = state["status"]
        category = "finished" if status == TERMINATED else "errored" if status == ERROR else "unfinished"
        action = getattr(resume_config, category)
        if action == kind.RESTART:
            trial.checkpoint_iteration = 0
            if trial.results:
                trial.results = []
                storage.record_truncate(trial, 0)
        elif action == kind.RESUME:
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
        else:
            checkpoint_file = state["checkpoint"]
            if checkpoint_file and os.path.exists(checkpoint_file):
                trial.latest_checkpoint = storage.load_checkpoint(checkpoint_file)
                trial.checkpoint_iteration = state["checkpoint_iteration"]
        trial.last_result = trial.results[-1] if trial.results else {}
        rerun = action in (kind.RESUME, kind.RESTART)
        if rerun:
            trial.status = PENDING
            trial.error = None
        else:
            trial.status = status if category != "unfinished" else TERMINATED
        storage.trial_files(trial).rewrite(trial.results)   # the logs may have missed the last lines
        runner.trials.append(trial)
        scheduler.on_trial_add(runner, trial)
        for result in trial.results:
            searcher.on_trial_result(trial.trial_id, result)
            if isinstance(scheduler, _REPLAYABLE):   # pure bookkeeping: rebuild rungs and histories
                scheduler.on_trial_result(runner, trial, result)
        if not rerun and metric and trial.status == TERMINATED and metric in trial.last_result:
            try:
                searcher.add_evaluated_point(trial.config, trial.last_result[metric])
            except NotImplementedError:
                pass
        if rerun or status != trial.status:
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
        runner.remove_groups()               # an interrupted loop leaves no reservation behind
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
