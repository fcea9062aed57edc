"""``ray.rllib.algorithms.ppo``: PPO and PPOConfig."""
from mpirt.libs.rl.ppo import PPO, PPOConfig

__all__ = ["PPO", "PPOConfig"]
