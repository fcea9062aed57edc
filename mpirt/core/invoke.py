"""Invoking one call on a worker rank: a task, an actor method or an async actor method.

The three differ in what surrounds the call (a task's lease slot and slot process, an actor's retries, restarts
and event loop: ``executor``, ``task_slots``, ``actor_host``), not in the call itself, which is made here in one
way: arguments resolved (``resolve_arguments``), the thread (or coroutine) named as running it (``enter``,
``leave``, ``enter_async``), timed on one clock (``clock``, ``finished``), its result encoded as its return
objects (``serialize_returns``), or its failure as error objects (``error_blobs``, ``failure_blobs``; the errors
a call can end with are built below).
"""
import time
import traceback

from ..exceptions import (ActorDiedError, ActorUnavailableError, ErrorPayload, ObjectStoreFullError, TaskCancelledError,
                          WorkerCrashedError, make_task_error)
from . import tracing
from .call_context import async_call, task_context
from .codec import dumps, encode, encode_plain, loads
from .object_ref import ObjectRef
from .serialization import unpack_arguments

# The one clock of a call: wall-clock seconds, because the trace compares times across ranks; a
# call's run time is the difference of two readings (a clock step mid-call misreports one run
# time, which only feeds the submitter's pipelining average).
clock = time.time


# -- arguments ----------------------------------------------------------------------------
def resolve_arguments(rt, args_blob, inlined):
    """The call's (args, kwargs): inlined values, or values fetched from their owners."""

    def resolve(object_id):
        blob = inlined.get(object_id)
        if blob is not None:
            return rt.decode(object_id, blob)
        return rt.value_of(ObjectRef(object_id))

    return unpack_arguments(args_blob, resolve)


class _FetchNeeded(Exception):
    """An argument's value is not in the call message (see ``resolve_inline_arguments``)."""


# Arguments of at most this many encoded bytes are decoded on an async actor's loop (a small pickle decodes in
# microseconds); larger ones on a thread of its executor, so the loop's other calls go on meanwhile.
INLINE_DECODE_LIMIT = 64 * 1024


def resolve_inline_arguments(rt, args_blob, inlined):
    """``resolve_arguments`` for an async actor's loop thread: the call's (args, kwargs) when every value came
    in the message and all of it is small, else ``(None, None)`` (a value must be fetched, which may wait, or
    the decoding is long: the caller resolves on another thread)."""
    size = 0 if args_blob is None else len(args_blob)
    for blob in inlined.values():
        if not isinstance(blob, bytes):
            return None, None
        size += len(blob)
    if size > INLINE_DECODE_LIMIT:
        return None, None

    def resolve(object_id):
        blob = inlined.get(object_id)
        if blob is None:
            raise _FetchNeeded
        return loads(blob)

    try:
        return unpack_arguments(args_blob, resolve)
    except _FetchNeeded:
        return None, None


# -- who is running: call_context.task_context -----------------------------------------------
def enter(label, num_gpus, task=None, actor=None, call=None):
    """Name what this thread runs now, for ``get``/``wait`` (a task gives its CPU back), ``get_runtime_context()``
    and log lines: a task (an ``executor.RunningTask``), an actor call (``actor``, ``call``) or a constructor."""
    context = task_context
    context.task = task
    context.label = label
    context.num_gpus = num_gpus
    context.actor = actor
    context.call = call


def leave():
    """This thread runs no call any more."""
    context = task_context
    context.task = None
    context.label = None
    context.num_gpus = 0.0
    context.actor = None
    context.call = None


def current():
    """What ``enter`` set, as its arguments: a constructor run inside a call (a restart) puts it back."""
    context = task_context
    return context.label, context.num_gpus, context.task, context.actor, context.call


def enter_async(actor, call, label):
    """``enter`` for an async actor call: the coroutines of one actor share its loop's thread, so the call is
    named in the coroutine's own context (``call_context.async_call``); the thread's GPU count is the actor's."""
    async_call.set((actor, call, label))
    task_context.num_gpus = actor.num_gpus


def finished(category, label, started, failed, task_id=None, blobs=None):
    """Trace the call that began at ``started`` (``clock()``), with a task's id (hex); return how long it ran. A
    failed call's trace names its error's type and message, read from its error ``blobs``."""
    ended = clock()
    if failed and blobs:
        error, message = error_summary(blobs[0])
        if task_id is None:
            tracing.record(category, label, started, ended, failed=failed, error=error, message=message)
        else:
            tracing.record(category, label, started, ended, task_id=task_id, failed=failed, error=error,
                           message=message)
    elif task_id is None:
        tracing.record(category, label, started, ended, failed=failed)
    else:
        tracing.record(category, label, started, ended, task_id=task_id, failed=failed)
    return ended - started


def error_summary(blob, limit=300):
    """``(type name, message)`` of the error in an error blob (a task's own exception, not its RayTaskError
    wrapper); the message cut to ``limit`` characters."""
    try:
        error = loads(blob).error
        cause = getattr(error, "cause", None)
        error = error if cause is None else cause
        message = str(error)
    except Exception as exc:  # noqa: B902 - a trace detail must never fail the call it describes
        return "unknown", f"(the error could not be read: {type(exc).__name__})"
    return type(error).__name__, message if len(message) <= limit else message[:limit - 3] + "..."


# -- results -----------------------------------------------------------------------------
def serialize_returns(name, result, num_returns, store):
    """Encode a call's result as ``num_returns`` objects (large ones into ``store``)."""
    if num_returns == 1:
        plain = encode_plain(result)    # most results: one small plain value, in one call
        if plain is not None:
            return [plain]
    return encode_returns(name, split_returns(name, result, num_returns), store)


