"""Population Based Training on a toy problem: maximize a quadratic by gradient ascent, where
the learning rate is the hyperparameter PBT tunes while training runs.

    python examples/tune_pbt.py [results_dir]
Bad learning rates are replaced by perturbed copies of good ones, and the trial continues from
the good trial's checkpoint (its parameters), so the whole population ends up near the optimum.
"""
import sys

import numpy as np

import mpirt
from mpirt.libs import tune


class Quadratic(tune.Trainable):
    """theta climbs f(theta) = -|theta - 3|^2 with step size lr; checkpoints hold theta."""

    def setup(self, config):
        self.theta = np.zeros(4)
        self.lr = config["lr"]

    def step(self):
        for _ in range(5):
            self.theta += self.lr * 2 * (3 - self.theta)
        return {"score": -float(np.sum((self.theta - 3) ** 2)), "lr": self.lr}

    def save_checkpoint(self, checkpoint_dir):
        return {"theta": self.theta.copy()}

    def load_checkpoint(self, checkpoint):
        self.theta = checkpoint["theta"]

    def reset_config(self, new_config):
        self.lr = new_config["lr"]
        return True


mpirt.init()
pbt = tune.PopulationBasedTraining(metric="score", mode="max", perturbation_interval=3,
                                   hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1)}, seed=0)
analysis = tune.run(Quadratic, config={"lr": tune.grid_search([1e-4, 3e-4, 1e-3, 3e-3])}, scheduler=pbt,
                    stop={"training_iteration": 30}, name="pbt_example",
                    local_dir=sys.argv[1] if len(sys.argv) > 1 else None)
for trial in analysis.trials:
    print(f"{trial.trial_name}: final lr {trial.config['lr']:.2e}, score {trial.last_result['score']:.4f}")
print(f"{pbt.num_perturbations} perturbations; best score {analysis.best_result['score']:.4f}")
mpirt.shutdown()
