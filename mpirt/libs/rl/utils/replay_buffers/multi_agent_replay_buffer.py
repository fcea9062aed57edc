"""RLlib's ``MultiAgentReplayBuffer``: one underlying buffer per policy. mpirt trains one policy
(``default_policy``), so this holds one underlying buffer, built from ``underlying_buffer_config``
(a type and its arguments); arguments its ``sample`` takes are passed to every sample call."""
import enum
import inspect

from .replay_buffer import ReplayBuffer, StorageUnit

DEFAULT_POLICY_ID = "default_policy"


class ReplayMode(enum.Enum):
    LOCKSTEP = "lockstep"
    INDEPENDENT = "independent"


class MultiAgentReplayBuffer(ReplayBuffer):
    def __init__(self, capacity=10000, storage_unit="timesteps", num_shards=1, replay_mode="independent",
                 replay_sequence_override=True, replay_sequence_length=1, replay_burn_in=0,
                 replay_zero_init_states=True, underlying_buffer_config=None, **kwargs):
        super().__init__(capacity, storage_unit)
        if ReplayMode(replay_mode if not isinstance(replay_mode, ReplayMode) else replay_mode.value) \
                is ReplayMode.LOCKSTEP:
            raise NotImplementedError("MultiAgentReplayBuffer: replay_mode='lockstep' is not supported by "
                                      "mpirt.libs.rl (one policy is trained)")
        config = dict(underlying_buffer_config or kwargs.get("underlying_replay_buffer_config") or {})
        from .utils import resolve_buffer_type
        buffer_cls = resolve_buffer_type(config.pop("type", ReplayBuffer))
        ctor_args = {"capacity": capacity // num_shards, "storage_unit": StorageUnit.FRAGMENTS, **config}
        self.underlying_buffer_call_args = {k: v for k, v in config.items() if k not in ("capacity", "storage_unit")}
        self.replay_buffers = {DEFAULT_POLICY_ID: buffer_cls(**ctor_args)}

    def __len__(self):
        return sum(len(buffer) for buffer in self.replay_buffers.values())

    def add(self, batch, **kwargs):
        """Split ``batch`` by this buffer's ``storage_unit`` and hand each piece to the underlying buffer
        (which stores what it gets as one item by default)."""
        if self.storage_unit is StorageUnit.TIMESTEPS:
            pieces = batch.timeslices(1)
        elif self.storage_unit is StorageUnit.EPISODES:
            pieces = batch.split_by_episode()
        else:
            pieces = [batch]
        for piece in pieces:
            self.replay_buffers[DEFAULT_POLICY_ID].add(piece, **kwargs)

    def sample(self, num_items=None, policy_id=None, **kwargs):
        buffer = self.replay_buffers[policy_id or DEFAULT_POLICY_ID]
        accepted = inspect.signature(buffer.sample).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        call_args = {k: v for k, v in {**self.underlying_buffer_call_args, **kwargs}.items()
                     if takes_any or k in accepted}
        return buffer.sample(num_items, **call_args)
