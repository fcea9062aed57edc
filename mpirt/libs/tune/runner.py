"""The experiment loop on the driver: start trials as actors, feed results to the scheduler.

Each running trial is one mpirt actor (``TrialActor``) holding the trial's
resources; the loop keeps one ``train()`` call in flight per trial and waits on
all of them with ``mpirt.wait``, so trials progress independently. Results,
checkpoints and status changes go to the experiment's storage as they happen.

A trial whose resources are a ``PlacementGroupFactory`` starts only once a group of
its bundles is reserved: the loop creates one group at a time for the trial the
scheduler picks (``_staging``), waits for it with the trials' results, and starts
the trial's actor in its first bundle, capturing what the trial starts. A group
belongs to its actor: it goes with the actor to the next trial of the same request
(actor reuse), and is removed when the actor ends (trial done, failed or stopped).
"""
import logging
import os
import time
import traceback

import mpirt

from mpirt.exceptions import InfeasibleResourceError
from mpirt.util.placement_group import remove_placement_group

from . import schedulers as sched
from .checkpoint import Checkpoint
from .execution.placement_groups import _UNSCHEDULED, PlacementGroupFactory, actor_options
from .result import SHOULD_CHECKPOINT
from .search import BasicVariantGenerator
from .stopper import DictStopper
from .trainable import CHECKPOINT_KEY, RETURNED_KEY, FunctionTrainable, split_metadata
from .trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial

logger = logging.getLogger(__name__)


class TuneError(Exception):
    """The experiment itself is misconfigured, or (``tune.run``) some trials failed."""


class TuneInterrupted(RuntimeError):
    """The experiment was interrupted (SIGTERM, SIGUSR1, Ctrl-C); its state is saved for resume."""


class TrialActor:
    """Hosts trials' trainables on a worker rank, one after another.

    The runner reuses an actor for the next trial of the same shape (``start``
    after ``stop``) instead of killing it and placing a new one: most of a short
    trial's cost would otherwise be placing its actor.
    """

    def __init__(self):
        self._trainable = None

    def start(self, trainable_cls, config, trial_id, trial_name, checkpoint=None, trial_dir=None):
        self._trainable = trainable_cls(config, trial_id=trial_id, trial_name=trial_name)
        if trial_dir is not None and isinstance(self._trainable, FunctionTrainable):
            self._trainable.trial_dir = trial_dir
        if checkpoint is not None:
            self._trainable.restore_from_checkpoint(checkpoint)
        return True

    def train(self):
        if self._trainable is None:
            raise RuntimeError("the trial's trainable failed to start")
        return self._trainable.train()

    def save(self):
        return self._trainable.save_to_checkpoint()

    def stop(self):
        trainable, self._trainable = self._trainable, None
        if trainable is not None:
            trainable.stop()
        return True


