"""``RandomEnv``: observations and rewards sampled from their spaces; an episode ends with probability
``p_terminated`` each step, or is truncated after ``max_episode_len`` steps (RLlib's test env)."""
import copy

import gymnasium as gym
import numpy as np


class RandomEnv(gym.Env):
    def __init__(self, config=None):
        config = config or {}
        self.action_space = config.get("action_space", gym.spaces.Discrete(2))
        self.observation_space = config.get("observation_space", gym.spaces.Discrete(2))
        self.reward_space = config.get("reward_space", gym.spaces.Box(-1.0, 1.0, shape=(), dtype=np.float32))
        self.static_samples = config.get("static_samples", False)
        if self.static_samples:
            self.observation_sample = self.observation_space.sample()
            self.reward_sample = self.reward_space.sample()
        self.p_terminated = config.get("p_terminated", config.get("p_done", 0.1))
        self.max_episode_len = config.get("max_episode_len", None)
        self.check_action_bounds = config.get("check_action_bounds", False)
        self.steps = 0

    def _observation(self):
        return copy.deepcopy(self.observation_sample) if self.static_samples else self.observation_space.sample()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self._observation(), {}

    def step(self, action):
        if self.check_action_bounds and not self.action_space.contains(action):
            raise ValueError(f"Illegal action for {self.action_space}: {action}")
        self.steps += 1
        terminated = truncated = False
        if self.max_episode_len and self.steps >= self.max_episode_len:
            truncated = True
        elif self.p_terminated > 0.0:
            terminated = bool(self.np_random.random() < self.p_terminated)
        reward = copy.deepcopy(self.reward_sample) if self.static_samples else self.reward_space.sample()
        return self._observation(), reward, terminated, truncated, {}
