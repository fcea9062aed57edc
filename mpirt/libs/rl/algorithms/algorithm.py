"""``ray.rllib.algorithms.algorithm``: the Algorithm base class."""
from mpirt.libs.rl.algorithm import Algorithm

__all__ = ["Algorithm"]
