"""mpirt.libs.rl: ES, A3C, DQN and PPO on Gymnasium, with rollouts on mpirt actors.

    from mpirt.libs.rl import PPO
    algo = PPO(env="CartPole-v1", config={"num_workers": 2})
    result = algo.train()          # episode_reward_mean, timesteps_total, learner stats, ...

Each algorithm is a Tune Trainable registered under its name (``tune.run("PPO", ...)``).
"""
from mpirt.libs import tune

from .a3c import A3C
from .algorithm import Algorithm
from .dqn import DQN
from .es import ES
from .envs import register_env
from .ppo import PPO

ALGORITHMS = {"PPO": PPO, "A3C": A3C, "DQN": DQN, "ES": ES}

for _name, _cls in ALGORITHMS.items():
    tune.register_trainable(_name, _cls)


def get_algorithm_class(name):
    """The class for "PPO", "DQN", "A3C" or "ES"."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(sorted(ALGORITHMS))}") from None


__all__ = ["Algorithm", "PPO", "A3C", "DQN", "ES", "register_env", "get_algorithm_class", "ALGORITHMS"]
