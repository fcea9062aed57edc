"""mpirt.libs.rl: ES, A3C, DQN and PPO on Gymnasium, with rollouts on mpirt actors, configured as in RLlib.

    from mpirt.libs.rl.algorithms.ppo import PPOConfig      # RLlib's API (ray.rllib.algorithms.ppo)
    algo = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2).build_algo()
    result = algo.train()          # result["env_runners"]["episode_return_mean"], ...

    from mpirt.libs.rl import PPO                            # mpirt's dict API
    algo = PPO(env="CartPole-v1", config={"num_workers": 2})

Each algorithm is a Tune Trainable registered under its name (``tune.run("PPO", ...)``,
``tune.Tuner("PPO", param_space=PPOConfig()...)``).
"""
from mpirt.libs import tune

from .a3c import A3C, A3CConfig
from .algorithm import Algorithm
from .config import AlgorithmConfig
from .dqn import DQN, DQNConfig
from .envs import register_env
from .es import ES, ESConfig
from .ppo import PPO, PPOConfig

ALGORITHMS = {"PPO": PPO, "A3C": A3C, "DQN": DQN, "ES": ES}

for _name, _cls in ALGORITHMS.items():
    tune.register_trainable(_name, _cls)


def get_algorithm_class(name):
    """The class for "PPO", "DQN", "A3C" or "ES"."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(sorted(ALGORITHMS))}") from None


__all__ = ["Algorithm", "AlgorithmConfig", "PPO", "PPOConfig", "A3C", "A3CConfig", "DQN", "DQNConfig", "ES",
           "ESConfig", "register_env", "get_algorithm_class", "ALGORITHMS"]
