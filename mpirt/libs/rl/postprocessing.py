"""Advantage estimation on time-major rollout fragments ([T, N]: T steps of N envs)."""
import numpy as np


def compute_gae(rewards, values, next_values, terminateds, truncateds, gamma, lam):
    """Generalized advantage estimation (Schulman et al. 2016).

    ``next_values`` are V(s_{t+1}) for every step, so a time-limit truncation or the
    fragment's end bootstraps from the value of the state it stopped in, while a real
    termination does not. Episodes ending inside the fragment cut the recursion.
    Returns (advantages, value_targets), both [T, N] float32.
    """
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards, dtype=np.float32)
    running = np.zeros(rewards.shape[1:], dtype=np.float32)
    not_terminal = 1.0 - terminateds.astype(np.float32)
    not_done = 1.0 - np.logical_or(terminateds, truncateds).astype(np.float32)
    for t in reversed(range(steps)):
        delta = rewards[t] + gamma * next_values[t] * not_terminal[t] - values[t]
        running = delta + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values
