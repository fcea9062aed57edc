"""RLlib's FIFO ``ReplayBuffer`` over ``SampleBatch`` items: one item per timestep, sequence, episode or
added batch (``storage_unit``), drawn uniformly with replacement. Its attributes (``_storage``,
``_hit_count``, ``_next_idx``, ``_num_timesteps_sampled``) and ``_encode_sample`` are the ones RLlib's
documentation tells subclasses to use."""
import enum
import random

import numpy as np

from mpirt.libs.rl.policy.sample_batch import SampleBatch, concat_samples


class StorageUnit(enum.Enum):
    TIMESTEPS = "timesteps"
    SEQUENCES = "sequences"
    EPISODES = "episodes"
    FRAGMENTS = "fragments"


class ReplayBuffer:
    def __init__(self, capacity=10000, storage_unit="timesteps", **kwargs):
        try:
            self.storage_unit = StorageUnit(storage_unit)
        except ValueError:
            raise ValueError(f"storage_unit must be one of {[u.value for u in StorageUnit]}, "
                             f"got {storage_unit!r}") from None
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self._storage = []
        self._next_idx = 0
        self._hit_count = np.zeros(self.capacity)
        self._eviction_started = False
        self._num_timesteps_added = 0
        self._num_timesteps_added_wrap = 0
        self._num_timesteps_sampled = 0
        self._est_size_bytes = 0

    def __len__(self):
        return len(self._storage)

    def add(self, batch, **kwargs):
        """Split ``batch`` into items by ``storage_unit`` and store them (episodes only when complete)."""
        if not batch.count > 0:
            return
        if self.storage_unit == StorageUnit.TIMESTEPS:
            for item in batch.timeslices(1):
                self._add_single_batch(item, **kwargs)
        elif self.storage_unit == StorageUnit.SEQUENCES:
            start = 0
            for length in batch[SampleBatch.SEQ_LENS]:
                self._add_single_batch(batch[start:start + int(length)], **kwargs)
                start += int(length)
        elif self.storage_unit == StorageUnit.EPISODES:
            for episode in batch.split_by_episode():
                starts = episode.get(SampleBatch.T, [0])[0] == 0
                ends = episode.get(SampleBatch.TERMINATEDS, [True])[-1] or \
                    episode.get(SampleBatch.TRUNCATEDS, [False])[-1]
                if starts and ends:
                    self._add_single_batch(episode, **kwargs)
        else:
            self._add_single_batch(batch, **kwargs)

    def _add_single_batch(self, item, **kwargs):
        self._num_timesteps_added += item.count
        self._num_timesteps_added_wrap += item.count
        if self._next_idx >= len(self._storage):
            self._storage.append(item)
        else:
            self._est_size_bytes -= self._storage[self._next_idx].size_bytes()
            self._storage[self._next_idx] = item
        self._est_size_bytes += item.size_bytes()
        if self._eviction_started:
            self._hit_count[self._next_idx] = 0
        if self._num_timesteps_added_wrap >= self.capacity:
            self._eviction_started = True
            self._num_timesteps_added_wrap = 0
            self._next_idx = 0
        else:
            self._next_idx += 1

    def sample(self, num_items=None, **kwargs):
        """``num_items`` items drawn uniformly with replacement, concatenated into one SampleBatch."""
        if len(self) == 0:
            raise ValueError("Trying to sample from an empty buffer.")
        idxes = [random.randint(0, len(self) - 1) for _ in range(num_items)]
        sample = self._encode_sample(idxes)
        self._num_timesteps_sampled += sample.count
        return sample

    def _encode_sample(self, idxes):
        samples = []
        for i in idxes:
            self._hit_count[i] += 1
            samples.append(self._storage[i])
        return concat_samples(samples) if samples else SampleBatch()

    def stats(self, debug=False):
        return {"added_count": self._num_timesteps_added, "added_count_wrapped": self._num_timesteps_added_wrap,
                "eviction_started": self._eviction_started, "sampled_count": self._num_timesteps_sampled,
                "est_size_bytes": self._est_size_bytes, "num_entries": len(self._storage)}

    def get_state(self):
        return {"_storage": self._storage, "_next_idx": self._next_idx, **self.stats()}

    def set_state(self, state):
        self._storage = state["_storage"]
        self._next_idx = state["_next_idx"]
        self._num_timesteps_added = state["added_count"]
        self._num_timesteps_added_wrap = state["added_count_wrapped"]
        self._eviction_started = state["eviction_started"]
        self._num_timesteps_sampled = state["sampled_count"]
        self._est_size_bytes = state["est_size_bytes"]
