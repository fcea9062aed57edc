"""The options of tasks, actors and actor methods, and their checks, as Ray has them.

Every keyword Ray takes in ``@remote(...)`` and ``.options(...)`` is taken here too, under
the same rules: an unknown keyword raises ValueError naming it and the valid ones, a value
of the wrong type TypeError naming the option and the value, a wrong value ValueError in
Ray's words (and the value). ``TASK_OPTIONS`` and ``ACTOR_OPTIONS`` are the common options
plus those of each kind, as in Ray; ``METHOD_*_OPTIONS`` those of actor methods.

Options mpirt takes but cannot act on are listed, with why, in ``ACCEPTED_ONLY``.
``runtime_env`` is applied as ``mpirt.core.runtime_env`` says.
"""
import inspect
import re

from .core import runtime_env as runtime_env_module
from .core.call_context import current_placement
from .core.ids import node_id_hex
from .scheduler.resources import make_shape
from .scheduler.strategies import (NodeAffinitySchedulingStrategy, PlacementGroup, PlacementGroupID,
                                   PlacementGroupSchedulingStrategy)

_NONE = type(None)
_NUMBER = (float, int, _NONE)

DEFAULT_MAX_RETRIES = 3   # Ray's default for tasks

# What each option accepted without effect would do in Ray, and why mpirt does without it.
ACCEPTED_ONLY = {
    "memory": "a logical reservation of heap memory for scheduling; mpirt schedules CPUs, GPUs and custom "
              "resources only",
    "accelerator_type": "a node label ('accelerator_type:A100') to place by; mpirt's nodes carry no such labels",
    "label_selector": "places by node labels, which mpirt's nodes do not have",
    "fallback_strategy": "label selectors to try when the first finds no node: no labels here",
    "_labels": "labels recorded on the task or actor for observability",
    "object_store_memory": "for actors, a reservation Ray itself deprecates (it reserves nothing); for tasks "
                           "any value other than None is refused, as in Ray",
    "enable_task_events": "Ray's task-event store for its dashboard and state API; mpirt has neither",
    "max_calls": "Ray recycles a worker process after this many calls of the function; mpirt runs tasks as "
                 "threads of long-lived ranks and has no per-task process to recycle",
    "_num_objects_per_yield": "for generator tasks, not supported yet",
    "enable_tensor_transport": "device-to-device transport of tensors between actors in Ray; mpirt moves "
                               "GPU arrays its own way (docs/gpu.md)",
    "allow_out_of_order_execution": "calls from one caller always run in order in mpirt",
    "_actor_generator_backpressure_num_objects": "for generator methods, not supported yet",
}


class WithOptions:
    """What ``.options(...)`` returns: ``.remote(...)`` with those options applied."""

    __slots__ = ("_submit", "_options")

    def __init__(self, submit, options):
        self._submit = submit
        self._options = options

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)


class Option:
    """One keyword: the types it takes and a check of its value returning Ray's message for a wrong one, or None."""

    __slots__ = ("types", "check")

    def __init__(self, types, check=None):
        self.types = types
        self.check = check

    def validate(self, key, value):
        types = self.types
        if not isinstance(value, types):
            raise TypeError(f"The type of keyword '{key}' must be {types}, but received type {type(value)}: "
                            f"{key}={value!r}")
        message = self.check(value) if self.check is not None else None
        if message:
            raise ValueError(f"{message.rstrip('. ')}. Got {key}={value!r}.")


def _quantity_message(name, value):
    if value < 0:
        return f"The quantity of resource {name} cannot be negative"
    if isinstance(value, float) and value != 0.0 and int(value * 10000) == 0:
        return f"The precision of the fractional quantity of resource {name} cannot go beyond 0.0001"
    return None


def _resource(name):
    return Option(_NUMBER, lambda value: None if value is None else _quantity_message(name, value))


def _counting(name, infinite=True):
    """Whole counts: None, 0, positive, and -1 (for ever) where ``infinite``."""
    def check(value):
        if value is None or value >= (-1 if infinite else 0):
            return None
        if infinite:
            return f"The keyword '{name}' only accepts None, 0, -1 or a positive integer, where -1 represents infinity."
        return f"The keyword '{name}' only accepts None, 0 or a positive integer."
    return Option((int, _NONE), check)


