"""DQN (Mnih et al. 2015) with double Q-learning (van Hasselt et al. 2016) and a dueling network.

Rollout actors act epsilon-greedily and feed transitions to the learner, which
keeps the replay buffer and the target network. Sampling is asynchronous: each
actor has one request in flight, and as soon as one returns the learner adds
it to the buffer, trains on replayed minibatches in proportion to the new
steps, and sends that actor the current weights and epsilon with its next request.
"""
import torch
import torch.nn.functional as F

import mpirt

from .algorithm import Algorithm
from .envs import require_discrete
from .policies import QPolicy
from .replay_buffer import ReplayBuffer
from .rollout import RolloutWorker, make_workers
from .utils import check_positive_int, load_optimizer, optimizer_bytes


class DQN(Algorithm):
    _name = "DQN"
    _default_config = {
        "lr": 1e-3,
        "model": {"hiddens": [64, 64], "activation": "relu"},
        "dueling": True,
        "double_q": True,
        # rewards summed per transition before bootstrapping (within a rollout fragment)
        "n_step": 3,
        "buffer_size": 50000,
        "train_batch_size": 64,
        # env steps collected before learning starts
        "learning_starts": 1000,
        # one gradient update per this many env steps sampled
        "train_freq": 1,
        # env steps between copies of the online network into the target network
        "target_network_update_freq": 500,
        # epsilon decays linearly from initial to final over epsilon_timesteps env steps
        "initial_epsilon": 1.0,
        "final_epsilon": 0.02,
        "epsilon_timesteps": 10000,
        # steps each env takes per request to a rollout actor
        "rollout_fragment_length": 8,
        "grad_clip": 10.0,
        "min_sample_timesteps_per_iteration": 1000,
    }

    def validate_spaces(self, info):
        require_discrete(info, self._name, self.env_creator.name)

    def validate_config(self, config):
        check_positive_int(config, self._name, "n_step", "buffer_size", "train_batch_size", "train_freq",
                           "target_network_update_freq", "rollout_fragment_length",
                           "min_sample_timesteps_per_iteration")
        check_positive_int(config, self._name, "learning_starts", "epsilon_timesteps", allow_zero=True)
        for key in ("initial_epsilon", "final_epsilon"):
            if not 0 <= config[key] <= 1:
                raise ValueError(f"DQN: {key} must be in [0, 1], got {config[key]!r}")

    def build(self, config):
        self.policy = QPolicy(self.info, config)
        self.policy.model.to(self.device)
        self.target = QPolicy(self.info, config).model.to(self.device)
        self.target.load_state_dict(self.policy.model.state_dict())
        self.optimizer = torch.optim.Adam(self.policy.model.parameters(), lr=config["lr"], foreach=True)
        self.buffer = ReplayBuffer(config["buffer_size"], seed=config["seed"])
        self.sampled = 0  # env steps collected, drives epsilon and the target updates
        self.last_target_update = 0
        self.update_debt = 0.0  # gradient updates owed to the steps sampled
        self.workers = make_workers(RolloutWorker, config["num_workers"], config,
                                    self.env_creator, self.info, QPolicy, config)
        self.in_flight = {}

    def epsilon(self):
        config = self.config
        fraction = min(1.0, self.sampled / config["epsilon_timesteps"]) if config["epsilon_timesteps"] else 1.0
        return config["initial_epsilon"] + fraction * (config["final_epsilon"] - config["initial_epsilon"])

    def _request(self, worker, weights):
        ref = worker.sample.remote(self.config["rollout_fragment_length"], weights, epsilon=self.epsilon())
        self.in_flight[ref] = worker

    def training_step(self):
        config = self.config
        if not self.in_flight:
            weights = mpirt.put(self.policy.get_weights())
            for worker in self.workers:
                self._request(worker, weights)
        steps, episodes, totals, updates = 0, [], {"loss": 0.0, "q_mean": 0.0}, 0
        while steps < config["min_sample_timesteps_per_iteration"]:
            [ready], _ = mpirt.wait(list(self.in_flight), num_returns=1)
            worker = self.in_flight.pop(ready)
            result = mpirt.get(ready)
            self.buffer.add(result["batch"])
            steps += result["steps"]
            self.sampled += result["steps"]
            episodes += result["episodes"]
            if self.sampled >= config["learning_starts"]:
                self.update_debt += result["steps"] / config["train_freq"]
                while self.update_debt >= 1:
                    loss, q_mean = self.learn(self.buffer.sample(config["train_batch_size"]))
                    totals["loss"] += loss
                    totals["q_mean"] += q_mean
                    updates += 1
                    self.update_debt -= 1
            if self.sampled - self.last_target_update >= config["target_network_update_freq"]:
                self.target.load_state_dict(self.policy.model.state_dict())
                self.last_target_update = self.sampled
            self._request(worker, mpirt.put(self.policy.get_weights()))
        stats = {key: value / max(updates, 1) for key, value in totals.items()}
        stats.update(num_updates=updates, epsilon=self.epsilon(), buffer_size=len(self.buffer))
        return {"timesteps_this_iter": steps, "episodes": episodes, "learner": stats}

    def learn(self, batch):
        """One gradient step of the Huber TD loss; the target is double-Q when ``double_q``."""
        data = {key: torch.as_tensor(value, device=self.device) for key, value in batch.items()}
        model = self.policy.model
        size = len(data["actions"])
        # one forward pass of the online network over s and s' (s' only picks the double-Q action)
        q_all = model(torch.cat([data["obs"], data["next_obs"]]))
        q = q_all[:size].gather(1, data["actions"].long().unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_target = self.target(data["next_obs"])
            chooser = q_all[size:] if self.config["double_q"] else next_target
            next_q = next_target.gather(1, chooser.argmax(1, keepdim=True)).squeeze(1)
            target = data["rewards"] + data["discounts"] * next_q
        loss = F.smooth_l1_loss(q, target)
        self.optimizer.zero_grad()
        loss.backward()
        if self.config["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config["grad_clip"], foreach=True)
        self.optimizer.step()
        return loss.item(), q.mean().item()

    def get_state(self):
        return {"model": self.policy.get_weights(),
                "target": {k: v.detach().cpu().numpy() for k, v in self.target.state_dict().items()},
                "optimizer": optimizer_bytes(self.optimizer),
                "counters": {"sampled": self.sampled, "last_target_update": self.last_target_update}}

    def set_state(self, state):
        self.policy.set_weights(state["model"])
        self.target.load_state_dict({k: torch.as_tensor(v) for k, v in state["target"].items()})
        load_optimizer(self.optimizer, state["optimizer"], self.device)
        self.sampled = state["counters"]["sampled"]
        self.last_target_update = state["counters"]["last_target_update"]
        self.in_flight = {}
