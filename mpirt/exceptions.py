"""Exceptions raised by mpirt: Ray's classes, names, bases and constructor arguments.

``import mpirt as ray`` code catches ``ray.exceptions.X`` exactly as under Ray, and what prints is Ray's
names. mpirt's own names are aliases (``MpirtError`` is ``RayError``, ``TaskError`` is ``RayTaskError``).

A task's exception travels inside a ``RayTaskError`` and ``get`` raises it as an instance of a class derived
from both ``RayTaskError`` and the exception's own class (printed as ``RayTaskError(ValueError)``), so
``except ValueError`` and ``except RayTaskError`` both catch it. How the original exception travels
(``_freeze``/``_thaw``): as itself when it pickles; rebuilt without calling its ``__init__`` when only its
unpickling fails (a constructor with required arguments); as Ray does it when it cannot be pickled at all
(the cause becomes a ``RayError`` with its text and traceback); and as ``UnserializableException``, as in
Ray, if the receiving process cannot unpickle it. ``raise X from Y`` keeps ``Y`` as the delivered cause's
``__cause__``.

Several classes are raised by mpirt with one explanatory message where Ray's constructor takes ids it does
not have (``ObjectLostError``, ``TaskCancelledError``, ``ActorDiedError``, ``WorkerCrashedError``); they
accept both forms. Everything here runs on error paths only.
"""
import functools
import logging
import os
import pickle
import socket

logger = logging.getLogger(__name__)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_CHAIN_LIMIT = 16   # links of a ``__cause__`` chain that travel with a task's exception


def _restore(cls, args, state):
    """Rebuild an exception without calling its ``__init__`` (which may want other arguments)."""
    try:
        obj = cls.__new__(cls, *args)
    except TypeError:
        # ``cls.__new__`` may be a built-in base's that refuses a class mixing two built-in bases
        # (``MemoryError.__new__(ObjectStoreFullError)``: "not safe").
        try:
            obj = BaseException.__new__(cls, *args)
        except TypeError:
            obj = cls(*args)
    obj.__dict__.update(state)
    return obj


class RayError(Exception):
    """Super class of all ray exception types."""

    def __reduce__(self):
        # Ray's subclasses keep their constructor arguments as attributes, not in ``args``;
        # rebuilding from ``args`` and the attributes works for every one of them.
        return (_restore, (type(self), self.args, self.__dict__))


class _OneMessage(RayError):
    """Ray's one-message errors: kept in the attribute Ray names (``_attribute``), shown through ``_template``."""

    _attribute = "message"
    _template = "{}"

    def __init__(self, message):
        setattr(self, self._attribute, message)

    def __str__(self):
        return self._template.format(getattr(self, self._attribute))


class CrossLanguageError(RayError):
    """Raised from another language (mpirt runs Python only)."""

    def __init__(self, ray_exception):
        self.ray_exception = ray_exception

    def __str__(self):
        return f"An exception raised from another language:\n{self.ray_exception}"


class TaskCancelledError(RayError):
    """Raised when this task is cancelled. Ray's arguments are ``(task_id=None, error_message=None)``; a
    single text argument is the message (mpirt's task ids are numbers)."""

    def __init__(self, task_id=None, error_message=None):
        if isinstance(task_id, str) and error_message is None:
            task_id, error_message = None, task_id
        self.task_id = task_id
        self.error_message = error_message

    def __str__(self):
        msg = ""
        if self.task_id is not None:
            task = format(self.task_id, "028x") if isinstance(self.task_id, int) else self.task_id
            msg = f"Task: {task} was cancelled. "
        if self.error_message:
            msg += self.error_message
        return msg or "The task was cancelled."


