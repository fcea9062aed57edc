"""PPO as a Tune trainable: a small grid over the learning rate, each trial with its own rollout actors.

    python examples/rl_tune_ppo.py
"""
from mpirt.libs import tune

analysis = tune.run(
    "PPO",  # found by name: mpirt.libs.rl registers PPO, A3C, DQN and ES
    config={
        "env": "CartPole-v1",
        "lr": tune.grid_search([3e-4, 1e-3]),
        "train_batch_size": 1000,
        "num_workers": 1,  # rollout actors per trial; they hold no CPU of their own (num_cpus_per_worker=0)
    },
    stop={"training_iteration": 5},
    metric="episode_reward_mean",
    mode="max",
    verbose=1,
)
print("best config:", {k: analysis.best_config[k] for k in ("lr", "train_batch_size")})
print("best mean return:", round(analysis.best_result["episode_reward_mean"], 1))