def _check_resources(resources):
    if resources is None:
        return None
    if "CPU" in resources or "GPU" in resources:
        return "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' in 'resources' keyword"
    for name, amount in resources.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"The quantity of resource {name} must be a number, but received type {type(amount)}: "
                            f"resources={resources!r}")
        message = _quantity_message(name, amount)
        if message:
            return message
    return None


# Kubernetes label syntax, which Ray's label selectors follow.
_LABEL_NAME = r"[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?"
_LABEL_PREFIX = re.compile(rf"({_LABEL_NAME})?(\.({_LABEL_NAME})?)*")
_LABEL_SELECTOR_VALUE = re.compile(rf"!?(in)?\({_LABEL_NAME}(, ?{_LABEL_NAME})*\)|!?{_LABEL_NAME}")
_NAME_RULE = ("must be 63 chars or less beginning and ending with an alphanumeric character ([a-z0-9A-Z]) with "
              "dashes (-), underscores (_),dots (.), and alphanumerics between.")


def _check_label_selector(selector):
    for key, value in (selector or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"label_selector keys must be strings, got {key!r}")
        prefix, _, name = key.rpartition("/")
        if "/" in key and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
            return (f"Invalid label key prefix `{prefix}`. Prefix must be a series of DNS labels separated by dots "
                    f"(.), not longer than 253 characters in total.")
        if len(name) > 63 or not re.fullmatch(_LABEL_NAME, name):
            return f"Invalid label key name `{name}`. Name {_NAME_RULE}"
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise TypeError(f"label_selector values must be strings, got {key!r}: {value!r}")
        if not _LABEL_SELECTOR_VALUE.fullmatch(value):
            return (f"Invalid label selector value `{value}`. The label selector value should contain optional "
                    f"operators and a label value. Supported operators are: ! and {{'in'}}. Value {_NAME_RULE}")
    return None


def _check_fallback_strategy(strategies):
    for strategy in strategies or ():
        if not isinstance(strategy, dict):
            return "Each element in fallback_strategy must be a dictionary."
        if not strategy:
            return "Empty dictionary found in `fallback_strategy`."
        for key in strategy:
            if key != "label_selector":
                return f"Unsupported option found: '{key}'. Only ['label_selector'] is currently supported."
        selector = strategy.get("label_selector")
        if selector:
            if not isinstance(selector, dict):
                return 'The value of "label_selector" must be a dictionary.'
            message = _check_label_selector(selector)
            if message:
                return message
    return None


def _check_runtime_env(value):
    runtime_env_module.resolve(value)   # raises for what is wrong or unsupported
    return None


def _check_lifetime(value):
    if value in (None, "detached", "non_detached"):
        return None
    return "actor `lifetime` argument must be one of 'detached', 'non_detached' and 'None'."


def _check_concurrency_groups(groups):
    if groups is None:
        return None
    if not isinstance(groups, dict):
        raise TypeError(f"concurrency_groups must be a dict of group name to its max concurrency, "
                        f"got {groups!r}")
    for name, limit in groups.items():
        if not isinstance(name, str):
            raise TypeError(f"concurrency_groups: a group name must be a string, got {name!r}")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"concurrency_groups: the max concurrency of group {name!r} must be an integer, "
                            f"got {limit!r}")
        if limit < 1:
            return f"concurrency_groups: the max concurrency of group {name!r} must be at least 1"
    return None


# scheduling_strategy: None, a string ("DEFAULT", "SPREAD") or a strategy object (mpirt.util.scheduling_strategies).
_STRATEGY_TYPES = (_NONE, str, NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy)


_NUM_RETURNS_RULE = ("Default None. When None is passed, The default value is 1 for a task and actor task, and "
                     "'streaming' for generator tasks and generator actor tasks. The keyword 'num_returns' only "
                     "accepts None, a non-negative integer, 'streaming' (for generators), or 'dynamic'. 'dynamic' "
                     "flag will be deprecated in the future, and it is recommended to use 'streaming' instead.")