class RayTaskError(RayError):
    """Indicates that a task threw an exception during execution. ``cause`` is the task's exception;
    ``function_name``, ``traceback_str``, ``pid``, ``ip`` and (mpirt) ``rank`` say where it ran. ``get``
    raises ``as_instanceof_cause()``."""

    def __init__(self, function_name, traceback_str, cause, proctitle=None, pid=None, ip=None,
                 actor_repr=None, actor_id=None, rank=None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.proctitle = proctitle or f"ray::{function_name}"
        self.pid = pid or os.getpid()
        self.ip = ip or _node_ip()
        self.actor_repr = actor_repr
        self._actor_id = actor_id
        self.rank = rank
        self.cause_repr = repr(cause)
        frozen = _freeze(cause)
        if frozen is None:
            cause, frozen = _unpicklable_stand_in(cause, traceback_str)
        self.cause = cause
        self._frozen_cause = frozen
        self.args = (function_name, traceback_str, self.cause, proctitle, pid, ip)

    def __reduce__(self):
        # The cause travels only frozen, so that a receiver that cannot unpickle it gets UnserializableException
        # rather than an unpickling error.
        state = {k: v for k, v in self.__dict__.items() if k not in ("cause", "_frozen_cause")}
        args = tuple(None if arg is self.cause else arg for arg in self.args)
        return (_restore_task_error, (type(self), args, state, self._frozen_cause))

    def as_instanceof_cause(self):
        """An exception that is both this ``RayTaskError`` and an instance of the cause's class; ``self``
        where that class cannot be subclassed (the cause stays in ``cause``)."""
        cause = self.cause
        if cause is None or issubclass(RayTaskError, type(cause)):
            return self
        dual = _dual_class(type(cause))
        if dual is None:
            return self
        args = (cause.message, cause.exceptions) if isinstance(cause, BaseExceptionGroup) else (cause,)
        try:
            err = dual(*args)
        except Exception as exc:  # a cause class whose __new__ wants other arguments
            logger.warning("Could not combine RayTaskError with %s (%s); raising RayTaskError only. "
                           "`ray_task_error.cause` holds the task's exception.", type(cause), exc)
            return self
        err.__dict__.update(self.__dict__)
        err.__dict__["_task_error"] = self
        return err

    def __str__(self):
        header = f"{self.proctitle}() (pid={self.pid}, ip={self.ip}"
        if self.rank is not None:
            header += f", rank={self.rank}"
        if self.actor_repr:
            header += f", actor_id={self._actor_id}, repr={self.actor_repr}"
        header += ")"
        if not self.traceback_str:
            return f"{header}\n{type(self.cause).__name__}: {self.cause}"
        return _user_traceback(self.traceback_str, header)


def _user_traceback(traceback_str, header=None):
    """``traceback_str`` without mpirt's own frames (as Ray leaves out its own), each "Traceback (most recent
    call last):" line replaced by ``header`` if given."""
    out = []
    in_hidden_frame = False
    for line in traceback_str.strip().split("\n"):
        if header is not None and line.startswith(("Traceback ", "+ Exception Group Traceback ")):
            out.append(header)
            in_hidden_frame = False
        elif line.startswith('  File "'):
            in_hidden_frame = line.startswith(_PACKAGE_DIR, 8)
            if not in_hidden_frame:
                out.append(line)
        elif in_hidden_frame and line.startswith("    "):
            continue   # the source line or carets of an mpirt frame
        else:
            in_hidden_frame = False
            out.append(line)
    return "\n".join(out)


def _restore_task_error(cls, args, state, frozen):
    err = _restore(cls, args, state)
    try:
        err.cause = _thaw(frozen)
    except Exception:
        err.cause = None
        return UnserializableException(f"{RayTaskError.__module__}.RayTaskError: {err}")
    err._frozen_cause = frozen
    err.args = tuple(err.cause if i == 2 else arg for i, arg in enumerate(args))
    return err


_DUAL_CLASSES: dict = {}


class _DualTaskError:
    """Members of the classes ``as_instanceof_cause`` makes: ``RayTaskError`` first, the cause's class second.
    Its ``__init__`` is not called, nor are its attributes set through its descriptors, so read-only properties
    and required arguments do not matter; attributes the cause has and this error lacks are the cause's."""

    def __init__(self, *args, **kwargs):
        pass

    args = BaseException.args   # the error's own, even where the cause's class makes ``args`` a property

    def __getattr__(self, name):
        cause = self.__dict__.get("cause")
        if cause is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(cause, name)

    def __str__(self):
        return str(self.__dict__["_task_error"])

    def __reduce__(self):
        return (_instance_of_cause, (self.__dict__["_task_error"],))


def _instance_of_cause(task_error):
    return task_error.as_instanceof_cause() if isinstance(task_error, RayTaskError) else task_error


def _dual_class(cause_cls):
    if cause_cls in _DUAL_CLASSES:
        return _DUAL_CLASSES[cause_cls]
    name = f"RayTaskError({cause_cls.__name__})"
    members = {k: v for k, v in vars(_DualTaskError).items() if k not in ("__dict__", "__weakref__", "__doc__")}
    members.update(__module__=__name__, __qualname__=name, __doc__=RayTaskError.__doc__)
    try:
        dual = type(name, (RayTaskError, cause_cls), members)
    except Exception as exc:  # a final class, or layouts that conflict (__slots__ of its own)
        logger.warning("User exception type %s in RayTaskError cannot be subclassed: it is raised as RayTaskError "
                       "only; `ray_task_error.cause` holds it. Failure in subclassing: %s", cause_cls, exc)
        dual = None
    _DUAL_CLASSES[cause_cls] = dual
    return dual


def _dumps(obj):
    import cloudpickle

    return cloudpickle.dumps(obj, protocol=5)


def _freeze_one(exc):
    """``("self", blob)`` if ``exc`` survives a pickle round trip, ``("rebuilt", blob)`` if it does once
    rebuilt without its ``__init__``, None if it cannot be pickled at all."""
    try:
        blob = _dumps(exc)
    except Exception:
        return None
    try:
        pickle.loads(blob)
        return ("self", blob)
    except Exception:
        pass
    try:
        blob = _dumps((type(exc), BaseException.args.__get__(exc), dict(exc.__dict__)))
        _restore(*pickle.loads(blob))
        return ("rebuilt", blob)
    except Exception:
        return None


def _freeze(exc):
    """What carries ``exc`` and its ``__cause__`` chain to another process, or None if ``exc`` itself cannot
    be pickled. A link that cannot be becomes a RayError with its text."""
    first = _freeze_one(exc)
    if first is None:
        return None
    frozen = [first]
    seen = {id(exc)}
    link = getattr(exc, "__cause__", None)
    while link is not None and id(link) not in seen and len(frozen) <= _CHAIN_LIMIT:
        seen.add(id(link))
        one = _freeze_one(link)
        if one is None:
            one = ("self", _dumps(RayError(f"{_qualified_name(type(link))}: {link}")))
        frozen.append(one)
        link = link.__cause__
    return tuple(frozen)


def _thaw(frozen):
    """The exception ``_freeze`` carried, with its ``__cause__`` chain; raises if the first cannot be
    unpickled here (a link that cannot ends the chain)."""
    chain = []
    for how, blob in frozen:
        try:
            value = pickle.loads(blob)
            chain.append(value if how == "self" else _restore(*value))
        except Exception:
            if not chain:
                raise
            break
    for exc, parent in zip(chain, chain[1:]):
        exc.__cause__ = parent
    return chain[0]


def _unpicklable_stand_in(cause, traceback_str):
    """Ray's fallback for a cause that cannot be pickled: a RayError with its text and traceback."""
    try:
        _dumps(cause)
        why = "it cannot be unpickled"
    except Exception as exc:
        why = str(exc)
    stand_in = RayError(f"Exception {_qualified_name(type(cause))} isn't serializable: {why}.\n"
                        f"Original exception details:\n{_user_traceback(traceback_str or '')}")
    return stand_in, (("self", _dumps(stand_in)),)


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def _node_ip():
    """This node's address as Ray shows it in errors (no packet is sent; no DNS wait)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))   # TEST-NET-1: picks the outgoing interface only
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


class LocalRayletDiedError(RayError):
    """Indicates that the task's local raylet died (Ray's; mpirt has no raylet)."""

    def __str__(self):
        return super().__str__() or "The task's local raylet died."


class WorkerCrashedError(RayError):
    """Indicates that the worker died unexpectedly while executing a task."""

    def __str__(self):
        return super().__str__() or "The worker died unexpectedly while executing this task."


class RayActorError(RayError):
    """Indicates that the actor has outages unexpectedly before finishing a task. Ray raises its subclasses
    ``ActorDiedError`` and ``ActorUnavailableError``."""

    BASE_ERROR_MSG = "The actor experienced an error before finishing this task."

    def __init__(self, actor_id=None, error_msg=BASE_ERROR_MSG, actor_init_failed=False, preempted=False):
        self.actor_id = actor_id
        self.error_msg = error_msg
        self._actor_init_failed = actor_init_failed
        self._preempted = preempted

    def __str__(self):
        return self.error_msg

    @property
    def preempted(self):
        return self._preempted

    @property
    def actor_init_failed(self):
        return self._actor_init_failed


class ActorDiedError(RayActorError):
    """Indicates that the actor died unexpectedly before finishing a task: its constructor failed, it was
    killed, it exited, or its rank died. ``ActorDiedError(cause)`` as in Ray (``cause`` the ``RayTaskError`` of
    a failed ``__init__``, or None), or ``ActorDiedError(message, cause=None)`` as mpirt raises it. ``cause``
    (mpirt) gives the constructor's error as an instance of its class."""

    BASE_ERROR_MSG = "The actor died unexpectedly before finishing this task."

    def __init__(self, error_msg=None, cause=None, actor_id=None):
        if isinstance(error_msg, BaseException) and cause is None:
            error_msg, cause = None, error_msg
        init_failed = isinstance(cause, RayTaskError)
        if error_msg is None:
            error_msg = (f"The actor died because of an error raised in its creation task, {cause}"
                         if init_failed else self.BASE_ERROR_MSG)
        super().__init__(actor_id, error_msg, init_failed)
        self._cause = cause

    @property
    def cause(self):
        return _instance_of_cause(self._cause)

    @staticmethod
    def from_task_error(task_error):
        return ActorDiedError(task_error)


