"""``@mpirt.remote`` on classes: actor classes, handles and methods."""
import inspect

from .actor_caller import handle_events
from .actor_host import ActorExit
from .api import put
from .launch import runtime_for_call
from .remote_function import WithOptions, returned, validate_resource_options
from .scheduler.resources import make_shape
from .store.manager import INLINE_THRESHOLD
from .object_ref import pickle_event
from .serialization import dumps, pack_arguments
from .signals import holds_signals

ACTOR_OPTIONS = {
    "num_cpus": None,
    "num_gpus": 0,
    "resources": None,
    "max_concurrency": None,
    "max_restarts": 0,
    "max_task_retries": 0,
    "name": None,
    "namespace": None,
    "lifetime": None,
    "get_if_exists": False,
}


def method(*, num_returns=1):
    """Decorate an actor method to set its default ``num_returns``."""
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"@method(num_returns=...) must be an integer >= 0, got {num_returns!r}")

    def decorate(function):
        function.__mpirt_num_returns__ = num_returns
        return function

    return decorate


def exit_actor():
    """End the actor this method runs in; later calls raise ActorDiedError."""
    from .runtime import task_context

    if getattr(task_context, "label", None) is None:
        raise RuntimeError("exit_actor() can only be called inside an actor method")
    raise ActorExit()


def validate_actor_options(options, where):
    unknown = set(options) - set(ACTOR_OPTIONS)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {sorted(unknown)}; valid options: {sorted(ACTOR_OPTIONS)}")
    validate_resource_options(options, where)
    concurrency = options.get("max_concurrency")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"{where}: max_concurrency must be a positive integer, got {concurrency!r}")
    for key in ("max_restarts", "max_task_retries"):
        value = options.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise ValueError(f"{where}: {key} must be an integer >= -1, got {value!r}")
    for key in ("name", "namespace"):
        value = options.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
    if options.get("lifetime") not in (None, "detached", "non_detached"):
        raise ValueError(f"{where}: lifetime must be None, 'detached' or 'non_detached', got {options['lifetime']!r}")
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError(f"{where}: get_if_exists=True needs a name")


class ActorClass:
    """A class whose instances live on worker ranks: ``Cls.remote(...)`` returns an ActorHandle."""

    def __init__(self, cls, options):
        validate_actor_options(options, f"@remote on {cls.__qualname__}")
        self._cls = cls
        self._options = {**ACTOR_OPTIONS, **options}
        self._methods = {}
        self._signatures = {}
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("__") and name != "__call__":
                continue
            self._methods[name] = getattr(member, "__mpirt_num_returns__", 1)
            self._signatures[name] = _method_signature(member)
        self._init_signature = _method_signature(cls.__init__) if "__init__" in vars(cls) else None
        self._blob = None
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor class {self._cls.__qualname__} cannot be instantiated directly; "
                        f"use {self._cls.__name__}.remote(...)")

    def remote(self, *args, **kwargs):
        return self._create(args, kwargs, self._options)

    def options(self, **options):
        validate_actor_options(options, f"{self._cls.__qualname__}.options()")
        return WithOptions(self._create, {**self._options, **options})

    @holds_signals
    def _create(self, args, kwargs, options):
        rt = runtime_for_call()
        name = self._cls.__name__
        bound = _bind(self._init_signature, f"{name}.remote()", args, kwargs)
        explicit = options["num_cpus"] is not None or options["num_gpus"] or options["resources"]
        held = make_shape(options["num_cpus"] or 0, options["num_gpus"], options["resources"])
        # Placement needs a CPU free unless the actor asked for resources; it then holds only what it asked.
        placement = held if explicit else {**held, "CPU": 1.0}
        rt.cluster.check_feasible(placement, what=f"actor {name}")
        args_blob, dep_refs = pack_arguments(f"{name}.__init__", bound, args, kwargs, put, INLINE_THRESHOLD)
        if self._blob is None:
            self._blob = dumps(self._cls)
        is_async = any(inspect.iscoroutinefunction(m) for _, m in inspect.getmembers(self._cls, inspect.isfunction))
        concurrency = options["max_concurrency"] or (1000 if is_async else 1)
        actor_id = rt.next_id()
        # Named and detached actors live until killed or the session ends; others end
        # when no handle to them is left anywhere.
        tracked = not options["name"] and options["lifetime"] != "detached"
        if options["name"]:
            namespace = options["namespace"] or rt.config.get("namespace") or "default"
            state = (actor_id, name, self._methods, False)
            existing = rt.query(1, "actor_name_query", namespace, options["name"], state)
            if existing is not None:
                if options["get_if_exists"]:
                    return ActorHandle(*existing)
                raise ValueError(f"an actor named {options['name']!r} already exists in namespace {namespace!r}")
        rt.actors.create(actor_id, self._blob, args_blob, dep_refs, placement, held,
                         {"max_concurrency": concurrency, "num_gpus": options["num_gpus"] or 0.0}, tracked,
                         options["max_restarts"], options["max_task_retries"])
        return ActorHandle(actor_id, name, self._methods, tracked, self._signatures)


