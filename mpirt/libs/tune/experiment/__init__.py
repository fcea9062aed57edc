"""``ray.tune.experiment``: ``Trial`` (what callbacks and schedulers see) and ``Experiment``."""
from ..run import Experiment
from ..trial import Trial

__all__ = ["Trial", "Experiment"]
