"""Evolution strategies on CartPole whose workers average their update with MPI allreduce: no parameter server.

Every worker holds the same policy (a linear map of the observation to push left or right). Each iteration
a worker tries ``--perturbations`` random directions, both ways (antithetic sampling), and scores them by
episode return. The workers allgather the returns to normalize them alike, each turns its own directions
into a partial gradient, and one allreduce sums the partial gradients: every worker then takes the same
step and keeps the same weights, with nothing sent through the driver or a central actor.

    python examples/es_allreduce.py --workers 2
    mpirun -n 4 python examples/es_allreduce.py
"""
import argparse

import gymnasium as gym
import numpy as np

import mpirt
from mpirt.util import collective

GROUP = "es"


@mpirt.remote
class ESWorker:
    def __init__(self, rank, world, perturbations, sigma, lr, seed):
        self.rank, self.world, self.perturbations, self.sigma, self.lr = rank, world, perturbations, sigma, lr
        self.env = gym.make("CartPole-v1")
        self.weights = np.zeros(self.env.observation_space.shape[0] + 1)      # same start everywhere
        self.noise = np.random.default_rng(seed + 1000 * rank)                # own directions per worker

    def episode_return(self, weights, seed):
        observation, _ = self.env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = int(weights[:-1] @ observation + weights[-1] > 0)
            observation, reward, terminated, truncated, _ = self.env.step(action)
            total += reward
            done = terminated or truncated
        return total

    def step(self, iteration):
        directions = self.noise.standard_normal((self.perturbations, self.weights.size))
        returns = np.array([[self.episode_return(self.weights + sign * self.sigma * d, seed=iteration)
                             for sign in (1, -1)] for d in directions])
        world = self.world
        everyone = [np.zeros_like(returns) for _ in range(world)]
        collective.allgather(everyone, returns, GROUP)
        scale = np.concatenate(everyone).std() + 1e-8
        gradient = ((returns[:, 0] - returns[:, 1]) / scale) @ directions
        collective.allreduce(gradient, GROUP)          # the sum of every worker's part
        self.weights += self.lr / (2 * world * self.perturbations * self.sigma) * gradient
        return float(np.concatenate(everyone).mean()), self.weights.copy()

    def evaluate(self, episodes):
        return float(np.mean([self.episode_return(self.weights, seed=10_000 + i) for i in range(episodes)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--perturbations", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--target", type=float, default=475.0)
    args = parser.parse_args()
    mpirt.init(num_cpus=args.workers)
    workers = [ESWorker.remote(rank, args.workers, args.perturbations, sigma=0.1, lr=0.2, seed=0)
               for rank in range(args.workers)]
    collective.create_collective_group(workers, args.workers, list(range(args.workers)), group_name=GROUP)
    for iteration in range(args.iterations):
        steps = mpirt.get([w.step.remote(iteration) for w in workers])
        mean_return = steps[0][0]
        same = all(np.array_equal(steps[0][1], weights) for _, weights in steps)
        print(f"iteration {iteration}: mean return of the perturbed policies {mean_return:.1f}, "
              f"weights equal on all workers: {same}")
        if mean_return >= args.target:
            break
    print(f"evaluated return of the final policy: {mpirt.get(workers[0].evaluate.remote(10)):.1f}")
    mpirt.shutdown()


if __name__ == "__main__":
    main()
