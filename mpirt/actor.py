"""``@mpirt.remote`` on classes: actor classes, handles and methods.

Ray's rules hold: a handle's methods are the class's (looked up on the class, so an instance attribute of
the same name does not hide one), class attributes, classmethods and staticmethods are reachable through the
actor class object, an actor class cannot be instantiated directly nor subclassed, and options are checked as
Ray checks them (``mpirt.options``, which also lists the options mpirt takes without acting on them).
"""
from __future__ import annotations

import inspect

from . import exceptions
from .core import runtime_env, task_slots
from .core.actor_caller import handle_events
from .core.actor_host import SPECIAL_METHODS, ActorExit, method_table
from .core.call_context import task_context
from .core.codec import INLINE_THRESHOLD, dumps, loads
from .core.current import runtime_for_call
from .core.object_ref import pickle_event, returned
from .core.protocol import HEAD_RANK
from .core.serialization import pack_arguments
from .core.signals import holds_signals
from .core.submitter import check_pickled_size
from .options import (ACTOR_DEFAULTS, METHOD_CALL_OPTIONS, METHOD_DECORATOR_OPTIONS, WithOptions, placement_constraint,
                      validate_actor_options, validate_method_option)
from .scheduler.resources import make_shape

ActorAlreadyExistsError = exceptions.ActorAlreadyExistsError
PendingCallsLimitExceeded = exceptions.PendingCallsLimitExceeded


class ActorClassInheritanceException(TypeError):
    """Raised, as in Ray, by ``class B(A)`` where ``A`` is an actor class."""


def method(*args, **options):
    """Set a method's defaults: ``@method(num_returns=2, concurrency_group="io", max_task_retries=3,
    retry_exceptions=[IOError])``. Bare ``@method`` leaves the method as it is, as in Ray."""
    if len(args) == 1 and not options and callable(args[0]):
        return args[0]
    if args:
        raise TypeError("@method takes keyword options only, e.g. @method(num_returns=2)")
    for key, value in options.items():
        if key not in METHOD_DECORATOR_OPTIONS:
            # Ray asserts here; mpirt raises the same exception type with Ray's words.
            raise AssertionError(f"Unexpected keyword argument to @ray.method: {key!r}. The supported keyword "
                                 f"arguments are {list(METHOD_DECORATOR_OPTIONS)}")
        if key != "num_returns" or value not in ("streaming", "dynamic"):
            validate_method_option(key, value, "@method")

    def decorate(function):
        target = getattr(function, "__func__", function)   # staticmethod/classmethod: their function
        if options.get("num_returns") in ("streaming", "dynamic"):
            yields = inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)
            validate_method_option("num_returns", options["num_returns"], "@method", is_generator=yields)
        target.__mpirt_method_options__ = {**getattr(target, "__mpirt_method_options__", {}), **options}
        return function

    return decorate


def exit_actor():
    """End the actor this method runs in; later calls raise ActorDiedError."""
    if task_context.label is None:
        raise RuntimeError("exit_actor() can only be called inside an actor method")
    raise ActorExit()


class _Meta:
    """What a handle knows of its actor's class: its name, its methods (``method_table``), its concurrency
    groups and ``max_pending_calls``. Travels with every handle."""

    __slots__ = ("class_name", "methods", "groups", "max_pending_calls", "blob")

    def __init__(self, class_name, methods, groups, max_pending_calls):
        self.blob = None   # this, pickled: what a handle's pickle carries
        self.class_name = class_name
        self.methods = methods
        self.groups = groups
        self.max_pending_calls = max_pending_calls

    def __reduce__(self):
        return (_Meta, (self.class_name, self.methods, self.groups, self.max_pending_calls))


_metas_by_blob: dict = {}   # pickled _Meta -> _Meta, so handles arriving over and over share one


def _meta_of(blob):
    meta = _metas_by_blob.get(blob)
    if meta is None:
        meta = _metas_by_blob[blob] = loads(blob)
        meta.blob = blob
    return meta


