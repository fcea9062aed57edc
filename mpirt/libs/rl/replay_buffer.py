"""Replay for DQN: uniform and prioritized buffers on numpy ring arrays (one per field, allocated on the
first add), and ``SampleBatchBuffer``, which puts a buffer of RLlib's API behind the same interface."""
import numpy as np


class ReplayBuffer:
    def __init__(self, capacity, seed=None):
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.arrays = None
        self.next_index = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return self.size

    def add(self, batch):
        """Append a dict of equal-length arrays, overwriting the oldest rows once full."""
        count = len(next(iter(batch.values())))
        if self.arrays is None:
            self.arrays = {key: np.zeros((self.capacity, *np.shape(value)[1:]), np.asarray(value).dtype)
                           for key, value in batch.items()}
        positions = (self.next_index + np.arange(count)) % self.capacity
        for key, value in batch.items():
            self.arrays[key][positions] = value
        self.next_index = int((self.next_index + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size):
        """``batch_size`` rows drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(self.size, size=batch_size)
        return {key: array[idx] for key, array in self.arrays.items()}


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016): row i is drawn with probability
    p_i^alpha / sum p^alpha and weighted by (N P(i))^-beta / max weight; new rows get the highest
    priority seen so far. A sum tree over the priorities makes drawing and updating O(log N)."""

    def __init__(self, capacity, alpha=0.6, beta=0.4, epsilon=1e-6, seed=None):
        super().__init__(capacity, seed=seed)
        if alpha < 0 or beta < 0:
            raise ValueError(f"prioritized replay needs alpha >= 0 and beta >= 0, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta, self.epsilon = float(alpha), float(beta), float(epsilon)
        self.leaves = 1 << (self.capacity - 1).bit_length()
        self.tree = np.zeros(2 * self.leaves, np.float64)
        self.max_priority = 1.0

    def _set(self, positions, values):
        nodes = np.asarray(positions) + self.leaves
        self.tree[nodes] = values
        while nodes[0] > 1:  # sums up to the root, node 1
            nodes = np.unique(nodes // 2)
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def add(self, batch):
        count = len(next(iter(batch.values())))
        positions = (self.next_index + np.arange(count)) % self.capacity
        super().add(batch)
        self._set(positions, self.max_priority ** self.alpha)

    def sample(self, batch_size):
        """Rows drawn by priority, plus ``weights`` (importance sampling) and ``indices`` for
        ``update_priorities``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        total = self.tree[1]
        targets = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        nodes = np.ones(batch_size, np.int64)
        while nodes[0] < self.leaves:
            left = 2 * nodes
            go_right = targets > self.tree[left]
            targets = np.where(go_right, targets - self.tree[left], targets)
            nodes = np.where(go_right, left + 1, left)
        idx = np.minimum(nodes - self.leaves, self.size - 1)
        probabilities = self.tree[idx + self.leaves] / total
        weights = (self.size * np.maximum(probabilities, 1e-12)) ** -self.beta
        batch = {key: array[idx] for key, array in self.arrays.items()}
        batch["weights"] = (weights / weights.max()).astype(np.float32)
        batch["indices"] = idx
        return batch

    def update_priorities(self, indices, td_errors):
        priorities = np.abs(np.asarray(td_errors, np.float64)) + self.epsilon
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self._set(indices, priorities ** self.alpha)


class SampleBatchBuffer:
    """A buffer of RLlib's API (``ray.rllib.utils.replay_buffers.ReplayBuffer`` or a subclass a user wrote)
    behind this module's interface: dicts of arrays go in as ``SampleBatch``, samples come out as dicts."""

    def __init__(self, buffer):
        self.buffer = buffer

    def __len__(self):
        return len(self.buffer)

    def add(self, batch):
        from .policy.sample_batch import SampleBatch
        self.buffer.add(SampleBatch(batch))

    def sample(self, batch_size):
        sample = self.buffer.sample(batch_size)
        if sample is None or len(sample) == 0:
            raise ValueError(f"{type(self.buffer).__name__}.sample({batch_size}) returned no rows")
        return {key: np.asarray(value) for key, value in sample.items()}
