"""Hosting actors on a worker rank.

Each actor gets its own executor: one thread by default (calls run one at a time, in arrival order),
``max_concurrency`` threads if asked, or an asyncio event loop on a thread of its own when the class has
``async def`` methods. Concurrency groups (``concurrency_groups={"io": 2}``) get a pool of their own (a
semaphore on the loop for async actors). Methods are looked up on the class, as in Ray: an instance attribute of
the same name does not hide a method. A dead actor (constructor failed, killed, exited) stays as a tombstone so
later calls get ``ActorDiedError`` instead of silence.
"""
import asyncio
import collections
import inspect
import threading

from ..exceptions import ActorDiedError, ErrorPayload
from . import invoke, log_forward, runtime_env
from .actor_loop import ActorLoop
from .call_context import task_context
from .codec import loads
from .invoke import error_blobs
from .object_ref import owner_of
from .protocol import HEAD_RANK
from .threads import WorkerThreads


class ActorExit(BaseException):
    """Raised by ``mpirt.actor.exit_actor()`` (and ``__ray_terminate__``) to end the actor from inside a method."""


class _HasDefault:
    """A parameter's default in the signatures handles carry: binding needs to know a default exists, not its
    value (which might not pickle)."""

    def __repr__(self):
        return "<default>"

    def __reduce__(self):
        return "HAS_DEFAULT"


HAS_DEFAULT = _HasDefault()
REQUIRED_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                   inspect.Parameter.KEYWORD_ONLY)
# Not callable through a handle: how instances are made, pickled and have attributes.
_NOT_METHODS = frozenset(("__init__", "__new__", "__del__", "__init_subclass__", "__class_getitem__", "__getattr__",
                          "__getattribute__", "__setattr__", "__delattr__", "__getstate__", "__setstate__",
                          "__reduce__", "__reduce_ex__", "__subclasshook__"))


class MethodEntry:
    """One method of an actor class as its callers and its host see it: default ``num_returns``, the signature
    to bind calls against (without ``self``/``cls``), what ``@method`` set (concurrency group, retries)."""

    __slots__ = ("num_returns", "signature", "required", "concurrency_group", "max_task_retries", "retry_exceptions",
                 "is_async", "backpressure")

    def __init__(self, num_returns=1, signature=None, required=False, concurrency_group=None, max_task_retries=None,
                 retry_exceptions=False, is_async=False, backpressure=None):
        self.num_returns = num_returns
        self.signature = signature
        self.required = required
        self.concurrency_group = concurrency_group
        self.max_task_retries = max_task_retries
        self.retry_exceptions = retry_exceptions
        self.is_async = is_async
        self.backpressure = backpressure   # a streaming generator's _generator_backpressure_num_objects


# Ray's built-in actor methods, on every handle.
SPECIAL_METHODS = {"__ray_ready__": MethodEntry(), "__ray_call__": MethodEntry(), "__ray_terminate__": MethodEntry()}


def method_table(cls):
    """Every method a handle of ``cls`` offers, the class's own and its bases' (first in the MRO wins, as
    attribute lookup does), staticmethods and classmethods included."""
    table = {}
    seen = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, raw in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if name in _NOT_METHODS or not inspect.isfunction(function):
                continue
            options = getattr(function, "__mpirt_method_options__", {})
            signature, required = _call_signature(function, drop_first=not isinstance(raw, staticmethod))
            yields = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)
            table[name] = MethodEntry(options.get("num_returns", "streaming" if yields else 1), signature, required,
                                      options.get("concurrency_group"), options.get("max_task_retries"),
                                      options.get("retry_exceptions", False),
                                      inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function),
                                      options.get("_generator_backpressure_num_objects"))
    return table


def _call_signature(function, drop_first):
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None, True
    parameters = [p.replace(annotation=inspect.Parameter.empty,
                            default=inspect.Parameter.empty if p.default is inspect.Parameter.empty else HAS_DEFAULT)
                  for p in list(signature.parameters.values())[1 if drop_first else 0:]]
    required = any(p.default is inspect.Parameter.empty and p.kind in REQUIRED_KINDS for p in parameters)
    return inspect.Signature(parameters), required


