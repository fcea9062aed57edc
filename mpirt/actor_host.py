"""Hosting actors on a worker rank.

Each actor gets its own executor: one thread by default (calls run one at a
time, in arrival order), ``max_concurrency`` threads if asked, or an asyncio
event loop on a thread of its own when the class has ``async def`` methods.
A dead actor (constructor failed, killed, exited) stays as a tombstone so
later calls get ``ActorDiedError`` instead of silence.
"""
import asyncio
import collections
import inspect
import threading
import time

from . import tracing
from .exceptions import ActorDiedError, ErrorPayload, TaskError
from .executor import as_task_failure, error_blobs, resolve_arguments, serialize_returns
from .runtime import HEAD_RANK, POLL_BUDGET, task_context
from .serialization import loads
from .threads import WorkerThreads


class ActorExit(BaseException):
    """Raised by ``mpirt.actor.exit_actor()`` to end the actor from inside a method."""


class HostedActor:
    __slots__ = ("actor_id", "cls", "class_name", "instance", "dead_error", "pool", "loop", "is_async", "owner",
                 "constructed", "num_gpus")

    def __init__(self, actor_id, cls, owner):
        self.actor_id = actor_id
        self.cls = cls
        self.class_name = cls.__name__
        self.owner = owner
        self.instance = None
        self.dead_error = None
        self.pool = None
        self.loop = None
        self.is_async = False
        self.constructed = threading.Event()  # threaded actors: calls wait for __init__
        self.num_gpus = 0.0


