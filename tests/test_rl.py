"""mpirt.libs.rl: short runs that learn, save/restore round trips, clear errors, Tune and the CLI."""
import contextlib
import json
import math
import os

import numpy as np
import pytest

pytest.importorskip("torch")
gym = pytest.importorskip("gymnasium")
h5py = pytest.importorskip("h5py")

from conftest import REPO, run_app  # noqa: E402

from mpirt.libs import rl  # noqa: E402

# Small, fast settings; every algorithm runs its rollouts on 2 actors.
FAST = {
    "PPO": {"train_batch_size": 1000, "num_sgd_iter": 6, "lr": 1e-3},
    "A3C": {"min_sample_timesteps_per_iteration": 1000},
    "DQN": {"learning_starts": 200, "epsilon_timesteps": 2000, "min_sample_timesteps_per_iteration": 500,
            "train_freq": 2},
    "ES": {"noise_size": 1_000_000, "model": {"hiddens": []}},
}


@contextlib.contextmanager
def algorithm(name, env="CartPole-v1", **config):
    algo = rl.get_algorithm_class(name)(env=env, config={"seed": 0, "num_workers": 2, **FAST[name], **config})
    try:
        yield algo
    finally:
        algo.stop()


def train_until_better(algo, gain, max_iterations):
    """Train until episode_reward_mean exceeds the first iteration's by ``gain``; return (first, best)."""
    first = algo.train()["episode_reward_mean"]
    best = first
    for _ in range(max_iterations):
        best = max(best, algo.train()["episode_reward_mean"])
        if best >= first + gain:
            break
    return first, best


# ---------------------------------------------------------------- learning
@pytest.mark.parametrize("name, gain, iterations", [("PPO", 40, 15), ("A3C", 40, 15), ("DQN", 30, 30),
                                                    ("ES", 100, 20)])
def test_return_rises_on_cartpole(rt, name, gain, iterations):
    with algorithm(name) as algo:
        first, best = train_until_better(algo, gain, iterations)
        result = algo._last_result
    assert best >= first + gain, f"{name}: episode_reward_mean went from {first:.1f} to at best {best:.1f}"
    assert result["timesteps_total"] > 0 and result["episodes_total"] > 0
    assert result["training_iteration"] >= 2 and result["time_total_s"] > 0
    assert isinstance(result["learner"], dict) and result["learner"]


def test_result_fields(rt):
    with algorithm("PPO") as algo:
        result = algo.train()
    for key in ("episode_reward_mean", "episode_reward_min", "episode_reward_max", "episode_len_mean",
                "episodes_total", "timesteps_total", "time_total_s", "training_iteration", "episodes_this_iter"):
        assert key in result, key
    assert result["timesteps_total"] >= 1000  # train_batch_size, split over 2 actors x 4 envs
    assert result["episode_reward_min"] <= result["episode_reward_mean"] <= result["episode_reward_max"]
    assert set(result["learner"]) >= {"policy_loss", "vf_loss", "entropy", "kl"}


def test_ppo_continuous_actions(rt):
    with algorithm("PPO", env="Pendulum-v1", train_batch_size=1600) as algo:
        result = algo.train()
        action = algo.compute_action(np.zeros(3, np.float32))
        sampled = [algo.compute_action(np.zeros(3, np.float32), explore=True) for _ in range(20)]
    assert result["timesteps_total"] >= 1600 and math.isfinite(result["episode_reward_mean"])
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
    assert all(-2.0 <= a[0] <= 2.0 for a in sampled) and len({float(a[0]) for a in sampled}) > 1
    assert "action_std_mean" in result["learner"]


def test_es_noise_table_is_shared_read_only(rt):
    with algorithm("ES") as algo:
        infos = rt.get([w.noise_info.remote() for w in algo.workers])
        result = algo.train()
    assert all(info["size"] == 1_000_000 and not info["writeable"] and not info["owndata"] for info in infos)
    # each of the 16 pairs is two episodes, and only scalars came back
    assert result["episodes_this_iter"] == 32


def test_env_creator_callable(rt):
    def make(env_config):
        return gym.make("CartPole-v1", max_episode_steps=env_config["horizon"])

    with algorithm("PPO", env=make, env_config={"horizon": 20}) as algo:
        result = algo.train()
    assert result["episode_len_mean"] <= 20 and result["timesteps_total"] > 0


# ---------------------------------------------------------------- save / restore
@pytest.mark.parametrize("name", ["PPO", "A3C", "DQN", "ES"])
def test_save_restore_round_trip(rt, tmp_path, name):
    observations = [np.array([0.01 * i, -0.1, 0.02 * i, 0.3], np.float32) for i in range(-5, 6)]
    with algorithm(name, num_workers=1) as algo:
        algo.train()
        before = algo.train()
        path = algo.save(tmp_path / "algo.h5")
        actions = [algo.compute_action(o) for o in observations]
        state = algo.get_state()
    assert os.path.exists(path)
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["algorithm"]) == name and "state" in f
    with algorithm(name, num_workers=1, seed=1) as fresh:
        fresh.restore(path)
        assert [fresh.compute_action(o) for o in observations] == actions
        _assert_same_state(fresh.get_state(), state)
        assert fresh.iteration == before["training_iteration"]
        after = fresh.train()
    assert after["training_iteration"] == before["training_iteration"] + 1
    assert after["timesteps_total"] > before["timesteps_total"]


