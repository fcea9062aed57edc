"""Trial schedulers: decide, result by result, whether a trial continues, pauses or stops.

FIFO runs everything to its stop criteria. ASHA and MedianStoppingRule stop
poor trials early; HyperBand pauses whole brackets at milestones and resumes
the best; PBT copies a better trial's checkpoint and perturbs its config.
"""
import collections
import copy
import math
import random

import numpy as np

from . import search_space

CONTINUE = "CONTINUE"
PAUSE = "PAUSE"
STOP = "STOP"


class TrialScheduler:
    CONTINUE, PAUSE, STOP = CONTINUE, PAUSE, STOP
    metric = None
    mode = None
    needs_metric = True

    def set_search_properties(self, metric, mode):
        if self.metric is None:
            self.metric = metric
        if self.mode is None:
            self.mode = mode
        if self.needs_metric and (self.metric is None or self.mode is None):
            raise ValueError(f"{type(self).__name__} needs metric= and mode= (in tune.run or the scheduler)")
        if self.mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        return True

    def _score(self, result):
        """The metric, signed so that higher is better."""
        value = float(result[self.metric])
        return value if self.mode == "max" else -value

    def on_trial_add(self, runner, trial):
        pass

    def on_trial_result(self, runner, trial, result):
        return CONTINUE

    def on_trial_complete(self, runner, trial, result):
        pass

    def on_trial_error(self, runner, trial):
        self.on_trial_remove(runner, trial)

    def on_trial_remove(self, runner, trial):
        pass

    def on_searcher_finished(self, runner):
        """No more trials will be added (brackets waiting to fill can close now)."""

    def choose_trial_to_run(self, runner):
        """The next trial to start or resume: pending ones first, in order."""
        for trial in runner.get_trials():
            if trial.status == "PENDING":
                return trial
        return None


class FIFOScheduler(TrialScheduler):
    needs_metric = False


class AsyncHyperBandScheduler(TrialScheduler):
    """ASHA: at each rung (grace_period * reduction_factor**k) a trial continues only if it is in the
    top 1/reduction_factor of the trials that reached that rung so far."""

    def __init__(self, time_attr="training_iteration", metric=None, mode=None, max_t=100, grace_period=1,
                 reduction_factor=4, brackets=1):
        if grace_period <= 0 or max_t <= 0 or grace_period > max_t:
            raise ValueError(f"ASHA needs 0 < grace_period <= max_t, got grace_period={grace_period}, max_t={max_t}")
        if reduction_factor <= 1:
            raise ValueError(f"ASHA needs reduction_factor > 1, got {reduction_factor}")
        self.time_attr, self.metric, self.mode = time_attr, metric, mode
        self.max_t, self.grace_period, self.rf = max_t, grace_period, reduction_factor
        self._brackets = [self._milestones(s) for s in range(brackets)]
        self._recorded = [dict() for _ in range(brackets)]   # per bracket: milestone -> {trial_id: score}
        self._bracket_of = {}

    def _milestones(self, s):
        count = int(math.log(self.max_t / self.grace_period, self.rf) - s + 1 + 1e-9)
        return [self.grace_period * self.rf ** (k + s) for k in reversed(range(max(count, 0)))]

    def on_trial_add(self, runner, trial):
        sizes = [len(b) for b in self._brackets]
        weights = np.array(sizes, dtype=float) / max(sum(sizes), 1)
        self._bracket_of[trial.trial_id] = int(np.random.choice(len(sizes), p=weights)) if sum(sizes) else 0

    def on_trial_result(self, runner, trial, result):
        if self.time_attr not in result or self.metric not in result:
            return CONTINUE
        t = result[self.time_attr]
        if t >= self.max_t:
            return STOP
        bracket = self._bracket_of.setdefault(trial.trial_id, 0)
        recorded = self._recorded[bracket]
        for milestone in self._brackets[bracket]:
            if t < milestone or trial.trial_id in recorded.get(milestone, {}):
                continue
            scores = recorded.setdefault(milestone, {})
            score = self._score(result)
            cutoff = np.percentile(list(scores.values()), (1 - 1 / self.rf) * 100) if scores else None
            scores[trial.trial_id] = score
            if cutoff is not None and score < cutoff:
                return STOP
            break
        return CONTINUE


ASHAScheduler = AsyncHyperBandScheduler


class MedianStoppingRule(TrialScheduler):
    """Stop a trial whose best result so far is worse than the median of the other trials'
    running averages at the same point in time."""

    def __init__(self, time_attr="time_total_s", metric=None, mode=None, grace_period=60.0,
                 min_samples_required=3, hard_stop=True):
        self.time_attr, self.metric, self.mode = time_attr, metric, mode
        self.grace_period, self.min_samples, self.hard_stop = grace_period, min_samples_required, hard_stop
        self._history = collections.defaultdict(list)   # trial_id -> [(t, score)]

    def on_trial_result(self, runner, trial, result):
        if self.time_attr not in result or self.metric not in result:
            return CONTINUE
        t = result[self.time_attr]
        self._history[trial.trial_id].append((t, self._score(result)))
        if t < self.grace_period:
            return CONTINUE
        averages = []
        for other, points in self._history.items():
            if other == trial.trial_id:
                continue
            upto = [s for (when, s) in points if when <= t]
            if upto:
                averages.append(sum(upto) / len(upto))
        if len(averages) < self.min_samples:
            return CONTINUE
        best = max(s for _t, s in self._history[trial.trial_id])
        if best < float(np.median(averages)):
            return STOP if self.hard_stop else PAUSE
        return CONTINUE


