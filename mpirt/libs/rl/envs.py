"""Environments: turn ``config["env"]`` (a Gymnasium id or a creator callable) into envs, and check spaces.

The creator travels to rollout actors by pickle, so everything here is a plain
module-level class. Errors name the env and say what was expected: a typo in an
id or a continuous env given to DQN should fail at construction, on the driver,
before any actor starts.
"""
import inspect

import gymnasium as gym
import numpy as np

_registry: dict = {}


class EnvContext(dict):
    """The ``env_config`` dict an env creator receives, plus where the env lives: ``worker_index``
    (0 for the algorithm's own process, i for the i-th rollout actor), ``vector_index`` (which of the
    actor's envs), ``num_workers`` (rollout actors in all), ``remote``. RLlib passes the same."""

    def __init__(self, env_config=None, worker_index=0, vector_index=0, remote=False, num_workers=None,
                 recreated_worker=False):
        super().__init__(env_config or {})
        self.worker_index = worker_index
        self.vector_index = vector_index
        self.remote = remote
        self.num_workers = num_workers
        self.recreated_worker = recreated_worker

    def copy_with_overrides(self, env_config=None, worker_index=None, vector_index=None, remote=None,
                            num_workers=None, recreated_worker=None):
        return EnvContext(
            dict(self) if env_config is None else env_config,
            self.worker_index if worker_index is None else worker_index,
            self.vector_index if vector_index is None else vector_index,
            self.remote if remote is None else remote,
            self.num_workers if num_workers is None else num_workers,
            self.recreated_worker if recreated_worker is None else recreated_worker)


def register_env(name, creator):
    """Make ``creator(env_config) -> gym.Env`` available as ``config["env"] = name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"an env name must be a non-empty string, got {name!r}")
    if not callable(creator):
        raise TypeError(f"Second argument must be callable. register_env({name!r}, ...) needs a function or "
                        f"class that returns an env, got {creator!r}")
    _registry[name] = creator


class EnvCreator:
    """A picklable ``() -> gym.Env`` for a Gymnasium id, a registered name or a user callable."""

    def __init__(self, env, env_config=None):
        if env is None:
            raise ValueError('no environment given: pass env="CartPole-v1" (a Gymnasium id) or a callable '
                             'env_config -> gym.Env')
        if isinstance(env, str) and env in _registry:
            env = _registry[env]
        if not isinstance(env, str) and not callable(env):
            raise TypeError(f"env must be a Gymnasium id or a callable returning an env, got {type(env).__name__}")
        self.env = env
        self.env_config = dict(env_config or {})

    @property
    def name(self):
        if isinstance(self.env, str):
            return self.env
        return getattr(self.env, "__name__", type(self.env).__name__)

    def __call__(self, worker_index=0, vector_index=0, num_workers=None):
        if isinstance(self.env, str):
            try:
                return gym.make(self.env, **self.env_config)
            except gym.error.Error as error:
                raise ValueError(f"unknown Gymnasium environment {self.env!r}: {error}") from error
        takes_config = bool(inspect.signature(self.env).parameters)
        context = EnvContext(self.env_config, worker_index, vector_index, remote=worker_index > 0,
                             num_workers=num_workers)
        env = self.env(context) if takes_config else self.env()
        if not isinstance(env, gym.Env):
            raise TypeError(f"the env creator {self.name} returned {type(env).__name__}, not a gymnasium.Env")
        return env


class SpaceInfo:
    """What a model needs to know about an env: observation size and the action space's kind."""

    def __init__(self, observation_space, action_space, env_name="env"):
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"{env_name}: only flat Box observation spaces are supported, got {observation_space}")
        self.obs_dim = int(observation_space.shape[0])
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.num_actions = int(action_space.n)
            self.action_dim = 1
            self.low = self.high = None
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.num_actions = None
            self.action_dim = int(action_space.shape[0])
            self.low = np.asarray(action_space.low, dtype=np.float32)
            self.high = np.asarray(action_space.high, dtype=np.float32)
            if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
                raise ValueError(f"{env_name}: continuous actions need finite bounds, got {action_space}")
        else:
            raise ValueError(f"{env_name}: only Discrete or flat Box action spaces are supported, got {action_space}")
        self.action_space = action_space

    def describe(self):
        return f"Discrete({self.num_actions})" if self.discrete else f"Box({self.action_dim},)"


def inspect_env(creator):
    """Make one env to read its spaces; returns (env, SpaceInfo). The env is kept for compute_action."""
    env = creator()
    return env, SpaceInfo(env.observation_space, env.action_space, creator.name)


def require_discrete(info, algorithm, env_name):
    if not info.discrete:
        raise ValueError(f"{algorithm} needs a Discrete action space, but {env_name} has {info.action_space}; "
                         f"use PPO, A3C or ES for continuous actions")
