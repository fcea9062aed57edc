"""Task and actor-call arguments: packed into one pickle, top-level refs passed by id, large
arguments (and GPU arrays) put into the store first as the codec's policy says (``codec.py``).
"""
from ..store import device
from .codec import (LargeDeviceArray, dumps, dumps_with_devices, holds_large_device_array, loads,
                    refuse_large_device_arrays)
from .object_ref import ObjectRef, count_found


class ArgRef:
    """Placeholder for a top-level ObjectRef argument: the task receives the value."""

    __slots__ = ("object_id",)

    def __init__(self, object_id):
        self.object_id = object_id

    def __reduce__(self):
        return (ArgRef, (self.object_id,))


def pack_arguments(function_name, bound_args, args, kwargs, put=None, inline_limit=None):
    """Serialize ``(args, kwargs)`` with top-level refs replaced by ArgRef.

    Returns ``(blob, dependency_refs)``; ``blob`` is None when there are no arguments. When the blob would
    exceed ``inline_limit``, each argument bigger than that is ``put`` into the object store first and
    passed by reference, as Ray does; so is each argument holding a GPU array bigger than
    ``INLINE_THRESHOLD`` (it stays on its GPU), whatever the blob's size. Raises TypeError naming the
    argument that cannot be serialized.
    """
    deps = []

    def swap(value):
        if isinstance(value, ObjectRef):
            count_found(value)    # its value will be kept here until the task is sent
            deps.append(value)
            return ArgRef(value.id)
        return value

    if not args and not kwargs:
        return None, deps
    packed_args = tuple(swap(a) for a in args)
    packed_kwargs = {k: swap(v) for k, v in kwargs.items()}
    has_large_device_array = False
    try:
        on_device_array = device.reduce_small if put is None else refuse_large_device_arrays
        blob = dumps_with_devices((packed_args, packed_kwargs), on_device_array)
    except LargeDeviceArray:
        blob, has_large_device_array = None, True
    except Exception as exc:
        raise _argument_error(function_name, bound_args, exc) from exc
    if not has_large_device_array and (put is None or inline_limit is None or len(blob) <= inline_limit):
        return blob, deps

    def by_reference(value):
        # Large GPU arrays always go through the store: sealed on their device, not copied to the host.
        if isinstance(value, ObjectRef):
            return value
        if has_large_device_array and holds_large_device_array(value):
            return put(value)
        if inline_limit is not None and len(dumps(value)) > inline_limit:
            return put(value)
        return value

    return pack_arguments(function_name, bound_args, tuple(by_reference(a) for a in args),
                          {k: by_reference(v) for k, v in kwargs.items()})


def _argument_error(function_name, bound_args, exc):
    for name, value in (bound_args.arguments.items() if bound_args is not None else []):
        try:
            dumps(value)
        except Exception as inner:
            return TypeError(f"Could not serialize argument '{name}' of {function_name} "
                             f"(type {type(value).__name__}): {inner}")
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