def concurrency_limit(resources, cluster):
    """How many trials of this shape the cluster holds at once (raises if not even one)."""
    names = {"cpu": "CPU", "gpu": "GPU"}
    limit = None
    for key, amount in resources.items():
        if amount <= 0 or key in _UNSCHEDULED:
            continue
        have = cluster.get(names.get(key, key), 0)
        fits = int(have // amount + 1e-9)
        if fits == 0:
            raise TuneError(f"a trial needs {key}={amount} (resources_per_trial={resources}) but the cluster "
                            f"has {have} in all: {cluster}")
        limit = fits if limit is None else min(limit, fits)
    return limit or 1_000_000


class TrialRunner:
    def __init__(self, trainable_cls, searcher, scheduler, storage, reporter, *, resources, stopper, metric, mode,
                 max_concurrent, checkpoint_config, max_failures, meta, trial_name_prefix, experiment_id,
                 time_budget_s=None, fail_fast=False, callbacks=None, num_samples=None, trial_name_creator=None,
                 trial_dirname_creator=None):
        self.trainable_cls = trainable_cls
        self._trainable_ref = None        # trainable_cls in the object store, for every trial's start
        self.searcher = searcher
        self.scheduler = scheduler
        self.storage = storage
        self.reporter = reporter
        self.resources = resources
        self.stopper = stopper
        self.metric, self.mode = metric, mode
        self.max_concurrent = max_concurrent
        self.checkpoint_config = checkpoint_config
        self.checkpoint_freq = checkpoint_config.checkpoint_frequency or 0
        self.checkpoint_at_end = bool(checkpoint_config.checkpoint_at_end)
        self.max_failures = max_failures
        self.fail_fast = fail_fast
        self.callbacks = callbacks
        self.num_samples = num_samples
        # a model-based searcher suggests for ever: the loop stops asking after num_samples trials
        self._caps_samples = num_samples is not None and not isinstance(
            getattr(searcher, "searcher", searcher), BasicVariantGenerator)
        self.trial_name_creator = trial_name_creator
        self.trial_dirname_creator = trial_dirname_creator
        self.iteration = 0                   # steps of the loop, for callbacks
        self.meta = meta
        self.trial_name_prefix = trial_name_prefix
        self.experiment_id = experiment_id
        self.time_budget_s = time_budget_s
        self.trials = []
        self.searcher_finished = False
        self.interrupted = None              # the signal's name once interrupted
        self._actor_cls = mpirt.remote(TrialActor)
        self._actors = {}                    # trial_id -> actor handle
        self._inflight = {}                  # ObjectRef -> (trial, kind)
        self._training = set()               # trial ids with a train() in flight
        self._saving = {}                    # trial_id -> number of saves in flight
        self._stopping = {}                  # stop ref -> (actor, deadline) of actors to kill
        self._idle = []                      # actors whose trial ended, ready for the next one
        self._held = {}                      # id(actor) -> (its resources, its placement group or None)
        self._staging = {}                   # ready() ref -> (factory, group) of groups being reserved
        self._reserved = {}                  # factory -> [groups reserved, not yet given to an actor]
        self._start_errors = {}              # trial_id -> why its resources could not be worked out
        self._warned_no_checkpoint = False

    # ---- what schedulers call
    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        """Stop a trial the scheduler gave up on (it may be paused or running)."""
        if trial.is_finished:
            return
        self._finish(trial, TERMINATED)

    def unpause_trial(self, trial):
        if trial.status == PAUSED:
            self._set_status(trial, PENDING)

    def checkpoint_now(self, trial):
        """Give ``trial`` a fresh checkpoint on the driver (PBT donors)."""
        actor = self._actors.get(trial.trial_id)
        if actor is None or trial.trial_id in self._training:
            return trial.latest_checkpoint
        checkpoint = mpirt.get(actor.save.remote())
        if checkpoint is not None:
            self._store_checkpoint(trial, checkpoint, trial.last_result.get("training_iteration", 0))
        return trial.latest_checkpoint

    def exploit(self, trial, donor, new_config):
        """PBT: restart ``trial`` from ``donor``'s checkpoint with ``new_config``."""
        checkpoint = donor.latest_checkpoint
        trial.config = new_config
        self.storage.record_config(trial)
        self._stop_actor(trial)
        self._store_checkpoint(trial, checkpoint, donor.checkpoint_iteration)
        trial.restarts += 1
        self._launch(trial)

    # ---- the loop
    def trial_resources(self, trial):
        """What ``trial`` runs with: the experiment's dict or factory, or the answer of its function of
        the config (``with_resources``, ``default_resource_request``); if that raises, the trial
        fails when it would start."""
        spec = self.resources
        if isinstance(spec, (dict, PlacementGroupFactory)):
            return spec
        try:
            return spec(trial.config)
        except Exception as error:  # noqa: BLE001 - the trial fails with it, the experiment goes on
            self._start_errors[trial.trial_id] = error
            return {"cpu": 0}

    def add_trial(self, config):
        index = len(self.trials)
        trial_id = f"{self.experiment_id}_{index:05d}"
        trial = Trial(trial_id, f"{self.trial_name_prefix}_{trial_id}", config, None, index)
        trial.resources = self.trial_resources(trial)
        if self.trial_name_creator is not None:
            trial.trial_name = str(self.trial_name_creator(trial))
            trial.dirname = trial.trial_name
        if self.trial_dirname_creator is not None:
            dirname = str(self.trial_dirname_creator(trial))
            if os.sep in dirname or dirname in ("", ".", ".."):
                raise ValueError(f"trial_dirname_creator must return a directory name, not a path: got {dirname!r}")
            trial.dirname = dirname
        self.trials.append(trial)
        self.storage.record_trial(trial)
        self.scheduler.on_trial_add(self, trial)
        return trial

    def _hook(self, name, **info):
        if self.callbacks:
            getattr(self.callbacks, name)(iteration=self.iteration, trials=self.trials, **info)

    def run(self):
        start = time.monotonic()
        while self.interrupted is None:
            self.iteration += 1
            if self.time_budget_s is not None and time.monotonic() - start > self.time_budget_s:
                self._stop_everything(reason="time budget")
            self._start_trials()
            if not self._inflight and self._all_finished():
                break
            if not self._inflight and not self._actors and self.searcher_finished:
                self._unstick()
            self._process_ready(timeout=0.2)
            self._reap_stopping()
            self.reporter.maybe_report(self.trials, self.searcher.total_trials())
            self.storage.maybe_flush(self.trials, self.meta)
        for trial in self.trials:
            if trial.status == RUNNING:
                self._stop_actor(trial)
        while self._idle:
            self._retire(self._idle.pop())
        self._reap_stopping(wait=2.0 if self.interrupted is None else 0.5)
        self.remove_groups()
        self.storage.flush(self.trials, self.meta, final=True)
        for trial in self.trials:            # trials cut short by an interrupt still have open logs
            self.storage.close_trial(trial)
        self.reporter.report(self.trials, self.searcher.total_trials(), done=True)

    def _all_finished(self):
        return self.searcher_finished and all(t.is_finished for t in self.trials)

    def _unstick(self):
        """Nothing runs and nothing can start: resume paused trials rather than wait forever."""
        paused = [t for t in self.trials if t.status == PAUSED]
        if paused and not any(t.status == PENDING for t in self.trials):
            logger.warning("the scheduler left %d trials paused with nothing running; resuming them", len(paused))
            for trial in paused:
                self._set_status(trial, PENDING)

    def _live_actor_count(self):
        return len(self._actors) + len(self._idle)

    def _queue_known_trials(self):
        """Grid/random search knows every config up front: make them all pending trials now, so
        schedulers see the whole population (PBT keeps it in step, HyperBand fills brackets).
        Adaptive searchers are asked one trial at a time, as slots free up."""
        if self.searcher_finished or not isinstance(self.searcher, BasicVariantGenerator):
            return
        while True:
            config = self.searcher.suggest(f"{self.experiment_id}_{len(self.trials):05d}")
            if config == self.searcher.FINISHED:
                self.searcher_finished = True
                self.scheduler.on_searcher_finished(self)
                return
            self.add_trial(config)

    def _start_trials(self):
        self._queue_known_trials()
        while self._idle or self._live_actor_count() < self.max_concurrent:
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None:
                if self.searcher_finished:
                    break
                if self._caps_samples and len(self.trials) >= self.num_samples:
                    config = self.searcher.FINISHED      # a model-based searcher made num_samples trials
                else:
                    config = self.searcher.suggest(f"{self.experiment_id}_{len(self.trials):05d}")
                if config == self.searcher.FINISHED:
                    self.searcher_finished = True
                    self.scheduler.on_searcher_finished(self)
                    continue
                if config is None:
                    break
                trial = self.add_trial(config)
            if self._saving.get(trial.trial_id):
                break                        # its checkpoint is still on the way
            if not self._acquire_and_launch(trial):
                break                        # its placement group is not reserved yet
        if self._idle and self.searcher_finished and not any(t.status in (PENDING, PAUSED) for t in self.trials):
            while self._idle:                # no trial will need them again
                self._retire(self._idle.pop())

    def _acquire_and_launch(self, trial):
        """Start ``trial`` on an idle actor of its resources, a new actor, or a new actor in a reserved
        placement group; False when its group is still being reserved (the loop waits for it)."""
        if trial.trial_id in self._start_errors:
            self._fail_at_start(trial, self._start_errors.pop(trial.trial_id))
            return True
        resources = trial.resources
        actor = self._take_idle(resources)
        if actor is not None:
            self._launch(trial, actor)
            return True
        if self._idle:
            self._retire_idle(keep=resources)   # actors of other shapes hold what this trial may need
        if self._live_actor_count() >= self.max_concurrent:
            return False
        if not isinstance(resources, PlacementGroupFactory):
            self._launch(trial, self._new_actor(resources, None))
            return True
        ready = self._reserved.get(resources)
        if ready:
            group = ready.pop()
            if not ready:
                del self._reserved[resources]
            self._launch(trial, self._new_actor(resources, group))
            return True
        for factory in [f for f in self._reserved if f != resources]:
            for group in self._reserved.pop(factory):   # reserved for trials that went elsewhere
                remove_placement_group(group)
        if not any(factory == resources for factory, _ in self._staging.values()):
            try:
                group = resources.to_placement_group()
            except InfeasibleResourceError as error:
                self._fail_at_start(trial, error)
                return True
            self._staging[group.ready()] = (resources, group)
        return False

    def _take_idle(self, resources):
        for i in range(len(self._idle) - 1, -1, -1):
            held = self._held[id(self._idle[i])][0]
            if held is resources or held == resources:
                return self._idle.pop(i)
        return None

    def _retire_idle(self, keep):
        for actor in [a for a in self._idle if keep is None or self._held[id(a)][0] != keep]:
            self._idle.remove(actor)
            self._retire(actor)

    def _new_actor(self, resources, group):
        actor = self._actor_cls.options(**actor_options(resources, group)).remote()
        self._held[id(actor)] = (resources, group)
        return actor

    def _release(self, actor):
        """The actor is gone: its placement group (and whatever still runs in it) goes too."""
        group = self._held.pop(id(actor), (None, None))[1]
        if group is not None:
            remove_placement_group(group)

    def remove_groups(self):
        """Remove every placement group the loop still holds (at the end, or when interrupted)."""
        groups = [group for _, group in self._staging.values()]
        groups += [group for ready in self._reserved.values() for group in ready]
        groups += [group for _, group in self._held.values() if group is not None]
        self._staging, self._reserved = {}, {}
        self._held = {key: (resources, None) for key, (resources, _) in self._held.items()}
        for group in groups:
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - the runtime is going away: nothing left to free
                pass

    def _launch(self, trial, actor=None):
        if actor is None:
            actor = self._take_idle(trial.resources)
            if actor is None:                # no actor of its shape left: the loop starts it
                self._set_status(trial, PENDING)
                return
        self._actors[trial.trial_id] = actor
        if self._trainable_ref is None:   # pickled once, not once per trial (~0.6 ms each on the 2-core VM)
            self._trainable_ref = mpirt.put(self.trainable_cls)
        self._inflight[actor.start.remote(self._trainable_ref, trial.config, trial.trial_id, trial.trial_name,
                                          trial.latest_checkpoint, trial.local_path)] = (trial, "start", actor)
        self._set_status(trial, RUNNING)
        self._hook("on_trial_restore" if trial.latest_checkpoint is not None else "on_trial_start", trial=trial)
        self._submit_train(trial)

    def _submit_train(self, trial):
        actor = self._actors[trial.trial_id]
        self._inflight[actor.train.remote()] = (trial, "train", actor)
        self._training.add(trial.trial_id)

    def _submit_save(self, trial):
        actor = self._actors[trial.trial_id]
        self._inflight[actor.save.remote()] = (trial, "save", actor)
        self._saving[trial.trial_id] = self._saving.get(trial.trial_id, 0) + 1

    def _process_ready(self, timeout):
        if not self._inflight and not self._staging:
            time.sleep(min(timeout, 0.05))
            return
        refs = list(self._inflight) + list(self._staging)
        ready, rest = mpirt.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = mpirt.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        ready = set(ready)
        for ref in [r for r in self._staging if r in ready]:
            factory, group = self._staging.pop(ref)
            self._reserved.setdefault(factory, []).append(group)
        for ref in [r for r in self._inflight if r in ready]:     # in the order they were sent
            trial, kind, actor = self._inflight.pop(ref)
            current = self._actors.get(trial.trial_id) is actor
            if kind == "train" and current:
                self._training.discard(trial.trial_id)
            try:
                value = mpirt.get(ref)
            except Exception as error:  # noqa: BLE001 - the trial failed, the experiment goes on
                if kind == "save":
                    self._saving[trial.trial_id] -= 1
                if current:
                    self._on_trial_error(trial, error)
                continue
            if kind == "train":
                if current and trial.status == RUNNING:
                    self._on_result(trial, value)
            elif kind == "save":
                self._saving[trial.trial_id] -= 1
                if value is not None:
                    self._store_checkpoint(trial, value, self._iteration_of(value, trial))
                elif trial.status == PAUSED and not self._warned_no_checkpoint:
                    self._warned_no_checkpoint = True
                    logger.warning("trial %s was paused but reports no checkpoint: it will start over when "
                                   "resumed (report checkpoints with tune.report(..., checkpoint=...))", trial)

    @staticmethod
    def _iteration_of(checkpoint, trial):
        return split_metadata(checkpoint)[1].get("iteration", trial.last_result.get("training_iteration", 0))

    def _on_result(self, trial, result):
        checkpoint = result.pop(CHECKPOINT_KEY, None)
        returned = result.pop(RETURNED_KEY, False)
        if checkpoint is not None:      # journaled after the result it came with (journal_checkpoint)
            self._store_checkpoint(trial, checkpoint, result["training_iteration"], journal=returned)
        if returned:
            if trial.results:
                trial.results[-1]["done"] = True
            self._complete(trial)
            return
        self._validate(trial, result)
        result.setdefault("config", trial.config)
        self._hook("on_trial_result", trial=trial, result=result)
        should_checkpoint = bool(result.pop(SHOULD_CHECKPOINT, False))
        trial.results.append(result)
        trial.last_result = result
        self.storage.record_result(trial, result)
        if checkpoint is not None and trial.local_path is not None:
            self.storage.journal_checkpoint(trial, trial.checkpoint_iteration, trial.latest_checkpoint.path)
        self.searcher.on_trial_result(trial.trial_id, result)
        if result.get("done") or self._should_stop(trial, result):
            if should_checkpoint and not self.checkpoint_at_end and not issubclass(self.trainable_cls,
                                                                                    FunctionTrainable):
                self._submit_save(trial)
            self._complete(trial)
            return
        decision = self.scheduler.on_trial_result(self, trial, result)
        if trial.status != RUNNING or trial.trial_id in self._training:
            return                          # the scheduler stopped or restarted it already
        if decision == sched.STOP:
            self._complete(trial)
        elif decision == sched.PAUSE:
            self._pause(trial)
        else:
            periodic = self.checkpoint_freq and result["training_iteration"] % self.checkpoint_freq == 0
            if (periodic or should_checkpoint) and not issubclass(self.trainable_cls, FunctionTrainable):
                self._submit_save(trial)
            self._submit_train(trial)

    def _validate(self, trial, result):
        if self.metric and self.metric not in result:
            raise TuneError(f"trial {trial} did not report the metric {self.metric!r} named in tune.run(metric=); "
                            f"it reported {sorted(k for k in result if not k.startswith('_'))}")
        if isinstance(self.stopper, DictStopper):
            missing = self.stopper.missing(result)
            if missing:
                raise TuneError(f"stop criteria {missing} name no metric trial {trial} reports; it reported "
                                f"{sorted(k for k in result if not k.startswith('_'))}")

    def _should_stop(self, trial, result):
        if self.stopper is None:
            return False
        stop = bool(self.stopper(trial.trial_id, result))
        if self.stopper.stop_all():
            self._stop_everything(reason="stopper")
        return stop

    def _store_checkpoint(self, trial, checkpoint, iteration, journal=True):
        checkpoint = Checkpoint.from_files(checkpoint.files, checkpoint.path)   # this trial's own (PBT shares)
        trial.latest_checkpoint = checkpoint
        trial.checkpoint_iteration = iteration
        if trial.local_path is None:
            return
        trial.latest_checkpoint.path = self.storage.record_checkpoint(trial, checkpoint, iteration, journal)
        self._hook("on_checkpoint", trial=trial, checkpoint=trial.latest_checkpoint)
        config = self.checkpoint_config
        if config.num_to_keep:
            self.storage.prune_checkpoints(trial, config.num_to_keep, config.checkpoint_score_attribute,
                                           config.checkpoint_score_order)

    def _complete(self, trial):
        if self.checkpoint_at_end and not issubclass(self.trainable_cls, FunctionTrainable):
            self._submit_save(trial)
        self._finish(trial, TERMINATED)

    def _pause(self, trial):
        self._submit_save(trial)
        self._stop_actor(trial)
        self._set_status(trial, PAUSED)
        self.storage.close_trial(trial)      # its logs reopen when it resumes: many paused trials hold no files

    def _finish(self, trial, status):
        self._stop_actor(trial)
        self._set_status(trial, status)
        self.storage.close_trial(trial)
        if status == TERMINATED:
            self.searcher.on_trial_complete(trial.trial_id, trial.last_result, error=False)
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self._hook("on_trial_complete", trial=trial)

    def _on_trial_error(self, trial, error):
        trial.num_failures += 1
        self._record_error(trial, error)
        self._stop_actor(trial, kill_now=True)
        if not self.fail_fast and (self.max_failures < 0 or trial.num_failures <= self.max_failures):
            self._hook("on_trial_recover", trial=trial)
            logger.warning("trial %s failed (%d of %s failures allowed); restarting from %s", trial,
                           trial.num_failures, self.max_failures if self.max_failures >= 0 else "unlimited",
                           f"iteration {trial.checkpoint_iteration}" if trial.latest_checkpoint else "scratch")
            self._set_status(trial, PENDING)
            return
        self._error_out(trial)

    def _fail_at_start(self, trial, error):
        """The trial cannot start at all (its placement group could never be reserved, its resources
        could not be worked out): ERROR at once, no retries."""
        trial.num_failures += 1
        self._record_error(trial, error)
        logger.warning("trial %s cannot start: %s", trial, error)
        self._error_out(trial)

    @staticmethod
    def _record_error(trial, error):
        trial.exception = error
        trial.error = getattr(error, "traceback_str", None) or "".join(
            traceback.format_exception(type(error), error, error.__traceback__))

    def _error_out(self, trial):
        self._set_status(trial, ERROR)
        self.storage.close_trial(trial)
        self.searcher.on_trial_complete(trial.trial_id, trial.last_result, error=True)
        self.scheduler.on_trial_error(self, trial)
        self._hook("on_trial_error", trial=trial)
        if self.fail_fast:
            logger.warning("trial %s failed and fail_fast is set: stopping the experiment", trial)
            self._stop_everything(reason="fail_fast")

    def _set_status(self, trial, status):
        trial.status = status
        self.storage.record_status(trial)

    def _stop_actor(self, trial, kill_now=False):
        """End the trial's trainable; its actor serves the next trial (or is killed after a failure)."""
        actor = self._actors.pop(trial.trial_id, None)
        if actor is None:
            return
        if kill_now:
            mpirt.kill(actor)
            self._release(actor)
            return
        actor.stop.remote()
        self._idle.append(actor)

    def _retire(self, actor):
        self._stopping[actor.stop.remote()] = (actor, time.monotonic() + 10.0)

    def _reap_stopping(self, wait=0.0):
        """Kill actors whose stop() finished (or took too long): their resources go back."""
        deadline = time.monotonic() + wait
        while self._stopping:
            refs = list(self._stopping)
            done, _ = mpirt.wait(refs, num_returns=len(refs), timeout=0)
            now = time.monotonic()
            for ref in refs:
                actor, limit = self._stopping[ref]
                if ref in done or now > limit:
                    del self._stopping[ref]
                    mpirt.kill(actor)
                    self._release(actor)
            if not self._stopping or time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def _stop_everything(self, reason):
        for trial in self.trials:
            if not trial.is_finished:
                self._finish(trial, TERMINATED)
        self.searcher_finished = True