class ActorUnavailableError(RayActorError):
    """Raised when the actor is temporarily unavailable but may be available later. ``(error_message,
    actor_id)`` as in Ray; without ``actor_id``, ``error_message`` is the whole message (as mpirt raises it)."""

    def __init__(self, error_message, actor_id=None):
        if isinstance(actor_id, int):
            actor_id = format(actor_id, "028x")
        elif isinstance(actor_id, bytes):
            actor_id = actor_id.hex()
        if actor_id is not None:
            error_message = (f"The actor {actor_id} is unavailable: {error_message}. The task may or may not have "
                             "been executed on the actor.")
        super().__init__(actor_id, error_message)


class RaySystemError(RayError):
    """Indicates that Ray encountered a system error."""

    def __init__(self, client_exc, traceback_str=None):
        self.client_exc = client_exc
        self.traceback_str = traceback_str

    def __str__(self):
        text = f"System error: {self.client_exc}"
        if self.traceback_str:
            text += f"\ntraceback: {self.traceback_str}"
        return text


class AuthenticationError(_OneMessage):
    """Indicates that an authentication error occurred."""


class UserCodeException(RayError):
    """Indicates that an exception occurred while executing user code."""


class ObjectStoreFullError(RayError, MemoryError):
    """Indicates that the object store is full: neither the node's store memory nor the spill disk can hold
    the object. (Also a ``MemoryError``, so code catching ``MemoryError`` keeps working.)"""


