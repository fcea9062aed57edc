"""RLlib's module paths (``ray.rllib.algorithms...``) for mpirt's algorithms and their configs."""
from mpirt.libs.rl.a3c import A3C, A3CConfig
from mpirt.libs.rl.algorithm import Algorithm
from mpirt.libs.rl.config import AlgorithmConfig
from mpirt.libs.rl.dqn import DQN, DQNConfig
from mpirt.libs.rl.es import ES, ESConfig
from mpirt.libs.rl.ppo import PPO, PPOConfig

__all__ = ["Algorithm", "AlgorithmConfig", "PPO", "PPOConfig", "DQN", "DQNConfig", "A3C", "A3CConfig", "ES",
           "ESConfig"]
