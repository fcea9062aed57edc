"""``ray.rllib.algorithms.es.es``: ES and ESConfig."""
from mpirt.libs.rl.es import ES, ESConfig

__all__ = ["ES", "ESConfig"]
