"""What a training worker's function talks to: ``train.report``, ``train.get_context``,
``train.get_checkpoint``. Each worker runs the function on its own thread (``worker_group.TrainWorker``),
which finds its session through a thread-local."""
import threading
from typing import Any, Dict, Optional

_local = threading.local()


class TrainContext:
    """Where this worker stands in the run (Ray Train's ``train.get_context()``)."""

    def __init__(self, world_rank: int, world_size: int, local_rank: int, local_world_size: int, node_rank: int,
                 experiment_name: str, trial_name: str, trial_id: str, trial_dir: str, use_gpu: bool,
                 metadata: Optional[Dict[str, Any]] = None):
        self.world_rank, self.world_size = world_rank, world_size
        self.local_rank, self.local_world_size, self.node_rank = local_rank, local_world_size, node_rank
        self.experiment_name, self.trial_name, self.trial_id, self.trial_dir = (experiment_name, trial_name,
                                                                                trial_id, trial_dir)
        self.use_gpu = use_gpu
        self.metadata = dict(metadata or {})

    def get_world_rank(self) -> int:
        return self.world_rank

    def get_world_size(self) -> int:
        return self.world_size

    def get_local_rank(self) -> int:
        return self.local_rank

    def get_local_world_size(self) -> int:
        return self.local_world_size

    def get_node_rank(self) -> int:
        return self.node_rank

    def get_experiment_name(self) -> str:
        return self.experiment_name

    def get_trial_name(self) -> str:
        return self.trial_name

    def get_trial_id(self) -> str:
        return self.trial_id

    def get_trial_dir(self) -> str:
        return self.trial_dir

    def get_metadata(self) -> Dict[str, Any]:
        return dict(self.metadata)

    def __repr__(self):
        return (f"TrainContext(world_rank={self.world_rank}, world_size={self.world_size}, local_rank="
                f"{self.local_rank}, local_world_size={self.local_world_size}, node_rank={self.node_rank})")


class Session:
    """One worker's link to its ``TrainWorker``: the context, the checkpoint to start from, and the
    hand-over of each report."""

    def __init__(self, context: TrainContext, checkpoint, report):
        self.context = context
        self.checkpoint = checkpoint
        self.report = report


def current() -> Session:
    session = getattr(_local, "session", None)
    if session is None:
        raise RuntimeError("train.report()/train.get_context()/train.get_checkpoint() are called from the function "
                           "a trainer runs on its workers (train_loop_per_worker), not here")
    return session


def set_current(session: Optional[Session]) -> None:
    _local.session = session


def report(metrics: Dict[str, Any], *, checkpoint=None, checkpoint_dir_name: Optional[str] = None) -> None:
    """Report ``metrics`` (and a Checkpoint) of this worker. Every worker reports the same number of times;
    the run keeps the metrics of worker 0 and the first checkpoint given."""
    if not isinstance(metrics, dict):
        raise TypeError(f"train.report() takes a dict of metrics, got {type(metrics).__name__}")
    from ..tune.checkpoint import Checkpoint
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"train.report(checkpoint=...) needs a train.Checkpoint, got {type(checkpoint).__name__}")
    current().report(dict(metrics), checkpoint)


def get_context() -> TrainContext:
    return current().context


def get_checkpoint():
    """The checkpoint to resume from (``resume_from_checkpoint``, or the trial's latest under Tune), or None."""
    return current().checkpoint
