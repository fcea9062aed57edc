"""``tune.with_resources`` and ``tune.with_parameters``: they keep the trainable's kind.

A function stays a function (so it can still be called, or passed to ``mpirt.remote``, as
Ray's docs do), a Trainable class stays a Trainable class.
"""
import inspect
import numbers

import mpirt

from .trainable import Trainable

RESOURCES_ATTR = "_resources"


def _check_trainable(trainable, api):
    if not callable(trainable) or (inspect.isclass(trainable) and not issubclass(trainable, Trainable)):
        raise ValueError(f"`tune.{api}() only works with function trainables or classes that inherit from "
                         f"`tune.Trainable()`. Got type: {type(trainable)}.")


def with_resources(trainable, resources):
    """``trainable`` annotated to run each trial with ``resources`` ({"cpu": 2, "gpu": 1, "custom": 1}).

    As in Ray, a function gets the annotation set on itself and is returned; a class gets a subclass.
    """
    _check_trainable(trainable, "with_resources")
    if callable(resources) and not isinstance(resources, dict):
        raise NotImplementedError("tune.with_resources() with a function of the config is not supported by mpirt: "
                                  "pass one resource dict for all trials")
    if not isinstance(resources, dict):
        raise ValueError(f"Invalid resource type for `with_resources()`: {type(resources)}")
    for key, amount in resources.items():
        if not isinstance(amount, numbers.Number) or isinstance(amount, bool) or amount < 0:
            raise ValueError(f"with_resources(): resources[{key!r}] must be a number >= 0, got {amount!r}")
    resources = dict(resources)
    if not inspect.isclass(trainable):
        if inspect.ismethod(trainable):
            bound = trainable

            def trainable(config):
                return bound(config)
            trainable.__name__ = bound.__name__
        try:
            setattr(trainable, RESOURCES_ATTR, resources)
        except AttributeError as error:
            raise RuntimeError("Could not use `tune.with_resources()` on the supplied trainable. Wrap your trainable "
                               "in a regular function before passing it to Ray Tune.") from error
        return trainable
    return type(trainable.__name__, (trainable,), {RESOURCES_ATTR: resources, "__module__": trainable.__module__,
                                                   "__qualname__": trainable.__qualname__})


def resources_of(trainable):
    """The resources ``with_resources`` attached (None if none)."""
    return getattr(trainable, RESOURCES_ATTR, None) if not isinstance(trainable, str) else None


def with_parameters(trainable, **kwargs):
    """Pass large objects to every trial through the object store, once, instead of in each config.

    A function ``f(config, data=None)`` becomes ``inner(config)`` calling ``f(config, data=...)``;
    a Trainable class gets ``setup(config, data=...)`` called with them.
    """
    _check_trainable(trainable, "with_parameters")
    refs = {name: mpirt.put(value) for name, value in kwargs.items()}
    name = getattr(trainable, "__name__", "tune_with_parameters")
    if inspect.isclass(trainable):
        base = trainable

        def setup(self, config):
            base.setup(self, config, **{key: mpirt.get(ref) for key, ref in refs.items()})
        return type(name, (base,), {"setup": setup, "__module__": base.__module__,
                                    "__qualname__": base.__qualname__})

    def inner(config):
        return trainable(config, **{key: mpirt.get(ref) for key, ref in refs.items()})
    inner.__name__ = name
    inner.__qualname__ = name
    inner.__module__ = getattr(trainable, "__module__", __name__)
    if hasattr(trainable, RESOURCES_ATTR):
        setattr(inner, RESOURCES_ATTR, getattr(trainable, RESOURCES_ATTR))
    return inner
