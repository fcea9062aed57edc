"""``ray.rllib.env.env_context``: ``EnvContext``."""
from mpirt.libs.rl.envs import EnvContext

__all__ = ["EnvContext"]
