"""Ray's ``ray.runtime_env``: the ``RuntimeEnv`` and ``RuntimeEnvConfig`` classes a program may pass as
``runtime_env=``. What mpirt does with them (``env_vars``, ``working_dir``, one environment per rank at a
time) is ``mpirt.core.runtime_env``'s."""
from .core.runtime_env import RuntimeEnv, RuntimeEnvConfig

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]
