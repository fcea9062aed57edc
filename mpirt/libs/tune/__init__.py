"""mpirt.libs.tune: hyperparameter search on mpirt, with Ray Tune's API.

Trials run as mpirt actors sized by ``resources_per_trial``; the driver runs
the experiment loop (search algorithm, trial scheduler, loggers) and keeps
results and checkpoints in one HDF5 file per experiment (see docs/tune.md).
"""
from . import schedulers, search
from .analysis import ExperimentAnalysis, Result, ResultGrid
from .checkpoint import Checkpoint
from .progress import ProgressReporter
from .registry import register_trainable
from .run import Experiment, run, run_experiments
from .runner import TuneError, TuneInterrupted
from .schedulers import (ASHAScheduler, AsyncHyperBandScheduler, FIFOScheduler, HyperBandScheduler,
                         MedianStoppingRule, PopulationBasedTraining, TrialScheduler)
from .search import BasicVariantGenerator, ConcurrencyLimiter, OptunaSearch, Searcher
from .search_space import (choice, grid_search, lograndint, loguniform, qloguniform, qrandint, quniform, randint,
                           randn, sample_from, uniform)
from .session import StatusReporter, get_checkpoint, get_trial_dir, get_trial_id, get_trial_name, report
from .trainable import FunctionTrainable, Trainable
from .tuner import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner, with_parameters, with_resources

__all__ = [
    "run", "run_experiments", "Experiment", "register_trainable", "Tuner", "TuneConfig", "RunConfig",
    "CheckpointConfig", "FailureConfig", "with_resources", "with_parameters", "report", "get_checkpoint",
    "get_trial_id", "get_trial_name", "get_trial_dir", "StatusReporter", "Trainable", "FunctionTrainable",
    "Checkpoint", "ExperimentAnalysis", "Result", "ResultGrid", "TuneError", "TuneInterrupted",
    "ProgressReporter", "schedulers", "search", "TrialScheduler", "FIFOScheduler", "AsyncHyperBandScheduler",
    "ASHAScheduler", "HyperBandScheduler", "MedianStoppingRule", "PopulationBasedTraining", "Searcher",
    "BasicVariantGenerator", "ConcurrencyLimiter", "OptunaSearch", "grid_search", "choice", "uniform",
    "quniform", "loguniform", "qloguniform", "randint", "qrandint", "lograndint", "randn", "sample_from",
]
