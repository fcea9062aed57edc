"""DQN (Mnih et al. 2015) with double Q-learning (van Hasselt et al. 2016), a dueling network and
prioritized replay (Schaul et al. 2016), configured as RLlib's DQNConfig.

Rollout actors act epsilon-greedily and feed transitions to the learner, which
keeps the replay buffer and the target network. Sampling is asynchronous: each
actor has one request in flight, and as soon as one returns the learner adds
it to the buffer, trains on replayed minibatches in proportion to the new
steps (``training_intensity``), and sends that actor the current weights and
epsilon with its next request.
"""

import torch
import torch.nn.functional as F

import mpirt

from .algorithm import Algorithm
from .config import AlgorithmConfig
from .envs import require_discrete
from .policies import QPolicy
from .replay_buffer import PrioritizedReplayBuffer, ReplayBuffer, SampleBatchBuffer
from .rollout import RolloutWorker, make_workers
from .utils import (check_grad_clip, check_positive_int, clip_gradients, load_optimizer, optimizer_bytes, schedule,
                    scheduled_value)

UNIFORM_BUFFERS = ("ReplayBuffer", "EpisodeReplayBuffer", "MultiAgentReplayBuffer", "MultiAgentEpisodeReplayBuffer")
PRIORITIZED_BUFFERS = ("PrioritizedReplayBuffer", "PrioritizedEpisodeReplayBuffer",
                       "MultiAgentPrioritizedReplayBuffer", "MultiAgentPrioritizedEpisodeReplayBuffer")
# Fewest env steps per request to a rollout actor when rollout_fragment_length is "auto": a shorter
# request costs more in messages than in stepping.
MIN_AUTO_FRAGMENT = 8


class DQNConfig(AlgorithmConfig):
    """RLlib's ``DQNConfig``: ``DQNConfig().environment("CartPole-v1").training(lr=1e-3).build_algo()``."""

    _training = {
        "target_network_update_freq": 500,
        "replay_buffer_config": {"type": "PrioritizedEpisodeReplayBuffer", "capacity": 50000, "alpha": 0.6,
                                 "beta": 0.4},
        "store_buffer_in_checkpoints": False, "lr_schedule": None, "epsilon": [(0, 1.0), (10000, 0.05)],
        "adam_epsilon": 1e-8, "grad_clip": 40.0, "num_steps_sampled_before_learning_starts": 1000, "tau": 1.0,
        "num_atoms": 1, "v_min": -10.0, "v_max": 10.0, "noisy": False, "sigma0": 0.5, "dueling": True,
        "hiddens": [256], "double_q": True, "n_step": 1, "before_learn_on_batch": None,
        "training_intensity": None, "td_error_loss_fn": "huber", "categorical_distribution_temperature": 1.0,
        "burn_in_len": 0,
    }
    _defaults = {"lr": 5e-4, "train_batch_size": 32, "rollout_fragment_length": "auto",
                 "min_sample_timesteps_per_iteration": 1000, "evaluation_config": {"explore": False}}
    _aliases = {"learning_starts": "num_steps_sampled_before_learning_starts"}
    _unsupported = {
        "store_buffer_in_checkpoints": "replay buffers in checkpoints", "noisy": "noisy networks", "before_learn_on_batch": "batch hooks",
    }

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DQN)

    def _special_keys(self):
        return ("buffer_size", "initial_epsilon", "final_epsilon", "epsilon_timesteps", "train_freq",
                "prioritized_replay")

    def _apply_special_keys(self, values, config_dict):
        """mpirt's dict API: buffer_size, a linear epsilon (initial/final/epsilon_timesteps), train_freq
        (env steps per gradient update) and prioritized_replay become RLlib's settings."""
        buffer = dict(self.replay_buffer_config)
        if "buffer_size" in values:
            buffer["capacity"] = values["buffer_size"]
        if "prioritized_replay" in values:
            buffer["type"] = "PrioritizedEpisodeReplayBuffer" if values["prioritized_replay"] else "EpisodeReplayBuffer"
        self.replay_buffer_config = buffer
        if {"initial_epsilon", "final_epsilon", "epsilon_timesteps"} & set(values):
            schedule = list(self.epsilon) if isinstance(self.epsilon, (list, tuple)) else [(0, self.epsilon)]
            start, end = schedule[0][1], schedule[-1][1]
            steps = schedule[-1][0] if len(schedule) > 1 else 10000
            start = values.get("initial_epsilon", start)
            end = values.get("final_epsilon", end)
            steps = values.get("epsilon_timesteps", steps)
            self.epsilon = [(0, start), (steps, end)]
        if "train_freq" in values:
            if not isinstance(values["train_freq"], (int, float)) or not values["train_freq"] > 0:
                raise ValueError(f"DQN: train_freq must be > 0, got {values['train_freq']!r}")
            self.training_intensity = self.train_batch_size / values["train_freq"]


