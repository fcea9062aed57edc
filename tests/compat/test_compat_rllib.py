"""RLlib's configuration API, from RLlib's documentation (``import ray`` is mpirt).

``PPOConfig().environment(...).env_runners(...).training(...).build_algo()``, the
other setters, ``to_dict``/``copy``/``from_dict``, ``algo.train()`` with RLlib's
result keys, checkpoints with ``save_to_path``/``from_checkpoint``, ``register_env``
and custom ``gym.Env`` classes, ``tune.Tuner("PPO", param_space=PPOConfig()...)``,
and the RLlib quick start's corridor learning. Bad input raises what RLlib raises
(``TypeError`` for an unknown setting); settings mpirt lacks raise
``NotImplementedError`` naming them. Runs are tiny: 2 cores.
"""
import math
import os

import numpy as np
import pytest

pytest.importorskip("torch")
gym = pytest.importorskip("gymnasium")
pytest.importorskip("h5py")

import ray  # noqa: E402
from ray.rllib.algorithms.algorithm import Algorithm  # noqa: E402
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig  # noqa: E402
from ray.rllib.algorithms.dqn import DQNConfig  # noqa: E402
from ray.rllib.algorithms.ppo import PPO, PPOConfig  # noqa: E402


class SimpleCorridor(gym.Env):
    """The RLlib quick start's env: walk right from 0 to ``corridor_length``; -0.1 a step, +1 at the end."""

    def __init__(self, config):
        self.config = config
        self.end_pos = config["corridor_length"]
        self.cur_pos = 0.0
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(0.0, self.end_pos, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cur_pos = 0.0
        return np.array([self.cur_pos], np.float32), {}

    def step(self, action):
        if action == 0 and self.cur_pos > 0:
            self.cur_pos -= 1
        elif action == 1:
            self.cur_pos += 1
        terminated = self.cur_pos >= self.end_pos
        return np.array([self.cur_pos], np.float32), 1.0 if terminated else -0.1, terminated, False, {}


def tiny_ppo(env="CartPole-v1", runners=1):
    return (PPOConfig().environment(env).env_runners(num_env_runners=runners)
            .training(train_batch_size=400, minibatch_size=100, num_epochs=2).debugging(seed=0))


# ---------------------------------------------------------------- imports and defaults
def test_ray_module_paths():
    from ray.rllib.algorithms import PPO as PPO2, AlgorithmConfig as AC2
    from ray.rllib.algorithms.a3c import A3C, A3CConfig
    from ray.rllib.algorithms.dqn.dqn import DQN, DQNConfig as DQNConfig2
    from ray.rllib.algorithms.es import ES, ESConfig
    from ray.rllib.algorithms.ppo.ppo import PPOConfig as PPOConfig2
    from ray.rllib.env.env_context import EnvContext
    from ray.tune.registry import register_env

    assert PPO2 is PPO and AC2 is AlgorithmConfig and PPOConfig2 is PPOConfig and DQNConfig2 is DQNConfig
    for config_cls, algo_cls in ((PPOConfig, PPO), (DQNConfig, DQN), (A3CConfig, A3C), (ESConfig, ES)):
        assert issubclass(config_cls, AlgorithmConfig) and issubclass(algo_cls, Algorithm)
        assert config_cls().algo_class is algo_cls
    assert issubclass(EnvContext, dict) and callable(register_env)
    assert ray.rllib.algorithms.ppo.PPOConfig is PPOConfig
    import mpirt.libs.rl.algorithm as legacy_algorithm  # mpirt's own modules stay importable
    import mpirt.libs.rl.ppo as legacy_ppo

    assert legacy_ppo.PPO is PPO and legacy_algorithm.Algorithm is Algorithm


def test_defaults_are_rllibs():
    ppo = PPOConfig()
    assert (ppo.lr, ppo.gamma, ppo.train_batch_size, ppo.minibatch_size, ppo.num_epochs) == (5e-5, 0.99, 4000, 128, 30)
    assert (ppo.clip_param, ppo.lambda_, ppo.vf_loss_coeff, ppo.entropy_coeff) == (0.3, 1.0, 1.0, 0.0)
    assert (ppo.use_kl_loss, ppo.kl_coeff, ppo.kl_target, ppo.vf_clip_param) == (True, 0.2, 0.01, 10.0)
    assert (ppo.num_env_runners, ppo.num_envs_per_env_runner, ppo.rollout_fragment_length) == (2, 1, "auto")
    assert ppo.framework_str == "torch" and ppo.seed is None and ppo.explore is True
    dqn = DQNConfig()
    assert (dqn.lr, dqn.train_batch_size, dqn.n_step, dqn.target_network_update_freq) == (5e-4, 32, 1, 500)
    assert dqn.replay_buffer_config == {"type": "PrioritizedEpisodeReplayBuffer", "capacity": 50000,
                                       "alpha": 0.6, "beta": 0.4}
    assert dqn.epsilon == [(0, 1.0), (10000, 0.05)] and dqn.num_steps_sampled_before_learning_starts == 1000
    assert (dqn.double_q, dqn.dueling, dqn.num_env_runners) == (True, True, 0)
    assert AlgorithmConfig()["lr"] == 0.001  # RLlib's docs: print(config["lr"]) -> 0.001


# ---------------------------------------------------------------- the builder
def test_setters_chain_and_set():
    config = (PPOConfig()
              .environment(env="CartPole-v1", env_config={"max_episode_steps": 50})
              .env_runners(num_env_runners=1, num_envs_per_env_runner=3, rollout_fragment_length=50)
              .training(lr=1e-3, gamma=0.95, train_batch_size=600, minibatch_size=64, num_epochs=4, clip_param=0.1,
                        entropy_coeff=0.01, vf_loss_coeff=0.5, lambda_=0.9, model={"fcnet_hiddens": [32]})
              .learners(num_learners=0, num_gpus_per_learner=0)
              .framework("torch")
              .debugging(seed=7)
              .evaluation(evaluation_interval=2, evaluation_duration=3))
    assert isinstance(config, PPOConfig)
    assert (config.env, config.env_config, config.num_env_runners, config.num_envs_per_env_runner) == \
        ("CartPole-v1", {"max_episode_steps": 50}, 1, 3)
    assert (config.lr, config.gamma, config.lambda_, config.seed, config.evaluation_interval) == (1e-3, 0.95, 0.9, 7, 2)
    assert config.model["fcnet_hiddens"] == [32]
    # dict-style access, with RLlib's old key names
    assert config["lambda"] == 0.9 and config.get("num_workers") == 1 and "num_env_runners" in config


def test_unknown_setting_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"PPOConfig\.training\(\) got an unexpected keyword argument 'bogus'"):
        PPOConfig().training(bogus=1)
    with pytest.raises(TypeError, match=r"DQNConfig\.training\(\) got an unexpected keyword argument 'clip_param'"):
        DQNConfig().training(clip_param=0.2)  # a PPO setting
    with pytest.raises(TypeError, match="'num_env_runner'.*did you mean 'num_env_runners'"):
        PPOConfig().env_runners(num_env_runner=2)
    with pytest.raises(ValueError, match=r"`AlgorithmConfig.env_runners\(num_rollout_workers\)` has been deprecated"):
        PPOConfig().env_runners(num_rollout_workers=2)
    with pytest.raises(ValueError, match="`rollouts` has been deprecated"):
        PPOConfig().rollouts(num_rollout_workers=2)
    with pytest.raises(ValueError, match="PPO: unknown config key 'lr_rate'"):
        PPOConfig.from_dict({"lr_rate": 0.1})