class ActorHandle:
    """A reference to an actor; pass it to tasks and other actors freely."""

    def __init__(self, actor_id, class_name, methods, tracked, signatures=None, event="created"):
        self._actor_id = actor_id
        self._class_name = class_name
        self._method_returns = dict(methods)
        self._tracked = tracked  # counted, so the actor ends when no handle is left
        self._signatures = signatures or {}
        if tracked:
            handle_events.append((actor_id, event))

    @classmethod
    def _arrive(cls, actor_id, class_name, methods, tracked):
        return cls(actor_id, class_name, methods, tracked, event="arrived")

    def __reduce__(self):
        if self._tracked:
            handle_events.append((self._actor_id, pickle_event()))
        return (ActorHandle._arrive, (self._actor_id, self._class_name, self._method_returns, self._tracked))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._method_returns:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name, self._method_returns[name])

    def __del__(self):
        if getattr(self, "_tracked", False):
            try:
                handle_events.append((self._actor_id, "deleted"))
            except Exception:  # interpreter shutdown
                pass

    def __repr__(self):
        return f"ActorHandle({self._class_name}, {self._actor_id:028x})"

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)


class ActorMethod:
    """``handle.method``: call ``.remote(...)`` to run it on the actor."""

    __slots__ = ("_handle", "_name", "_num_returns")

    def __init__(self, handle, name, num_returns):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor method {self._handle._class_name}.{self._name} cannot be called directly; "
                        f"use .{self._name}.remote(...)")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._num_returns)

    def options(self, num_returns=None, **unknown):
        if unknown:
            raise ValueError(f"actor method options: unknown option(s) {sorted(unknown)}; valid: ['num_returns']")
        count = self._num_returns if num_returns is None else num_returns
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"num_returns must be an integer >= 0, got {count!r}")
        return WithOptions(self._submit, count)

    @holds_signals
    def _submit(self, args, kwargs, num_returns):
        rt = runtime_for_call()
        handle = self._handle
        signature = handle._signatures.get(self._name)
        if args or kwargs or (signature is not None and _required_parameters(signature)):
            label = f"{handle._class_name}.{self._name}"
            bound = _bind(signature, f"{label}.remote()", args, kwargs)
            args_blob, dep_refs = pack_arguments(label, bound, args, kwargs, put, INLINE_THRESHOLD)
        else:  # the common call without arguments: nothing to bind or pickle
            args_blob, dep_refs = None, ()
        return returned(rt.actors.call(handle._actor_id, self._name, args_blob, dep_refs, num_returns), num_returns)


def _method_signature(function):
    """The signature without ``self``, for binding arguments at ``.remote()``."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())[1:]
    method_signature = _MethodSignature(parameters, return_annotation=signature.return_annotation)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    method_signature.required = any(p.default is inspect.Parameter.empty and p.kind in kinds for p in parameters)
    return method_signature


def _bind(signature, where, args, kwargs):
    if signature is None:
        return None
    if not args and not kwargs and not _required_parameters(signature):
        return None  # the common no-argument call needs no binding (hashing a Signature is slow)
    try:
        return signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from None


class _MethodSignature(inspect.Signature):
    """A signature that knows, once, whether it has parameters without defaults."""

    __slots__ = ("required",)


def _required_parameters(signature):
    return getattr(signature, "required", True)


@holds_signals
def get_actor(name, namespace=None):
    """The handle of the actor created with ``options(name=name)``; ValueError if there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty name, got {name!r}")
    rt = runtime_for_call()
    namespace = namespace or rt.config.get("namespace") or "default"
    state = rt.query(1, "actor_name_query", namespace, name, None)
    if state is None:
        raise ValueError(f"no actor named {name!r} in namespace {namespace!r}")
    return ActorHandle(*state)


@holds_signals
def kill(actor, *, no_restart=True):
    """End an actor now; its pending and later calls raise ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() takes an actor handle, got {type(actor).__name__}")
    runtime_for_call().actors.kill(actor._actor_id)