def _check_num_returns(value):
    if value is None or value in ("streaming", "dynamic"):
        return None
    if isinstance(value, str) or value < 0:
        return _NUM_RETURNS_RULE
    return None


def _check_retry_exceptions(value):
    if isinstance(value, bool) or all(inspect.isclass(c) and issubclass(c, Exception) for c in value):
        return None
    return "retry_exceptions must be either a boolean or a list of exceptions"


COMMON_OPTIONS = {
    "label_selector": Option((dict, _NONE), _check_label_selector),
    "fallback_strategy": Option((list, _NONE), _check_fallback_strategy),
    "accelerator_type": Option((str, _NONE)),
    "memory": _resource("memory"),
    "name": Option((str, _NONE)),
    "num_cpus": _resource("num_cpus"),
    "num_gpus": _resource("num_gpus"),
    "object_store_memory": _counting("object_store_memory", infinite=False),
    "placement_group": Option((_NONE, str, PlacementGroup)),
    "placement_group_bundle_index": Option(int),
    "placement_group_capture_child_tasks": Option((bool, _NONE)),
    "resources": Option((dict, _NONE), _check_resources),
    "runtime_env": Option((dict, _NONE), _check_runtime_env),
    "scheduling_strategy": Option(_STRATEGY_TYPES),
    "enable_task_events": Option(bool),
    "_labels": Option((dict, _NONE)),
}

TASK_ONLY_OPTIONS = {
    "max_calls": _counting("max_calls", infinite=False),
    "max_retries": _counting("max_retries"),
    "num_returns": Option((int, str, _NONE), _check_num_returns),
    "object_store_memory": Option((int, _NONE), lambda value: None if value is None
                                  else "Setting 'object_store_memory' is not implemented for tasks"),
    "retry_exceptions": Option((bool, list, tuple), _check_retry_exceptions),
    "_generator_backpressure_num_objects": Option(
        (int, _NONE), lambda value: None if value != 0 else
        "_generator_backpressure_num_objects=0 is not allowed. Use a value > 0. If the value is equal to 1, the "
        "behavior is identical to Python generator (generator 1 object whenever `next` is called). Use -1 to "
        "disable this feature."),
    "_num_objects_per_yield": Option(
        (int, _NONE), lambda value: None if value is None or value > 0 else
        "_num_objects_per_yield is a private streaming generator option that must be set to a positive integer."),
}

ACTOR_ONLY_OPTIONS = {
    "concurrency_groups": Option((list, dict, _NONE), _check_concurrency_groups),
    "enable_tensor_transport": Option((bool, _NONE)),
    "lifetime": Option((str, _NONE), _check_lifetime),
    "max_concurrency": _counting("max_concurrency", infinite=False),
    "max_restarts": _counting("max_restarts"),
    "max_task_retries": _counting("max_task_retries"),
    "max_pending_calls": _counting("max_pending_calls"),
    "namespace": Option((str, _NONE)),
    "get_if_exists": Option(bool),
    "allow_out_of_order_execution": Option((bool, _NONE)),
    "_actor_generator_backpressure_num_objects": Option(
        (int, _NONE), lambda value: None if value is None or value > 0 or value == -1 else
        "_actor_generator_backpressure_num_objects must be > 0 to cap the actor's total unconsumed generator "
        "objects, or -1 to disable."),
}

# Ray's order: the common options first, then those of the kind (which win where both name one).
TASK_OPTIONS = {**COMMON_OPTIONS, **TASK_ONLY_OPTIONS}
ACTOR_OPTIONS = {**COMMON_OPTIONS, **ACTOR_ONLY_OPTIONS}

# The defaults of the options mpirt acts on (the rest default to "not given").
TASK_DEFAULTS = {
    "num_cpus": 1,
    "num_gpus": 0,
    "resources": None,
    "num_returns": None,      # 1 (Ray: 'streaming' for a generator function)
    "max_retries": DEFAULT_MAX_RETRIES,
    "retry_exceptions": False,
    "name": None,
    "runtime_env": None,
    "scheduling_strategy": None,
}

