"""Algorithm: what ES, A3C, DQN and PPO share. A Tune Trainable, so every algorithm is also a trial.

An algorithm is built from an ``AlgorithmConfig`` (``PPOConfig()...build_algo()``)
or from a dict (``PPO(env=..., config={...})``, Tune's trainable "PPO"): a dict
becomes a config object through ``update_from_dict`` over mpirt's own defaults
(``_dict_defaults``), so both APIs end in one frozen ``self.config``. ``setup``
checks it and the env on the driver (typos and wrong action spaces fail here,
before any actor starts), then the subclass builds its learner and rollout
actors in ``build``. ``step`` runs ``training_step`` (again while
``min_time_s_per_iteration`` or ``min_sample_timesteps_per_iteration`` ask for
more), evaluates every ``evaluation_interval`` iterations, and reports RLlib's
result keys (``env_runners/episode_return_mean``, ...) beside mpirt's older ones.
State goes to and from one HDF5 file (``save_to_path``, ``save``).
"""
import collections
import math
import os
import tempfile
import time

import numpy as np

import mpirt
from mpirt.libs.tune import Checkpoint, PlacementGroupFactory, Trainable

from . import h5state
from .config import AlgorithmConfig
from .envs import EnvCreator, inspect_env
from .models import check_model_config
from .rl_module import RLModule
from .rollout import LocalWorker
from .utils import check_positive_int, learner_device, schedule, scheduled_value, set_torch_threads

CHECKPOINT_FILE = "algorithm.h5"
DEFAULT_MODULE_ID = "default_policy"

# mpirt's dict API defaults shared by every algorithm, in RLlib's names (docs/rl.md, "Configuration").
COMMON_DICT_DEFAULTS = {
    "num_env_runners": 2,
    "num_envs_per_env_runner": 1,
    "num_cpus_per_env_runner": 0,
    "lr": 3e-4,
    "model": {"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"},
}


