"""Command line: train an algorithm on an env, or evaluate a saved one.

    python -m mpirt.libs.rl train --run PPO --env CartPole-v1 --stop '{"episode_reward_mean": 475}'
    python -m mpirt.libs.rl train --run DQN --env CartPole-v1 --config '{"lr": 5e-4}' --checkpoint-dir out/
    python -m mpirt.libs.rl train --run PPO --env CartPole-v1 --tune --stop '{"training_iteration": 5}'
    python -m mpirt.libs.rl evaluate out/algorithm.h5 --run DQN --episodes 10

``train`` stops when every metric named in ``--stop`` reaches its value (any one
of them, as in Tune), or on Ctrl-C; it then saves one HDF5 checkpoint. Under
``mpirun -n N python -m mpirt.libs.rl train ...`` rank 0 trains and the others serve.
"""
import argparse
import json
import math
import os
import sys
import time


def _json_dict(text, flag):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SystemExit(f"{flag}: not valid JSON ({error}): {text}")
    if not isinstance(value, dict):
        raise SystemExit(f"{flag}: expected a JSON object like '{{\"key\": 1}}', got {text}")
    return value


def _parser():
    parser = argparse.ArgumentParser(prog="python -m mpirt.libs.rl", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an algorithm")
    train.add_argument("--run", required=True, help="PPO, DQN, A3C or ES")
    train.add_argument("--env", required=True, help="a Gymnasium id, e.g. CartPole-v1")
    train.add_argument("--config", default="{}", help="algorithm config as JSON")
    train.add_argument("--stop", default="{}", help='stop criteria as JSON, e.g. {"episode_reward_mean": 475}')
    train.add_argument("--checkpoint-dir", default=None, help="where the final HDF5 checkpoint goes")
    train.add_argument("--checkpoint-freq", type=int, default=0, help="also save every N iterations")
    train.add_argument("--restore", default=None, help="continue from this checkpoint")
    train.add_argument("--num-cpus", type=int, default=None, help="worker ranks to spawn (default: one per core)")
    train.add_argument("--tune", action="store_true", help="run as one trial of tune.run instead of a plain loop")
    train.add_argument("--quiet", action="store_true", help="print only the final result")
    evaluate = commands.add_parser("evaluate", help="run a saved algorithm greedily and print its mean return")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--run", required=True)
    evaluate.add_argument("--env", default=None, help="needed only if training used an env creator")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--num-cpus", type=int, default=None)
    return parser


def _init(mpirt, args):
    """Start mpirt unless the caller already did (``main`` may be called from a running program)."""
    mpirt.init(ignore_reinit_error=True, **({"num_cpus": args.num_cpus} if args.num_cpus else {}))


def _should_stop(result, stop):
    return any(key in result and isinstance(result[key], (int, float)) and not math.isnan(result[key])
               and result[key] >= value for key, value in stop.items())


def _line(result):
    return (f"iter {result['training_iteration']:4d}  timesteps {result.get('timesteps_total', 0):8d}  "
            f"episodes {result.get('episodes_total', 0):6d}  reward_mean {result['episode_reward_mean']:9.2f}  "
            f"time {result['time_total_s']:7.1f}s")


def train(args):
    import mpirt
    from mpirt.libs.rl import get_algorithm_class

    config = _json_dict(args.config, "--config")
    stop = _json_dict(args.stop, "--stop")
    algorithm_cls = get_algorithm_class(args.run)
    _init(mpirt, args)
    if args.tune:
        return _train_with_tune(args, algorithm_cls, config, stop)
    algo = algorithm_cls(env=args.env, config=config)
    if args.restore:
        algo.restore(args.restore)
    checkpoint_dir = args.checkpoint_dir or os.path.join(os.getcwd(), f"{args.run}_{args.env}_{int(time.time())}")
    os.makedirs(checkpoint_dir, exist_ok=True)
    result = None
    try:
        while True:
            result = algo.train()
            if not args.quiet:
                print(_line(result), flush=True)
            if args.checkpoint_freq and result["training_iteration"] % args.checkpoint_freq == 0:
                algo.save(os.path.join(checkpoint_dir, f"iteration_{result['training_iteration']}.h5"))
            if _should_stop(result, stop):
                break
    except KeyboardInterrupt:
        print("interrupted; saving", flush=True)
    path = algo.save(checkpoint_dir)
    algo.stop()
    if result is not None:
        print(_line(result))
    print(f"checkpoint: {path}", flush=True)
    return 0


def _train_with_tune(args, algorithm_cls, config, stop):
    from mpirt.libs import tune

    analysis = tune.run(args.run, config={**config, "env": args.env}, stop=stop or None, checkpoint_at_end=True,
                        local_dir=args.checkpoint_dir, verbose=0 if args.quiet else 1)
    for trial in analysis.trials:
        print(f"{trial}: {_line(trial.last_result)}")
    return 0


def evaluate(args):
    import mpirt
    from mpirt.libs.rl import get_algorithm_class

    algorithm_cls = get_algorithm_class(args.run)
    _init(mpirt, args)
    algo = algorithm_cls.from_checkpoint(args.checkpoint, env=args.env, config={"num_workers": 1})
    mean = algo.evaluate(args.episodes)
    algo.stop()
    print(f"mean return over {args.episodes} episodes: {mean:.2f}")
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    return train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
