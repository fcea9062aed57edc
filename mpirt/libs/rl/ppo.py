"""PPO (Schulman et al. 2017): parallel rollout actors, GAE, clipped surrogate, minibatch SGD epochs.

Each iteration the learner puts its weights in the object store once, every
rollout actor samples its share of ``train_batch_size`` with them (GAE is
computed on the actors), and the learner runs ``num_sgd_iter`` epochs of
minibatch SGD on the concatenated batch. Discrete (Categorical) and continuous
(diagonal Gaussian) actions.
"""
import math

import numpy as np
import torch

import mpirt

from .algorithm import Algorithm
from .policies import ActorCriticPolicy
from .rollout import RolloutWorker, make_workers
from .utils import check_positive_int, load_optimizer, optimizer_bytes


class PPO(Algorithm):
    _name = "PPO"
    _default_config = {
        "num_envs_per_worker": 4,
        "lambda": 0.95,
        "clip_param": 0.2,
        "vf_loss_coeff": 0.5,
        "entropy_coeff": 0.0,
        "train_batch_size": 4000,
        "sgd_minibatch_size": 128,
        "num_sgd_iter": 10,
        # max gradient norm, applied to the policy and the value network separately (None: no clipping)
        "grad_clip": 0.5,
    }

    def validate_config(self, config):
        check_positive_int(config, self._name, "train_batch_size", "sgd_minibatch_size", "num_sgd_iter")
        if not 0 < config["clip_param"]:
            raise ValueError(f"PPO: clip_param must be > 0, got {config['clip_param']!r}")
        if not 0 <= config["lambda"] <= 1:
            raise ValueError(f"PPO: lambda must be in [0, 1], got {config['lambda']!r}")

    def build(self, config):
        self.policy = ActorCriticPolicy(self.info, config)
        self.policy.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.model.parameters(), lr=config["lr"], foreach=True)
        envs = config["num_workers"] * config["num_envs_per_worker"]
        self.steps_per_env = math.ceil(config["train_batch_size"] / envs)
        self.workers = make_workers(RolloutWorker, config["num_workers"], config,
                                    self.env_creator, self.info, ActorCriticPolicy, config)

    def training_step(self):
        weights = mpirt.put(self.policy.get_weights())
        samples = mpirt.get([w.sample.remote(self.steps_per_env, weights) for w in self.workers])
        batch = {key: np.concatenate([s["batch"][key] for s in samples]) for key in samples[0]["batch"]}
        stats = self.learn(batch)
        return {"timesteps_this_iter": sum(s["steps"] for s in samples),
                "episodes": [e for s in samples for e in s["episodes"]], "learner": stats}

    def learn(self, batch):
        """``num_sgd_iter`` epochs of minibatch SGD on the clipped surrogate plus value and entropy terms."""
        config, model = self.config, self.policy.model
        data = {key: torch.as_tensor(value, device=self.device) for key, value in batch.items()}
        advantages = data["advantages"]
        data["advantages"] = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        size = len(advantages)
        minibatch = min(config["sgd_minibatch_size"], size)
        totals = {"policy_loss": 0.0, "vf_loss": 0.0, "entropy": 0.0, "kl": 0.0, "clip_fraction": 0.0}
        updates = 0
        for _ in range(config["num_sgd_iter"]):
            order = torch.randperm(size, device=self.device)
            for start in range(0, size - minibatch + 1, minibatch):
                idx = order[start:start + minibatch]
                dist = model.distribution(data["obs"][idx])
                logp = dist.log_prob(data["actions"][idx])
                log_ratio = logp - data["logp"][idx]
                ratio = log_ratio.exp()
                adv = data["advantages"][idx]
                clip = config["clip_param"]
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
                vf_loss = (model.value(data["obs"][idx]) - data["value_targets"][idx]).pow(2).mean()
                entropy = dist.entropy().mean()
                loss = policy_loss + config["vf_loss_coeff"] * vf_loss - config["entropy_coeff"] * entropy
                self.optimizer.zero_grad()
                loss.backward()
                if config["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.policy_parameters(), config["grad_clip"], foreach=True)
                    torch.nn.utils.clip_grad_norm_(model.vf.parameters(), config["grad_clip"], foreach=True)
                self.optimizer.step()
                with torch.no_grad():
                    totals["policy_loss"] += policy_loss.item()
                    totals["vf_loss"] += vf_loss.item()
                    totals["entropy"] += entropy.item()
                    totals["kl"] += ((ratio - 1) - log_ratio).mean().item()
                    totals["clip_fraction"] += ((ratio - 1).abs() > clip).float().mean().item()
                updates += 1
        stats = {key: value / max(updates, 1) for key, value in totals.items()}
        stats["num_sgd_updates"] = updates
        if not self.info.discrete:
            stats["action_std_mean"] = float(model.log_std.exp().mean().item())
        return stats

    def get_state(self):
        return {"model": self.policy.get_weights(), "optimizer": optimizer_bytes(self.optimizer)}

    def set_state(self, state):
        self.policy.set_weights(state["model"])
        load_optimizer(self.optimizer, state["optimizer"], self.device)

