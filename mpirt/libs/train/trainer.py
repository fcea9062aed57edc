"""``DataParallelTrainer``: run one function on N workers, as one Tune trial.

As in Ray, ``fit()`` runs the trainer as a Tune experiment of one trial, so a training run gets Tune's
results directory, its HDF5 file of results and checkpoints (``docs/tune.md``), ``Result`` and restore; and
a ``Tuner(trainer, param_space={"train_loop_config": ...})`` sweeps trainers with the same code. The trial's
own actor holds no CPU: the workers reserve theirs in a placement group per trial (``WorkerGroup``).
"""
from typing import Any, Callable, Dict, Optional

from ..tune import session as tune_session
from ..tune.config import RunConfig
from ..tune.trainable_util import with_resources
from .config import ScalingConfig
from .worker_group import WorkerGroup


class TrainingFailedError(RuntimeError):
    """``fit()`` of a run whose workers failed; the worker's error is the cause (``__cause__``)."""


class DataParallelTrainer:
    """Runs ``train_loop_per_worker(config)`` (or ``()``) on ``scaling_config.num_workers`` workers.
    Subclasses name a backend set-up run on each worker first (``_backend_setup``)."""

    _one_per_process = False

    def __init__(self, train_loop_per_worker: Callable, *, train_loop_config: Optional[Dict[str, Any]] = None,
                 scaling_config: Optional[ScalingConfig] = None, run_config: Optional[RunConfig] = None,
                 datasets: Optional[Dict[str, Any]] = None, dataset_config: Any = None,
                 resume_from_checkpoint: Any = None, metadata: Optional[Dict[str, Any]] = None):
        if not callable(train_loop_per_worker):
            raise TypeError(f"{type(self).__name__}(train_loop_per_worker={train_loop_per_worker!r}): pass the "
                            f"function each worker runs")
        if train_loop_config is not None and not isinstance(train_loop_config, dict):
            raise TypeError(f"train_loop_config should be a dict, got {type(train_loop_config).__name__}")
        if scaling_config is not None and not isinstance(scaling_config, ScalingConfig):
            raise ValueError(f"`scaling_config` should be an instance of `ScalingConfig`, found "
                             f"{type(scaling_config)} with value `{scaling_config}`.")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise ValueError(f"`run_config` should be an instance of `ray.train.RunConfig`, found "
                             f"{type(run_config)} with value `{run_config}`.")
        if datasets:
            raise NotImplementedError("datasets=: mpirt has no Ray Data; load data in train_loop_per_worker "
                                      "(a torch DataLoader passed through train.torch.prepare_data_loader)")
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self.scaling_config = scaling_config or ScalingConfig()
        self.run_config = run_config or RunConfig()
        self.resume_from_checkpoint = resume_from_checkpoint
        self.metadata = metadata or {}
        self._takes_config = _takes_config(train_loop_per_worker)

    @staticmethod
    def _backend_setup(context, group_name):
        """Run on each worker before the loop; returns its teardown (or None)."""
        return None

    def as_trainable(self):
        """A Tune function trainable that runs this trainer; ``config["train_loop_config"]`` (a sweep's)
        updates ``train_loop_config``."""
        trainer = self

        def train_function(config):
            loop_config = dict(trainer.train_loop_config or {})
            loop_config.update(config.get("train_loop_config", {}))
            context = tune_session.get_context()
            names = dict(experiment_name=trainer.run_config.name or "", trial_name=context.get_trial_name(),
                         trial_id=context.get_trial_id(), trial_dir=context.get_trial_dir(),
                         metadata=trainer.metadata)
            checkpoint = tune_session.get_checkpoint() or trainer.resume_from_checkpoint
            group = WorkerGroup(trainer.scaling_config, names, trainer._backend_setup, trainer._one_per_process)
            try:
                group.run(trainer.train_loop_per_worker, loop_config if trainer._takes_config else None, checkpoint,
                          lambda metrics, saved: tune_session.report(metrics, checkpoint=saved))
            finally:
                group.shutdown()

        train_function.__name__ = type(self).__name__
        train_function.__qualname__ = type(self).__name__
        return with_resources(train_function, {"CPU": 0})

    def fit(self):
        """Train; returns the run's ``Result`` (metrics of worker 0's last report, the latest checkpoint,
        the results directory). Raises ``TrainingFailedError`` if a worker failed. Without
        ``RunConfig(name=...)`` the run is named as Tune names experiments (``TorchTrainer_<date>``, or
        ``<job name>-<job id>`` in a Slurm job)."""
        from ..tune.tuner import Tuner

        result = Tuner(self.as_trainable(), run_config=self.run_config).fit()[0]
        if result.error is not None:
            raise TrainingFailedError(f"Training failed: {result.error}") from result.error
        return result


def _takes_config(function):
    import inspect
    try:
        return len(inspect.signature(function).parameters) >= 1
    except (TypeError, ValueError):
        return True