def test_to_dict_copy_freeze_overrides():
    config = PPOConfig().environment("CartPole-v1").training(lambda_=0.9, lr=1e-3)
    as_dict = config.to_dict()
    assert as_dict["lambda"] == 0.9 and "lambda_" not in as_dict and as_dict["framework"] == "torch"
    assert as_dict["env"] == "CartPole-v1" and as_dict["lr"] == 1e-3
    back = PPOConfig.from_dict(as_dict)
    assert back.to_dict() == as_dict
    assert PPOConfig.from_dict({"num_workers": 3}).num_env_runners == 3
    clone = config.copy()
    clone.training(lr=0.5, model={"fcnet_hiddens": [8]})
    assert config.lr == 1e-3 and config.model["fcnet_hiddens"] != [8]
    config.freeze()
    with pytest.raises(AttributeError, match=r"Cannot set attribute \(lr\) of an already frozen AlgorithmConfig!"):
        config.lr = 0.1
    assert config.copy(copy_frozen=False).training(lr=0.2).lr == 0.2
    assert AlgorithmConfig.overrides(explore=False) == {"explore": False}
    with pytest.raises(KeyError, match="Invalid property name bogus for config class PPOConfig"):
        PPOConfig.overrides(bogus=1)


# ---------------------------------------------------------------- bad configs fail at build, on the driver
@pytest.mark.parametrize("config, error, message", [
    (lambda: tiny_ppo().training(lr=-1), ValueError, "lr must be > 0"),
    (lambda: tiny_ppo().training(minibatch_size=5000), ValueError, r"minibatch_size \(5000\) must be <="),
    (lambda: tiny_ppo().training(clip_param=0), ValueError, "clip_param must be > 0"),
    (lambda: tiny_ppo().training(model={"fcnet_activation": "sigmoid"}), ValueError, "fcnet_activation"),
    (lambda: tiny_ppo().evaluation(evaluation_interval=1, evaluation_duration_unit="bogus"), ValueError,
     "evaluation_duration_unit must be 'episodes' or 'timesteps'"),
    (lambda: tiny_ppo("CartPol-v1"), ValueError, "unknown Gymnasium environment 'CartPol-v1'.*CartPole"),
    (lambda: PPOConfig(), ValueError, "no environment given"),
    (lambda: DQNConfig().environment("Pendulum-v1"), ValueError, "DQN needs a Discrete action space"),
    (lambda: tiny_ppo().framework("tf2"), NotImplementedError, "framework='tf2' is not supported"),
    (lambda: tiny_ppo().learners(num_learners=2), NotImplementedError, "num_learners=2"),
    (lambda: tiny_ppo().multi_agent(policies={"a", "b"}), NotImplementedError, r"multi_agent\(policies="),
    (lambda: tiny_ppo().training(model={"use_lstm": True}), NotImplementedError, "use_lstm"),
    (lambda: tiny_ppo().training(use_gae=False), NotImplementedError, "use_gae"),
    (lambda: DQNConfig().environment("CartPole-v1").training(replay_buffer_config={"type": "MyBuffer"}),
     NotImplementedError, "replay_buffer_config type 'MyBuffer'"),
])
def test_bad_config_raises_at_build(config, error, message):
    with pytest.raises(error, match=message):
        config().build_algo()


