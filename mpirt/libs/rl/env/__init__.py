"""RLlib's ``ray.rllib.env`` paths: ``EnvContext``, what an env creator receives."""
from mpirt.libs.rl.envs import EnvContext

__all__ = ["EnvContext"]