class HostedActor:
    __slots__ = ("actor_id", "cls", "class_name", "instance", "dead_error", "pool", "loop", "is_async", "owner",
                 "constructed", "num_gpus", "table", "bound", "generation", "pools", "semaphores", "max_task_retries",
                 "create_args", "environment", "restarts_left", "detached", "name", "held", "restarts", "running",
                 "cancelled", "unanswered", "environment_holds", "placement")

    def __init__(self, actor_id, cls, owner, options, create_args):
        self.actor_id = actor_id
        self.cls = cls
        self.class_name = cls.__name__
        self.owner = owner
        self.instance = None
        self.dead_error = None
        self.pool = None
        self.loop = None        # async actors: its ActorLoop
        self.constructed = threading.Event()  # threaded actors: calls wait for __init__
        self.num_gpus = options.get("num_gpus", 0.0)
        self.table = method_table(cls)   # method name -> MethodEntry
        self.is_async = any(entry.is_async for entry in self.table.values())
        self.bound = {}         # method name -> the method bound to the current instance
        self.generation = 0     # restarts by kill(no_restart=False): calls from before one fail
        self.pools = {}         # concurrency group -> its WorkerThreads (threaded actors)
        self.semaphores = {}    # concurrency group (None: the default) -> asyncio.Semaphore (async actors)
        self.max_task_retries = options.get("max_task_retries", 0)
        self.create_args = create_args   # (args_blob, inlined): __init__ runs again on a restart
        self.environment = runtime_env.freeze(options.get("runtime_env"))   # beyond the job's, or None
        self.restarts_left = options.get("max_restarts", 0)   # -1: for ever; the owner keeps the same count
        self.detached = options.get("detached", False)        # lifetime="detached": it outlives its owner
        self.placement = options.get("placement")             # its placement group (get_current_placement_group)
        self.name = options.get("name") or ""                 # "" if unnamed (get_runtime_context())
        self.held = dict(options.get("held") or {})           # resources it holds while it lives
        self.restarts = options.get("restarts", 0)   # times __init__ ran again (was_current_actor_reconstructed)
        self.running = {}        # call id -> CallContext of the calls running now
        self.cancelled = set()   # ids of calls cancelled before they started
        self.unanswered = {}     # async actors: call id -> (caller, num_returns) of the calls not answered yet
        self.environment_holds = 0   # its calls and constructor holding the rank's environment now

    def concurrency_groups(self):
        """The names of its concurrency groups (threaded or async), as its handles list them."""
        return tuple(name for name in self.pools) or tuple(g for g in self.semaphores if g is not None)


class CallContext:
    """One actor call while it runs, for ``get_runtime_context()`` and ``cancel()``."""

    __slots__ = ("call_id", "method", "cancelled", "task")

    def __init__(self, call_id, method, task=None):
        self.call_id = call_id
        self.method = method
        self.cancelled = False   # cancel() asked: is_canceled() says so (a sync call is not interrupted)
        self.task = task         # the asyncio task of an async call, which cancel() cancels