def test_register_env_needs_a_callable():
    from ray.tune.registry import register_env

    with pytest.raises(TypeError, match="Second argument must be callable"):
        register_env("corridor", 3)


# ---------------------------------------------------------------- training, results, acting
def test_train_reports_rllibs_result_keys(rt):
    algo = tiny_ppo().evaluation(evaluation_interval=1, evaluation_duration=2).build_algo()
    try:
        first = algo.train()
        second = algo.train()
        obs = np.zeros(4, np.float32)
        actions = {algo.compute_single_action(obs) for _ in range(30)}
        greedy = {algo.compute_single_action(obs, explore=False) for _ in range(5)}
        logits = algo.get_module().forward_inference({"obs": __import__("torch").zeros(1, 4)})["action_dist_inputs"]
    finally:
        algo.stop()
    runners = first["env_runners"]
    assert math.isfinite(runners["episode_return_mean"]) and runners["num_env_steps_sampled"] == 400
    assert runners["episode_return_min"] <= runners["episode_return_mean"] <= runners["episode_return_max"]
    assert first["num_env_steps_sampled_lifetime"] == 400 and second["num_env_steps_sampled_lifetime"] == 800
    assert (first["training_iteration"], second["training_iteration"]) == (1, 2)
    assert {"policy_loss", "vf_loss", "entropy", "mean_kl_loss", "curr_kl_coeff"} <= set(first["learners"]["default_policy"])
    assert first["evaluation"]["env_runners"]["num_episodes"] == 2
    assert first["episode_reward_mean"] == runners["episode_return_mean"]  # mpirt's older keys stay
    assert actions <= {0, 1} and len(greedy) == 1
    assert tuple(logits.shape) == (1, 2) and not logits.requires_grad


