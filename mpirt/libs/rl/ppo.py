"""PPO (Schulman et al. 2017): parallel rollout actors, GAE, clipped surrogate, minibatch SGD epochs.

Each iteration the learner puts its weights in the object store once, every
rollout actor samples its share of ``train_batch_size`` with them (GAE is
computed on the actors), and the learner runs ``num_epochs`` epochs of
minibatch SGD on the concatenated batch: the clipped surrogate, a value loss
(clipped at ``vf_clip_param``), an entropy bonus and, with ``use_kl_loss``, a KL
penalty whose coefficient adapts toward ``kl_target`` as in RLlib. Discrete
(Categorical) and continuous (diagonal Gaussian) actions.
"""
import math

import numpy as np
import torch

import mpirt

from .algorithm import Algorithm
from .config import AlgorithmConfig
from .policies import ActorCriticPolicy
from .rollout import RolloutWorker, make_workers
from .utils import (check_grad_clip, check_positive_int, clip_gradients, load_optimizer, optimizer_bytes, schedule,
                    scheduled_value)


class PPOConfig(AlgorithmConfig):
    """RLlib's ``PPOConfig``: ``PPOConfig().environment("CartPole-v1").training(lr=1e-4).build_algo()``."""

    _training = {
        "use_critic": True, "use_gae": True, "lambda_": 1.0, "use_kl_loss": True, "kl_coeff": 0.2,
        "kl_target": 0.01, "vf_loss_coeff": 1.0, "entropy_coeff": 0.0, "entropy_coeff_schedule": None,
        "clip_param": 0.3, "vf_clip_param": 10.0, "grad_clip": None, "lr_schedule": None,
        "vf_share_layers": False,
    }
    _defaults = {
        "lr": 5e-5, "rollout_fragment_length": "auto", "train_batch_size": 4000, "num_env_runners": 2,
        "num_epochs": 30, "minibatch_size": 128, "shuffle_batch_per_epoch": True,
    }
    _unsupported = {"use_critic": "PPO without a value function", "use_gae": "PPO without GAE"}

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PPO)