def _assert_same_state(a, b):
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            _assert_same_state(a[key], b[key])
        elif isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key])
        elif key != "optimizer":  # torch's bytes may differ in layout, not in content
            assert a[key] == b[key], key


def test_from_checkpoint_and_wrong_algorithm(rt, tmp_path):
    with algorithm("PPO", num_workers=1) as algo:
        algo.train()
        path = algo.save(tmp_path)
    assert path == str(tmp_path / "algorithm.h5")
    restored = rl.PPO.from_checkpoint(tmp_path, config={"num_workers": 1})
    try:
        assert restored.iteration == 1 and restored.config["train_batch_size"] == 1000
    finally:
        restored.stop()
    with algorithm("A3C", num_workers=1) as other:
        with pytest.raises(ValueError, match="holds a PPO checkpoint, not A3C"):
            other.restore(path)


# ---------------------------------------------------------------- errors
def test_unknown_env_id():
    with pytest.raises(ValueError, match="unknown Gymnasium environment 'CartPol-v1'.*CartPole"):
        rl.PPO(env="CartPol-v1")


def test_bad_action_space_for_dqn():
    with pytest.raises(ValueError, match="DQN needs a Discrete action space, but Pendulum-v1 has Box"):
        rl.DQN(env="Pendulum-v1")


@pytest.mark.parametrize("config, message", [
    ({"lr_rate": 0.1}, "unknown config key 'lr_rate'"),
    ({"num_workers": -1}, r"num_env_runners.*must be an integer >= 0"),
    ({"model": {"hiddens": [64], "activation": "sigmoid"}}, "activation"),
    ({"clip_param": -1}, "clip_param must be > 0"),
    ({"env": None}, "no environment given"),
])
def test_bad_config(config, message):
    with pytest.raises(ValueError, match=message):
        rl.PPO({"env": "CartPole-v1", **config})


def test_gpu_asked_but_missing():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="num_gpus_per_learner=1 .* but torch sees no CUDA device"):
        rl.PPO(env="CartPole-v1", config={"num_gpus": 1})


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="unknown algorithm 'PPO2'"):
        rl.get_algorithm_class("PPO2")


# ---------------------------------------------------------------- Tune and CLI
def test_tune_runs_ppo_by_name(rt, tmp_path):
    from mpirt.libs import tune

    analysis = tune.run("PPO", config={"env": "CartPole-v1", "seed": 0, "num_workers": 1, **FAST["PPO"]},
                        stop={"training_iteration": 2}, checkpoint_at_end=True, local_dir=str(tmp_path), verbose=0)
    [trial] = analysis.trials
    assert trial.last_result["training_iteration"] == 2
    assert trial.last_result["timesteps_total"] >= 2000
    checkpoint = analysis.get_best_checkpoint(trial, metric="episode_reward_mean", mode="max")
    assert "algorithm.h5" in checkpoint.files


def test_cli_train_then_evaluate(tmp_path):
    """``train`` then ``evaluate`` on its checkpoint, both through main() in one program."""
    config = json.dumps({"train_batch_size": 500, "num_sgd_iter": 2, "num_workers": 1})
    checkpoint_dir = str(tmp_path / "out")
    source = f"""
import sys
sys.path.insert(0, {REPO!r})
from mpirt.libs.rl.__main__ import main
assert main(["train", "--run", "PPO", "--env", "CartPole-v1", "--config", {config!r}, "--num-cpus", "1",
             "--stop", '{{"training_iteration": 2}}', "--checkpoint-dir", {checkpoint_dir!r}]) == 0
assert main(["evaluate", {checkpoint_dir!r}, "--run", "PPO", "--episodes", "2"]) == 0
"""
    proc = run_app(tmp_path, source, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "iter    2" in proc.stdout and f"checkpoint: {checkpoint_dir}/algorithm.h5" in proc.stdout
    assert os.path.exists(os.path.join(checkpoint_dir, "algorithm.h5"))
    assert "mean return over 2 episodes:" in proc.stdout


def test_cli_bad_arguments():
    from mpirt.libs.rl.__main__ import main

    with pytest.raises(SystemExit, match="--stop: not valid JSON"):
        main(["train", "--run", "PPO", "--env", "CartPole-v1", "--stop", "{not json"])
    with pytest.raises(SystemExit, match="--config: expected a JSON object"):
        main(["train", "--run", "PPO", "--env", "CartPole-v1", "--config", "[1, 2]"])
    with pytest.raises(ValueError, match="unknown algorithm 'SAC'"):
        main(["train", "--run", "SAC", "--env", "CartPole-v1"])