class Algorithm(Trainable):
    """Base class. Subclasses set ``_name``, ``_config_class``, ``_dict_defaults`` and implement ``build``,
    ``training_step``, ``get_state``/``set_state`` and, for rollouts, ``validate_spaces``."""

    _name = "Algorithm"
    _config_class = AlgorithmConfig
    _dict_defaults: dict = {}

    def __init__(self, config=None, env=None, logger_creator=None, trial_id=None, trial_name=None, **kwargs):
        if isinstance(config, str) or (callable(config) and not isinstance(config, (dict, AlgorithmConfig))):
            config, env = None, config  # PPO("CartPole-v1")
        if isinstance(config, AlgorithmConfig):
            algo_config = config.copy(copy_frozen=False)
        elif config is None or isinstance(config, dict):
            algo_config = self._config_from_dict(config or {})
        else:
            raise TypeError(f"{self._name}: config must be a {self._config_class.__name__} or a dict, "
                            f"got {type(config).__name__}")
        if env is not None:
            algo_config.env = env
        self.workers = []
        self._algo_config = algo_config
        super().__init__(algo_config.to_dict(), trial_id=trial_id, trial_name=trial_name)

    @classmethod
    def _config_from_dict(cls, config_dict):
        """A config object from a dict: mpirt's defaults for this algorithm, then the dict's keys."""
        algo_config = cls._config_class()
        algo_config.update_from_dict({**COMMON_DICT_DEFAULTS, **cls._dict_defaults})
        return algo_config.update_from_dict(config_dict)

    @classmethod
    def get_default_config(cls):
        """RLlib's defaults for this algorithm, as a config object (``PPOConfig()``)."""
        return cls._config_class()

    @classmethod
    def default_resource_request(cls, config):
        """RLlib's resource request for a trial of this algorithm under Tune: one placement group
        whose bundle 0 is the algorithm's own process, where the learner runs (CPU
        ``num_cpus_for_main_process``, GPU ``num_gpus_per_learner`` or ``num_gpus``,
        ``custom_resources_for_main_process``), then one bundle per env runner with
        ``num_cpus_per_env_runner``, ``num_gpus_per_env_runner`` and
        ``custom_resources_per_env_runner``, reserved by ``placement_strategy``. Env runners that hold
        nothing (mpirt's default, ``num_cpus_per_env_runner=0``) get no bundle: they run outside the
        group, wherever there is room, as they do without Tune. Evaluation runs in the algorithm's
        process, so it asks for nothing more."""
        if isinstance(config, AlgorithmConfig):
            cf = config
        else:
            cf = cls._config_from_dict(dict(config or {}))
        learner_gpus = 0 if cf._fake_gpus else max(cf.num_gpus or 0, cf.num_gpus_per_learner or 0)
        driver = {"CPU": cf.num_cpus_for_main_process, "GPU": learner_gpus,
                  **(cf.custom_resources_for_main_process or {})}
        runner = {"CPU": cf.num_cpus_per_env_runner, "GPU": cf.num_gpus_per_env_runner,
                  **(cf.custom_resources_per_env_runner or {})}
        runners = [dict(runner) for _ in range(cf.num_env_runners or 0)] if any(runner.values()) else []
        if not any(driver.values()) and not runners:
            return {"cpu": 0}                   # nothing to reserve (Ray refuses an empty request)
        return PlacementGroupFactory([driver] + runners, strategy=cf.placement_strategy or "PACK")

    # ------------------------------------------------------------------ setup
    def setup(self, config):
        set_torch_threads()
        config = self._algo_config
        config.validate()
        self._check_common(config)
        self.config = config
        self.env_creator = EnvCreator(config.env, config.env_config)
        self.env, self.info = inspect_env(self.env_creator)
        self.validate_spaces(self.info)
        self.validate_config(config)
        config.freeze()
        self.device = learner_device(max(config.num_gpus_per_learner, config.num_gpus), self._name)
        if config.seed is not None:
            import torch
            torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        window = config.metrics_num_episodes_for_smoothing
        self._recent_returns = collections.deque(maxlen=window)
        self._recent_lengths = collections.deque(maxlen=window)
        self._eval_env = None
        self.build(config)

    def _check_common(self, config):
        name = self._name
        check_positive_int(config, name, "num_envs_per_env_runner", "metrics_num_episodes_for_smoothing")
        check_positive_int(config, name, "num_env_runners", allow_zero=True)
        for key in ("num_cpus_per_env_runner", "num_gpus_per_env_runner", "num_gpus_per_learner", "num_gpus"):
            if not isinstance(config[key], (int, float)) or isinstance(config[key], bool) or config[key] < 0:
                raise ValueError(f"{name}: config[{key!r}] must be a number >= 0, got {config[key]!r}")
        self.lr_schedule = schedule(config.lr_schedule if config.get("lr_schedule") else config.lr, "lr", name)
        if any(not value > 0 for _, value in self.lr_schedule):
            raise ValueError(f"{name}: lr must be > 0, got {config.lr!r}")
        if not isinstance(config.gamma, (int, float)) or not 0 <= config.gamma <= 1:
            raise ValueError(f"{name}: gamma must be in [0, 1], got {config.gamma!r}")
        if not isinstance(config.env_config, dict):
            raise TypeError(f"{name}: env_config must be a dict, got {type(config.env_config).__name__}")
        if config.seed is not None and (not isinstance(config.seed, int) or isinstance(config.seed, bool)):
            raise TypeError(f"{name}: seed must be an int or None, got {config.seed!r}")
        check_model_config(self._network_config(config), name)
        interval = config.evaluation_interval
        if interval is not None and (not isinstance(interval, int) or isinstance(interval, bool) or interval < 0):
            raise ValueError(f"{name}: evaluation_interval must be None or an integer >= 0, got {interval!r}")
        if config.evaluation_duration_unit not in ("episodes", "timesteps"):
            raise ValueError(f"{name}: evaluation_duration_unit must be 'episodes' or 'timesteps', got "
                             f"{config.evaluation_duration_unit!r}")
        duration = config.evaluation_duration
        if duration != "auto" and (not isinstance(duration, int) or isinstance(duration, bool) or duration < 1):
            raise ValueError(f"{name}: evaluation_duration must be an integer >= 1 or 'auto', got {duration!r}")
        if config.evaluation_config is not None and not isinstance(config.evaluation_config, dict):
            raise TypeError(f"{name}: evaluation_config must be a dict (AlgorithmConfig.overrides(...)), got "
                            f"{type(config.evaluation_config).__name__}")
        min_time = config.min_time_s_per_iteration
        if min_time is not None and (not isinstance(min_time, (int, float)) or min_time < 0):
            raise ValueError(f"{name}: min_time_s_per_iteration must be None or a number >= 0, got {min_time!r}")
        check_positive_int(config, name, "min_sample_timesteps_per_iteration", allow_zero=True)

    @staticmethod
    def _network_config(config):
        """The MLP mpirt builds: {"hiddens": [...], "activation": ...} from fcnet_hiddens/fcnet_activation."""
        model = config.model_config
        return {"hiddens": model.get("fcnet_hiddens"), "activation": model.get("fcnet_activation") or "linear"}

    def worker_config(self, **extra):
        """The plain dict rollout actors and policies read (no config object travels to the actors)."""
        config = self.config
        return {"model": self._network_config(config), "gamma": config.gamma, "seed": config.seed,
                "num_envs_per_worker": config.num_envs_per_env_runner, "num_workers": config.num_env_runners,
                "num_cpus_per_worker": config.num_cpus_per_env_runner,
                "num_gpus_per_worker": config.num_gpus_per_env_runner,
                "resources": dict(config.custom_resources_per_env_runner or {}), **extra}

    def current_lr(self, optimizer=None):
        """The learning rate at the env steps sampled so far (``lr`` may be a schedule); set on ``optimizer``."""
        lr = scheduled_value(self.lr_schedule, self._timesteps_total or 0)
        if optimizer is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    def validate_spaces(self, info):
        """Raise ValueError if this algorithm cannot act in ``info``'s spaces."""

    def validate_config(self, config):
        """Raise ValueError for values that make no sense for this algorithm."""

    def build(self, config):
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def training_step(self):
        """One step; return {"timesteps_this_iter", "episodes": [(return, length), ...], "learner": {...}}."""
        raise NotImplementedError

    def step(self):
        config = self.config
        start = time.time()
        steps, episodes, calls, learner = 0, [], 0, {}
        while True:
            metrics = self.training_step()
            calls += 1
            steps += metrics["timesteps_this_iter"]
            episodes += metrics["episodes"]
            learner = metrics["learner"]
            long_enough = config.min_time_s_per_iteration is None or \
                time.time() - start >= config.min_time_s_per_iteration
            if long_enough and steps >= config.min_sample_timesteps_per_iteration:
                break
        step_time = time.time() - start
        for episode_return, length in episodes:
            self._recent_returns.append(episode_return)
            self._recent_lengths.append(length)
        returns, lengths = list(self._recent_returns), list(self._recent_lengths)
        steps_lifetime = (self._timesteps_total or 0) + steps
        episodes_lifetime = (self._episodes_total or 0) + len(episodes)
        env_runners = _episode_stats(returns, lengths)
        env_runners.update(num_episodes=len(episodes), num_episodes_lifetime=episodes_lifetime,
                           num_env_steps_sampled=steps, num_env_steps_sampled_lifetime=steps_lifetime,
                           num_agent_steps_sampled={"default_agent": steps},
                           num_module_steps_sampled={DEFAULT_MODULE_ID: steps},
                           module_episode_return_mean={DEFAULT_MODULE_ID: env_runners["episode_return_mean"]},
                           agent_episode_return_mean={"default_agent": env_runners["episode_return_mean"]})
        result = {
            # RLlib's keys
            "env_runners": env_runners,
            "learners": {DEFAULT_MODULE_ID: dict(learner), "__all_modules__": {"num_env_steps_trained": steps}},
            "num_env_steps_sampled_lifetime": steps_lifetime,
            "num_episodes_lifetime": episodes_lifetime,
            "num_training_step_calls_per_iteration": calls,
            "timers": {"training_iteration": step_time, "training_step": step_time / calls},
            "fault_tolerance": {"num_healthy_workers": len(self.workers), "num_remote_worker_restarts": 0},
            # mpirt's older keys (RLlib's old API stack spelled them so)
            "episode_reward_mean": env_runners["episode_return_mean"],
            "episode_reward_min": env_runners["episode_return_min"],
            "episode_reward_max": env_runners["episode_return_max"],
            "episode_len_mean": env_runners["episode_len_mean"],
            "episodes_this_iter": len(episodes),
            "timesteps_this_iter": steps,
            "num_workers": config.num_env_runners,
            "learner": learner,
        }
        interval = config.evaluation_interval
        if interval and (self.iteration + 1) % interval == 0:
            result["evaluation"] = self.evaluate()
        return result

    # ------------------------------------------------------------------ acting
    def compute_action(self, observation, explore=False):
        """The action for one observation. Greedy (the mode) by default, which is what evaluation wants;
        ``explore=True`` samples as the rollout actors do."""
        return self.policy.compute_single_action(observation, explore=explore)

    def compute_single_action(self, observation=None, state=None, *, prev_action=None, prev_reward=None,
                              info=None, input_dict=None, policy_id=DEFAULT_MODULE_ID, full_fetch=False,
                              explore=None, timestep=None, episode=None, unsquash_action=None,
                              clip_action=None, **kwargs):
        """RLlib's call: ``explore=None`` follows the config's ``explore`` (True by default: a sample)."""
        if observation is None and input_dict is not None:
            observation = input_dict["obs"]
        if observation is None:
            raise ValueError("compute_single_action() needs an observation (or input_dict={'obs': ...})")
        if policy_id != DEFAULT_MODULE_ID:
            raise ValueError(f"{self._name} has one policy, {DEFAULT_MODULE_ID!r}; got policy_id={policy_id!r}")
        action = self.compute_action(observation, explore=self.config.explore if explore is None else explore)
        if full_fetch or state is not None:
            return action, [], {}
        return action

    def get_module(self, module_id=DEFAULT_MODULE_ID):
        """The policy network as an RLModule (``forward_inference({"obs": tensor})``)."""
        if module_id != DEFAULT_MODULE_ID:
            return None
        return RLModule.of(self)

    def _episode(self, env, explore, max_steps=None):
        obs, _ = env.reset()
        total, length, done = 0.0, 0, False
        while not done and (max_steps is None or length < max_steps):
            obs, reward, terminated, truncated, _ = env.step(self.compute_action(obs, explore=explore))
            total += float(reward)
            length += 1
            done = terminated or truncated
        return total, length

    def evaluate(self, num_episodes=None, explore=None, seed=None):
        """Without arguments, RLlib's evaluation: ``evaluation_duration`` episodes (or timesteps) with the
        ``evaluation_config``'s ``explore`` (and ``env_config``), run in this process; returns
        ``{"env_runners": {"episode_return_mean": ..., ...}}``. With ``num_episodes``, mpirt's older
        call: the mean return (a float) of that many greedy episodes."""
        if num_episodes is not None:
            returns = []
            for i in range(num_episodes):
                if seed is not None:
                    self.env.reset(seed=seed + i)
                returns.append(self._episode(self.env, bool(explore))[0])
            return float(np.mean(returns))
        config = self.config
        overrides = config.evaluation_config or {}
        if explore is None:
            explore = overrides.get("explore", config.explore)
        env = self.env
        if "env_config" in overrides or "env" in overrides:
            if self._eval_env is None:
                creator = EnvCreator(overrides.get("env", config.env),
                                     {**config.env_config, **(overrides.get("env_config") or {})})
                self._eval_env = creator()
            env = self._eval_env
        duration, unit = config.evaluation_duration, config.evaluation_duration_unit
        if duration == "auto":
            duration, unit = max(1, config.evaluation_num_env_runners), "episodes"
        returns, lengths = [], []
        while (len(returns) < duration) if unit == "episodes" else (sum(lengths) < duration):
            episode_return, length = self._episode(env, explore)
            returns.append(episode_return)
            lengths.append(length)
        stats = _episode_stats(returns, lengths)
        stats.update(num_episodes=len(returns), num_env_steps_sampled=int(sum(lengths)))
        return {"env_runners": stats}

    # ------------------------------------------------------------------ state
    def get_state(self):
        """Everything needed to continue training: a nested dict of arrays, bytes and JSON values."""
        raise NotImplementedError

    def set_state(self, state):
        raise NotImplementedError

    def _write_file(self, path):
        meta = self._metadata()
        blobs = {}
        if not isinstance(self.config.env, str):
            blobs["env_creator"] = mpirt.cloudpickle.dumps(self.config.env)
        h5state.write(path, self.get_state(), {
            "algorithm": self._name, "env": self.env_creator.name, "config": _jsonable(self.config.to_dict()),
            "iteration": meta["iteration"], "time_total": meta["time_total"],
            "timesteps_total": meta["timesteps_total"], "episodes_total": meta["episodes_total"]}, blobs)

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

    def save_to_path(self, path=None, *, state=None, filesystem=None, use_msgpack=False):
        """RLlib's checkpoint call: a directory (``path``, or a new temporary one) holding
        ``algorithm.h5``; returns the directory's path."""
        path = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix=f"mpirt_{self._name}_")
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(f"save_to_path() writes a directory, and {path} is a file")
        os.makedirs(path, exist_ok=True)
        self._write_file(os.path.join(path, CHECKPOINT_FILE))
        return os.path.abspath(path)

    def restore(self, path):
        """Load what ``save`` wrote (a file, or a directory holding ``algorithm.h5``), or a Tune Checkpoint."""
        if isinstance(path, Checkpoint):
            return super().restore(path)
        self._read_file(_checkpoint_file(path))

    def restore_from_path(self, path, *, component=None, filesystem=None, **kwargs):
        """RLlib's call: load the state ``save_to_path`` wrote into this algorithm."""
        if component is not None:
            raise NotImplementedError(f"{self._name}.restore_from_path(component={component!r}): mpirt.libs.rl "
                                      f"restores whole algorithms only")
        self._read_file(_checkpoint_file(path))

    @classmethod
    def from_checkpoint(cls, path, env=None, config=None, **kwargs):
        """A new algorithm built from the config saved in ``path``, with its state restored. An env creator
        (a class or function) is saved pickled and comes back with it; ``env`` overrides it."""
        path = _checkpoint_file(path)
        _, attrs = h5state.read(path)
        if cls is Algorithm:  # Algorithm.from_checkpoint: the class the checkpoint names
            from . import get_algorithm_class
            cls = get_algorithm_class(attrs.get("algorithm"))
        saved = dict(attrs["config"])
        if isinstance(config, AlgorithmConfig):
            config = config.to_dict()
        saved.update(config or {})
        saved_env = saved.get("env")
        if env is not None:
            saved["env"] = env
        elif not isinstance(saved_env, str) or saved_env.startswith("<"):
            pickled = h5state.read_blob(path, "env_creator")
            if pickled is None:
                raise ValueError(f"{path} was trained on an env creator that was not saved; pass env= to "
                                 f"from_checkpoint")
            saved["env"] = mpirt.cloudpickle.loads(pickled)
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
                worker.stop() if isinstance(worker, LocalWorker) else mpirt.kill(worker)
            except Exception:  # noqa: BLE001 - already dead or the runtime is gone: nothing to release
                pass
        self.workers = []

    def __repr__(self):
        return f"{self._name}(env={self.env_creator.name if hasattr(self, 'env_creator') else None})"


def _checkpoint_file(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def _episode_stats(returns, lengths):
    """RLlib's episode statistics (NaN before the first episode ends)."""
    if not returns:
        nan = math.nan
        return {"episode_return_mean": nan, "episode_return_min": nan, "episode_return_max": nan,
                "episode_len_mean": nan, "episode_len_min": nan, "episode_len_max": nan}
    return {"episode_return_mean": float(np.mean(returns)), "episode_return_min": float(np.min(returns)),
            "episode_return_max": float(np.max(returns)), "episode_len_mean": float(np.mean(lengths)),
            "episode_len_min": int(np.min(lengths)), "episode_len_max": int(np.max(lengths))}


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
