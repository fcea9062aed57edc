"""Algorithm: what ES, A3C, DQN and PPO share. A Tune Trainable, so every algorithm is also a trial.

``setup`` checks the config and the env on the driver (typos and wrong action
spaces fail here, before any actor starts), then the subclass builds its
learner and rollout actors in ``build``. ``step`` runs one ``training_step``
and adds episode statistics over a sliding window of recent episodes, as RLlib
reports them. State goes to and from one HDF5 file (``save``/``restore``).
"""
import collections
import copy
import math
import os
import tempfile

import numpy as np

import mpirt
from mpirt.libs.tune import Checkpoint, Trainable

from . import h5state
from .envs import EnvCreator, inspect_env
from .models import check_model_config
from .utils import check_positive_int, learner_device, merge_config, set_torch_threads

CHECKPOINT_FILE = "algorithm.h5"

COMMON_CONFIG = {
    # a Gymnasium id, a name given to register_env, or a callable env_config -> gym.Env
    "env": None,
    "env_config": {},
    # rollout actors, and the envs each one steps
    "num_workers": 2,
    "num_envs_per_worker": 1,
    # CPUs each rollout actor holds; 0 lets them share the CPU of the trial that made them
    "num_cpus_per_worker": 0,
    # GPUs for the learner (the driver, or the Tune trial actor)
    "num_gpus": 0,
    "seed": None,
    "gamma": 0.99,
    "lr": 3e-4,
    "model": {"hiddens": [64, 64], "activation": "tanh"},
    # episode_reward_mean is the mean over this many most recent episodes
    "metrics_num_episodes_for_smoothing": 100,
}