class OutOfDiskError(RayError):
    """Indicates that the local disk is full."""

    def __str__(self):
        return super().__str__() or ("The object cannot be created because the local object store is full "
                                     "and the local disk is over capacity.")


class OutOfMemoryError(_OneMessage):
    """Indicates that the node is running out of memory and is close to full."""


class NodeDiedError(_OneMessage):
    """Indicates that the node is either dead or unreachable."""


class ObjectLostError(RayError):
    """Indicates that the object is lost from distributed memory, due to node failure or system error. Ray's arguments
    are ``(object_ref_hex, owner_address, call_site)``; mpirt raises it with one message saying which object and why."""

    def __init__(self, object_ref_hex=None, owner_address=None, call_site=None):
        self._message = object_ref_hex if owner_address is None and call_site is None else None
        self.object_ref_hex = None if self._message is not None else object_ref_hex
        self.owner_address = owner_address
        self.call_site = (call_site or "").replace("\n", "\n  ")

    def _detail(self):
        return f"All copies of {self.object_ref_hex} have been lost due to node failure."

    def __str__(self):
        if self._message is not None:
            return str(self._message)
        text = f"Failed to retrieve object {self.object_ref_hex}."
        if self.call_site:
            text += f" The ObjectRef was created at: {self.call_site}"
        return f"{text}\n\n{self._detail()}"


