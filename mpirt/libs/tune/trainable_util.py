"""``tune.with_resources`` and ``tune.with_parameters``: they keep the trainable's kind.

A function stays a function (so it can still be called, or passed to ``mpirt.remote``, as
Ray's docs do), a Trainable class stays a Trainable class.
"""
import inspect

import mpirt

from .execution.placement_groups import PlacementGroupFactory, normalize_resource_dict
from .trainable import Trainable, _resources_of_config

RESOURCES_ATTR = "_resources"


def _check_trainable(trainable, api):
    if not callable(trainable) or (inspect.isclass(trainable) and not issubclass(trainable, Trainable)):
        raise ValueError(f"`tune.{api}() only works with function trainables or classes that inherit from "
                         f"`tune.Trainable()`. Got type: {type(trainable)}.")


def with_resources(trainable, resources):
    """``trainable`` annotated to run each trial with ``resources``: a dict (``{"cpu": 2, "gpu": 1,
    "custom": 1}``), a ``tune.PlacementGroupFactory`` (a placement group reserved per trial: the
    trainable in its first bundle, what it starts in the others), or a function of the trial's config
    returning either (each trial then gets a placement group, as in Ray).

    As in Ray, a function gets the annotation set on itself and is returned; a class gets a subclass
    whose ``default_resource_request`` answers it.
    """
    _check_trainable(trainable, "with_resources")
    if isinstance(resources, dict):
        normalize_resource_dict(resources, "with_resources(): resources")
        resources = dict(resources)
    elif not isinstance(resources, PlacementGroupFactory) and not callable(resources):
        raise ValueError(f"Invalid resource type for `with_resources()`: {type(resources)}")
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

    def default_resource_request(cls, config):
        return _resources_of_config(resources, config)
    return type(trainable.__name__, (trainable,), {RESOURCES_ATTR: resources, "__module__": trainable.__module__,
                                                   "__qualname__": trainable.__qualname__,
                                                   "default_resource_request": classmethod(default_resource_request)})


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
