"""Learning benchmark: env steps and wall time for each algorithm to reach its target return.

    python benchmarks/rl/rl_bench.py                      # all cases, mpirt and RLlib (where installed)
    python benchmarks/rl/rl_bench.py --only PPO-CartPole,DQN-CartPole --runtimes mpirt
    nice -n 5 python benchmarks/rl/rl_bench.py --seeds 0,1,2

Targets: mean return (over the last 100 training episodes, with exploration, as
both libraries report it) >= 475 on CartPole-v1 for ES, A3C, DQN and PPO, and
>= -250 on Pendulum-v1 for PPO. Each case runs in a child process of its own
(its own mpirt or Ray, 2 rollout actors / env runners) with a step and time limit;
the table shows env steps and wall time to the target (from constructing the
algorithm, actor start-up included), the return at stop, and a greedy
10-episode evaluation of the final mpirt policy. RLlib runs with the settings of
its own tuned examples for the same task. Results: benchmarks/results/rl_bench.json.
"""
import argparse
import importlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402

MARKER = "__rl_bench__"

# name -> (algorithm, env, target, mpirt config, step limit)
CASES = {
    "ES-CartPole": ("ES", "CartPole-v1", 475.0, {"noise_stdev": 0.1}, 3_000_000),
    "A3C-CartPole": ("A3C", "CartPole-v1", 475.0, {}, 1_000_000),
    # epsilon decays to 0 over 20k steps: with a floor of 0.02 the mean training return stalls near 300
    # while the greedy policy already scores 500 (see docs/rl.md)
    "DQN-CartPole": ("DQN", "CartPole-v1", 475.0,
                     {"final_epsilon": 0.0, "epsilon_timesteps": 20000, "train_freq": 2, "buffer_size": 200000},
                     400_000),
    "PPO-CartPole": ("PPO", "CartPole-v1", 475.0, {"train_batch_size": 2000}, 500_000),
    "PPO-Pendulum": ("PPO", "Pendulum-v1", -250.0,
                     {"gamma": 0.9, "lr": 1e-3, "train_batch_size": 4000, "sgd_minibatch_size": 128}, 1_000_000),
}
RLLIB_CASES = ("DQN-CartPole", "PPO-CartPole", "PPO-Pendulum")


# --------------------------------------------------------------------------- children
def run_mpirt(algorithm, env, target, config, max_steps, time_limit, seed):
    sys.path.insert(0, harness.REPO_ROOT)
    import mpirt
    from mpirt.libs import rl

    mpirt.init()
    start = time.perf_counter()
    algo = rl.get_algorithm_class(algorithm)(env=env, config={**config, "seed": seed, "num_workers": 2})
    result = _loop(algo.train, lambda r: (r["timesteps_total"], r["episode_reward_mean"]), target, max_steps,
                   time_limit, start)
    result["eval_return"] = algo.evaluate(10, seed=10_000)
    result["version"] = mpirt.__version__
    algo.stop()
    mpirt.shutdown()
    return result


