"""Ray's ``ray.tune.execution.placement_groups``: ``PlacementGroupFactory``, a trial's resource request.

A factory holds the bundles and strategy of one placement group per trial (and the other arguments
of ``placement_group()``). Tune reserves a trial's group before the trial starts, runs the trial's
actor in bundle 0 (with no resources when the first bundle was given empty) and captures what the
trial starts into the group, so its workers use the other bundles; the group is removed when the
trial's actor ends.

``as_trial_resources`` is Tune's own helper: what a trial runs with, from what users give
(``resources_per_trial``, ``with_resources``, ``default_resource_request``): a resource dict
(``{"cpu": 1}``; plain actors, no group) or a factory.
"""
import copy
import inspect
import json
import numbers
import warnings

from mpirt.scheduler.placement import STRATEGIES
from mpirt.scheduler.resources import summed
from mpirt.util.placement_group import placement_group

__all__ = ["PlacementGroupFactory", "resource_dict_to_pg_factory"]

# Bundle keys mpirt does not schedule by (accepted as Ray accepts them, no reservation).
_UNSCHEDULED = ("memory", "object_store_memory")


class PlacementGroupFactory:
    """Ray's resource request for a trial: ``bundles`` (``[{"CPU": 1, "GPU": 0.5}, {"CPU": 2}, ...]``)
    reserved together by ``strategy`` ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"); ``*args`` and
    ``**kwargs`` go to ``placement_group()``. The first bundle is the trainable's own; give it as ``{}``
    when the trainable needs nothing itself (``head_bundle_is_empty``): the trainable then runs with no
    resources in the group's first bundle, and the bundles are only its workers'."""

    def __init__(self, bundles, strategy="PACK", *args, **kwargs):
        if not isinstance(bundles, (list, tuple)):
            raise ValueError(f"PlacementGroupFactory: bundles must be a list of resource dicts such as "
                             f'[{{"CPU": 1}}, {{"CPU": 2}}], got {bundles!r}')
        if not bundles:
            raise ValueError("Cannot initialize a ResourceRequest with zero bundles.")
        cleaned = []
        for bundle in bundles:
            if not isinstance(bundle, dict):
                raise ValueError(f"PlacementGroupFactory: each bundle must be a dict of resource amounts such as "
                                 f'{{"CPU": 1}}, got {bundle!r}')
            for name, amount in bundle.items():
                if not isinstance(name, str):
                    raise ValueError(f"PlacementGroupFactory: resource names must be strings, got {name!r} in "
                                     f"bundle {bundle}")
                if isinstance(amount, bool) or not isinstance(amount, numbers.Number) or amount < 0:
                    raise ValueError(f"PlacementGroupFactory: bundle {bundle} asks for {amount!r} of {name!r}: "
                                     f"amounts must be numbers >= 0")
            cleaned.append({name: float(amount) for name, amount in bundle.items() if amount != 0})
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: "
                             f"{set(STRATEGIES)}.")
        self._head_bundle_is_empty = not cleaned[0]
        if self._head_bundle_is_empty:
            cleaned.pop(0)
            if not cleaned:
                raise ValueError("Cannot initialize a ResourceRequest with an empty head and zero worker bundles.")
        for bundle in cleaned:
            if not bundle:
                raise ValueError(f"PlacementGroupFactory: only the first bundle (the trainable's) may be empty, "
                                 f"got {list(bundles)}")
        self._bundles = cleaned
        self._strategy = strategy
        self._args = args
        self._kwargs = kwargs
        self._hash = None
        self._bound = None
        self._bind()

    def _bind(self):
        """Bind the arguments to ``placement_group()``'s signature: a misspelt keyword fails here, and
        equal requests given in different ways compare equal."""
        try:
            self._bound = inspect.signature(placement_group).bind(self._bundles, self._strategy, *self._args,
                                                                  **self._kwargs)
        except TypeError as exc:
            raise RuntimeError("Invalid definition for resource request. Please check that you passed valid "
                               "arguments to the ResourceRequest object.") from exc

    @property
    def head_bundle_is_empty(self):
        """True when the trainable itself needs no resources (the first bundle was given empty)."""
        return self._head_bundle_is_empty

    @property
    def head_cpus(self):
        return 0.0 if self._head_bundle_is_empty else self._bundles[0].get("CPU", 0.0)

    @property
    def bundles(self):
        """A copy of the bundles (without the empty head bundle)."""
        return copy.deepcopy(self._bundles)

    @property
    def required_resources(self):
        """Every resource of every bundle, summed."""
        return summed(self._bundles)

    @property
    def strategy(self):
        return self._strategy

    def to_placement_group(self):
        """A new placement group of these bundles (``pg.ready()`` tells when it is reserved)."""
        return placement_group(*self._bound.args, **self._bound.kwargs)

    def __call__(self, *args, **kwargs):
        warnings.warn("Calling PlacementGroupFactory objects is deprecated. Use `to_placement_group()` instead.",
                      DeprecationWarning, stacklevel=2)
        kwargs.update(self._bound.kwargs)
        return placement_group(*self._bound.args, **kwargs)

    def __eq__(self, other):
        if not isinstance(other, PlacementGroupFactory):
            return NotImplemented
        return self._bound == other._bound and self.head_bundle_is_empty == other.head_bundle_is_empty

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(json.dumps({"args": self._bound.args, "kwargs": self._bound.kwargs,
                                          "head": self._head_bundle_is_empty}, sort_keys=True, default=repr))
        return self._hash

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_hash", None)
        state.pop("_bound", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._hash = None
        self._bound = None
        self._bind()

    def __repr__(self):
        return f"<PlacementGroupFactory (_bound={self._bound}, head_bundle_is_empty={self.head_bundle_is_empty})>"

    def to_json(self):
        """What the experiment's journal records of the request."""
        return {"bundles": self.bundles, "strategy": self._strategy, "head_bundle_is_empty": self._head_bundle_is_empty}


def normalize_resource_dict(resources, where="resources_per_trial"):
    """A Tune resource dict (``{"cpu": 1, "gpu": 0.5, "custom": 2}``; Ray's ``"CPU"``/``"GPU"`` spellings,
    ``"custom_resources": {...}`` and ``"memory"`` too) as ``{"cpu": .., "gpu": .., custom...}``, checked.
    ``memory`` is kept under its name and asks for nothing (mpirt does not schedule by memory)."""
    normalized = {}
    for key, amount in resources.items():
        if key == "custom_resources":
            if not isinstance(amount, dict):
                raise ValueError(f"{where}['custom_resources'] must be a dict of resource amounts, got {amount!r}")
            for name, value in amount.items():
                _check_amount(where, f"custom_resources'][{name!r}", value)
                normalized[name] = value
            continue
        _check_amount(where, repr(key), amount)
        normalized[{"CPU": "cpu", "GPU": "gpu"}.get(key, key)] = amount
    normalized.setdefault("cpu", 1)
    return normalized


def _check_amount(where, key, amount):
    if isinstance(amount, bool) or not isinstance(amount, numbers.Number) or amount < 0:
        raise ValueError(f"{where}[{key}] must be a number >= 0, got {amount!r}")


def resource_dict_to_pg_factory(spec=None):
    """The factory Ray makes of a resource dict: one bundle, the trainable's."""
    spec = normalize_resource_dict(spec or {"cpu": 1})
    bundle = {"CPU": spec.pop("cpu", 0), "GPU": spec.pop("gpu", 0)}
    bundle.update(spec)
    return PlacementGroupFactory([bundle])


def as_trial_resources(value, where="resources_per_trial"):
    """What a trial runs with: a normalized resource dict, or a PlacementGroupFactory (None: 1 CPU)."""
    if value is None:
        return {"cpu": 1}
    if isinstance(value, PlacementGroupFactory):
        return value
    if isinstance(value, dict):
        return normalize_resource_dict(value, where)
    raise TypeError(f"{where} must be a dict like {{'cpu': 1, 'gpu': 0}} or a tune.PlacementGroupFactory, "
                    f"got {value!r}")


def as_group_request(value, where):
    """A per-trial request (a function of the config, ``default_resource_request``) as Ray takes it:
    a factory; a dict becomes one (``resource_dict_to_pg_factory``) unless it asks for nothing at all."""
    resources = as_trial_resources(value, where)
    if isinstance(resources, PlacementGroupFactory):
        return resources
    if not any(amount for name, amount in resources.items() if name not in _UNSCHEDULED):
        return resources
    return resource_dict_to_pg_factory(resources)


def resources_to_json(resources):
    return resources.to_json() if isinstance(resources, PlacementGroupFactory) else resources


def resources_from_json(value):
    """What ``resources_to_json`` wrote, back."""
    if isinstance(value, dict) and isinstance(value.get("bundles"), list):
        bundles = ([{}] if value.get("head_bundle_is_empty") else []) + value["bundles"]
        return PlacementGroupFactory(bundles, value.get("strategy", "PACK"))
    return value


def actor_options(resources, group=None):
    """``.options()`` of a trial's actor: the dict's resources, or the group's first bundle (nothing
    when the head bundle is empty) in ``group``, capturing what the trial starts."""
    if not isinstance(resources, PlacementGroupFactory):
        options = {"num_cpus": resources.get("cpu", 1), "num_gpus": resources.get("gpu", 0)}
        custom = {k: v for k, v in resources.items() if k not in ("cpu", "gpu") + _UNSCHEDULED}
        if custom:
            options["resources"] = custom
        if resources.get("memory"):
            options["memory"] = resources["memory"]
        return options
    from mpirt.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    head = {} if resources.head_bundle_is_empty else dict(resources.bundles[0])
    options = {"num_cpus": head.pop("CPU", 0.0), "num_gpus": head.pop("GPU", 0.0)}
    for name in _UNSCHEDULED:
        head.pop(name, None)
    if head:
        options["resources"] = head
    options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
        group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)
    return options
