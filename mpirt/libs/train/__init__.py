"""``mpirt.libs.train`` (Ray Train's ``ray.train``): data-parallel training on gang-placed workers whose
``torch.distributed`` runs over MPI, with no address or port to choose (``torch/``). A trainer's ``fit()``
is one Tune trial, so results and checkpoints land in Tune's HDF5 file, and trainers sweep under
``Tuner``. See docs/train.md."""
from ..tune.analysis import Result
from ..tune.checkpoint import Checkpoint
from .config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from .session import TrainContext, get_checkpoint, get_context, report
from .trainer import DataParallelTrainer, TrainingFailedError

__all__ = ["ScalingConfig", "RunConfig", "CheckpointConfig", "FailureConfig", "Checkpoint", "Result", "report",
           "get_context", "get_checkpoint", "TrainContext", "DataParallelTrainer", "TrainingFailedError"]
