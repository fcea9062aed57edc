"""Policies: a network plus how it acts and how it turns a rollout fragment into a training batch.

The same class runs in the rollout actors (acting, postprocessing) and in the
learner (losses live in the algorithm modules), so both sides agree on shapes.
"""
import numpy as np
import torch

from . import models
from .postprocessing import compute_gae


def _flatten(array):
    """[T, N, ...] -> [T*N, ...]"""
    return array.reshape(array.shape[0] * array.shape[1], *array.shape[2:])


class Policy:
    """What a RolloutWorker needs: ``act``, ``postprocess``, and weights in and out."""

    model = None

    def __init__(self, info, config):
        self.info = info
        self.config = config

    def act(self, obs, **kwargs):
        raise NotImplementedError

    def postprocess(self, fragment):
        return {key: _flatten(value) for key, value in fragment.items()}

    @property
    def device(self):
        return next(self.model.parameters()).device

    def get_weights(self):
        return models.get_weights(self.model)

    def set_weights(self, weights):
        models.set_weights(self.model, weights)

    def env_actions(self, actions):
        """What the env is given: Gaussian samples are clipped to the Box (the batch keeps them unclipped,
        so their log-probabilities stay exact)."""
        if self.info.discrete:
            return actions
        return np.clip(actions, self.info.low, self.info.high)

    def compute_single_action(self, obs, explore=False):
        actions, _ = self.act(np.asarray(obs, dtype=np.float32)[None], explore=explore)
        action = self.env_actions(actions)[0]
        return int(action) if self.info.discrete else action


class ActorCriticPolicy(Policy):
    """Stochastic policy with a value function (PPO, A3C); fragments get GAE advantages."""

    def __init__(self, info, config):
        super().__init__(info, config)
        self.model = models.ActorCritic(info, config["model"])

    def act(self, obs, explore=True):
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            dist = self.model.distribution(obs_t)
            if explore:
                actions = dist.sample()
            elif self.info.discrete:
                actions = dist.logits.argmax(-1)
            else:
                actions = dist.mean
            extras = {"logp": dist.log_prob(actions).cpu().numpy(), "vf": self.model.value(obs_t).cpu().numpy()}
        return actions.cpu().numpy(), extras

    def postprocess(self, fragment):
        steps, envs = fragment["rewards"].shape
        with torch.no_grad():
            next_obs = torch.as_tensor(_flatten(fragment["next_obs"]), dtype=torch.float32)
            next_values = self.model.value(next_obs).numpy().reshape(steps, envs)
        advantages, targets = compute_gae(fragment["rewards"], fragment["vf"], next_values, fragment["terminateds"],
                                          fragment["truncateds"], self.config["gamma"], self.config["lambda"])
        batch = {key: _flatten(fragment[key]) for key in ("obs", "actions", "logp", "vf")}
        batch["advantages"] = _flatten(advantages)
        batch["value_targets"] = _flatten(targets)
        return batch


class QPolicy(Policy):
    """Epsilon-greedy over a Q network (DQN); fragments become (s, a, r, s', terminated) transitions."""

    def __init__(self, info, config):
        super().__init__(info, config)
        self.model = models.QNetwork(info, config["model"], dueling=config["dueling"],
                                     head_hiddens=config.get("head_hiddens", ()))
        self._rng = np.random.default_rng(config.get("seed"))

    def act(self, obs, explore=True, epsilon=0.0):
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            greedy = self.model(obs_t).argmax(-1).cpu().numpy()
        if explore and epsilon > 0:
            random = self._rng.random(len(greedy)) < epsilon
            greedy = np.where(random, self._rng.integers(self.info.num_actions, size=len(greedy)), greedy)
        return greedy, {}

    def postprocess(self, fragment):
        """n-step transitions: ``rewards`` sums up to ``n_step`` discounted rewards, stopping at an episode's
        end or the fragment's; ``next_obs`` is where the sum stopped and ``discounts`` is gamma**k there,
        0 after a real termination (the learner bootstraps with ``discounts * max Q(next_obs)``)."""
        gamma, n_step = self.config["gamma"], self.config["n_step"]
        rewards, terminateds = fragment["rewards"], fragment["terminateds"]
        done = np.logical_or(terminateds, fragment["truncateds"])
        steps, envs = rewards.shape
        returns = np.zeros_like(rewards)
        discounts = np.zeros_like(rewards)
        next_obs = np.zeros_like(fragment["next_obs"])
        for t in range(steps):
            for i in range(envs):
                total, k = 0.0, 0
                while True:
                    total += gamma ** k * rewards[t + k, i]
                    k += 1
                    if done[t + k - 1, i] or k == n_step or t + k == steps:
                        break
                last = t + k - 1
                returns[t, i] = total
                discounts[t, i] = 0.0 if terminateds[last, i] else gamma ** k
                next_obs[t, i] = fragment["next_obs"][last, i]
        return {"obs": _flatten(fragment["obs"]), "actions": _flatten(fragment["actions"]),
                "rewards": _flatten(returns), "next_obs": _flatten(next_obs), "discounts": _flatten(discounts)}
