"""RLlib's ``ray.rllib.policy`` paths: ``sample_batch.SampleBatch`` and ``concat_samples``."""
from .sample_batch import SampleBatch, concat_samples

__all__ = ["SampleBatch", "concat_samples"]
