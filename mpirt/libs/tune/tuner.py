"""The current API: ``Tuner(trainable, param_space=, tune_config=, run_config=).fit()``."""
import dataclasses
import os
from typing import Any, Optional

import mpirt

from .analysis import ResultGrid
from .run import run
from .storage import JOURNAL


@dataclasses.dataclass
class TuneConfig:
    metric: Optional[str] = None
    mode: Optional[str] = None
    num_samples: int = 1
    scheduler: Any = None
    search_alg: Any = None
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Optional[float] = None
    seed: Optional[int] = None


@dataclasses.dataclass
class CheckpointConfig:
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool = False
    num_to_keep: Optional[int] = None


@dataclasses.dataclass
class FailureConfig:
    max_failures: int = 0


@dataclasses.dataclass
class RunConfig:
    name: Optional[str] = None
    storage_path: Optional[str] = None
    stop: Any = None
    checkpoint_config: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    failure_config: FailureConfig = dataclasses.field(default_factory=FailureConfig)
    verbose: int = 1
    progress_interval: float = 5.0


class Tuner:
    def __init__(self, trainable, *, param_space=None, tune_config=None, run_config=None, _resume=False):
        self.trainable = trainable
        self.param_space = param_space or {}
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self._resume = _resume

    @classmethod
    def restore(cls, path, trainable, *, param_space=None, tune_config=None, run_config=None):
        """Continue the experiment saved at ``path`` (its trials resume from their checkpoints)."""
        if not cls.can_restore(path):
            raise ValueError(f"no Tune experiment at {path!r} (looked for {JOURNAL})")
        path = os.path.abspath(path)
        run_config = run_config or RunConfig()
        run_config.name, run_config.storage_path = os.path.basename(path), os.path.dirname(path)
        return cls(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config, _resume=True)

    @staticmethod
    def can_restore(path):
        return os.path.exists(os.path.join(path, JOURNAL))

    def fit(self):
        tc, rc = self.tune_config, self.run_config
        analysis = run(self.trainable, config=self.param_space, metric=tc.metric, mode=tc.mode,
                       num_samples=tc.num_samples, scheduler=tc.scheduler, search_alg=tc.search_alg,
                       max_concurrent_trials=tc.max_concurrent_trials, time_budget_s=tc.time_budget_s,
                       seed=tc.seed, name=rc.name, storage_path=rc.storage_path, stop=rc.stop,
                       checkpoint_freq=rc.checkpoint_config.checkpoint_frequency,
                       checkpoint_at_end=rc.checkpoint_config.checkpoint_at_end,
                       keep_checkpoints_num=rc.checkpoint_config.num_to_keep,
                       max_failures=rc.failure_config.max_failures, verbose=rc.verbose,
                       progress_interval=rc.progress_interval, resume=self._resume,
                       raise_on_failed_trial=False)
        return ResultGrid(analysis)


def with_resources(trainable, resources):
    """The same trainable, run with ``resources`` ({"cpu": 2, "gpu": 1}) per trial."""
    from .registry import as_trainable_class
    cls = as_trainable_class(trainable)
    return type(cls.__name__, (cls,), {"_tune_resources": dict(resources), "__module__": cls.__module__})


def with_parameters(trainable, **parameters):
    """Pass large objects to every trial through the object store, once, instead of in each config."""
    from .registry import as_trainable_class
    refs = {name: mpirt.put(value) for name, value in parameters.items()}
    if isinstance(trainable, type):
        base = as_trainable_class(trainable)

        def setup(self, config):
            base.setup(self, config, **{name: mpirt.get(ref) for name, ref in refs.items()})
        return type(base.__name__, (base,), {"setup": setup, "__module__": base.__module__})

    def with_params(config):
        return trainable(config, **{name: mpirt.get(ref) for name, ref in refs.items()})
    with_params.__name__ = getattr(trainable, "__name__", "trainable")
    return with_params
