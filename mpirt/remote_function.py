"""``@mpirt.remote`` on functions: options, argument binding, submission."""
import functools
import inspect
import itertools
import os

from .launch import runtime_for_call
from .scheduler.resources import make_shape, shape_key
from .serialization import dumps, pack_arguments
from .signals import holds_signals
from .store.manager import INLINE_THRESHOLD
from .submitter import FunctionDescriptor

TASK_OPTIONS = {
    "num_cpus": 1,
    "num_gpus": 0,
    "resources": None,
    "num_returns": 1,
    "max_retries": 3,
    "retry_exceptions": False,
    "name": None,
}
_function_ids = itertools.count(1)


def validate_task_options(options, where):
    unknown = set(options) - set(TASK_OPTIONS)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {sorted(unknown)}; valid options: {sorted(TASK_OPTIONS)}")
    validate_resource_options(options, where)
    num_returns = options.get("num_returns", 1)
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"{where}: num_returns must be an integer >= 0, got {num_returns!r}")
    max_retries = options.get("max_retries", 3)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < -1:
        raise ValueError(f"{where}: max_retries must be an integer >= -1 (-1: retry forever), got {max_retries!r}")
    retry = options.get("retry_exceptions", False)
    if not isinstance(retry, bool):
        if not isinstance(retry, (list, tuple)) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in retry
        ):
            raise ValueError(f"{where}: retry_exceptions must be a bool or a list of exception classes, got {retry!r}")
    name = options.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{where}: name must be a string, got {name!r}")


def validate_resource_options(options, where):
    try:
        make_shape(options.get("num_cpus") or 0, options.get("num_gpus", 0), options.get("resources"))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class WithOptions:
    """What ``.options(...)`` returns: ``.remote(...)`` with those options applied."""

    __slots__ = ("_submit", "_options")

    def __init__(self, submit, options):
        self._submit = submit
        self._options = options

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)


class RemoteFunction:
    """A function that runs as a task: call ``f.remote(...)`` to get ObjectRefs."""

    def __init__(self, function, options):
        validate_task_options(options, f"@remote on {function.__qualname__}")
        self._function = function
        self._options = {**TASK_OPTIONS, **options}
        self._signature = _signature(function)
        self._descriptor = None
        self._descriptor_pid = None
        self._default_shape = None
        functools.update_wrapper(self, function)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Remote function {self._function.__qualname__} cannot be called directly; "
            f"use {self._function.__name__}.remote(...)"
        )

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def options(self, **options):
        validate_task_options(options, f"{self._function.__qualname__}.options()")
        return WithOptions(self._submit, {**self._options, **options})

    def _descriptor_for_process(self):
        # Pickled once per process (and again after fork) on first submission.
        if self._descriptor is None or self._descriptor_pid != os.getpid():
            function = self._function
            self._descriptor = FunctionDescriptor(
                (os.getpid(), next(_function_ids)), dumps(function), function.__qualname__
            )
            self._descriptor_pid = os.getpid()
        return self._descriptor

    def _shape(self, options):
        """The resource shape and its key; computed once for the decorator's own options."""
        if options is self._options and self._default_shape is not None:
            return self._default_shape
        shape = make_shape(options["num_cpus"], options["num_gpus"], options["resources"])
        result = (shape, shape_key(shape))
        if options is self._options:
            self._default_shape = result
        return result

    @holds_signals
    def _submit(self, args, kwargs, options):
        rt = runtime_for_call()
        name = options["name"] or self._function.__name__
        bound = None
        if self._signature is not None:
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}.remote(): {exc}") from None
        shape, key = self._shape(options)
        rt.cluster.check_feasible(shape, what=f"task {name}", key=key)
        args_blob, dep_refs = pack_arguments(name, bound, args, kwargs, _put, INLINE_THRESHOLD)
        refs = rt.submitter.submit(
            self._descriptor_for_process(), args_blob, dep_refs, options["num_returns"], key, shape,
            options["max_retries"], _retry_spec(options["retry_exceptions"]), name, _first_actor_argument(args, kwargs),
        )
        return returned(refs, options["num_returns"])


def returned(refs, num_returns):
    """What ``.remote()`` gives back, as in Ray: one ref, None, or a list."""
    if num_returns == 1:
        return refs[0]
    if num_returns == 0:
        return None
    return refs


def _first_actor_argument(args, kwargs):
    """The id of the first actor handed to the task as an argument (the task will likely call it:
    its rank is a good place to run), or None."""
    from .actor import ActorHandle  # actor.py imports this module

    for value in itertools.chain(args, kwargs.values()):
        if type(value) is ActorHandle:
            return value._actor_id
    return None


def _put(value):
    from .api import put  # api imports this module

    return put(value)


def _retry_spec(retry_exceptions):
    # Exception classes may live in __main__, which workers cannot import: pickle them by value.
    if isinstance(retry_exceptions, (list, tuple)):
        return dumps(tuple(retry_exceptions))
    return retry_exceptions


def _signature(function):
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none
        return None
