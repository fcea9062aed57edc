"""A uniform replay buffer: numpy ring arrays, one per field, allocated on the first add."""
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