ACTOR_DEFAULTS = {
    "num_cpus": None,
    "num_gpus": 0,
    "resources": None,
    "max_concurrency": None,
    "max_restarts": 0,
    "max_task_retries": 0,
    "max_pending_calls": -1,
    "name": None,
    "namespace": None,
    "lifetime": None,
    "get_if_exists": False,
    "scheduling_strategy": None,
    "runtime_env": None,
    "concurrency_groups": None,
}


def _validate(options, rules, kind):
    for key, value in options.items():
        rule = rules.get(key)
        if rule is None:
            raise ValueError(f"Invalid option keyword {key} for {kind}. Valid ones are {list(rules)}.")
        rule.validate(key, value)
    if options.get("placement_group", "default") not in ("default", None) and \
            options.get("scheduling_strategy") is not None:
        raise ValueError("Placement groups should be specified via the scheduling_strategy option. "
                         "The placement_group option is deprecated.")


def _resolved(options, where):
    """``options`` with mpirt's own resource check (a fraction above 1 must be whole, as GPUs are
    dealt out) and ``runtime_env`` in the form mpirt applies (``runtime_env.resolve``)."""
    try:
        make_shape(options.get("num_cpus") or 0, options.get("num_gpus") or 0, options.get("resources"))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if options.get("runtime_env") is not None:
        options = {**options, "runtime_env": runtime_env_module.resolve(options["runtime_env"])}
    return options


def validate_task_options(options, in_options, is_generator=None, where="@remote"):
    """Check a remote function's options as Ray does; returns them with ``runtime_env`` resolved.

    ``in_options`` for ``.options()`` (which cannot set ``max_calls``); ``is_generator``, when
    ``num_returns`` is given, whether the function yields (Ray's generator rule)."""
    _validate(options, TASK_OPTIONS, "remote functions")
    if in_options and "max_calls" in options:
        raise ValueError("Setting 'max_calls' is not supported in '.options()'.")
    if is_generator is not None and options.get("num_returns") is not None:
        check_num_returns_for(is_generator, options["num_returns"], where)
    return _resolved(options, where)


def check_num_returns_for(is_generator, num_returns, where, streams=True):
    """Ray's rule for ``num_returns`` on a function or method that does (not) yield (None: not
    known); ``streams``: whether this kind of call can be a streaming generator."""
    if isinstance(num_returns, int) and not isinstance(num_returns, bool) and num_returns < 0:
        raise ValueError(f"num_returns must be >= 0, but got {num_returns}.")
    if num_returns in ("streaming", "dynamic"):
        if is_generator is False:
            raise ValueError(f"num_returns='{num_returns}' can only be used with generator functions (functions "
                             f"that use 'yield'). The decorated function is not a generator function.")
        if streams:
            return
        raise NotImplementedError(f"{where}: num_returns={num_returns!r} (generator tasks and methods that stream "
                                  f"their results) is not supported by mpirt yet; give a whole number of returns "
                                  f"(the generator's values are then the results)")


def validate_actor_options(options, in_options):
    """Check actor options as Ray does; returns them with ``runtime_env`` resolved.
    ``in_options`` for ``.options()`` (which cannot set concurrency groups)."""
    _validate(options, ACTOR_OPTIONS, "actors")
    if in_options and "concurrency_groups" in options:
        raise ValueError("Setting 'concurrency_groups' is not supported in '.options()'.")
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError("The actor name must be specified to use `get_if_exists`.")
    return _resolved(options, ".options()" if in_options else "@remote")


