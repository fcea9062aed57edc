"""``ray.rllib.utils.replay_buffers``: RLlib's replay-buffer API, for buffers users write themselves.

mpirt's DQN keeps its own numpy buffers for the types it names (``EpisodeReplayBuffer``,
``PrioritizedEpisodeReplayBuffer``, ...); a ``ReplayBuffer`` subclass given as
``replay_buffer_config={"type": MyBuffer}`` (or a ``MultiAgentReplayBuffer`` over one)
is used as written, with ``SampleBatch`` rows in and out.
"""
from .multi_agent_replay_buffer import MultiAgentReplayBuffer, ReplayMode
from .replay_buffer import ReplayBuffer, StorageUnit

__all__ = ["ReplayBuffer", "StorageUnit", "MultiAgentReplayBuffer", "ReplayMode"]
