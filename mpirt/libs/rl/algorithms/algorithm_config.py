"""``ray.rllib.algorithms.algorithm_config``: the AlgorithmConfig base class."""
from mpirt.libs.rl.config import AlgorithmConfig, NotProvided

__all__ = ["AlgorithmConfig", "NotProvided"]