def generator_returns(name, generator, num_returns, store, rank):
    """A generator's values as ``num_returns`` return objects (Ray's ``num_returns=N`` on a generator):
    ``(blobs, is_error)``. An exception after k values fails the other returns with it (the first k keep
    their values); values beyond ``num_returns`` are left unread, as Ray ignores them."""
    values = []
    try:
        for value in generator:
            values.append(value)
            if len(values) == num_returns:
                break
    except Exception as exc:  # noqa: B902 - the call's failure is the rest of its results
        if not values:
            raise
        errors = failure_blobs(exc, name, rank, num_returns - len(values))
        return encode_returns(name, values, store) + errors, [False] * len(values) + [True] * len(errors)
    finally:
        generator.close()
    if len(values) != num_returns:
        raise ValueError(f"{name} has num_returns={num_returns} but its generator yielded {len(values)} values")
    return encode_returns(name, values, store), False


def split_returns(name, result, num_returns):
    """A call's result as the list of its ``num_returns`` values (ValueError if it is not that)."""
    if num_returns == 1:
        values = [result]
    elif num_returns == 0:
        values = []
    else:
        try:
            values = list(result)
        except TypeError:
            raise ValueError(f"{name} has num_returns={num_returns} but returned a {type(result).__name__}")
        if len(values) != num_returns:
            raise ValueError(f"{name} has num_returns={num_returns} but returned {len(values)} values")
    return values


def encode_returns(name, values, store):
    """Encode a call's return values as objects (large ones into ``store``). When one fails, what
    the earlier ones stored is freed: they are never published, so nothing else would free it."""
    blobs = []
    try:
        for i, value in enumerate(values):
            try:
                blobs.append(encode(value, store))
            except ObjectStoreFullError:
                raise
            except Exception as exc:
                raise unserializable_return(i, name, value, exc) from exc
    except BaseException:
        if store is not None:
            store.discard(blobs)
        raise
    return blobs


def unserializable_return(i, name, value, exc):
    """The error of a call whose return value ``i`` could not be encoded."""
    return TypeError(f"Could not serialize the return value {i} of {name} (type {type(value).__name__}): {exc}")


# -- failures: the one error-payload builder ---------------------------------------------
def error_blobs(error, num_returns):
    """The result of a call that failed with ``error``: each of its return objects holds it."""
    return [dumps(ErrorPayload(error))] * num_returns


def failure_blobs(exc, name, rank, num_returns):
    """``error_blobs`` for a call ``name`` that raised ``exc`` (being handled now); an unpicklable error
    travels as its text and traceback."""
    try:
        return error_blobs(as_task_failure(exc, name, rank), num_returns)
    except Exception:
        error = RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        return error_blobs(error, num_returns)


def as_task_failure(exc, name, rank):
    """The error a failed task or actor call reports for ``exc`` (being handled now)."""
    if isinstance(exc, (SystemExit, KeyboardInterrupt)) and not isinstance(exc, Exception):
        exc = RuntimeError(f"{name} raised {type(exc).__name__}: {exc}")
    return make_task_error(exc, name, rank, traceback.format_exc())


def matches_retry(retry_exceptions, exc):
    """Whether a task's ``retry_exceptions`` (True, or a pickled tuple of exception types) retries ``exc``."""
    if not retry_exceptions:
        return False
    if retry_exceptions is True:
        return True
    return isinstance(exc, loads(retry_exceptions))


# -- the errors a call ends with besides its own ------------------------------------------
def task_cancelled(name, how=""):
    """``how``: "before it ran", "with force=True" or nothing (it was running)."""
    return TaskCancelledError(f"task {name} was cancelled" + (f" {how}" if how else ""))


def task_exited(name, code_text):
    """``sys.exit()`` in a task: in Ray it ends the worker process, a system failure, retried while
    ``max_retries`` allows, then WorkerCrashedError (the rank itself goes on)."""
    return WorkerCrashedError(f"task {name} called sys.exit({code_text}), which ends its worker process in Ray, and "
                              "it has no retries left (max_retries)")


def slot_died(name, pid, status):
    return WorkerCrashedError(f"task {name}: its slot process (pid {pid}) died (exit status {status}), and the task "
                              "has no retries left (max_retries)")


def call_cancelled(label):
    return TaskCancelledError(f"the actor call {label} was cancelled with cancel()")


def call_restarted(actor):
    """A call that arrived before ``kill(no_restart=False)`` restarted its actor."""
    return ActorDiedError(f"actor {actor.class_name} was killed with mpirt.kill(no_restart=False) and restarted "
                          "before this call ran")


def call_exited(actor, exc, restarted):
    """What a call that ran into ``sys.exit()`` fails with: Ray's unavailable if the actor restarted, else dead."""
    if restarted:
        return ActorUnavailableError(
            f"The actor {actor.actor_id:028x} ({actor.class_name}) is unavailable: its process exited with status "
            f"{exit_status(exc)} (sys.exit) during this call and it restarted (max_restarts); the call has no "
            "retries left (max_task_retries). The task may or may not have been executed on the actor.")
    return actor.dead_error if actor.dead_error is not None else ActorDiedError(f"actor {actor.class_name} exited")


def exit_status(exc):
    """The status ``sys.exit(code)`` would give the process: None and 0 are 0, an int itself, else (a message) 1."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1