class ActorHost:
    def __init__(self, runtime):
        self.rt = runtime
        self.actors = {}
        self.early_calls = collections.defaultdict(list)  # calls that arrived before the constructor
        runtime.register(actor_create=self._on_create, actor_call=self._on_call, actor_kill=self._on_kill,
                         actor_terminate=self._on_terminate, actor_restart=self._on_restart,
                         actor_cancel_call=self._on_cancel_call)
        runtime.failures.handlers.append(self._on_rank_dead)

    # -- progress thread (runtime.lock held) ----------------------------------
    def _on_create(self, source, actor_id, class_blob, args_blob, inlined, options, failed_blob):
        cls = loads(class_blob)
        actor = self.actors[actor_id] = HostedActor(actor_id, cls, source, options, (args_blob, inlined))
        groups = options.get("concurrency_groups") or {}
        if actor.is_async:
            actor.loop = ActorLoop(f"mpirt-actor-{cls.__name__}", self.rt.transport.idle_poll)
            actor.semaphores = {group: asyncio.Semaphore(limit) for group, limit in groups.items()}
            actor.semaphores[None] = asyncio.Semaphore(options["max_concurrency"])
        else:
            actor.pool = WorkerThreads(f"mpirt-actor-{cls.__name__}", options["max_concurrency"],
                                       self.rt.transport.idle_poll)
            actor.pools = {group: WorkerThreads(f"mpirt-actor-{cls.__name__}-{group}", limit, self.rt.transport.idle_poll)
                           for group, limit in groups.items()}
        if failed_blob is not None:
            cause = loads(failed_blob)
            cause = cause.to_exception() if isinstance(cause, ErrorPayload) else cause
            self._die(actor, ActorDiedError(f"actor {cls.__name__} could not be created: a constructor argument "
                                            "failed", cause=cause))
        else:
            self._submit(actor, self._construct, actor, cls, args_blob, inlined)
        for call in self.early_calls.pop(actor_id, []):
            self._on_call(*call)

    def _on_call(self, source, actor_id, call_id, method, args_blob, inlined, num_returns, overrides=None):
        actor = self.actors.get(actor_id)
        if actor is None:
            self.early_calls[actor_id].append((source, actor_id, call_id, method, args_blob, inlined, num_returns,
                                               overrides))
            return
        if actor.dead_error is not None:
            self._reply(source, call_id, error_blobs(actor.dead_error, num_returns), True)
            return
        if actor.is_async:
            # Answered by _call_async, or by _die if the loop stops first.
            actor.unanswered[call_id] = (source, num_returns)
            self._submit(actor, self._call_async, actor, source, call_id, method, args_blob, inlined, num_returns,
                         overrides, actor.generation)
            return
        pool = actor.pools.get(_group_of(actor, method, overrides), actor.pool) if actor.pools else actor.pool
        pool.submit(self._call, actor, source, call_id, method, args_blob, inlined, num_returns, overrides,
                    actor.generation)

    def _on_restart(self, source, actor_id):
        """``kill(no_restart=False)`` with restarts left (the owner counts them): ``__init__`` run again, here.
        Calls that arrived before it fail with ActorDiedError (as Ray's killed process would fail them); one
        already running finishes on the old instance (a thread cannot be stopped)."""
        actor = self.actors.get(actor_id)
        if actor is None or actor.dead_error is not None:
            return
        _begin_restart(actor)
        self._submit(actor, self._construct, actor, actor.cls, *actor.create_args)

    def _on_cancel_call(self, source, actor_id, call_id):
        """``cancel()`` of a call sent here: one not started never runs (TaskCancelledError); a running async call
        is cancelled (CancelledError inside it); a sync one only flagged (``is_canceled()``), as in Ray."""
        actor = self.actors.get(actor_id)
        if actor is None:
            return
        context = actor.running.get(call_id)
        if context is None:
            actor.cancelled.add(call_id)
            return
        context.cancelled = True
        if context.task is not None:
            actor.loop.submit(context.task.cancel)

    def _on_rank_dead(self, rank):
        """An actor shares its owner's fate, as in Ray, unless it is detached. Calls held for an actor whose
        creation its dead owner never sent fail now."""
        for actor_id in [a for a in self.early_calls if owner_of(a) == rank]:
            error = ActorDiedError(f"actor {actor_id:028x} died: its owner (rank {rank}) died before it created it")
            for call in self.early_calls.pop(actor_id):
                source, call_id, num_returns = call[0], call[2], call[6]
                self._reply(source, call_id, error_blobs(error, num_returns), True)
        for actor in self.actors.values():
            if actor.owner == rank and not actor.detached and actor.dead_error is None:
                self._die(actor, ActorDiedError(f"actor {actor.class_name} died because its owner (rank {rank}) died; "
                                                "only a detached actor (lifetime='detached') outlives its owner"))

    def _on_kill(self, source, actor_id, why=None):
        actor = self.actors.get(actor_id)
        if actor is not None and actor.dead_error is None:
            self._die(actor, ActorDiedError(f"actor {actor.class_name} was killed: {why}" if why
                                            else f"actor {actor.class_name} was killed with mpirt.kill()"))

    def _on_terminate(self, source, actor_id):
        """Every handle is gone: end the actor after the calls already queued."""
        actor = self.actors.get(actor_id)
        if actor is not None and actor.dead_error is None:
            self._submit(actor, self._terminate, actor)

    def _terminate(self, actor):
        with self.rt.lock:
            if actor.dead_error is None:
                self._die(actor, ActorDiedError(f"actor {actor.class_name} was terminated: no handle to it is left"))

    def _die(self, actor, error):
        actor.dead_error = error
        actor.instance = None
        if log_forward.open_bars:     # progress bars the actor left open close with it
            log_forward.call_ended(("actor", actor.actor_id))
        actor.bound = {}     # bound methods hold the instance, and with it whatever refs it kept
        if actor.loop is not None:
            # The loop stops: the calls it has not answered yet never will be (a threaded actor's
            # queued calls still run, and find it dead).
            for call_id, (caller, num_returns) in actor.unanswered.items():
                self._reply(caller, call_id, error_blobs(error, num_returns), True)
            actor.unanswered.clear()
            actor.loop.stop()
        else:
            actor.pool.stop()
            for pool in actor.pools.values():
                pool.stop()
        self.rt.send(HEAD_RANK, ("actor_dead", actor.actor_id))

    def _submit(self, actor, fn, *args):
        """Run ``fn(*args)`` on the actor's executor (its event loop for async actors, where a coroutine
        function's call starts as a task: ``ActorLoop.start``). A wake-up and a ``concurrent.futures.Future``
        per call (``run_coroutine_threadsafe``) were a quarter of an async actor's rank time under a stream of
        calls (py-spy, 1:1 async calls)."""
        if not actor.is_async:
            actor.pool.submit(fn, *args)
        elif inspect.iscoroutinefunction(fn):
            actor.loop.start(fn(*args))
        else:
            actor.loop.submit(fn, *args)

    def _reply(self, caller, call_id, blobs, is_error, last=False):
        """``last``: no other call waits on this thread, so the answer leaves now, from it (its caller may be
        waiting for just this one); otherwise it goes with the next batch."""
        if caller == self.rt.rank:
            # The caller is on this rank: its result is ready now, with no queue or poller between.
            self.rt.transport.send_local(("actor_done", call_id, blobs, is_error))
        elif last:
            self.rt.send_now(caller, ("actor_done", call_id, blobs, is_error))
        else:
            self.rt.send(caller, ("actor_done", call_id, blobs, is_error))

    # -- actor threads -----------------------------------------------------
    def enter_environment(self, actor):
        """Put the actor's runtime_env in place (runtime lock held; may wait), as a task's is (the rank runs one
        environment at a time: ``RankEnvironment``). A call of an actor that already holds it joins without
        waiting: waiting would block the loop (async actors) or the calls it waits behind."""
        environment = self.rt.executor.environment
        if actor.environment_holds:
            environment.join()
        else:
            environment.enter(actor.environment)
        actor.environment_holds += 1

    def leave_environment(self, actor):
        """Undo one ``enter_environment`` (runtime lock held)."""
        actor.environment_holds -= 1
        self.rt.executor.environment.leave()

    def _hold_environment(self, actor):
        """``enter_environment`` for a constructor or a threaded call: True if it has a runtime_env and holds it."""
        if actor.environment is None:
            return False
        with self.rt.lock:
            self.enter_environment(actor)
        return True

    async def _hold_environment_async(self, actor):
        """The same for an async call, waiting (if it must) on a thread of the loop's executor."""
        if actor.environment is None:
            return False
        with self.rt.lock:
            if actor.environment_holds:
                self.enter_environment(actor)   # joins: no wait
                return True
        await asyncio.get_running_loop().run_in_executor(None, self._hold_environment, actor)
        return True

    def _release_environment(self, actor):
        with self.rt.lock:
            self.leave_environment(actor)

    def _construct(self, actor, cls, args_blob, inlined, hold_environment=True):
        """Run ``__init__`` and publish the instance. Also run by a call whose ``sys.exit()`` restarted the
        actor, on that call's thread: what the call set in ``task_context`` is put back after."""
        saved = invoke.current()
        invoke.enter(f"{cls.__name__}.__init__", actor.num_gpus, actor=actor)
        held = hold_environment and self._hold_environment(actor)
        try:
            args, kwargs = invoke.resolve_arguments(self.rt, args_blob, inlined)
            instance = cls(*args, **kwargs)
            actor.bound = {}
            actor.instance = instance
        except BaseException as exc:  # noqa: B902 - the constructor's failure kills the actor
            failure = invoke.as_task_failure(exc, f"{cls.__name__}.__init__", self.rt.rank)
            with self.rt.lock:
                # Ray's text: "The actor died because of an error raised in its creation task, ray::..."
                self._die(actor, ActorDiedError(cause=failure, actor_id=format(actor.actor_id, "028x")))
            return
        finally:
            if held:
                self._release_environment(actor)
            invoke.enter(*saved)
            actor.constructed.set()

    def _call(self, actor, caller, call_id, method, args_blob, inlined, num_returns, overrides, generation):
        label = overrides["name"] if overrides and "name" in overrides else f"{actor.class_name}.{method}"
        call = actor.running[call_id] = CallContext(call_id, method)
        # After it is listed as running: a cancel() arriving now either finds it there or left its id.
        if actor.cancelled and call_id in actor.cancelled:
            actor.cancelled.discard(call_id)
            del actor.running[call_id]
            self._reply(caller, call_id, error_blobs(invoke.call_cancelled(label), num_returns), True)
            return
        invoke.enter(label, actor.num_gpus, actor=actor, call=call)
        started = invoke.clock()
        held = actor.environment is not None and self._hold_environment(actor)
        if held:
            task_context.environment_actor = actor   # let go while the call waits in get/wait (Runtime)
        try:
            blobs, is_error = self._invoke(actor, method, args_blob, inlined, num_returns, label, overrides, generation,
                                           caller)
        finally:
            if held:
                task_context.environment_actor = None
                self._release_environment(actor)
            invoke.leave()
            actor.running.pop(call_id, None)
        invoke.finished("actor", label, started, is_error, blobs=blobs)
        self._reply(caller, call_id, blobs, is_error, last=actor.pool.going_idle())

    def _invoke(self, actor, method, args_blob, inlined, num_returns, label, overrides, generation, caller):
        restart_retries = _call_retries(actor, method, overrides)
        if generation != actor.generation and restart_retries == 0:
            return error_blobs(invoke.call_restarted(actor), num_returns), True
        retries, retry_on = _retry_rule(actor, method, overrides, restart_retries)
        while True:
            if not actor.constructed.is_set():
                actor.constructed.wait()
            if actor.dead_error is not None:
                return error_blobs(actor.dead_error, num_returns), True
            try:
                function = actor.bound.get(method) or _bind_method(actor, method)
                if args_blob is None:
                    result = function()
                else:
                    args, kwargs = invoke.resolve_arguments(self.rt, args_blob, inlined)
                    result = function(*args, **kwargs)
                if overrides and "stream" in overrides:   # a streaming generator: its values go as they come
                    self.rt.streams.produce(result, *overrides["stream"], caller=caller)
                    result = None
                return invoke.serialize_returns(label, result, num_returns, self.rt.store), False
            except ActorExit as exit_request:
                return self._exit(actor, num_returns, exit_request)
            except SystemExit as exc:
                restarted = self._process_exit(actor, exc, environment_held=True)
                if restarted and restart_retries != 0:
                    restart_retries -= 1 if restart_retries > 0 else 0
                    continue
                return error_blobs(invoke.call_exited(actor, exc, restarted), num_returns), True
            except BaseException as exc:  # noqa: B902 - the call's failure is its result
                if retries != 0 and _should_retry(exc, retry_on):
                    retries -= 1
                    continue
                return invoke.failure_blobs(exc, label, self.rt.rank, num_returns), True

    async def _call_async(self, actor, caller, call_id, method, args_blob, inlined, num_returns, overrides, generation):
        label = overrides["name"] if overrides and "name" in overrides else f"{actor.class_name}.{method}"
        restart_retries = _call_retries(actor, method, overrides)
        if actor.dead_error is not None or (generation != actor.generation and restart_retries == 0):
            error = actor.dead_error if actor.dead_error is not None else invoke.call_restarted(actor)
            self._answer_async(actor, caller, call_id, error_blobs(error, num_returns), True)
            return
        call = actor.running[call_id] = CallContext(call_id, method, asyncio.current_task())
        if actor.cancelled and call_id in actor.cancelled:   # see _call
            actor.cancelled.discard(call_id)
            del actor.running[call_id]
            self._answer_async(actor, caller, call_id, error_blobs(invoke.call_cancelled(label), num_returns), True)
            return
        semaphore = actor.semaphores.get(_group_of(actor, method, overrides)) or actor.semaphores[None]
        started = invoke.clock()
        retries, retry_on = _retry_rule(actor, method, overrides, restart_retries)
        invoke.enter_async(actor, call, label)
        try:
            async with semaphore:
                while True:
                    try:
                        args, kwargs = invoke.resolve_inline_arguments(self.rt, args_blob, inlined)
                        if args is None:   # a value to fetch, or large ones to decode: not on the loop
                            args, kwargs = await asyncio.get_running_loop().run_in_executor(
                                None, invoke.resolve_arguments, self.rt, args_blob, inlined)
                        function = actor.bound.get(method) or _bind_method(actor, method)
                        held = await self._hold_environment_async(actor)
                        try:
                            result = function(*args, **kwargs)
                            if inspect.isawaitable(result):   # an async def method (a plain one returns its value)
                                result = await result
                            if overrides and "stream" in overrides:
                                await self.rt.streams.produce_async(result, *overrides["stream"], caller=caller)
                                result = None
                        finally:
                            if held:
                                self._release_environment(actor)
                        blobs, is_error = invoke.serialize_returns(label, result, num_returns, self.rt.store), False
                    except asyncio.CancelledError:
                        blobs, is_error = error_blobs(invoke.call_cancelled(label), num_returns), True
                    except ActorExit as exit_request:
                        blobs, is_error = self._exit(actor, num_returns, exit_request)
                    except SystemExit as exc:
                        restarted = self._process_exit(actor, exc, environment_held=False)
                        if restarted and restart_retries != 0:
                            restart_retries -= 1 if restart_retries > 0 else 0
                            continue
                        blobs, is_error = error_blobs(invoke.call_exited(actor, exc, restarted), num_returns), True
                    except BaseException as exc:  # noqa: B902
                        if retries != 0 and _should_retry(exc, retry_on):
                            retries -= 1
                            continue
                        blobs, is_error = invoke.failure_blobs(exc, label, self.rt.rank, num_returns), True
                    break
        except asyncio.CancelledError:     # cancelled while it waited for its turn
            blobs, is_error = error_blobs(invoke.call_cancelled(label), num_returns), True
        actor.running.pop(call_id, None)
        invoke.finished("actor", label, started, is_error, blobs=blobs)
        self._answer_async(actor, caller, call_id, blobs, is_error)

    def _answer_async(self, actor, caller, call_id, blobs, is_error):
        """Reply to an async call unless ``_die`` already did (the actor died while it ran)."""
        if actor.unanswered.pop(call_id, None) is not None:
            self._reply(caller, call_id, blobs, is_error)

    def _process_exit(self, actor, exc, environment_held):
        """``sys.exit()`` in a method: what Ray does when an actor's process exits, for this actor only (its rank
        and other actors go on). Status 0 is an intended exit: the actor ends for good. Any other is a crash: while
        ``max_restarts`` allows, the actor starts again in place (``__init__`` run here on this thread, so calls
        queued behind this one find the new instance; the owner counts it too). True if it was restarted."""
        with self.rt.lock:
            if actor.dead_error is not None:
                return False
            status = invoke.exit_status(exc)
            if status == 0:
                self._die(actor, ActorDiedError(f"actor {actor.class_name} exited with sys.exit({exc.code!r}), an "
                                                "intended exit: it is not restarted"))
                return False
            if actor.restarts_left == 0:
                self._die(actor, ActorDiedError(f"actor {actor.class_name} exited with status {status} "
                                                f"(sys.exit({exc.code!r})) and has no restarts left (max_restarts)"))
                return False
            _begin_restart(actor)
            self.rt.send(actor.owner, ("actor_restarted", actor.actor_id))
        # A threaded call that exited holds the actor's environment (if any) already.
        self._construct(actor, actor.cls, *actor.create_args, hold_environment=not environment_held)
        return actor.dead_error is None

    def _exit(self, actor, num_returns, exit_request):
        how = "__ray_terminate__" if exit_request.args[:1] == ("terminate",) else "exit_actor()"
        error = ActorDiedError(f"actor {actor.class_name} exited with {how}")
        with self.rt.lock:
            if actor.dead_error is None:
                self._die(actor, error)
        return error_blobs(error, num_returns), True