class PPO(Algorithm):
    _name = "PPO"
    _config_class = PPOConfig
    # mpirt's dict API (PPO(env=..., config={...})): tuned on CartPole and Pendulum on 2 cores
    _dict_defaults = {
        "num_envs_per_env_runner": 4, "lambda": 0.95, "clip_param": 0.2, "vf_loss_coeff": 0.5,
        "entropy_coeff": 0.0, "train_batch_size": 4000, "minibatch_size": 128, "num_epochs": 10,
        "grad_clip": 0.5, "use_kl_loss": False, "vf_clip_param": None,
    }

    def validate_config(self, config):
        check_positive_int(config, self._name, "train_batch_size", "minibatch_size", "num_epochs")
        check_grad_clip(config, self._name)
        if not isinstance(config.clip_param, (int, float)) or not 0 < config.clip_param:
            raise ValueError(f"PPO: clip_param must be > 0, got {config.clip_param!r}")
        if not isinstance(config.lambda_, (int, float)) or not 0 <= config.lambda_ <= 1:
            raise ValueError(f"PPO: lambda_ must be in [0, 1], got {config.lambda_!r}")
        if config.minibatch_size > config.total_train_batch_size:
            raise ValueError(f"PPO: minibatch_size ({config.minibatch_size}) must be <= train_batch_size "
                             f"({config.total_train_batch_size})")
        if config.vf_clip_param is not None and not config.vf_clip_param > 0:
            raise ValueError(f"PPO: vf_clip_param must be None or > 0, got {config.vf_clip_param!r}")
        fragment = config.rollout_fragment_length
        if fragment != "auto":
            check_positive_int(config, self._name, "rollout_fragment_length")
        self.entropy_schedule = schedule(config.entropy_coeff_schedule or config.entropy_coeff, "entropy_coeff",
                                         self._name)
        if any(value < 0 for _, value in self.entropy_schedule):
            raise ValueError(f"PPO: entropy_coeff must be >= 0, got {config.entropy_coeff!r}")

    def build(self, config):
        worker_config = self.worker_config(**{"lambda": config.lambda_})
        self.policy = ActorCriticPolicy(self.info, worker_config)
        self.policy.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.model.parameters(), lr=self.current_lr(), foreach=True)
        self.kl_coeff = float(config.kl_coeff)
        envs = max(config.num_env_runners, 1) * config.num_envs_per_env_runner
        batch = config.total_train_batch_size
        fragment = config.rollout_fragment_length
        if fragment == "auto":
            self.steps_per_env = math.ceil(batch / envs)
        else:
            self.steps_per_env = fragment * math.ceil(batch / (envs * fragment))
        self.workers = make_workers(RolloutWorker, config.num_env_runners, worker_config,
                                    self.env_creator, self.info, ActorCriticPolicy, worker_config)

    def training_step(self):
        weights = mpirt.put(self.policy.get_weights())
        samples = mpirt.get([w.sample.remote(self.steps_per_env, weights) for w in self.workers])
        batch = {key: np.concatenate([s["batch"][key] for s in samples]) for key in samples[0]["batch"]}
        stats = self.learn(batch)
        return {"timesteps_this_iter": sum(s["steps"] for s in samples),
                "episodes": [e for s in samples for e in s["episodes"]], "learner": stats}

    def learn(self, batch):
        """``num_epochs`` epochs of minibatch SGD on the clipped surrogate plus value, entropy and KL terms."""
        config, model = self.config, self.policy.model
        data = {key: torch.as_tensor(value, device=self.device) for key, value in batch.items()}
        advantages = data["advantages"]
        data["advantages"] = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        size = len(advantages)
        minibatch = min(config.minibatch_size, size)
        clip = config.clip_param
        lr = self.current_lr(self.optimizer)
        entropy_coeff = scheduled_value(self.entropy_schedule, self._timesteps_total or 0)
        totals = {"policy_loss": 0.0, "vf_loss": 0.0, "vf_loss_unclipped": 0.0, "entropy": 0.0,
                  "mean_kl_loss": 0.0, "clip_fraction": 0.0, "total_loss": 0.0}
        updates = 0
        groups = (model.policy_parameters(), list(model.vf.parameters()))
        for _ in range(config.num_epochs):
            order = torch.randperm(size, device=self.device) if config.shuffle_batch_per_epoch else \
                torch.arange(size, device=self.device)
            for start in range(0, size - minibatch + 1, minibatch):
                idx = order[start:start + minibatch]
                dist = model.distribution(data["obs"][idx])
                logp = dist.log_prob(data["actions"][idx])
                log_ratio = logp - data["logp"][idx]
                ratio = log_ratio.exp()
                adv = data["advantages"][idx]
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
                vf_error = (model.value(data["obs"][idx]) - data["value_targets"][idx]).pow(2)
                vf_loss = vf_error.clamp(max=config.vf_clip_param).mean() if config.vf_clip_param else vf_error.mean()
                entropy = dist.entropy().mean()
                kl = ((ratio - 1) - log_ratio).mean()  # KL(old || new), estimated from the samples
                loss = policy_loss + config.vf_loss_coeff * vf_loss - entropy_coeff * entropy
                if config.use_kl_loss:
                    loss = loss + self.kl_coeff * kl
                self.optimizer.zero_grad()
                loss.backward()
                clip_gradients(groups, config.grad_clip, config.grad_clip_by)
                self.optimizer.step()
                with torch.no_grad():
                    totals["policy_loss"] += policy_loss.item()
                    totals["vf_loss"] += vf_loss.item()
                    totals["vf_loss_unclipped"] += vf_error.mean().item()
                    totals["entropy"] += entropy.item()
                    totals["mean_kl_loss"] += kl.item()
                    totals["clip_fraction"] += ((ratio - 1).abs() > clip).float().mean().item()
                    totals["total_loss"] += loss.item()
                updates += 1
        stats = {key: value / max(updates, 1) for key, value in totals.items()}
        stats["kl"] = stats["mean_kl_loss"]
        stats["curr_kl_coeff"] = self.kl_coeff
        if config.use_kl_loss:  # RLlib's rule: move the coefficient toward kl_target
            if stats["mean_kl_loss"] > 2.0 * config.kl_target:
                self.kl_coeff *= 1.5
            elif stats["mean_kl_loss"] < 0.5 * config.kl_target:
                self.kl_coeff *= 0.5
        stats["curr_entropy_coeff"] = entropy_coeff
        stats["default_optimizer_learning_rate"] = lr
        stats["num_sgd_updates"] = updates
        with torch.no_grad():
            values, targets = data["vf"], data["value_targets"]
            stats["vf_explained_var"] = float(1 - (targets - values).var() / (targets.var() + 1e-8))
        if not self.info.discrete:
            stats["action_std_mean"] = float(model.log_std.exp().mean().item())
        return stats

    def get_state(self):
        return {"model": self.policy.get_weights(), "optimizer": optimizer_bytes(self.optimizer),
                "counters": {"kl_coeff": self.kl_coeff}}

    def set_state(self, state):
        self.policy.set_weights(state["model"])
        load_optimizer(self.optimizer, state["optimizer"], self.device)
        self.kl_coeff = float(state.get("counters", {}).get("kl_coeff", self.config.kl_coeff))
