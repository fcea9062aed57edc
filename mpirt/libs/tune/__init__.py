"""mpirt.libs.tune: hyperparameter search on mpirt, with Ray Tune's API.

Trials run as mpirt actors sized by ``resources_per_trial`` (a dict, or a
``PlacementGroupFactory`` whose group is reserved per trial); the driver runs
the experiment loop (search algorithm, trial scheduler, loggers) and keeps
results and checkpoints in one HDF5 file per experiment (see docs/tune.md).
"""
from . import result, schedulers, search, stopper
from .analysis import ExperimentAnalysis, Result, ResultGrid
from .callback import Callback
from .checkpoint import Checkpoint
from .config import CheckpointConfig, FailureConfig, ResumeConfig, RunConfig, TuneConfig
from .execution.placement_groups import PlacementGroupFactory
from .progress import CLIReporter, ProgressReporter
from .registry import register_env, register_trainable
from .run import Experiment, run, run_experiments
from .runner import TuneError, TuneInterrupted
from .schedulers import (ASHAScheduler, AsyncHyperBandScheduler, FIFOScheduler, HyperBandScheduler,
                         MedianStoppingRule, PopulationBasedTraining, TrialScheduler, create_scheduler)
from .search import BasicVariantGenerator, ConcurrencyLimiter, Searcher, create_searcher
from .search.optuna import OptunaSearch
from .search_space import (choice, grid_search, lograndint, loguniform, qlograndint, qloguniform, qrandint, qrandn,
                           quniform, randint, randn, sample_from, uniform)
from .session import (StatusReporter, TuneContext, get_checkpoint, get_context, get_trial_dir, get_trial_id,
                      get_trial_name, report)
from .stopper import Stopper
from .trainable import FunctionTrainable, Trainable
from .trainable_util import with_parameters, with_resources
from .tuner import Tuner

__all__ = [
    "run", "run_experiments", "Experiment", "register_trainable", "register_env", "Tuner", "TuneConfig",
    "RunConfig", "CheckpointConfig", "FailureConfig", "ResumeConfig", "with_resources", "with_parameters",
    "PlacementGroupFactory",
    "report", "get_checkpoint", "get_context", "TuneContext", "get_trial_id", "get_trial_name", "get_trial_dir",
    "StatusReporter", "Trainable", "FunctionTrainable", "Callback", "Stopper", "Checkpoint", "ExperimentAnalysis",
    "Result", "ResultGrid", "TuneError", "TuneInterrupted", "ProgressReporter", "CLIReporter", "schedulers",
    "search", "stopper", "result", "create_scheduler", "create_searcher", "TrialScheduler", "FIFOScheduler",
    "AsyncHyperBandScheduler", "ASHAScheduler", "HyperBandScheduler", "MedianStoppingRule",
    "PopulationBasedTraining", "Searcher", "BasicVariantGenerator", "ConcurrencyLimiter", "OptunaSearch",
    "grid_search", "choice", "uniform", "quniform", "loguniform", "qloguniform", "randint", "qrandint",
    "lograndint", "qlograndint", "randn", "qrandn", "sample_from",
]