class ActorClass:
    """A class whose instances live on worker ranks: ``Cls.remote(...)`` returns an ActorHandle. The class's
    attributes, classmethods and staticmethods (its bases' too) are reachable here: ``Cls.X``, ``Cls.helper()``."""

    def __init__(self, cls, options):
        options = validate_actor_options(options, in_options=False)
        self._cls = cls
        self._options = {**ACTOR_DEFAULTS, **options}
        self._methods = method_table(cls)
        self._init_signature = _signature(cls)
        self._blob = None
        self._metas = {}
        self.__doc__ = cls.__doc__

    def __getattr__(self, name):
        cls = self.__dict__.get("_cls")
        if cls is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        try:
            return getattr(cls, name)
        except AttributeError:
            raise AttributeError(f"'ActorClass({cls.__name__})' object has no attribute '{name}'") from None

    def __getstate__(self):
        return {**self.__dict__, "_blob": None, "_metas": {}}

    def __mro_entries__(self, bases):
        raise ActorClassInheritanceException(
            f"Attempted to define a subclass of actor class '{self._cls.__name__}'. Inheriting from actor classes is "
            "not currently supported. You can instead inherit from a non-actor base class and make the derived class "
            "an actor class (with @ray.remote).")

    def __call__(self, *args, **kwargs):
        name = self._cls.__name__
        raise TypeError(f"Actors cannot be instantiated directly. Instead of '{name}()', use '{name}.remote()'.")

    def __repr__(self):
        return f"ActorClass({self._cls.__name__})"

    def remote(self, *args, **kwargs):
        return self._create(args, kwargs, self._options)

    def options(self, **options):
        """These options for the actor created through the result, over the decorator's ones (``runtime_env``
        replaces the decorator's; None keeps it)."""
        options = {key: value for key, value in options.items() if key != "runtime_env" or value is not None}
        options = validate_actor_options(options, in_options=True)
        return WithOptions(self._create, {**self._options, **options})

    def _meta(self, max_pending_calls):
        meta = self._metas.get(max_pending_calls)
        if meta is None:
            groups = tuple(self._options["concurrency_groups"] or ())
            meta = self._metas[max_pending_calls] = _Meta(self._cls.__name__, self._methods, groups, max_pending_calls)
        return meta

    @holds_signals
    def _create(self, args, kwargs, options):
        rt = runtime_for_call()
        name = self._cls.__name__
        _check_at_creation(self, options, rt)
        bound = _bind(self._init_signature, f"{name}.remote()", args, kwargs)
        explicit = options["num_cpus"] is not None or options["num_gpus"] or options["resources"]
        held = make_shape(options["num_cpus"] or 0, options["num_gpus"] or 0, options["resources"])
        # Placement needs a CPU free unless the actor asked for resources; it then holds only what it asked.
        placement = held if explicit else {**held, "CPU": 1.0}
        rt.cluster.check_feasible(placement, what=f"actor {name}")
        constraint, group_placement = placement_constraint(options, placement, rt, f"actor {name}")
        args_blob, dep_refs = pack_arguments(f"{name}.__init__", bound, args, kwargs, rt.put, INLINE_THRESHOLD)
        if self._blob is None:
            blob = dumps(self._cls)
            # Ray's limits (a warning over 10 MB, an error from 100 MB); the class travels once per actor
            # created, in its creation message, never with calls.
            check_pickled_size(blob, "actor", name)
            self._blob = blob
        is_async = any(entry.is_async for entry in self._methods.values())
        max_pending = options["max_pending_calls"]
        meta = self._meta(-1 if max_pending is None else max_pending)
        actor_id = rt.next_id()
        # Named and detached actors live until killed or the session ends; others end when no handle to
        # them is left anywhere.
        tracked = not options["name"] and options["lifetime"] != "detached"
        if options["name"]:
            namespace = options["namespace"] or rt.config.get("namespace") or "default"
            existing = rt.queries.ask(HEAD_RANK, "actor_name_query", namespace, options["name"],
                                      (actor_id, _meta_blob_of(meta)))
            if existing is not None:
                if options["get_if_exists"]:
                    return ActorHandle(existing[0], _meta_of(existing[1]), False)
                raise ActorAlreadyExistsError(
                    f"The name {options['name']} (namespace={options['namespace']}) is already taken. Please use a "
                    f"different name or get the existing actor using ray.get_actor('{options['name']}', "
                    f"namespace='{namespace}')")
        environment = runtime_env.thaw(runtime_env.for_submission(rt.config.get("runtime_env"),
                                                                  options["runtime_env"])) or {}
        job_vars = (rt.config.get("runtime_env") or {}).get("env_vars") or {}
        host_options = {
            "max_concurrency": options["max_concurrency"] or (1000 if is_async else 1),
            "num_gpus": options["num_gpus"] or 0.0,
            "max_task_retries": options["max_task_retries"] or 0,
            "concurrency_groups": dict(options["concurrency_groups"] or {}),
            # The job's runtime_env is in place on every worker rank: the host gets what differs (it sets
            # env_vars for its whole rank), and "runtime_env", the actor's whole one (runtime_env.resolve's form).
            "env_vars": {name: value for name, value in (environment.get("env_vars") or {}).items()
                         if job_vars.get(name) != value},
            "runtime_env": environment or None,
            "name": options["name"] or "",
            "class_name": name,   # for the state API at the owner (list_actors)
            "detached": options["lifetime"] == "detached",   # outlives its owner (actor_host._on_rank_dead)
            "placement": group_placement,   # (group id, bundle index, capture child tasks), or None
        }
        rt.actors.create(actor_id, self._blob, args_blob, dep_refs, placement, held, host_options, tracked,
                         options["max_restarts"] or 0, options["max_task_retries"] or 0, constraint)
        return ActorHandle(actor_id, meta, tracked)


