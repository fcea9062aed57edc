"""mpirt.libs.tune: hyperparameter search on mpirt, with Ray Tune's API.

Trials run as mpirt actors sized by ``resources_per_trial``; the driver runs
the experiment loop (search algorithm, trial scheduler, loggers) and keeps
results and checkpoints in one HDF5 file per experiment.
"""
from .checkpoint import Checkpoint
from .registry import register_trainable
from .session import StatusReporter, get_checkpoint, get_trial_dir, get_trial_id, get_trial_name, report
from .trainable import FunctionTrainable, Trainable

__all__ = ["Checkpoint", "register_trainable", "report", "get_checkpoint", "get_trial_id", "get_trial_name",
           "get_trial_dir", "StatusReporter", "Trainable", "FunctionTrainable"]