class ActorHost:
    def __init__(self, runtime):
        self.rt = runtime
        self.actors = {}
        self.early_calls = collections.defaultdict(list)  # calls that arrived before the constructor
        runtime.handlers.update(
            actor_create=self._on_create,
            actor_call=self._on_call,
            actor_kill=self._on_kill,
            actor_terminate=self._on_terminate,
        )

    # -- progress thread (runtime.lock held) ----------------------------------
    def _on_create(self, source, actor_id, class_blob, args_blob, inlined, options, failed_blob):
        cls = loads(class_blob)
        actor = HostedActor(actor_id, cls, source)
        actor.num_gpus = options.get("num_gpus", 0.0)
        self.actors[actor_id] = actor
        actor.is_async = any(inspect.iscoroutinefunction(m) for _, m in inspect.getmembers(cls, inspect.isfunction))
        if actor.is_async:
            actor.loop = asyncio.new_event_loop()
            threading.Thread(target=actor.loop.run_forever, name=f"mpirt-actor-{cls.__name__}", daemon=True).start()
        else:
            actor.pool = WorkerThreads(f"mpirt-actor-{cls.__name__}", options["max_concurrency"], self._idle_poll)
        if failed_blob is not None:
            self._die(actor, ActorDiedError(f"actor {cls.__name__} could not be created: a constructor argument "
                                            "failed", cause=_exception_of(failed_blob)))
        else:
            self._submit(actor, self._construct, actor, cls, args_blob, inlined)
        for call in self.early_calls.pop(actor_id, []):
            self._on_call(*call)

    def _on_call(self, source, actor_id, call_id, method, args_blob, inlined, num_returns):
        actor = self.actors.get(actor_id)
        if actor is None:
            self.early_calls[actor_id].append((source, actor_id, call_id, method, args_blob, inlined, num_returns))
            return
        if actor.dead_error is not None:
            self._reply(source, call_id, error_blobs(actor.dead_error, num_returns), True)
            return
        if actor.is_async:
            self._submit(actor, self._call_async, actor, source, call_id, method, args_blob, inlined, num_returns)
        else:
            actor.pool.submit(self._call, actor, source, call_id, method, args_blob, inlined, num_returns)

    def _on_kill(self, source, actor_id):
        actor = self.actors.get(actor_id)
        if actor is not None and actor.dead_error is None:
            self._die(actor, ActorDiedError(f"actor {actor.class_name} was killed with mpirt.kill()"))

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
        if actor.loop is not None:
            actor.loop.call_soon_threadsafe(actor.loop.stop)
        else:
            actor.pool.stop()
        self.rt.send(HEAD_RANK, ("actor_dead", actor.actor_id))

    def _submit(self, actor, fn, *args):
        """Run ``fn(*args)`` on the actor's executor (its event loop for async actors)."""
        if actor.is_async:
            if inspect.iscoroutinefunction(fn):
                asyncio.run_coroutine_threadsafe(fn(*args), actor.loop)
            else:
                actor.loop.call_soon_threadsafe(fn, *args)
        else:
            actor.pool.submit(fn, *args)

    def _reply(self, caller, call_id, blobs, is_error):
        if caller == self.rt.rank:
            # The caller is on this rank: its result is ready now, with no queue or poller between.
            self.rt.transport.send_local(("actor_done", call_id, blobs, is_error))
        else:
            self.rt.send(caller, ("actor_done", call_id, blobs, is_error))

    # -- actor threads -----------------------------------------------------
    def _idle_poll(self, ready):
        """An actor thread with nothing queued drives MPI for a moment: the next call of a
        caller waiting for each reply then arrives on this thread (no hand-offs). It gives way
        to a thread of this rank waiting in ``get`` (a caller's reply matters more)."""
        if POLL_BUDGET:
            self.rt.transport.poll(ready, POLL_BUDGET, yielding=True)

    def _construct(self, actor, cls, args_blob, inlined):
        task_context.label = f"{cls.__name__}.__init__"
        task_context.num_gpus = actor.num_gpus
        try:
            args, kwargs = resolve_arguments(self.rt, args_blob, inlined)
            actor.instance = cls(*args, **kwargs)
        except BaseException as exc:  # noqa: B902 - the constructor's failure kills the actor
            failure = as_task_failure(exc, f"{cls.__name__}.__init__", self.rt.rank)
            reason = failure.cause_repr if isinstance(failure, TaskError) else repr(failure)
            with self.rt.lock:
                self._die(actor, ActorDiedError(f"actor {cls.__name__} died in __init__: {reason}", cause=failure))
            return
        finally:
            task_context.label = None
            actor.constructed.set()

    def _call(self, actor, caller, call_id, method, args_blob, inlined, num_returns):
        label = f"{actor.class_name}.{method}"
        context = task_context
        context.label = label
        context.num_gpus = actor.num_gpus
        started = time.time()
        try:
            blobs, is_error = self._invoke(actor, method, args_blob, inlined, num_returns, label)
        finally:
            context.label = None
            context.num_gpus = 0.0
        tracing.record("actor", label, started, time.time(), failed=is_error)
        self._reply(caller, call_id, blobs, is_error)

    def _invoke(self, actor, method, args_blob, inlined, num_returns, label):
        if not actor.constructed.is_set():
            actor.constructed.wait()
        if actor.dead_error is not None:
            return error_blobs(actor.dead_error, num_returns), True
        try:
            if args_blob is None:
                result = getattr(actor.instance, method)()
            else:
                args, kwargs = resolve_arguments(self.rt, args_blob, inlined)
                result = getattr(actor.instance, method)(*args, **kwargs)
            return serialize_returns(label, result, num_returns, self.rt.store), False
        except ActorExit:
            return self._exit(actor, num_returns)
        except BaseException as exc:  # noqa: B902 - the call's failure is its result
            return error_blobs(as_task_failure(exc, label, self.rt.rank), num_returns), True

    async def _call_async(self, actor, caller, call_id, method, args_blob, inlined, num_returns):
        label = f"{actor.class_name}.{method}"
        if actor.dead_error is not None:
            self._reply(caller, call_id, error_blobs(actor.dead_error, num_returns), True)
            return
        started = tracing.now()
        try:
            loop = asyncio.get_running_loop()
            args, kwargs = await loop.run_in_executor(None, resolve_arguments, self.rt, args_blob, inlined)
            task_context.label = label
            task_context.num_gpus = actor.num_gpus
            result = getattr(actor.instance, method)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            blobs, is_error = serialize_returns(label, result, num_returns, self.rt.store), False
        except ActorExit:
            blobs, is_error = self._exit(actor, num_returns)
        except BaseException as exc:  # noqa: B902
            blobs, is_error = error_blobs(as_task_failure(exc, label, self.rt.rank), num_returns), True
        tracing.record("actor", label, started, tracing.now(), failed=is_error)
        self._reply(caller, call_id, blobs, is_error)

    def _exit(self, actor, num_returns):
        error = ActorDiedError(f"actor {actor.class_name} exited with exit_actor()")
        with self.rt.lock:
            if actor.dead_error is None:
                self._die(actor, error)
        return error_blobs(error, num_returns), True


def _exception_of(blob):
    value = loads(blob)
    return value.to_exception() if isinstance(value, ErrorPayload) else value