def test_schedules(rt):
    algo = tiny_ppo().training(lr=[[0, 1e-3], [400, 1e-4]], entropy_coeff=[[0, 0.0], [400, 0.01]]).build_algo()
    try:
        first, second = algo.train(), algo.train()
    finally:
        algo.stop()
    assert first["learners"]["default_policy"]["default_optimizer_learning_rate"] == 1e-3
    assert second["learners"]["default_policy"]["default_optimizer_learning_rate"] == pytest.approx(1e-4)
    assert second["learners"]["default_policy"]["curr_entropy_coeff"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"lr must be a number or a list of \[timestep, value\] pairs"):
        tiny_ppo().training(lr="fast").build_algo()


def test_checkpoint_round_trip_with_custom_env_class(rt, tmp_path):
    config = tiny_ppo(SimpleCorridor).environment(env_config={"corridor_length": 4})
    algo = config.build_algo()
    observations = [np.array([p], np.float32) for p in range(5)]
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        actions = [algo.compute_single_action(o, explore=False) for o in observations]
    finally:
        algo.stop()
    assert path == str(tmp_path / "ckpt") and os.path.exists(os.path.join(path, "algorithm.h5"))
    restored = Algorithm.from_checkpoint(path)  # the class, the env class and the config come back
    try:
        assert isinstance(restored, PPO) and restored.iteration == 1
        assert restored.config.env is SimpleCorridor and restored.config.train_batch_size == 400
        assert [restored.compute_single_action(o, explore=False) for o in observations] == actions
        assert restored.train()["training_iteration"] == 2
    finally:
        restored.stop()
    fresh = config.copy().debugging(seed=1).build_algo()
    try:
        fresh.restore_from_path(path)
        assert [fresh.compute_single_action(o, explore=False) for o in observations] == actions
    finally:
        fresh.stop()


def test_register_env_and_env_config(rt):
    from ray.rllib.env.env_context import EnvContext
    from ray.tune.registry import register_env

    register_env("short_corridor", lambda env_config: SimpleCorridor(env_config))
    algo = tiny_ppo("short_corridor").environment(env_config={"corridor_length": 3}).build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    # the creator got RLlib's EnvContext: the env_config plus where the env lives (0: this process)
    assert isinstance(algo.env.config, EnvContext) and algo.env.config.worker_index == 0
    assert algo.env.end_pos == 3 and result["env_runners"]["episode_len_min"] >= 3


def test_dqn_config_trains_with_prioritized_replay(rt):
    algo = (DQNConfig().environment("CartPole-v1")
            .training(num_steps_sampled_before_learning_starts=100, train_batch_size=16, hiddens=[16],
                      replay_buffer_config={"capacity": 2000}, model={"fcnet_hiddens": [16]})
            .reporting(min_sample_timesteps_per_iteration=300).debugging(seed=0).build_algo())
    try:
        result = algo.train()
        kind = type(algo.buffer).__name__
    finally:
        algo.stop()
    assert kind == "PrioritizedReplayBuffer" and result["env_runners"]["num_env_steps_sampled"] >= 300
    assert result["learners"]["default_policy"]["num_updates"] > 0  # RLlib's natural training intensity
    assert algo.workers == [] and algo.config.num_env_runners == 0  # sampled in this process