def _begin_restart(actor):
    """Count the restart (``max_restarts``; -1: for ever) and drop the current instance: calls wait
    (``constructed``) until ``__init__`` has run again, and calls from before know it by their generation."""
    if actor.restarts_left > 0:
        actor.restarts_left -= 1
    actor.restarts += 1
    actor.generation += 1
    actor.constructed.clear()
    actor.instance = None
    actor.bound = {}


def _bind_method(actor, name):
    """The method called ``name``, looked up on the class (Ray's rule: an instance attribute of that name does
    not hide it) and bound to the current instance; cached per instance."""
    instance = actor.instance
    if name == "__ray_ready__":
        function = _ready
    elif name == "__ray_call__":
        def function(fn, *args, **kwargs):
            return fn(instance, *args, **kwargs)
    elif name == "__ray_terminate__":
        function = _terminate_request
    else:
        try:
            raw = inspect.getattr_static(actor.cls, name)
        except AttributeError:
            raise AttributeError(f"actor class {actor.class_name} has no method {name!r}") from None
        getter = getattr(type(raw), "__get__", None)
        function = getter(raw, instance, actor.cls) if getter is not None else raw
    if instance is not None and actor.instance is instance:   # not if a restart replaced it meanwhile
        actor.bound[name] = function
    return function


