"""``ray.rllib.algorithms.a3c``: A3C and A3CConfig."""
from mpirt.libs.rl.a3c import A3C, A3CConfig

__all__ = ["A3C", "A3CConfig"]