class HyperBandScheduler(TrialScheduler):
    """Synchronous HyperBand: trials fill brackets; each bracket runs its trials to a milestone,
    pauses them, keeps the best 1/eta and doubles down on them (eta times the budget)."""

    def __init__(self, time_attr="training_iteration", metric=None, mode=None, max_t=81, reduction_factor=3):
        if max_t < 1 or reduction_factor <= 1:
            raise ValueError(f"HyperBand needs max_t >= 1 and reduction_factor > 1, got {max_t}, {reduction_factor}")
        self.time_attr, self.metric, self.mode = time_attr, metric, mode
        self.max_t, self.eta = max_t, reduction_factor
        self.s_max = int(math.log(max_t, reduction_factor) + 1e-9)
        self._brackets = []            # each: dict(size, milestone, trials list, scores)
        self._bracket_of = {}
        self._next_s = self.s_max

    def _new_bracket(self):
        s = self._next_s
        self._next_s = self._next_s - 1 if self._next_s > 0 else self.s_max
        size = int(math.ceil((self.s_max + 1) / (s + 1) * self.eta ** s))
        milestone = max(1, int(round(self.max_t * self.eta ** (-s))))
        bracket = {"size": size, "milestone": milestone, "trials": [], "scores": {}, "done": set()}
        self._brackets.append(bracket)
        return bracket

    def on_trial_add(self, runner, trial):
        bracket = self._brackets[-1] if self._brackets else None
        if bracket is None or len(bracket["trials"]) >= bracket["size"]:
            bracket = self._new_bracket()
        bracket["trials"].append(trial)
        self._bracket_of[trial.trial_id] = bracket

    def on_trial_result(self, runner, trial, result):
        bracket = self._bracket_of.get(trial.trial_id)
        if bracket is None or self.time_attr not in result or self.metric not in result:
            return CONTINUE
        t = result[self.time_attr]
        if t >= self.max_t:
            bracket["scores"][trial.trial_id] = self._score(result)
            return STOP
        if t < bracket["milestone"]:
            return CONTINUE
        bracket["scores"][trial.trial_id] = self._score(result)
        advanced = self._maybe_advance(runner, bracket, exclude=trial)
        if trial.trial_id in bracket["done"]:
            return STOP
        return CONTINUE if advanced else PAUSE

    def on_trial_complete(self, runner, trial, result):
        self.on_trial_remove(runner, trial)

    def on_trial_remove(self, runner, trial):
        bracket = self._bracket_of.get(trial.trial_id)
        if bracket is not None:
            bracket["done"].add(trial.trial_id)
            self._maybe_advance(runner, bracket)

    def on_searcher_finished(self, runner):
        for bracket in self._brackets:
            self._maybe_advance(runner, bracket)

    def _maybe_advance(self, runner, bracket, exclude=None):
        """When every live trial of a full bracket sits at the milestone: keep the best 1/eta."""
        full = len(bracket["trials"]) >= bracket["size"] or runner.searcher_finished
        live = [t for t in bracket["trials"] if t.trial_id not in bracket["done"]]
        if not full or not live or any(t.trial_id not in bracket["scores"] for t in live):
            return False
        ranked = sorted(live, key=lambda t: bracket["scores"][t.trial_id], reverse=True)
        keep = max(1, len(live) // self.eta)
        for loser in ranked[keep:]:
            bracket["done"].add(loser.trial_id)
            if loser is not exclude:
                runner.stop_trial(loser)
        bracket["milestone"] = min(self.max_t, bracket["milestone"] * self.eta)
        bracket["scores"] = {}
        for winner in ranked[:keep]:
            if winner is not exclude:
                runner.unpause_trial(winner)
        return True

    def choose_trial_to_run(self, runner):
        for bracket in self._brackets:
            for trial in bracket["trials"]:
                if trial.status == "PENDING":
                    return trial
        return super().choose_trial_to_run(runner)


class PopulationBasedTraining(TrialScheduler):
    """PBT: every ``perturbation_interval`` a trial in the bottom quantile copies the checkpoint of one
    in the top quantile (exploit) and continues with a perturbed copy of its config (explore)."""

    def __init__(self, time_attr="training_iteration", metric=None, mode=None, perturbation_interval=5,
                 hyperparam_mutations=None, quantile_fraction=0.25, resample_probability=0.25,
                 custom_explore_fn=None, burn_in_period=0, seed=None):
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError("PopulationBasedTraining needs hyperparam_mutations or custom_explore_fn")
        if not 0 < quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction must be in (0, 0.5], got {quantile_fraction}")
        for key, spec in (hyperparam_mutations or {}).items():
            if not (isinstance(spec, (list, tuple, dict, search_space.Domain)) or callable(spec)):
                raise TypeError(f"hyperparam_mutations[{key!r}] must be a list, a tune domain, a dict of those "
                                f"or a callable, got {spec!r}")
        self.time_attr, self.metric, self.mode = time_attr, metric, mode
        self.interval = perturbation_interval
        self.mutations = hyperparam_mutations or {}
        self.quantile_fraction = quantile_fraction
        self.resample_probability = resample_probability
        self.custom_explore_fn = custom_explore_fn
        self.burn_in_period = burn_in_period
        self._rng = random.Random(seed)
        self._last_perturbed = {}
        self._last_score = {}
        self._last_time = {}
        self.num_perturbations = 0

    def on_trial_result(self, runner, trial, result):
        if self.time_attr not in result or self.metric not in result:
            return CONTINUE
        t = result[self.time_attr]
        self._last_time[trial.trial_id] = t
        self._last_score[trial.trial_id] = self._score(result)
        if t < self.burn_in_period or t - self._last_perturbed.get(trial.trial_id, 0) < self.interval:
            return CONTINUE
        self._last_perturbed[trial.trial_id] = t
        lower, upper = self._quantiles(runner)
        if trial in upper:
            runner.checkpoint_now(trial)            # the donors keep a fresh checkpoint
        elif trial in lower:
            donors = [d for d in upper if d.latest_checkpoint is not None]
            if donors:
                donor = self._rng.choice(donors)
                new_config = self.explore(donor.config)
                self.num_perturbations += 1
                self._last_perturbed[trial.trial_id] = self._last_perturbed.get(donor.trial_id, t)
                runner.exploit(trial, donor, new_config)
                return CONTINUE
        # more trials than slots: yield to those that are behind, so the population moves in step
        if any(other.status in ("PENDING", "PAUSED") for other in runner.get_trials()):
            return PAUSE
        return CONTINUE

    def choose_trial_to_run(self, runner):
        """The waiting trial that is furthest behind (so that all advance at the same pace)."""
        waiting = [t for t in runner.get_trials() if t.status in ("PENDING", "PAUSED")]
        if not waiting:
            return None
        return min(waiting, key=lambda t: (self._last_time.get(t.trial_id, 0), t.index))

    def _quantiles(self, runner):
        scored = [t for t in runner.get_trials()
                  if t.trial_id in self._last_score and t.status in ("RUNNING", "PAUSED", "PENDING")]
        scored.sort(key=lambda t: self._last_score[t.trial_id])
        if len(scored) <= 1:
            return [], []
        count = max(1, int(math.ceil(len(scored) * self.quantile_fraction)))
        count = min(count, len(scored) // 2)
        return scored[:count], scored[-count:]

    def explore(self, config):
        new = copy.deepcopy(config)
        self._perturb(new, self.mutations)
        if self.custom_explore_fn is not None:
            new = self.custom_explore_fn(new)
            if not isinstance(new, dict):
                raise TypeError("PBT custom_explore_fn must return the config dict")
        return new

    def _perturb(self, config, mutations):
        for key, spec in mutations.items():
            if isinstance(spec, dict):
                self._perturb(config.setdefault(key, {}), spec)
                continue
            current = config.get(key)
            resample = self._rng.random() < self.resample_probability
            if isinstance(spec, (list, tuple)):
                values = list(spec)
                if resample or current not in values:
                    config[key] = self._rng.choice(values)
                else:
                    index = values.index(current) + self._rng.choice([-1, 1])
                    config[key] = values[min(max(index, 0), len(values) - 1)]
            elif resample or not isinstance(current, (int, float)):
                config[key] = spec.sample(self._rng) if isinstance(spec, search_space.Domain) else spec()
            else:
                factor = self._rng.choice([0.8, 1.2])
                config[key] = type(current)(current * factor) if isinstance(current, int) else current * factor


_SCHEDULERS = {
    "fifo": FIFOScheduler,
    "async_hyperband": AsyncHyperBandScheduler,
    "asynchyperband": AsyncHyperBandScheduler,
    "median_stopping_rule": MedianStoppingRule,
    "medianstopping": MedianStoppingRule,
    "hyperband": HyperBandScheduler,
    "pbt": PopulationBasedTraining,
}


def create_scheduler(scheduler, **kwargs):
    """A scheduler by name (``"async_hyperband"``, ``"pbt"``, ...), built with ``kwargs``."""
    key = scheduler.lower() if isinstance(scheduler, str) else scheduler
    if key not in _SCHEDULERS:
        raise ValueError(f"The `scheduler` argument must be one of {list(_SCHEDULERS)}. Got: {scheduler}")
    return _SCHEDULERS[key](**kwargs)
