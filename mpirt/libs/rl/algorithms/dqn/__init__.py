"""``ray.rllib.algorithms.dqn``: DQN and DQNConfig."""
from mpirt.libs.rl.dqn import DQN, DQNConfig

__all__ = ["DQN", "DQNConfig"]
