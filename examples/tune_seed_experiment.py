"""The seed article's Tune experiment, unchanged: a registered function trainable, grid search,
stop criteria and per-trial resources, run with ``run_experiments``.

    python examples/tune_seed_experiment.py                 # mpirt spawns its ranks
    mpirun -n 4 python examples/tune_seed_experiment.py     # or under mpirun
Results: ~/mpirt_results/my_experiment/ (experiment.h5, one folder of logs per trial).
"""
import sys

import mpirt
from mpirt.libs.tune import grid_search, register_trainable, run_experiments


def my_func(config, reporter):
    """A stand-in for training: accuracy climbs at a rate set by alpha and beta."""
    import time
    accuracy, timesteps = 0.0, 0
    while True:
        timesteps += 1
        accuracy += config["alpha"] * config["beta"]
        time.sleep(0.002)
        reporter(timesteps_total=timesteps, mean_accuracy=accuracy)


mpirt.init()
register_trainable("my_func", my_func)
spec = {
    "run": "my_func",
    "resources": {"cpu": 1, "gpu": 0},
    "stop": {"mean_accuracy": 100},
    "config": {
        "alpha": grid_search([0.2, 0.4, 0.6]),
        "beta": grid_search([1, 2]),
    },
}
if len(sys.argv) > 1:
    spec["local_dir"] = sys.argv[1]          # where results go (default ~/mpirt_results)
trials = run_experiments({"my_experiment": spec}, resume="AUTO")
for trial in trials:
    print(f"{trial.trial_name}: alpha={trial.config['alpha']} beta={trial.config['beta']} "
          f"-> {trial.last_result['timesteps_total']} timesteps to reach mean_accuracy 100")
mpirt.shutdown()
