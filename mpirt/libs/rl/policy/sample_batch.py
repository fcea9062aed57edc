"""SampleBatch: RLlib's dict of equal-length columns (``obs``, ``actions``, ``rewards``, ...).

mpirt's algorithms pass plain dicts of numpy arrays; this class is what RLlib's
replay-buffer API (``ray.rllib.utils.replay_buffers``) stores and returns, so a
user's ``ReplayBuffer`` subclass plugged into DQN sees the batches it expects.
"""
import numpy as np


class SampleBatch(dict):
    OBS = "obs"
    NEXT_OBS = "new_obs"
    ACTIONS = "actions"
    REWARDS = "rewards"
    TERMINATEDS = "terminateds"
    TRUNCATEDS = "truncateds"
    T = "t"
    EPS_ID = "eps_id"
    SEQ_LENS = "seq_lens"
    INFOS = "infos"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, value in list(self.items()):
            if isinstance(value, (list, tuple)):
                self[key] = np.asarray(value)

    @property
    def count(self):
        for key, value in self.items():
            if key != self.SEQ_LENS and hasattr(value, "__len__"):
                return len(value)
        return 0

    def __len__(self):
        return self.count

    def env_steps(self):
        return self.count

    def agent_steps(self):
        return self.count

    def __getitem__(self, key):
        if isinstance(key, slice):
            return SampleBatch({k: v[key] for k, v in self.items()})
        return super().__getitem__(key)

    def copy(self, shallow=False):
        return SampleBatch({k: (v if shallow else np.array(v, copy=True)) for k, v in self.items()})

    def concat(self, other):
        return concat_samples([self, other])

    def timeslices(self, size=None, num_slices=None, k=None):
        size = size or k
        if num_slices is not None:
            size = max(1, -(-self.count // num_slices))
        return [self[i:i + size] for i in range(0, self.count, size)]

    def split_by_episode(self, key=None):
        """One batch per episode: by changes of ``eps_id`` if present, else after each step whose
        ``terminateds`` or ``truncateds`` is set."""
        count = self.count
        if count == 0:
            return []
        if key is None and self.EPS_ID in self:
            key = self.EPS_ID
        if key is not None:
            ids = np.asarray(self[key])
            ends = list(np.nonzero(ids[1:] != ids[:-1])[0] + 1)
        else:
            done = np.zeros(count, bool)
            for column in (self.TERMINATEDS, self.TRUNCATEDS):
                if column in self:
                    done |= np.asarray(self[column], bool)
            ends = [i + 1 for i in np.nonzero(done)[0] if i + 1 < count]
        bounds = [0, *ends, count]
        return [self[a:b] for a, b in zip(bounds, bounds[1:])]

    def size_bytes(self):
        return sum(getattr(v, "nbytes", 0) for v in self.values())

    def decompress_if_needed(self, columns=None):
        return self

    def __repr__(self):
        return f"SampleBatch({self.count}: {list(self.keys())})"


def concat_samples(samples):
    """One SampleBatch of the rows of ``samples`` (empty ones skipped), column by column."""
    samples = [s for s in samples if s is not None and len(s) > 0]
    if not samples:
        return SampleBatch()
    keys = list(samples[0].keys())
    return SampleBatch({key: np.concatenate([np.asarray(s[key]) for s in samples]) for key in keys})
