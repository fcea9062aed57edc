"""``ray.rllib.utils.replay_buffers.utils``: ``validate_buffer_config`` turns the ``type`` of a config's
``replay_buffer_config`` (a class, a name in ``ray.rllib.utils.replay_buffers`` or a dotted path) into the
class, building one buffer to fail early on bad arguments."""
import importlib

from . import multi_agent_replay_buffer, replay_buffer

_BY_NAME = {"ReplayBuffer": replay_buffer.ReplayBuffer,
            "MultiAgentReplayBuffer": multi_agent_replay_buffer.MultiAgentReplayBuffer}


def resolve_buffer_type(kind):
    """The class a replay buffer ``type`` names."""
    if isinstance(kind, type):
        return kind
    if not isinstance(kind, str):
        raise TypeError(f"a replay buffer type must be a class or a name, got {kind!r}")
    if kind in _BY_NAME:
        return _BY_NAME[kind]
    module_name, _, name = kind.rpartition(".")
    candidates = [module_name]
    if module_name.startswith("ray.rllib."):  # RLlib's path without the ray name: mpirt's own
        candidates.append("mpirt.libs.rl." + module_name[len("ray.rllib."):])
    for candidate in candidates:
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError, ValueError):
            continue
    raise ValueError(f"unknown replay buffer type {kind!r}: give a class, a dotted path, or one of "
                     f"{', '.join(_BY_NAME)}")


def from_config(kind, config):
    buffer_cls = resolve_buffer_type(kind)
    return buffer_cls(**{k: v for k, v in config.items() if k != "type"})


def validate_buffer_config(config):
    """Resolve ``config["replay_buffer_config"]["type"]`` to its class, in place."""
    if config.get("replay_buffer_config") is None:
        config["replay_buffer_config"] = {}
    buffer_config = config["replay_buffer_config"]
    if "type" not in buffer_config:
        raise ValueError("Can not instantiate ReplayBuffer from config without 'type' key.")
    dummy = from_config(buffer_config["type"], buffer_config)
    buffer_config["type"] = type(dummy)