def _rllib_config(algorithm, env):
    """RLlib's tuned examples for these tasks (rllib/tuned_examples/{ppo,dqn}), with 2 env runners."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    if algorithm == "DQN":
        from ray.rllib.algorithms.dqn import DQNConfig

        return (DQNConfig().environment(env).env_runners(num_env_runners=2)
                .training(lr=0.0005, train_batch_size_per_learner=32, n_step=(2, 5), double_q=True, dueling=True,
                          epsilon=[(0, 1.0), (10000, 0.02)],
                          replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer", "capacity": 50000,
                                                "alpha": 0.6, "beta": 0.4})
                .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[256], fcnet_activation="tanh",
                                                           head_fcnet_hiddens=[256])))
    from ray.rllib.algorithms.ppo import PPOConfig

    if env == "Pendulum-v1":
        return (PPOConfig().environment(env).env_runners(num_env_runners=2, num_envs_per_env_runner=10)
                .training(lr=0.0003, lambda_=0.1, vf_clip_param=10.0, num_epochs=6)
                .rl_module(model_config=DefaultModelConfig(fcnet_activation="relu")))
    return (PPOConfig().environment(env).env_runners(num_env_runners=2)
            .training(gamma=0.99, lr=0.0003, num_epochs=6, vf_loss_coeff=0.01)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear",
                                                       vf_share_layers=True)))


def run_rllib(algorithm, env, target, max_steps, time_limit, seed):
    import logging

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    start = time.perf_counter()
    algo = _rllib_config(algorithm, env).debugging(seed=seed).build_algo()

    def metrics(r):
        return r["num_env_steps_sampled_lifetime"], r["env_runners"].get("episode_return_mean", float("nan"))

    result = _loop(algo.train, metrics, target, max_steps, time_limit, start)
    result["version"] = ray.__version__
    algo.stop()
    ray.shutdown()
    return result


def _loop(train, metrics, target, max_steps, time_limit, start):
    iterations, steps, ret = 0, 0, float("nan")
    while True:
        steps, ret = metrics(train())
        iterations += 1
        reached = ret == ret and ret >= target
        if reached or steps >= max_steps or time.perf_counter() - start > time_limit:
            break
    return {"reached": bool(reached), "steps": int(steps), "final_return": float(ret), "iterations": iterations,
            "train_wall_s": time.perf_counter() - start}


def child(args):
    algorithm, env, target, config, max_steps = CASES[args.case]
    config = {**config, **json.loads(args.config)}
    try:
        if args.child == "mpirt":
            result = run_mpirt(algorithm, env, target, config, max_steps, args.time_limit, args.seed)
        else:
            try:
                importlib.import_module("ray.rllib.algorithms.ppo")  # RLlib and its dependencies import
            except ImportError as error:
                harness.emit({MARKER: True, "status": "not installed", "error": str(error)})
                return 0
            result = run_rllib(algorithm, env, target, max_steps, args.time_limit, args.seed)
        result["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - reported in the table
        import traceback

        traceback.print_exc()
        result = {"status": "error", "error": f"{type(error).__name__}: {error}"}
    harness.emit({MARKER: True, **result})
    return 0


# --------------------------------------------------------------------------- parent
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"cases, from {', '.join(CASES)}")
    parser.add_argument("--runtimes", default="mpirt,rllib")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds per case before giving up")
    parser.add_argument("--config", default="{}", help="JSON merged into every mpirt config (for experiments)")
    parser.add_argument("--child", choices=["mpirt", "rllib"], help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case!r}; choose from {', '.join(CASES)}")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    rows, records = [], []
    for case in cases:
        for runtime in runtimes:
            if runtime == "rllib" and case not in RLLIB_CASES:
                continue
            for seed in seeds:
                cmd = [sys.executable, os.path.abspath(__file__), "--child", runtime, "--case", case,
                       "--seed", str(seed), "--time-limit", str(args.time_limit), "--config", args.config]
                load_before = os.getloadavg()[0]
                run = harness.run_process(cmd, harness.child_env(), args.time_limit + 300, MARKER)
                result = harness.runtime_result(run, runtime, args.time_limit, MARKER, case=case, seed=seed,
                                                runtime=runtime, load=[load_before, os.getloadavg()[0]])
                result.pop("stdout_tail", None)
                records.append(result)
                rows.append(_row(case, runtime, seed, result))
                print(" | ".join(rows[-1]), flush=True)
                if result.get("status") != "ok":
                    for line in result.get("stderr_tail", [])[-8:]:
                        print(f"  | {line}")
    print()
    harness.print_rows([("case", "runtime", "seed", "reached", "env steps", "wall s", "return at stop",
                         "greedy eval", "load before/after")] + rows, left=3)
    print("load: 1-minute load average before/after each run; on 2 cores, well above 2 means the wall times "
          "were contended by other work")
    _save(records)


def _save(records):
    """Merge ``records`` into results/rl_bench.json (a run replaces the earlier one of its case, runtime, seed)."""
    path = os.path.join(harness.RESULTS_DIR, "rl_bench.json")
    try:
        with open(path) as f:
            earlier = json.load(f).get("runs", [])
    except (OSError, ValueError):
        earlier = []
    key = lambda r: (r.get("case"), r.get("runtime"), r.get("seed"))  # noqa: E731
    fresh = {key(r) for r in records}
    runs = [r for r in earlier if key(r) not in fresh] + records
    harness.write_results("rl_bench", {"cases": {k: list(v[:4]) for k, v in CASES.items()}, "runs": runs},
                          lambda _path: False)


def _row(case, runtime, seed, result):
    load = "/".join(f"{x:.1f}" for x in result["load"])
    if result.get("status") != "ok":
        return (case, runtime, str(seed), result.get("status", "?"), "", "", "", "", load)
    evaluation = result.get("eval_return")
    return (case, runtime, str(seed), "yes" if result["reached"] else "NO", f"{result['steps']:,}",
            f"{result['train_wall_s']:.1f}", f"{result['final_return']:.1f}",
            "n/a" if evaluation is None else f"{evaluation:.1f}", load)


if __name__ == "__main__":
    sys.exit(main())