def _check_at_creation(actor_class, options, rt):
    """What Ray checks when an actor is created rather than when options are given."""
    if options["name"] == "":
        raise ValueError("Actor name cannot be an empty string.")
    _check_namespace(options["namespace"])
    groups = options["concurrency_groups"] or {}
    for name, entry in actor_class._methods.items():
        if entry.concurrency_group is not None and entry.concurrency_group not in groups:
            raise ValueError(f"method {actor_class._cls.__name__}.{name} is in concurrency group "
                             f"{entry.concurrency_group!r}, which the actor does not define (concurrency_groups="
                             f"{dict(groups)!r})")


class ActorHandle:
    """A reference to an actor; pass it to tasks and other actors freely (its methods' signatures travel with
    it, so a wrong call raises TypeError at ``.remote()`` anywhere)."""

    def __init__(self, actor_id, meta, tracked, event="created"):
        self._actor_id = actor_id
        self._meta = meta
        self._class_name = meta.class_name
        self._methods = meta.methods
        self._tracked = tracked  # counted, so the actor ends when no handle is left
        self._pending = []       # first refs of unfinished calls, kept only under max_pending_calls
        if tracked:
            handle_events.append((actor_id, event))

    @classmethod
    def _arrive(cls, actor_id, meta_blob, tracked):
        return cls(actor_id, _meta_of(meta_blob), tracked, event="arrived")

    def __reduce__(self):
        if self._tracked:
            handle_events.append((self._actor_id, pickle_event()))
        return (ActorHandle._arrive, (self._actor_id, _meta_blob_of(self._meta), self._tracked))

    def __getattr__(self, name):
        methods = self.__dict__.get("_methods")
        if methods is not None:
            entry = methods.get(name) or SPECIAL_METHODS.get(name)
            if entry is not None:
                return ActorMethod(self, name, entry)
        raise AttributeError(f"'ActorHandle' object has no attribute '{name}' "
                             f"(actor {self.__dict__.get('_class_name')} has no method {name!r})")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._methods))

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

    def _check_pending(self, rt, method_name):
        """Ray's per-handle ``max_pending_calls``: count calls whose first result is not ready."""
        limit = self._meta.max_pending_calls
        with rt.lock:
            entries = rt.objects.entries
            self._pending = [ref for ref in self._pending if ref.id in entries and not entries[ref.id].ready]
        if len(self._pending) >= limit:
            raise PendingCallsLimitExceeded(
                f"The task {method_name} could not be submitted to {self!r} because more than {limit} tasks are "
                "queued on the actor. This limit can be adjusted with the `max_pending_calls` actor option.")


def _meta_blob_of(meta):
    if meta.blob is None:
        meta.blob = dumps(meta)
        _metas_by_blob[meta.blob] = meta
    return meta.blob


