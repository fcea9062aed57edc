"""Errors as Ray's documentation describes them (``import ray`` is mpirt).

From "Task Fault Tolerance" (catching application-level failures: ``RayTaskError`` that is also
an instance of the user's exception class, ``cause``, unserializable exceptions, failed
dependencies), "Actor Fault Tolerance", and the API reference of ``ray.exceptions`` (classes,
bases, constructor arguments). mpirt goes beyond Ray where Ray loses information: an exception
whose class needs constructor arguments still arrives as an instance of its class (Ray gives
``UnserializableException``), and ``raise X from Y`` keeps ``Y`` as the cause's ``__cause__``.
"""
import os
import pickle
import threading

import pytest

import ray


class MyException(Exception):
    ...


class MyFinalException(Exception):
    def __init_subclass__(cls, /, *args, **kwargs):
        raise TypeError("Cannot subclass this little exception class.")


class UnserializableException(Exception):
    def __init__(self):
        self.lock = threading.Lock()


class NeedsArguments(Exception):
    """Pickles, but unpickling calls ``NeedsArguments(message)``, which lacks ``code``."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class ReadOnlyArgs(Exception):
    @property
    def args(self):
        return ("fixed",)


class WithProperty(Exception):
    def __init__(self, status):
        super().__init__(f"status {status}")
        self._status = status

    @property
    def status(self):
        return self._status


class HostileToDriver(Exception):
    """Unpickles anywhere but in the process ``driver_pid``."""

    def __init__(self, message, driver_pid):
        super().__init__(message, driver_pid)

    def __reduce__(self):
        return (_rebuild_off_driver, self.args)


def _rebuild_off_driver(message, driver_pid):
    if os.getpid() == driver_pid:
        raise RuntimeError("this exception cannot be unpickled in the driver")
    return HostileToDriver(message, driver_pid)


class Inner(Exception):
    pass


class Outer(Exception):
    pass


@ray.remote
def f():
    raise Exception("the real error")


@ray.remote
def g(x):
    return


@ray.remote
def raise_value_error():
    raise ValueError("x")


@ray.remote
def raise_it(make):
    raise make()


@ray.remote
def raise_chained():
    try:
        raise Inner("the inner error")
    except Inner as inner:
        raise Outer("the outer error") from inner


@ray.remote
class Counter:
    def fail(self):
        raise MyException("a method failed")

    def ping(self):
        return "pong"


@ray.remote
class Broken:
    def __init__(self):
        raise KeyError("constructor failed")

    def ping(self):
        return "pong"


def raised_by(ref):
    with pytest.raises(Exception) as info:
        ray.get(ref, timeout=60)
    return info.value


def test_exception_classes_and_bases_are_rays():
    ex = ray.exceptions
    for name, bases in {
        "RayTaskError": (ex.RayError,), "RayActorError": (ex.RayError,), "ActorDiedError": (ex.RayActorError,),
        "ActorUnavailableError": (ex.RayActorError,), "ActorUnschedulableError": (ex.RayError,),
        "TaskUnschedulableError": (ex.RayError,), "WorkerCrashedError": (ex.RayError,),
        "NodeDiedError": (ex.RayError,), "ObjectLostError": (ex.RayError,), "OwnerDiedError": (ex.ObjectLostError,),
        "ObjectFetchTimedOutError": (ex.ObjectLostError,), "ObjectFreedError": (ex.ObjectLostError,),
        "ObjectReconstructionFailedError": (ex.ObjectLostError,),
        "ReferenceCountingAssertionError": (ex.ObjectLostError, AssertionError),
        "ObjectStoreFullError": (ex.RayError,), "OutOfDiskError": (ex.RayError,), "OutOfMemoryError": (ex.RayError,),
        "GetTimeoutError": (ex.RayError, TimeoutError), "TaskCancelledError": (ex.RayError,),
        "RaySystemError": (ex.RayError,), "RuntimeEnvSetupError": (ex.RayError,),
        "PendingCallsLimitExceeded": (ex.RayError,), "ActorAlreadyExistsError": (ValueError, ex.RayError),
        "ActorHandleNotFoundError": (ValueError, ex.RayError), "AsyncioActorExit": (ex.RayError,),
        "UnserializableException": (ex.RayError,), "LocalRayletDiedError": (ex.RayError,),
        "PlasmaObjectNotAvailable": (ex.RayError,), "TaskPlacementGroupRemoved": (ex.RayError,),
        "ActorPlacementGroupRemoved": (ex.RayError,), "CrossLanguageError": (ex.RayError,),
        "RayChannelError": (ex.RaySystemError,), "RayChannelTimeoutError": (ex.RayChannelError, TimeoutError),
    }.items():
        cls = getattr(ex, name)
        assert cls.__name__ == name
        assert all(issubclass(cls, base) for base in bases), name
    assert issubclass(ex.RayError, Exception)
    # mpirt's earlier names are the same classes
    assert ex.MpirtError is ex.RayError and ex.TaskError is ex.RayTaskError
    from mpirt.exceptions import ObjectStoreFullError
    assert ObjectStoreFullError is ex.ObjectStoreFullError


def test_constructors_take_rays_arguments():
    ex = ray.exceptions
    assert str(ex.RayActorError()) == "The actor experienced an error before finishing this task."
    died = ex.ActorDiedError()
    assert str(died) == "The actor died unexpectedly before finishing this task."
    assert died.actor_id is None and not died.actor_init_failed and not died.preempted
    unavailable = ex.ActorUnavailableError("restarting", b"\x01\x02")
    assert unavailable.actor_id == "0102" and "The actor 0102 is unavailable: restarting." in str(unavailable)
    assert str(ex.TaskUnschedulableError("no node")) == "The task is not schedulable: no node"
    assert str(ex.ActorUnschedulableError("no node")) == "The actor is not schedulable: no node"
    assert str(ex.RaySystemError("boom")) == "System error: boom"
    assert str(ex.RuntimeEnvSetupError("no pip")) == "Failed to set up runtime environment.\nno pip"
    assert str(ex.NodeDiedError("node gone")) == "node gone"
    assert str(ex.ActorAlreadyExistsError("taken")) == "taken"
    lost = ex.OwnerDiedError("abc123", None, "")
    assert lost.object_ref_hex == "abc123" and str(lost).startswith("Failed to retrieve object abc123.")
    cancelled = ex.TaskCancelledError()
    assert cancelled.task_id is None and cancelled.error_message is None
    assert "Original exception:\nTraceback" in str(ex.UnserializableException("Traceback ..."))
    # every one of them survives pickling, as errors travel between processes
    for error in (died, unavailable, lost, cancelled, ex.GetTimeoutError("late"), ex.WorkerCrashedError()):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)


def test_task_error_is_ray_task_error_and_instance_of_cause(rt):
    error = raised_by(raise_value_error.remote())
    assert type(error).__name__ == "RayTaskError(ValueError)"
    assert repr(error) == "RayTaskError(ValueError)(ValueError('x'))"
    assert isinstance(error, ray.exceptions.RayTaskError) and isinstance(error, ValueError)
    assert isinstance(error, ray.exceptions.RayError)
    assert type(error.cause) is ValueError and error.cause.args == ("x",)
    assert error.function_name == "raise_value_error"


def test_str_reads_like_rays(rt):
    # "ray::f() (pid=71867, ip=XXX.XX.XXX.XX)\n  File "errors.py", line 5, in f\n ... Exception: the real error"
    try:
        ray.get(f.remote())
    except ray.exceptions.RayTaskError as e:
        text = str(e)
    lines = text.split("\n")
    assert lines[0].startswith("ray::f() (pid=") and ", ip=" in lines[0]
    assert lines[1].startswith('  File "') and lines[1].endswith(", in f")
    assert lines[-1] == "Exception: the real error"
    assert "mpirt" + os.sep not in text   # mpirt's own frames are left out, as Ray leaves out its own


def test_catch_user_exceptions(rt):
    with pytest.raises(MyException, match="a user exception"):
        ray.get(raise_it.remote(lambda: MyException("a user exception")))


def test_class_that_cannot_be_subclassed(rt):
    # Ray's doc: raised as RayTaskError only; the user exception is in `cause`.
    error = raised_by(raise_it.remote(lambda: MyFinalException("a *final* user exception")))
    assert type(error) is ray.exceptions.RayTaskError
    assert isinstance(error.cause, MyFinalException)
    assert str(error.cause) == "a *final* user exception"
    assert str(error).endswith("MyFinalException: a *final* user exception")


def test_unserializable_exception_becomes_ray_error_cause(rt):
    # Ray's doc: "print(type(e.cause))  # <class 'ray.exceptions.RayError'>"
    try:
        ray.get(raise_it.remote(UnserializableException))
    except ray.exceptions.RayTaskError as e:
        error = e
    assert type(error) is ray.exceptions.RayTaskError
    assert type(error.cause) is ray.exceptions.RayError
    assert "UnserializableException isn't serializable" in str(error.cause)
    assert "raise_it" in str(error.cause)          # the original traceback travels in its text
    assert str(error).split("\n")[-1].endswith("UnserializableException")


def test_exception_that_cannot_be_unpickled_by_the_driver(rt):
    driver_pid = os.getpid()
    error = raised_by(raise_it.remote(lambda: HostileToDriver("only off the driver", driver_pid)))
    assert type(error) is ray.exceptions.UnserializableException
    assert str(error).startswith("Failed to deserialize exception.")
    assert "HostileToDriver: ('only off the driver'" in str(error)


def test_class_with_required_init_arguments_stays_its_class(rt):
    error = raised_by(raise_it.remote(lambda: NeedsArguments("bad request", 400)))
    assert isinstance(error, NeedsArguments) and isinstance(error, ray.exceptions.RayTaskError)
    assert error.code == 400 and error.cause.code == 400
    assert error.cause.args == ("bad request",)


def test_class_with_read_only_properties_stays_its_class(rt):
    error = raised_by(raise_it.remote(lambda: ReadOnlyArgs("given")))
    assert type(error).__name__ == "RayTaskError(ReadOnlyArgs)" and isinstance(error, ReadOnlyArgs)
    assert error.cause.args == ("fixed",)
    error = raised_by(raise_it.remote(lambda: WithProperty(503)))
    assert isinstance(error, WithProperty)
    assert error.status == 503 and error.cause.status == 503


def test_exception_chain_survives(rt):
    error = raised_by(raise_chained.remote())
    assert isinstance(error, Outer)
    inner = error.cause.__cause__
    assert isinstance(inner, Inner) and str(inner) == "the inner error"
    assert "The above exception was the direct cause of the following exception:" in str(error)


def test_utf8_message_survives(rt):
    message = "échec — ошибка ✓ 失敗"
    error = raised_by(raise_it.remote(lambda: ValueError(message)))
    assert str(error.cause) == message and str(error).endswith(f"ValueError: {message}")


def test_failed_dependency_raises_the_same_error(rt):
    try:
        ray.get(g.remote(f.remote()))
    except ray.exceptions.RayTaskError as e:
        error = e
    # Exception itself is a base of RayTaskError: nothing to combine, as in Ray
    assert type(error) is ray.exceptions.RayTaskError
    assert str(error.cause) == "the real error"
    assert "Exception: the real error" in str(error)
    error = raised_by(g.remote(g.remote(raise_value_error.remote())))
    assert type(error).__name__ == "RayTaskError(ValueError)" and str(error.cause) == "x"


def test_delivered_error_can_travel_again(rt):
    error = raised_by(raise_it.remote(lambda: NeedsArguments("again", 7)))
    copy = ray.get(ray.put(error))
    assert type(copy).__name__ == "RayTaskError(NeedsArguments)" and copy.code == 7
    assert str(copy) == str(error)


def test_actor_method_error(rt):
    counter = Counter.remote()
    error = raised_by(counter.fail.remote())
    assert type(error).__name__ == "RayTaskError(MyException)" and isinstance(error, MyException)
    assert str(error).startswith("ray::Counter.fail() (pid=")
    assert ray.get(counter.ping.remote()) == "pong"


def test_actor_constructor_failure_is_actor_died_error(rt):
    broken = Broken.remote()
    error = raised_by(broken.ping.remote())
    assert isinstance(error, ray.exceptions.ActorDiedError) and isinstance(error, ray.exceptions.RayActorError)
    assert error.actor_init_failed
    assert "constructor failed" in str(error)


def test_get_timeout_error_is_also_timeout_error(rt):
    @ray.remote
    def slow():
        import time
        for _ in range(600):
            time.sleep(0.05)

    ref = slow.remote()
    with pytest.raises(TimeoutError) as info:
        ray.get(ref, timeout=0.1)
    assert isinstance(info.value, ray.exceptions.GetTimeoutError)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError) as info:
        ray.get(ref, timeout=60)
    assert isinstance(info.value, ray.exceptions.RayError)


def test_ray_error_raised_by_a_task_is_wrapped_like_any_other(rt):
    # A task's own RayError (here one with a second built-in base) comes back inside a
    # RayTaskError that is still an instance of it.
    error = raised_by(raise_it.remote(lambda: ray.exceptions.GetTimeoutError("an inner get timed out")))
    assert type(error).__name__ == "RayTaskError(GetTimeoutError)"
    assert isinstance(error, ray.exceptions.GetTimeoutError) and isinstance(error, TimeoutError)
    assert str(error.cause) == "an inner get timed out"