def _ready():
    return True


def _terminate_request():
    raise ActorExit("terminate")


def _group_of(actor, method, overrides):
    """A call's concurrency group: ``.options()`` first, then ``@method``; None for the default."""
    group = overrides.get("concurrency_group") if overrides else None
    if group is None:
        entry = actor.table.get(method)
        group = entry.concurrency_group if entry is not None else None
    return group


def _call_retries(actor, method, overrides):
    """A call's ``max_task_retries``: ``.options()`` first, then ``@method``, then the actor's."""
    if overrides and "max_task_retries" in overrides:
        return overrides["max_task_retries"]
    entry = actor.table.get(method)
    if entry is not None and entry.max_task_retries is not None:
        return entry.max_task_retries
    return actor.max_task_retries


def _retry_rule(actor, method, overrides, retries):
    """(retries left, which exceptions retry) for a call of ``max_task_retries`` ``retries``
    (``_call_retries``): nothing retries unless ``retry_exceptions`` says so."""
    entry = actor.table.get(method)
    retry_on = entry.retry_exceptions if entry is not None else False
    if overrides:
        retry_on = overrides.get("retry_exceptions", retry_on)
        if isinstance(retry_on, bytes):
            retry_on = loads(retry_on)
    if not retry_on:
        return 0, False
    return retries, retry_on


def _should_retry(exc, retry_on):
    if retry_on is True:
        return isinstance(exc, Exception)
    return isinstance(exc, tuple(retry_on))