class DQN(Algorithm):
    _name = "DQN"
    _config_class = DQNConfig
    # mpirt's dict API (DQN(env=..., config={...})): uniform replay, 3-step returns, smaller networks
    _dict_defaults = {
        "lr": 1e-3, "model": {"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"}, "hiddens": [],
        "n_step": 3, "replay_buffer_config": {"type": "EpisodeReplayBuffer", "capacity": 50000},
        "train_batch_size": 64, "learning_starts": 1000, "train_freq": 1, "target_network_update_freq": 500,
        "epsilon": [(0, 1.0), (10000, 0.02)], "rollout_fragment_length": 8, "grad_clip": 10.0,
        "min_sample_timesteps_per_iteration": 1000, "evaluation_config": None,
    }

    def validate_spaces(self, info):
        require_discrete(info, self._name, self.env_creator.name)

    def validate_config(self, config):
        check_positive_int(config, self._name, "train_batch_size", "target_network_update_freq",
                           "min_sample_timesteps_per_iteration")
        check_positive_int(config, self._name, "num_steps_sampled_before_learning_starts", allow_zero=True)
        check_grad_clip(config, self._name)
        if not isinstance(config.n_step, int) or isinstance(config.n_step, bool) or config.n_step < 1:
            raise ValueError(f"DQN: n_step must be an integer >= 1 (a range is not supported), got {config.n_step!r}")
        if config.rollout_fragment_length != "auto":
            check_positive_int(config, self._name, "rollout_fragment_length")
        self.epsilon_schedule = schedule(config.epsilon, "epsilon", self._name)
        if any(not 0 <= value <= 1 for _, value in self.epsilon_schedule):
            raise ValueError(f"DQN: epsilon values must be in [0, 1], got {config.epsilon!r}")
        if config.num_atoms != 1:
            raise NotImplementedError(f"DQN: num_atoms={config.num_atoms!r} asks for distributional Q-learning, "
                                      f"which mpirt.libs.rl does not support")
        if not 0 < config.tau <= 1:
            raise ValueError(f"DQN: tau must be in (0, 1], got {config.tau!r}")
        if config.td_error_loss_fn not in ("huber", "mse"):
            raise ValueError(f"DQN: td_error_loss_fn must be 'huber' or 'mse', got {config.td_error_loss_fn!r}")
        intensity = config.training_intensity
        if intensity is not None and (not isinstance(intensity, (int, float)) or not intensity > 0):
            raise ValueError(f"DQN: training_intensity must be None or > 0, got {intensity!r}")
        hiddens = config.hiddens
        if not isinstance(hiddens, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in hiddens):
            raise ValueError(f"DQN: hiddens must be a list of positive layer sizes, got {hiddens!r}")
        self.buffer_kind = _buffer_kind(config.replay_buffer_config)

    def build(self, config):
        worker_config = self.worker_config(dueling=config.dueling, n_step=config.n_step,
                                           head_hiddens=list(config.hiddens))
        self.policy = QPolicy(self.info, worker_config)
        self.policy.model.to(self.device)
        self.target = QPolicy(self.info, worker_config).model.to(self.device)
        self.target.load_state_dict(self.policy.model.state_dict())
        self.optimizer = torch.optim.Adam(self.policy.model.parameters(), lr=self.current_lr(), eps=config.adam_epsilon,
                                          foreach=True)
        buffer = config.replay_buffer_config
        capacity = buffer.get("capacity", 50000)
        if self.buffer_kind == "prioritized":
            self.buffer = PrioritizedReplayBuffer(capacity, alpha=buffer.get("alpha", 0.6),
                                                  beta=buffer.get("beta", 0.4), seed=config.seed)
        elif self.buffer_kind == "rllib":
            self.buffer = SampleBatchBuffer(_rllib_buffer(buffer))
        else:
            self.buffer = ReplayBuffer(capacity, seed=config.seed)
        envs = max(config.num_env_runners, 1) * config.num_envs_per_env_runner
        if config.rollout_fragment_length == "auto":
            self.fragment = max(config.n_step, MIN_AUTO_FRAGMENT)
            ratio_fragment = config.n_step  # RLlib's "auto", for its natural training intensity
        else:
            self.fragment = ratio_fragment = config.rollout_fragment_length
        intensity = config.training_intensity or config.train_batch_size / (ratio_fragment * envs)
        self.updates_per_step = intensity / config.train_batch_size
        self.sampled = 0  # env steps collected, drives epsilon and the target updates
        self.last_target_update = 0
        self.update_debt = 0.0  # gradient updates owed to the steps sampled
        self.workers = make_workers(RolloutWorker, config.num_env_runners, worker_config,
                                    self.env_creator, self.info, QPolicy, worker_config)
        self.in_flight = {}

    def epsilon(self):
        return scheduled_value(self.epsilon_schedule, self.sampled)

    def _request(self, worker, weights):
        ref = worker.sample.remote(self.fragment, weights, epsilon=self.epsilon())
        self.in_flight[ref] = worker

    def training_step(self):
        config = self.config
        if not self.in_flight:
            weights = mpirt.put(self.policy.get_weights())
            for worker in self.workers:
                self._request(worker, weights)
        steps, episodes, totals, updates = 0, [], {"loss": 0.0, "q_mean": 0.0}, 0
        self.current_lr(self.optimizer)
        while steps < max(config.min_sample_timesteps_per_iteration, 1):
            [ready], _ = mpirt.wait(list(self.in_flight), num_returns=1)
            worker = self.in_flight.pop(ready)
            result = mpirt.get(ready)
            self.buffer.add(result["batch"])
            steps += result["steps"]
            self.sampled += result["steps"]
            episodes += result["episodes"]
            if self.sampled >= config.num_steps_sampled_before_learning_starts:
                self.update_debt += result["steps"] * self.updates_per_step
                while self.update_debt >= 1:
                    loss, q_mean = self.learn(self.buffer.sample(config.train_batch_size))
                    totals["loss"] += loss
                    totals["q_mean"] += q_mean
                    updates += 1
                    self.update_debt -= 1
            if self.sampled - self.last_target_update >= config.target_network_update_freq:
                self.update_target()
                self.last_target_update = self.sampled
            self._request(worker, mpirt.put(self.policy.get_weights()))
        stats = {key: value / max(updates, 1) for key, value in totals.items()}
        stats.update(num_updates=updates, epsilon=self.epsilon(), buffer_size=len(self.buffer))
        return {"timesteps_this_iter": steps, "episodes": episodes, "learner": stats}

    def update_target(self):
        """Copy the online network into the target network, or move it a fraction ``tau`` toward it."""
        tau = self.config.tau
        if tau >= 1:
            self.target.load_state_dict(self.policy.model.state_dict())
            return
        with torch.no_grad():
            for target, online in zip(self.target.parameters(), self.policy.model.parameters()):
                target.mul_(1 - tau).add_(online, alpha=tau)

    def learn(self, batch):
        """One gradient step of the TD loss (Huber or squared, weighted by importance under prioritized
        replay); the target is double-Q when ``double_q``."""
        indices = batch.pop("indices", None)
        data = {key: torch.as_tensor(value, device=self.device) for key, value in batch.items()}
        model = self.policy.model
        size = len(data["actions"])
        # one forward pass of the online network over s and s' (s' only picks the double-Q action)
        q_all = model(torch.cat([data["obs"], data["next_obs"]]))
        q = q_all[:size].gather(1, data["actions"].long().unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_target = self.target(data["next_obs"])
            chooser = q_all[size:] if self.config.double_q else next_target
            next_q = next_target.gather(1, chooser.argmax(1, keepdim=True)).squeeze(1)
            target = data["rewards"] + data["discounts"] * next_q
        loss_fn = F.smooth_l1_loss if self.config.td_error_loss_fn == "huber" else F.mse_loss
        losses = loss_fn(q, target, reduction="none")
        loss = (losses * data["weights"]).mean() if "weights" in data else losses.mean()
        self.optimizer.zero_grad()
        loss.backward()
        clip_gradients((list(model.parameters()),), self.config.grad_clip, self.config.grad_clip_by)
        self.optimizer.step()
        if indices is not None:
            self.buffer.update_priorities(indices, (q - target).detach().cpu().numpy())
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


def _buffer_kind(buffer_config):
    """"uniform" or "prioritized" (mpirt's numpy buffers) for the types RLlib names, "rllib" for a
    ``ReplayBuffer`` subclass of RLlib's API (``ray.rllib.utils.replay_buffers``), used as it is written."""
    from .utils.replay_buffers import MultiAgentReplayBuffer, ReplayBuffer as RLlibReplayBuffer
    from .utils.replay_buffers.utils import resolve_buffer_type

    if not isinstance(buffer_config, dict):
        raise TypeError(f"DQN: replay_buffer_config must be a dict, got {type(buffer_config).__name__}")
    kind = buffer_config.get("type", "EpisodeReplayBuffer")
    underlying = buffer_config.get("underlying_replay_buffer_config") or buffer_config.get("underlying_buffer_config")
    if isinstance(kind, str) and "." in kind and kind.rsplit(".", 1)[-1] not in UNIFORM_BUFFERS + PRIORITIZED_BUFFERS:
        try:
            kind = resolve_buffer_type(kind)
        except (TypeError, ValueError):
            pass
    if isinstance(kind, type):
        if kind in (RLlibReplayBuffer, MultiAgentReplayBuffer) and not underlying:
            return "uniform"
        if issubclass(kind, RLlibReplayBuffer):
            return "rllib"
        raise NotImplementedError(f"DQN: replay_buffer_config type {kind.__name__} is not a subclass of "
                                  f"ray.rllib.utils.replay_buffers.ReplayBuffer")
    name = kind if isinstance(kind, str) else repr(kind)
    name = name.rsplit(".", 1)[-1]
    if name == "MultiAgentReplayBuffer" and underlying:
        return "rllib"
    if name in PRIORITIZED_BUFFERS:
        return "prioritized"
    if name in UNIFORM_BUFFERS:
        return "uniform"
    raise NotImplementedError(f"DQN: replay_buffer_config type {name!r} is not supported by mpirt.libs.rl; "
                              f"supported: {', '.join(UNIFORM_BUFFERS + PRIORITIZED_BUFFERS)}, or a subclass of "
                              f"ray.rllib.utils.replay_buffers.ReplayBuffer")


def _rllib_buffer(buffer_config):
    """An RLlib-API buffer built from its config: the type, and the other keys as its arguments."""
    from .utils.replay_buffers.utils import from_config

    args = dict(buffer_config)
    kind = args.pop("type")
    if "underlying_replay_buffer_config" in args:
        args["underlying_buffer_config"] = args.pop("underlying_replay_buffer_config")
    return from_config(kind, args)
