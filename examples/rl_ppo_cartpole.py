"""PPO on CartPole-v1 with rollouts on two mpirt actors: train to a mean return of 475, save, restore, evaluate.

    python examples/rl_ppo_cartpole.py               # about 100k env steps, half a minute on 2 cores
    python examples/rl_ppo_cartpole.py --target 150  # a shorter run
"""
import argparse
import os
import tempfile

from mpirt.libs.rl import PPO

parser = argparse.ArgumentParser()
parser.add_argument("--target", type=float, default=475.0)
parser.add_argument("--max-iterations", type=int, default=200)
args = parser.parse_args()

algo = PPO(env="CartPole-v1", config={"num_workers": 2, "train_batch_size": 2000, "seed": 0})
for _ in range(args.max_iterations):
    result = algo.train()
    print(f"iteration {result['training_iteration']:3d}  steps {result['timesteps_total']:7d}  "
          f"mean return {result['episode_reward_mean']:6.1f}")
    if result["episode_reward_mean"] >= args.target:
        break

path = algo.save(os.path.join(tempfile.mkdtemp(), "ppo_cartpole.h5"))
algo.stop()
print("saved to", path)

restored = PPO(env="CartPole-v1", config={"num_workers": 1})
restored.restore(path)
print(f"restored at iteration {restored.iteration}; greedy mean return over 5 episodes: {restored.evaluate(5):.1f}")
restored.stop()
