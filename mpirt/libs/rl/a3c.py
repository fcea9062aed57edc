"""A3C (Mnih et al. 2016): rollout actors compute gradients on their own rollouts, asynchronously.

The learner (the central holder of the weights) keeps one call in flight per
actor. Whenever any actor's gradients arrive it applies them with its optimizer
and sends that actor the fresh weights with its next request; the others keep
working on the weights they had, which is the asynchrony of A3C.
"""
import numpy as np
import torch

import mpirt

from .algorithm import Algorithm
from .config import AlgorithmConfig
from .policies import ActorCriticPolicy
from .rollout import RolloutWorker, make_workers
from .utils import (check_grad_clip, check_positive_int, clip_gradients, load_optimizer, optimizer_bytes, schedule,
                    scheduled_value)


class A3CPolicy(ActorCriticPolicy):
    """The actor-critic policy plus the A3C loss, computed where the rollout was made."""

    def loss(self, batch, entropy_coeff=None):
        obs = torch.as_tensor(batch["obs"])
        dist = self.model.distribution(obs)
        logp = dist.log_prob(torch.as_tensor(batch["actions"]))
        advantages = torch.as_tensor(batch["advantages"])
        policy_loss = -(logp * advantages).mean()
        vf_loss = (self.model.value(obs) - torch.as_tensor(batch["value_targets"])).pow(2).mean()
        entropy = dist.entropy().mean()
        if entropy_coeff is None:
            entropy_coeff = self.config["entropy_coeff"]
        total = policy_loss + self.config["vf_loss_coeff"] * vf_loss - entropy_coeff * entropy
        return total, {"policy_loss": policy_loss.item(), "vf_loss": vf_loss.item(), "entropy": entropy.item()}

    def compute_gradients(self, batch, entropy_coeff=None):
        """Gradients of the loss on ``batch`` as numpy arrays, in ``model.parameters()`` order."""
        self.model.zero_grad()
        loss, stats = self.loss(batch, entropy_coeff)
        loss.backward()
        grads = [p.grad.numpy().copy() if p.grad is not None else np.zeros(p.shape, np.float32)
                 for p in self.model.parameters()]
        return grads, stats


class A3CConfig(AlgorithmConfig):
    """RLlib's ``A3CConfig`` (RLlib 2.x before A3C moved out of it), with mpirt's defaults: RLlib's
    current releases no longer ship A3C, and these settings learn CartPole in seconds on 2 cores."""

    _training = {
        "use_critic": True, "use_gae": True, "lambda_": 1.0, "grad_clip": 0.5, "lr_schedule": None,
        "vf_loss_coeff": 0.5, "entropy_coeff": 0.01, "entropy_coeff_schedule": None, "sample_async": True,
    }
    _defaults = {
        "num_env_runners": 2, "num_envs_per_env_runner": 4, "lr": 1e-3,
        # steps each env takes per gradient (the n of n-step returns when lambda is 1)
        "rollout_fragment_length": 16,
        # env steps per train() call
        "min_sample_timesteps_per_iteration": 2000,
        "model": {"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"},
    }
    _unsupported = {
        "use_critic": "A3C without a value function", "use_gae": "A3C without GAE",
        "sample_async": "synchronous sampling (that is A2C)",
    }

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or A3C)


class A3C(Algorithm):
    _name = "A3C"
    _config_class = A3CConfig
    _dict_defaults = {"num_envs_per_env_runner": 4, "lr": 1e-3}

    def validate_config(self, config):
        check_positive_int(config, self._name, "rollout_fragment_length")
        check_grad_clip(config, self._name)
        if config.num_env_runners < 1:
            raise ValueError("A3C: num_env_runners must be >= 1 (its asynchrony is between rollout actors), "
                             "got 0")
        self.entropy_schedule = schedule(config.entropy_coeff_schedule or config.entropy_coeff, "entropy_coeff",
                                         self._name)
        if any(value < 0 for _, value in self.entropy_schedule):
            raise ValueError(f"A3C: entropy_coeff must be >= 0, got {config.entropy_coeff!r}")

    def build(self, config):
        worker_config = self.worker_config(**{"lambda": config.lambda_, "vf_loss_coeff": config.vf_loss_coeff,
                                              "entropy_coeff": self.entropy_schedule[0][1]})
        self.policy = A3CPolicy(self.info, worker_config)
        self.policy.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.model.parameters(), lr=self.current_lr(), foreach=True)
        self.workers = make_workers(RolloutWorker, config.num_env_runners, worker_config,
                                    self.env_creator, self.info, A3CPolicy, worker_config)
        self.in_flight = {}

    def _request(self, worker, weights):
        entropy_coeff = scheduled_value(self.entropy_schedule, self._timesteps_total or 0)
        ref = worker.sample_and_compute_gradients.remote(self.config.rollout_fragment_length, weights,
                                                         entropy_coeff=entropy_coeff)
        self.in_flight[ref] = worker

    def training_step(self):
        if not self.in_flight:
            weights = mpirt.put(self.policy.get_weights())
            for worker in self.workers:
                self._request(worker, weights)
        steps, episodes, applied, totals = 0, [], 0, {}
        self.current_lr(self.optimizer)
        while steps < max(self.config.min_sample_timesteps_per_iteration, 1):
            [ready], _ = mpirt.wait(list(self.in_flight), num_returns=1)
            worker = self.in_flight.pop(ready)
            result = mpirt.get(ready)
            self.apply_gradients(result["gradients"])
            self._request(worker, mpirt.put(self.policy.get_weights()))
            steps += result["steps"]
            episodes += result["episodes"]
            applied += 1
            for key, value in result["stats"].items():
                totals[key] = totals.get(key, 0.0) + value
        stats = {key: value / applied for key, value in totals.items()}
        stats["num_gradients_applied"] = applied
        return {"timesteps_this_iter": steps, "episodes": episodes, "learner": stats}

    def apply_gradients(self, gradients):
        model = self.policy.model
        for param, grad in zip(model.parameters(), gradients):
            param.grad = torch.as_tensor(np.array(grad), device=self.device)
        clip_gradients((model.policy_parameters(), list(model.vf.parameters())), self.config.grad_clip,
                       self.config.grad_clip_by)
        self.optimizer.step()

    def get_state(self):
        return {"model": self.policy.get_weights(), "optimizer": optimizer_bytes(self.optimizer)}

    def set_state(self, state):
        self.policy.set_weights(state["model"])
        load_optimizer(self.optimizer, state["optimizer"], self.device)
        # calls in flight carry the old weights: their gradients would land on the restored ones
        self.in_flight = {}