def placement_constraint(options, shape, rt, what):
    """Where ``scheduling_strategy`` (or Ray's older ``placement_group`` options, or a parent that
    captures its child tasks) puts work of ``shape``: ``(constraint, placement)`` for the
    submitter and the head, ``(None, None)`` for mpirt's own choice. Checked as Ray checks them
    when work is submitted: an unknown strategy, a bundle index out of range, a shape no bundle
    holds, a hard affinity to a node that is not there.

    ``constraint`` is ``("pg", group id, bundle index)``, ``("node", node, soft)`` or
    ``("spread",)``; ``placement`` is ``(group id, bundle index, capture child tasks)``, what the
    work itself knows of its group (``get_current_placement_group``)."""
    strategy = options.get("scheduling_strategy")
    if isinstance(strategy, str):
        if strategy not in ("DEFAULT", "SPREAD"):
            raise ValueError(f'Invalid scheduling_strategy value {strategy}. Valid values are ["DEFAULT" | "SPREAD" '
                             '| PlacementGroupSchedulingStrategy | NodeAffinitySchedulingStrategy]')
        return (("spread",), None) if strategy == "SPREAD" else (None, None)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        nodes = {node_id_hex(rt.session, node): node for node in sorted({rt.cluster.node_of[rank]
                                                                          for rank in rt.cluster.worker_ranks})}
        node = nodes.get(strategy.node_id)
        if node is None:
            if strategy.soft:
                return None, None
            raise ValueError(f"NodeAffinitySchedulingStrategy(node_id={strategy.node_id!r}, soft=False): there is "
                             f"no such node (the nodes are {list(nodes)}); the work could never be placed")
        return ("node", node, bool(strategy.soft)), None
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        index = strategy.placement_group_bundle_index
        capture = strategy.placement_group_capture_child_tasks
    else:
        group = options.get("placement_group", "default")
        index = options.get("placement_group_bundle_index", -1)
        capture = options.get("placement_group_capture_child_tasks")
    parent = current_placement()
    if capture is None:
        capture = bool(parent and parent[2])
    if group == "default":
        group = PlacementGroup(PlacementGroupID(parent[0])) if capture and parent else None
    if group is None or (isinstance(group, PlacementGroup) and group.is_empty):
        if index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
        return None, None
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"{what}: placement_group must be a PlacementGroup (from placement_group()), got {group!r}")
    bundles = group.bundle_specs
    if isinstance(index, bool) or not isinstance(index, int) or index >= len(bundles) or index < -1:
        raise ValueError(f"placement group bundle index {index} is invalid. Valid placement group indexes: "
                         f"0-{len(bundles)}")
    candidates = bundles if index == -1 else [bundles[index]]
    if not any(all(bundle.get(name, 0.0) + 1e-9 >= amount for name, amount in shape.items())
               for bundle in candidates):
        raise ValueError(f"Cannot schedule {what} with the placement group because the resource request "
                         f"{shape} cannot fit into any bundles for the placement group, {bundles}.")
    group_id = group.id.value
    return ("pg", group_id, index), (group_id, index, bool(capture))


# Keywords of @method and of ActorMethod.options() (Ray's; the last ones are accepted only).
METHOD_DECORATOR_OPTIONS = ("num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
                            "_generator_backpressure_num_objects", "_num_objects_per_yield", "enable_task_events",
                            "tensor_transport")
METHOD_CALL_OPTIONS = ("num_returns", "name", "concurrency_group", "max_task_retries", "retry_exceptions",
                       "enable_task_events", "_metadata", "tensor_transport", "_labels",
                       "_generator_backpressure_num_objects")


def validate_method_option(key, value, where, is_generator=None):
    """One keyword of ``@method`` (``is_generator``: whether the method yields) or of
    ``ActorMethod.options()`` (not known there)."""
    if key == "num_returns":
        if value in ("streaming", "dynamic"):
            check_num_returns_for(is_generator, value, where)
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: num_returns must be a non-negative integer, got {value!r}")
        check_num_returns_for(is_generator, value, where)
    elif key == "max_task_retries":
        if value is not None:
            ACTOR_OPTIONS["max_task_retries"].validate(key, value)
    elif key == "retry_exceptions":
        if not isinstance(value, (bool, list, tuple)):
            raise TypeError(f"{where}: retry_exceptions must be either a boolean or a list of exceptions, "
                            f"got {value!r}")
        if _check_retry_exceptions(value):
            raise ValueError(f"{where}: retry_exceptions must be either a boolean or a list of exceptions, "
                             f"got {value!r}")
    elif key in ("concurrency_group", "name"):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{where}: {key} must be a string, got {value!r}")
    elif key == "enable_task_events":
        Option(bool).validate(key, value)
    elif key in ("_metadata", "_labels"):
        Option((dict, _NONE)).validate(key, value)
    elif key in ("_generator_backpressure_num_objects", "_num_objects_per_yield"):
        TASK_OPTIONS[key].validate(key, value)