class ObjectFetchTimedOutError(ObjectLostError):
    """Indicates that an object fetch timed out."""

    def _detail(self):
        return f"Fetch for object {self.object_ref_hex} timed out because no locations were found for the object."


class RpcError(_OneMessage):
    """Indicates an error in the underlying RPC system."""

    def __init__(self, message, rpc_code=None):
        super().__init__(message)
        self.rpc_code = rpc_code


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """Indicates that an object has been deleted while there was still a reference to it."""

    def _detail(self):
        return "The object has already been deleted by the reference counting protocol."


class ObjectFreedError(ObjectLostError):
    """Indicates that an object was manually freed by the application."""

    def _detail(self):
        return "The object was manually freed."


class OwnerDiedError(ObjectLostError):
    """Indicates that the owner of the object has died while there is still a reference to it."""

    def _detail(self):
        return ("The object's owner has exited. This is the Python worker that first created the ObjectRef "
                "via `.remote()` or `ray.put()`.")


class ObjectReconstructionFailedError(ObjectLostError):
    """Indicates that the object cannot be reconstructed."""

    def __init__(self, object_ref_hex=None, reason=None, reason_message=None, owner_address=None, call_site=None):
        if reason is not None or reason_message is not None:
            call_site = call_site or ""
        super().__init__(object_ref_hex, owner_address, call_site)
        self.reason = reason
        self.reason_message = reason_message

    def _detail(self):
        reason = f"[{self.reason}] " if self.reason is not None else ""
        return reason + (self.reason_message or "The object cannot be reconstructed.")


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """Indicates that the object cannot be reconstructed: the task's retries are used up."""


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """Indicates that the object cannot be reconstructed: its lineage was evicted."""


class GetTimeoutError(RayError, TimeoutError):
    """Indicates that a call to the worker timed out."""


class PlasmaObjectNotAvailable(RayError):
    """Called when an object was not available within the given timeout."""


class AsyncioActorExit(RayError):
    """Raised when an asyncio actor intentionally exits via exit_actor()."""


class RuntimeEnvSetupError(RayError):
    """Raised when a runtime environment fails to be set up."""

    def __init__(self, error_message=None):
        self.error_message = error_message

    def __str__(self):
        text = "Failed to set up runtime environment."
        return f"{text}\n{self.error_message}" if self.error_message else text


class TaskPlacementGroupRemoved(RayError):
    """Raised when the corresponding placement group was removed."""

    def __str__(self):
        return "The placement group corresponding to this task has been removed."


class ActorPlacementGroupRemoved(RayError):
    """Raised when the corresponding placement group was removed."""

    def __str__(self):
        return "The placement group corresponding to this Actor has been removed."


class PendingCallsLimitExceeded(RayError):
    """Raised when the pending actor calls exceeds the ``max_pending_calls`` option."""


