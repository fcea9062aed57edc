"""Trainables by name: ``register_trainable("my_fn", fn)`` then ``run_experiments({... "run": "my_fn"})``.

The RL algorithms register themselves under their names ("PPO", "DQN", ...)
when ``mpirt.libs.rl`` is imported; a lookup of an unknown name imports it once.
"""
import inspect

from .trainable import Trainable, wrap_function

_registry: dict = {}


def register_trainable(name, trainable):
    """Make ``trainable`` (a function or a Trainable subclass) runnable by ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a trainable's name must be a non-empty string, got {name!r}")
    _registry[name] = as_trainable_class(trainable)


def as_trainable_class(trainable):
    """A Trainable subclass for a function, a Trainable subclass, or a registered name."""
    if isinstance(trainable, str):
        return lookup(trainable)
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable):
            raise TypeError(f"{trainable.__name__} is a class but not a subclass of tune.Trainable")
        return trainable
    if callable(trainable):
        return wrap_function(trainable)
    raise TypeError(f"a trainable must be a function, a Trainable subclass or a registered name, got {trainable!r}")


def lookup(name):
    rl_missing = None
    if name not in _registry:
        try:
            import mpirt.libs.rl  # noqa: F401 - registers the RL algorithms
        except ImportError as error:
            rl_missing = error
    if name not in _registry:
        known = ", ".join(sorted(_registry)) or "none"
        hint = (f"; the RL algorithms could not be loaded ({rl_missing}: pip install 'mpirt[rl]')"
                if rl_missing is not None else "")
        raise ValueError(f"unknown trainable {name!r}: register it with tune.register_trainable({name!r}, fn) "
                         f"(registered: {known}){hint}")
    return _registry[name]


def register_env(name, env_creator):
    """Register an environment creator ``env_creator(env_config) -> env`` under ``name`` for the RL
    algorithms (``mpirt.libs.rl``, which keeps the registry)."""
    from mpirt.libs.rl import register_env as register
    return register(name, env_creator)
