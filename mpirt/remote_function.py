"""``@mpirt.remote`` on functions: options, argument binding, submission.

Options are Ray's, checked by ``mpirt.options``; ``runtime_env`` is merged onto the
submitting task's (or the job's) and travels with the task (``mpirt.core.runtime_env``).
"""
import functools
import inspect
import itertools
import os

from .actor import ActorHandle, _retry_spec, _signature
from .core import runtime_env
from .core.actor_host import REQUIRED_KINDS
from .core.call_context import current_placement
from .core.codec import INLINE_THRESHOLD, dumps
from .core.current import runtime_for_call
from .core.object_ref import returned
from .core.serialization import pack_arguments
from .core.signals import holds_signals
from .core.submitter import FunctionDescriptor
from .options import DEFAULT_MAX_RETRIES, TASK_DEFAULTS, WithOptions, placement_constraint, validate_task_options
from .scheduler.resources import make_shape, shape_key

_function_ids = itertools.count(1)
# This process's id, kept here: os.getpid() is a system call, and asking it at every submission was ~6 % of a
# driver's time submitting tasks. A forked child updates it.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


class RemoteFunction:
    """A function that runs as a task: call ``f.remote(...)`` to get ObjectRefs."""

    def __init__(self, function, options):
        if inspect.iscoroutinefunction(function):
            raise ValueError("'async def' should not be used for remote tasks. You can wrap the async function with "
                             "`asyncio.run(f())`. See more at:https://docs.ray.io/en/latest/ray-core/actors/"
                             "async_api.html ")
        self._is_generator = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)
        options = validate_task_options(options, in_options=False, is_generator=self._is_generator,
                                        where=f"@remote on {function.__qualname__}")
        self._function = function
        self._options = {**TASK_DEFAULTS, **options}
        self._signature = _signature(function)
        # a call without arguments binds only where the function requires some (it then fails, naming them)
        self._binds_empty_call = self._signature is not None and any(
            p.default is inspect.Parameter.empty and p.kind in REQUIRED_KINDS
            for p in self._signature.parameters.values())
        self._descriptor = None
        self._descriptor_pid = None
        self._default_shape = None
        functools.update_wrapper(self, function)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Remote function {self._function.__qualname__} cannot be called directly; "
                        f"use {self._function.__name__}.remote(...)")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def options(self, **options):
        """These options for the calls made through the result, over the decorator's ones. ``runtime_env``
        replaces the decorator's (None keeps it); ``max_calls`` cannot be set."""
        where = f"{self._function.__qualname__}.options()"
        if "_num_objects_per_yield" in options and \
                options["_num_objects_per_yield"] != (self._options.get("_num_objects_per_yield") or 1):
            raise ValueError("_num_objects_per_yield cannot be overridden per task call. "
                             "Use @ray.remote(_num_objects_per_yield=...) instead.")
        options = {key: value for key, value in options.items() if key != "runtime_env" or value is not None}
        defaults = {key: value for key, value in self._options.items() if key != "max_calls"}
        options = validate_task_options(options, in_options=True,
                                        is_generator=self._is_generator if "num_returns" in options else None,
                                        where=where)
        return WithOptions(self._submit, {**defaults, **options})

    def _descriptor_for_process(self):
        # Pickled once per process (and again after fork) on first submission.
        pid = _pid[0]
        if self._descriptor is None or self._descriptor_pid != pid:
            function = self._function
            self._descriptor = FunctionDescriptor((pid, next(_function_ids)), dumps(function), function.__qualname__)
            self._descriptor_pid = pid
        return self._descriptor

    def _shape(self, options):
        """The resource shape and its key; computed once for the decorator's own options."""
        if options is self._options and self._default_shape is not None:
            return self._default_shape
        shape = make_shape(options["num_cpus"], options["num_gpus"] or 0, options["resources"])
        result = (shape, shape_key(shape))
        if options is self._options:
            self._default_shape = result
        return result

    @holds_signals
    def _submit(self, args, kwargs, options):
        rt = runtime_for_call()
        name = options["name"] or self._function.__name__
        num_returns = options["num_returns"]
        if num_returns is None:   # Ray's default: a generator function streams
            num_returns = "streaming" if self._is_generator else 1
        stream = None
        if num_returns in ("streaming", "dynamic"):
            if inspect.isasyncgenfunction(self._function):
                raise ValueError(f"{name}.remote(): {self._function.__qualname__} is an async generator; tasks run "
                                 f"plain generators (async ones run as actor methods)")
            stream = options.get("_generator_backpressure_num_objects") or 0
        bound = None
        if self._signature is not None and (args or kwargs or self._binds_empty_call):
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}.remote(): {exc}") from None
        shape, key = self._shape(options)
        rt.cluster.check_feasible(shape, what=f"task {name}", key=key)
        constraint = placement = None
        if options["scheduling_strategy"] is not None or "placement_group" in options \
                or "placement_group_bundle_index" in options or current_placement():
            constraint, placement = placement_constraint(options, shape, rt, f"task {name}")
            if constraint is not None:
                key = (key, constraint)
        max_retries = options["max_retries"]
        environment = runtime_env.for_submission(rt.config.get("runtime_env"), options["runtime_env"])
        args_blob, dep_refs = pack_arguments(name, bound, args, kwargs, rt.put, INLINE_THRESHOLD)
        retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        near_actor = _first_actor_argument(args, kwargs)
        if stream is None:
            refs = rt.submitter.submit(self._descriptor_for_process(), args_blob, dep_refs, num_returns, key, shape,
                                       retries, _retry_spec(options["retry_exceptions"]), name, near_actor,
                                       environment, constraint, placement)
            return returned(refs, num_returns)
        with rt.lock:   # the stream is open before its first item can be handled
            refs = rt.submitter.submit(self._descriptor_for_process(), args_blob, dep_refs, 1, key, shape, retries,
                                       _retry_spec(options["retry_exceptions"]), name, near_actor, environment,
                                       constraint, placement, stream)
            generator = rt.streams.open_stream(refs[0], stream)
            return generator if num_returns == "streaming" else rt.streams.dynamic(generator)


def _first_actor_argument(args, kwargs):
    """The id of the first actor handed to the task as an argument (the task will likely call it: its rank is
    a good place to run), or None."""
    for value in itertools.chain(args, kwargs.values()):
        if type(value) is ActorHandle:
            return value._actor_id
    return None