class ActorMethod:
    """``handle.method``: call ``.remote(...)`` to run it on the actor."""

    __slots__ = ("_handle", "_name", "_entry")

    def __init__(self, handle, name, entry):
        self._handle = handle
        self._name = name
        self._entry = entry

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
                        f"try 'object.{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, None)

    def options(self, **options):
        """Per-call options: num_returns, name, concurrency_group, max_task_retries, retry_exceptions
        (enable_task_events, _metadata and the rest of Ray's keywords are accepted only)."""
        where = f"{self._handle._class_name}.{self._name}.options()"
        if "_num_objects_per_yield" in options:
            raise ValueError("_num_objects_per_yield cannot be overridden per actor method call. "
                             "Use @ray.method(_num_objects_per_yield=...) instead.")
        for key, value in options.items():
            if key not in METHOD_CALL_OPTIONS:
                raise TypeError(f"ActorMethod.options() got an unexpected keyword argument '{key}'")
            validate_method_option(key, value, where)
        group = options.get("concurrency_group")
        if group is not None and group not in self._handle._meta.groups:
            raise ValueError(f"{where}: concurrency_group={group!r} is not a concurrency group of actor "
                             f"{self._handle._class_name} (its groups: {list(self._handle._meta.groups)})")
        return WithOptions(self._submit, options)

    @holds_signals
    def _submit(self, args, kwargs, call_options):
        rt = runtime_for_call()
        handle = self._handle
        entry = self._entry
        num_returns = entry.num_returns
        overrides = None
        if call_options:
            num_returns = call_options.get("num_returns", num_returns)
            overrides = {key: call_options[key] for key in ("concurrency_group", "max_task_retries", "name")
                         if call_options.get(key) is not None}
            if "retry_exceptions" in call_options:
                overrides["retry_exceptions"] = _retry_spec(call_options["retry_exceptions"])
            overrides = overrides or None
        limited = handle._meta.max_pending_calls not in (None, -1)
        if limited:
            handle._check_pending(rt, self._name)
        signature = entry.signature
        if args or kwargs or (signature is not None and entry.required):
            label = f"{handle._class_name}.{self._name}"
            bound = _bind(signature, f"{label}.remote()", args, kwargs)
            args_blob, dep_refs = pack_arguments(label, bound, args, kwargs, rt.put, INLINE_THRESHOLD)
        else:  # the common call without arguments: nothing to bind (hashing a Signature is slow) or pickle
            args_blob, dep_refs = None, ()
        max_retries = (overrides or {}).get("max_task_retries", entry.max_task_retries)
        if num_returns not in ("streaming", "dynamic"):
            refs = rt.actors.call(handle._actor_id, self._name, args_blob, dep_refs, num_returns, overrides,
                                  max_retries)
            if limited and refs:
                handle._pending.append(refs[0])
            return returned(refs, num_returns)
        backpressure = (call_options or {}).get("_generator_backpressure_num_objects", entry.backpressure) or 0
        with rt.lock:   # the stream is open before its first item can be handled
            stream_id = rt.next_id()
            overrides = {**(overrides or {}), "stream": (stream_id, backpressure)}
            refs = rt.actors.call(handle._actor_id, self._name, args_blob, dep_refs, 1, overrides, max_retries)
            if limited:
                handle._pending.append(refs[0])
            generator = rt.streams.open_stream(refs[0], backpressure, stream_id)
            return generator if num_returns == "streaming" else rt.streams.dynamic(generator)


def _signature(target):
    """What ``target(...)`` takes (a class: ``__init__`` without ``self``; nothing for a class without one),
    or None where Python cannot say (some builtins)."""
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _retry_spec(retry_exceptions):
    # Exception classes may live in __main__, which workers cannot import: pickle them by value.
    if isinstance(retry_exceptions, (list, tuple)):
        return dumps(tuple(retry_exceptions))
    return retry_exceptions


def _bind(signature, where, args, kwargs):
    if signature is None:
        return None
    try:
        return signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from None


def _check_namespace(namespace):
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be None or a string. Got namespace={namespace!r}")
    if namespace == "":
        raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')


@holds_signals
def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the actor created with ``options(name=name)``; ValueError if there is none."""
    if name is None or name == "":
        raise ValueError("Please supply a non-empty value to get_actor")
    if not isinstance(name, str):
        raise TypeError(f"get_actor() needs the actor's name as a string, got name={name!r}")
    _check_namespace(namespace)
    rt = runtime_for_call()
    namespace = namespace or rt.config.get("namespace") or "default"
    state = rt.queries.ask(HEAD_RANK, "actor_name_query", namespace, name, None)
    if state is None:
        raise ValueError(f"Failed to look up actor with name '{name}'. This could because 1. You are trying to look "
                         "up a named actor you didn't create. 2. The named actor died. 3. You did not use a namespace "
                         "matching the namespace of the actor.")
    return ActorHandle(state[0], _meta_of(state[1]), False)


@holds_signals
def list_named_actors(all_namespaces=False):
    """Names of the live named actors: of this job's namespace, or of every namespace as ``{"name": ...,
    "namespace": ...}`` dicts with ``all_namespaces=True`` (Ray's shapes)."""
    rt = runtime_for_call()
    pairs = rt.queries.ask(HEAD_RANK, "actor_names_query", None)
    if all_namespaces:
        return [{"name": name, "namespace": namespace} for namespace, name in pairs]
    current = rt.config.get("namespace") or "default"
    return [name for namespace, name in pairs if namespace == current]


@holds_signals
def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """End an actor now; its pending and later calls raise ActorDiedError. With ``no_restart=False`` an actor
    with restarts left (``max_restarts``) starts again: ``__init__`` runs anew, and calls made after the kill
    run on the new instance."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"ray.kill() only supported for actors. For tasks, try ray.cancel(). Got: {type(actor)}.")
    runtime_for_call().actors.kill(actor._actor_id, no_restart=bool(no_restart))


def _slot_persistent_id(handle):
    return ("A", handle._actor_id, _meta_blob_of(handle._meta))


task_slots.keep_on_rank(ActorHandle, _slot_persistent_id)
