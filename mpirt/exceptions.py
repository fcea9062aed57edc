"""Exceptions raised by mpirt, named as in Ray (aliases keep Ray code working)."""
import pickle


class MpirtError(Exception):
    """Base class of every mpirt error."""


class TaskError(MpirtError):
    """A task raised. ``get`` raises this as an instance of the original class too.

    Attributes: ``cause`` (the original exception, or None if it could not be
    transported), ``function_name``, ``rank`` (where it ran), ``traceback_str``.
    """

    def __init__(self, function_name, traceback_str, rank, cause=None, cause_repr=None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.rank = rank
        self.cause = cause
        self.cause_repr = cause_repr if cause_repr is not None else repr(cause)
        super().__init__(self._message())

    def _message(self):
        return (
            f"task {self.function_name} failed on rank {self.rank} with {self.cause_repr}\n"
            f"{self.traceback_str.rstrip()}"
        )

    def __str__(self):
        return self._message()

    def __reduce__(self):
        return (TaskError, (self.function_name, self.traceback_str, self.rank, self.cause, self.cause_repr))

    def as_instanceof_cause(self):
        """Return an exception that is both a TaskError and an instance of the cause's class."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or issubclass(cause_cls, TaskError):
            return self
        dual = _dual_class(cause_cls)
        if dual is None:
            return self
        try:
            err = dual(self.function_name, self.traceback_str, self.rank, self.cause, self.cause_repr)
        except Exception:  # a cause class whose constructor machinery refuses ours
            return self
        err.args = (self._message(),)
        return err


_DUAL_CLASSES = {}


def _dual_class(cause_cls):
    if cause_cls in _DUAL_CLASSES:
        return _DUAL_CLASSES[cause_cls]

    def reduce(self):
        return (TaskError, (self.function_name, self.traceback_str, self.rank, self.cause, self.cause_repr))

    try:
        dual = type(
            f"TaskError({cause_cls.__name__})",
            (TaskError, cause_cls),
            {"__str__": TaskError.__str__, "__reduce__": reduce, "__init__": TaskError.__init__},
        )
    except TypeError:  # layout conflicts (e.g. classes with __slots__ of their own)
        dual = None
    _DUAL_CLASSES[cause_cls] = dual
    return dual


class GetTimeoutError(MpirtError, TimeoutError):
    """``get`` did not finish within its timeout."""


class TaskCancelledError(MpirtError):
    """The task was cancelled with ``mpirt.cancel`` before it produced a value."""

    def __init__(self, message="task was cancelled"):
        super().__init__(message)


class ObjectLostError(MpirtError):
    """The object's value is gone (its owner freed it or died)."""


class WorkerCrashedError(MpirtError):
    """The rank running the task died."""


class ActorDiedError(MpirtError):
    """The actor is dead: its constructor failed, it was killed, it exited, or its rank died.

    ``cause`` holds the constructor's error when that is why it died.
    """

    def __init__(self, message="the actor died", cause=None):
        super().__init__(message)
        self._cause = cause

    @property
    def cause(self):
        cause = self._cause
        return cause.as_instanceof_cause() if isinstance(cause, TaskError) else cause

    def __reduce__(self):
        return (ActorDiedError, (self.args[0] if self.args else "", self._cause))


class InfeasibleResourceError(MpirtError, ValueError):
    """No rank of the cluster could ever satisfy the resource request."""


# Ray's names, so ``import mpirt as ray`` code that catches them keeps working.
RayError = MpirtError
RayTaskError = TaskError
RayActorError = ActorDiedError


class ErrorPayload:
    """What travels for a failed object: enough to rebuild the error at ``get``."""

    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error

    def to_exception(self):
        err = self.error
        if isinstance(err, TaskError):
            return err.as_instanceof_cause()
        return err


def make_task_error(exc, function_name, rank, traceback_str):
    """Wrap ``exc`` raised by a task; a TaskError coming from a dependency passes through."""
    if isinstance(exc, TaskError):
        return TaskError(exc.function_name, exc.traceback_str, exc.rank, exc.cause, exc.cause_repr)
    if isinstance(exc, (TaskCancelledError, ObjectLostError, WorkerCrashedError, ActorDiedError)):
        return exc
    cause = exc
    try:
        pickle.loads(_dumps(exc))
    except Exception:
        cause = None  # the class or its state cannot travel; keep its repr
    return TaskError(function_name, traceback_str, rank, cause, repr(exc))


def _dumps(obj):
    import cloudpickle

    return cloudpickle.dumps(obj, protocol=5)