class Algorithm(Trainable):
    """Base class. Subclasses set ``_default_config`` and implement ``build``, ``training_step``,
    ``get_state``/``set_state`` and, for rollouts, ``validate_spaces``."""

    _name = "Algorithm"
    _default_config = {}

    def __init__(self, config=None, env=None, trial_id=None, trial_name=None):
        if isinstance(config, str) or callable(config):  # PPO("CartPole-v1")
            config, env = None, config
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"{self._name}: config must be a dict, got {type(config).__name__}")
        config = dict(config or {})
        if env is not None:
            config["env"] = env
        self.workers = []
        super().__init__(config, trial_id=trial_id, trial_name=trial_name)

    @classmethod
    def get_default_config(cls):
        return copy.deepcopy({**COMMON_CONFIG, **cls._default_config})

    # ------------------------------------------------------------------ setup
    def setup(self, config):
        set_torch_threads()
        config = merge_config(self.get_default_config(), config, self._name)
        check_model_config(config["model"], self._name)
        check_positive_int(config, self._name, "num_workers", "num_envs_per_worker",
                           "metrics_num_episodes_for_smoothing")
        for key in ("num_cpus_per_worker", "num_gpus"):
            if not isinstance(config[key], (int, float)) or isinstance(config[key], bool) or config[key] < 0:
                raise ValueError(f"{self._name}: config[{key!r}] must be a number >= 0, got {config[key]!r}")
        self.config = config
        self.env_creator = EnvCreator(config["env"], config["env_config"])
        self.env, self.info = inspect_env(self.env_creator)
        self.validate_spaces(self.info)
        self.validate_config(config)
        self.device = learner_device(config["num_gpus"], self._name)
        if config["seed"] is not None:
            import torch
            torch.manual_seed(config["seed"])
        self.rng = np.random.default_rng(config["seed"])
        window = config["metrics_num_episodes_for_smoothing"]
        self._recent_returns = collections.deque(maxlen=window)
        self._recent_lengths = collections.deque(maxlen=window)
        self.build(config)

    def validate_spaces(self, info):
        """Raise ValueError if this algorithm cannot act in ``info``'s spaces."""

    def validate_config(self, config):
        """Raise ValueError for values that make no sense for this algorithm."""

    def build(self, config):
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def training_step(self):
        """One iteration; return {"timesteps_this_iter", "episodes": [(return, length), ...], "learner": {...}}."""
        raise NotImplementedError

    def step(self):
        metrics = self.training_step()
        episodes = metrics.pop("episodes")
        for episode_return, length in episodes:
            self._recent_returns.append(episode_return)
            self._recent_lengths.append(length)
        returns = list(self._recent_returns)
        result = {
            "episode_reward_mean": float(np.mean(returns)) if returns else math.nan,
            "episode_reward_min": float(np.min(returns)) if returns else math.nan,
            "episode_reward_max": float(np.max(returns)) if returns else math.nan,
            "episode_len_mean": float(np.mean(self._recent_lengths)) if returns else math.nan,
            "episodes_this_iter": len(episodes),
            "num_workers": len(self.workers),
        }
        result.update(metrics)
        return result

    # ------------------------------------------------------------------ acting
    def compute_action(self, observation, explore=False):
        """The action for one observation. Greedy (the mode) by default, which is what evaluation wants;
        ``explore=True`` samples as the rollout actors do."""
        return self.policy.compute_single_action(observation, explore=explore)

    compute_single_action = compute_action

    def evaluate(self, num_episodes=10, explore=False, seed=None):
        """Mean return of ``num_episodes`` episodes run here on the driver with ``compute_action``."""
        returns = []
        for i in range(num_episodes):
            obs, _ = self.env.reset(seed=None if seed is None else seed + i)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = self.env.step(self.compute_action(obs, explore=explore))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        return float(np.mean(returns))

    # ------------------------------------------------------------------ state
    def get_state(self):
        """Everything needed to continue training: a nested dict of arrays, bytes and JSON values."""
        raise NotImplementedError

    def set_state(self, state):
        raise NotImplementedError

    def _write_file(self, path):
        meta = self._metadata()
        h5state.write(path, self.get_state(), {
            "algorithm": self._name, "env": self.env_creator.name, "config": _jsonable(self.config),
            "iteration": meta["iteration"], "time_total": meta["time_total"],
            "timesteps_total": meta["timesteps_total"], "episodes_total": meta["episodes_total"]})

    def _read_file(self, path):
        state, attrs = h5state.read(path)
        if attrs.get("algorithm") != self._name:
            raise ValueError(f"{path} holds a {attrs.get('algorithm')} checkpoint, not {self._name}")
        self.set_state(state)
        self._apply_metadata({key: attrs.get(key) for key in ("iteration", "timesteps_total", "episodes_total")}
                             | {"time_total": attrs.get("time_total") or 0.0})

    def save(self, path=None):
        """Write the algorithm to one HDF5 file and return its path: ``path`` itself, ``path/algorithm.h5``
        if ``path`` is a directory, or a new temporary file."""
        if path is None:
            path = os.path.join(tempfile.mkdtemp(prefix=f"mpirt_{self._name}_"), CHECKPOINT_FILE)
        path = os.fspath(path)
        if os.path.isdir(path) or path.endswith(os.sep):
            path = os.path.join(path, CHECKPOINT_FILE)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._write_file(path)
        return path

    def restore(self, path):
        """Load what ``save`` wrote (a file, or a directory holding ``algorithm.h5``), or a Tune Checkpoint."""
        if isinstance(path, Checkpoint):
            return super().restore(path)
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, CHECKPOINT_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no checkpoint at {path}")
        self._read_file(path)

    @classmethod
    def from_checkpoint(cls, path, env=None, config=None):
        """A new algorithm built from the config saved in ``path``, with its state restored.
        Pass ``env`` when training used a creator callable (those are not saved)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, CHECKPOINT_FILE)
        _, attrs = h5state.read(path)
        saved = dict(attrs["config"])
        saved.update(config or {})
        if env is not None:
            saved["env"] = env
        elif not isinstance(saved.get("env"), str) or saved["env"].startswith("<"):
            raise ValueError(f"{path} was trained on an env creator; pass env= to from_checkpoint")
        algo = cls(saved)
        algo.restore(path)
        return algo

    # Tune's hooks: a checkpoint directory holding the same HDF5 file
    def save_checkpoint(self, checkpoint_dir):
        self._write_file(os.path.join(checkpoint_dir, CHECKPOINT_FILE))

    def load_checkpoint(self, checkpoint):
        self._read_file(os.path.join(checkpoint, CHECKPOINT_FILE))

    def cleanup(self):
        for worker in self.workers:
            try:
                mpirt.kill(worker)
            except Exception:  # noqa: BLE001 - already dead or the runtime is gone: nothing to release
                pass
        self.workers = []

    def __repr__(self):
        return f"{self._name}(env={self.env_creator.name if hasattr(self, 'env_creator') else None})"


def _jsonable(value):
    """The config as JSON: callables (an env creator) become their name in angle brackets."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return f"<{getattr(value, '__name__', type(value).__name__)}>"