def test_replay_buffer_api_and_a_custom_buffer_in_dqn(rt):
    from ray.rllib.policy.sample_batch import SampleBatch
    from ray.rllib.utils.replay_buffers import ReplayBuffer, StorageUnit
    from ray.rllib.utils.replay_buffers.utils import validate_buffer_config

    buffer = ReplayBuffer(capacity=2, storage_unit=StorageUnit.FRAGMENTS)
    buffer.add(SampleBatch({"a": [1], "b": [2]}))
    sample = buffer.sample(2)  # elements can be drawn twice: the batch, concatenated with itself
    assert isinstance(sample, SampleBatch) and sample.count == 2
    assert (list(sample["a"]), list(sample["b"])) == ([1, 1], [2, 2])
    configs = [DQNConfig().training(replay_buffer_config={"type": kind})
               for kind in (ReplayBuffer, "ReplayBuffer", "ray.rllib.utils.replay_buffers.ReplayBuffer")]
    for config in configs:
        validate_buffer_config(config)
    assert all(c.replay_buffer_config["type"] is ReplayBuffer for c in configs)

    class CountingBuffer(ReplayBuffer):
        sampled = 0

        def sample(self, num_items=None, **kwargs):
            CountingBuffer.sampled += 1
            return super().sample(num_items, **kwargs)

    algo = (DQNConfig().environment("CartPole-v1")
            .training(replay_buffer_config={"type": CountingBuffer, "capacity": 500},
                      num_steps_sampled_before_learning_starts=50, train_batch_size=8, hiddens=[8],
                      model={"fcnet_hiddens": [8]}, training_intensity=4)
            .reporting(min_sample_timesteps_per_iteration=100).build_algo())
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert CountingBuffer.sampled == result["learners"]["default_policy"]["num_updates"] > 0


def test_a3c_and_es_configs_train(rt):
    from ray.rllib.algorithms.a3c import A3CConfig
    from ray.rllib.algorithms.es import ESConfig

    for config in (A3CConfig().environment("CartPole-v1").reporting(min_sample_timesteps_per_iteration=500),
                   ESConfig().environment("CartPole-v1").training(noise_size=200_000, episodes_per_batch=8)):
        algo = config.debugging(seed=0).build_algo()
        try:
            result = algo.train()
        finally:
            algo.stop()
        assert result["env_runners"]["num_episodes"] > 0 and result["num_env_steps_sampled_lifetime"] > 0


def test_dict_api_keeps_mpirt_defaults(rt):
    algo = PPO(env="CartPole-v1", config={"num_workers": 1, "sgd_minibatch_size": 64, "train_batch_size": 256,
                                          "num_sgd_iter": 1})
    try:
        config = algo.config
        assert isinstance(config, PPOConfig)
        assert (config.num_env_runners, config.minibatch_size, config.num_epochs) == (1, 64, 1)
        assert (config.lr, config.lambda_, config.use_kl_loss) == (3e-4, 0.95, False)  # docs/rl.md's table
    finally:
        algo.stop()


def test_tuner_runs_ppo_by_name_with_a_config_object(rt, tmp_path):
    from ray import tune

    param_space = tiny_ppo().training(lr=tune.grid_search([1e-3, 1e-4]), num_epochs=1)
    results = tune.Tuner("PPO", param_space=param_space, run_config=tune.RunConfig(
        stop={"training_iteration": 1}, storage_path=str(tmp_path), verbose=0)).fit()
    assert len(results) == 2 and not results.errors
    assert sorted(r.config["lr"] for r in results) == [1e-4, 1e-3]
    for result in results:
        assert math.isfinite(result.metrics["env_runners"]["episode_return_mean"])
        assert result.metrics["num_env_steps_sampled_lifetime"] == 400


def test_quick_start_corridor_learns(rt):
    """RLlib's quick start (rllib_on_ray_readme.py): PPO with RLlib's defaults on a 20-field corridor, then
    the greedy policy must walk a 10-field corridor to the goal with a return above -0.5."""
    import torch

    config = (PPOConfig().environment(SimpleCorridor, env_config={"corridor_length": 20})
              .env_runners(num_env_runners=3).training(model={"fcnet_hiddens": [64, 64]}).debugging(seed=0))
    algo = config.build_algo()
    try:
        returns = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(5)]
        module = algo.get_module()
        env = SimpleCorridor({"corridor_length": 10})
        obs, _ = env.reset()
        total, steps, done = 0.0, 0, False
        while not done and steps < 100:
            logits = module.forward_inference({"obs": torch.from_numpy(obs).unsqueeze(0)})["action_dist_inputs"]
            obs, reward, done, _, _ = env.step(int(np.argmax(logits.numpy()[0])))
            total += reward
            steps += 1
    finally:
        algo.stop()
    assert returns[-1] > returns[0], returns
    assert total > -0.5 and obs[0] >= 9.0, (total, obs, returns)
