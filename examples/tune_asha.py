"""ASHA on a synthetic objective: 24 random configs, poor ones stopped at early rungs.

    python examples/tune_asha.py [results_dir]
The objective is a noisy learning curve whose plateau depends on lr and width; ASHA spends most
of the budget on the configs whose early results look best.
"""
import math
import sys
import time

import mpirt
from mpirt.libs import tune


def train_curve(config):
    plateau = 1 - abs(math.log10(config["lr"]) + 2.5) / 3 - abs(config["width"] - 64) / 256
    for epoch in range(1, 31):
        time.sleep(0.01)
        accuracy = plateau * (1 - math.exp(-epoch / 5))
        tune.report({"accuracy": accuracy, "epoch": epoch})


mpirt.init()
tuner = tune.Tuner(
    train_curve,
    param_space={"lr": tune.loguniform(1e-5, 1e-1), "width": tune.choice([16, 32, 64, 128, 256])},
    tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=24, seed=0,
                                scheduler=tune.ASHAScheduler(max_t=30, grace_period=2, reduction_factor=3)),
    run_config=tune.RunConfig(name="asha_example", storage_path=sys.argv[1] if len(sys.argv) > 1 else None),
)
start = time.time()
results = tuner.fit()
best = results.get_best_result()
epochs = sum(r.metrics["training_iteration"] for r in results)
print(f"best config {best.config} accuracy {best.metrics['accuracy']:.3f}")
print(f"{len(results)} trials ran {epochs} epochs in all (without early stopping: {len(results) * 30}), "
      f"{time.time() - start:.1f} s; results in {results.experiment_path}")
mpirt.shutdown()
