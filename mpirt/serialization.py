"""Serialization of values, task arguments and functions (cloudpickle, protocol 5)."""
import pickle

import cloudpickle

from .object_ref import ObjectRef


def dumps(value):
    return cloudpickle.dumps(value, protocol=5)


loads = pickle.loads


class ArgRef:
    """Placeholder for a top-level ObjectRef argument: the task receives the value."""

    __slots__ = ("object_id",)

    def __init__(self, object_id):
        self.object_id = object_id

    def __reduce__(self):
        return (ArgRef, (self.object_id,))


def pack_arguments(function_name, bound_args, args, kwargs):
    """Serialize ``(args, kwargs)`` with top-level refs replaced by ArgRef.

    Returns ``(blob, dependency_refs)``; ``blob`` is None when there are no arguments.
    Raises TypeError naming the argument that cannot be serialized.
    """
    deps = []

    def swap(value):
        if isinstance(value, ObjectRef):
            deps.append(value)
            return ArgRef(value.id)
        return value

    if not args and not kwargs:
        return None, deps
    args = tuple(swap(a) for a in args)
    kwargs = {k: swap(v) for k, v in kwargs.items()}
    try:
        blob = dumps((args, kwargs))
    except Exception as exc:
        raise _argument_error(function_name, bound_args, exc) from exc
    return blob, deps


def _argument_error(function_name, bound_args, exc):
    names = bound_args.arguments.items() if bound_args is not None else []
    for name, value in names:
        try:
            dumps(value)
        except Exception as inner:
            return TypeError(
                f"Could not serialize argument '{name}' of {function_name} "
                f"(type {type(value).__name__}): {inner}"
            )
    return TypeError(f"Could not serialize the arguments of {function_name}: {exc}")


def unpack_arguments(blob, resolve):
    """Inverse of ``pack_arguments``: each ArgRef becomes ``resolve(object_id)``."""
    if blob is None:
        return (), {}
    args, kwargs = loads(blob)

    def fill(value):
        if isinstance(value, ArgRef):
            return resolve(value.object_id)
        return value

    return tuple(fill(a) for a in args), {k: fill(v) for k, v in kwargs.items()}