class TaskUnschedulableError(_OneMessage):
    """Raised when the task cannot be scheduled."""

    _attribute = "error_message"
    _template = "The task is not schedulable: {}"


class ActorUnschedulableError(_OneMessage):
    """Raised when the actor cannot be scheduled."""

    _attribute = "error_message"
    _template = "The actor is not schedulable: {}"


class ObjectRefStreamEndOfStreamError(RayError):
    """Raised by streaming generator tasks when there are no more ObjectRefs to read."""


class StreamingGeneratorReplayInconsistentError(RaySystemError):
    """Raised when a streaming generator's replay produces a different number of objects."""


class OufOfBandObjectRefSerializationException(RayError):
    """Raised when an ObjectRef is pickled out of band (an anti-pattern)."""


class RayChannelError(RaySystemError):
    """A system error of compiled-graph channels (not provided by mpirt)."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """Raised when a compiled-graph channel operation times out (not provided by mpirt)."""


class RayCgraphCapacityExceeded(RaySystemError):
    """Raised when a compiled-graph channel's buffer is full (not provided by mpirt)."""


class RayDirectTransportError(RaySystemError):
    """Raised by a direct-transport transfer (not provided by mpirt)."""


class UnserializableException(RayError):
    """Raised when a task's exception could not be unpickled where it was delivered; carries the original
    exception's text and traceback instead."""

    def __init__(self, original_stack_trace):
        self._original_stack_trace = original_stack_trace

    def __str__(self):
        return f"Failed to deserialize exception.\nOriginal exception:\n{self._original_stack_trace}"


class ActorAlreadyExistsError(_OneMessage, ValueError):
    """Raised when a named actor already exists (also a ``ValueError``, as in Ray)."""

    _attribute = "error_message"


class ActorHandleNotFoundError(_OneMessage, ValueError):
    """Raised when killing an actor handle that does not exist (also a ``ValueError``)."""

    _attribute = "error_message"


class InfeasibleResourceError(RayError, ValueError):
    """No rank of the cluster could ever satisfy the resource request (mpirt raises this at ``.remote()``
    where Ray would leave the task pending)."""


# mpirt's own names.
MpirtError = RayError
TaskError = RayTaskError

RAY_EXCEPTION_TYPES = [
    PlasmaObjectNotAvailable, RayError, RayTaskError, WorkerCrashedError, RayActorError, ObjectStoreFullError,
    ObjectLostError, ObjectFetchTimedOutError, ReferenceCountingAssertionError, ObjectReconstructionFailedError,
    OwnerDiedError, GetTimeoutError, AsyncioActorExit, RuntimeEnvSetupError, TaskPlacementGroupRemoved,
    ActorPlacementGroupRemoved, PendingCallsLimitExceeded, LocalRayletDiedError, TaskUnschedulableError,
    ActorDiedError, ActorUnschedulableError, ActorUnavailableError, RayChannelError, RayChannelTimeoutError,
    OufOfBandObjectRefSerializationException, RayCgraphCapacityExceeded, UnserializableException,
    ActorAlreadyExistsError, ActorHandleNotFoundError, AuthenticationError,
]

# Errors that pass through a task unchanged when it raises them: a dependency's failure.
_PASS_THROUGH = (TaskCancelledError, ObjectLostError, WorkerCrashedError, RayActorError, UnserializableException)


class ErrorPayload:
    """What travels for a failed object: enough to rebuild the error at ``get``."""

    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error

    def to_exception(self):
        return _instance_of_cause(self.error)


def make_task_error(exc, function_name, rank, traceback_str):
    """The error a task that raised ``exc`` reports. A dependency's failure (a RayTaskError, a lost object, a
    dead worker or actor, a cancellation) passes through as it came."""
    if isinstance(exc, RayTaskError):
        return exc.__dict__.get("_task_error", exc)
    if isinstance(exc, _PASS_THROUGH):
        return exc
    return RayTaskError(function_name, traceback_str, exc, rank=rank)
