"""Two experiments run in parallel; each runs its simulations in parallel (nested tasks).

    python examples/parallel_experiments.py
    mpirun -n 6 python examples/parallel_experiments.py
"""
import time

import numpy as np

import mpirt as ray

ray.init()


@ray.remote
def simulation(seed, steps=1000):
    """A random walk standing in for a simulator run; returns its final position."""
    rng = np.random.default_rng(seed)
    time.sleep(0.05)
    return float(rng.standard_normal(steps).sum())


@ray.remote
def experiment(name, num_simulations):
    # An experiment launches tasks of its own and waits for them; while it waits
    # its CPU goes to the simulations, so this never deadlocks.
    results = ray.get([simulation.remote(seed) for seed in range(num_simulations)])
    return name, float(np.mean(results)), float(np.std(results))


experiments = [experiment.remote("experiment-A", 8), experiment.remote("experiment-B", 8)]
for name, mean, std in ray.get(experiments):
    print(f"{name}: mean final position {mean:+.2f}, std {std:.2f}")
