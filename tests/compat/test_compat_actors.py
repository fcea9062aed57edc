"""Actor classes as Ray's "Actors" guide and API reference describe them (``import ray`` is mpirt).

Python's rules hold for the class behind an actor (methods looked up on the class, bases,
mixins, MRO, ``super()``, class attributes, classmethods and staticmethods), Ray's rules for
what an actor class refuses, its built-in methods, ``@ray.method`` options, restarts
(``kill(no_restart=False)``, ``sys.exit()`` in a method) and named actors.
"""
import sys
import time

import pytest

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError


class Base:
    GREETING = "hello"

    def __init__(self, value=1):
        self.value = value

    def who(self):
        return "base"

    def describe(self):
        return f"{self.who()}:{self.value}"

    @classmethod
    def make_label(cls, text):
        return f"{cls.__name__}/{text}"

    @staticmethod
    def double(x):
        return 2 * x


class LoudMixin:
    def who(self):
        return "loud-" + super().who()


class Child(LoudMixin, Base):
    LIMIT = 3

    def who(self):
        return "child(" + super().who() + ")"

    def uses_class_things(self):
        return self.GREETING, self.LIMIT, self.make_label("x"), self.double(21), Child.double(1)


def test_bases_mixins_mro_and_super(rt):
    actor = ray.remote(Child).remote(7)
    assert ray.get(actor.who.remote()) == "child(loud-base)"
    assert ray.get(actor.describe.remote()) == "child(loud-base):7"
    assert ray.get(actor.uses_class_things.remote()) == ("hello", 3, "Child/x", 42, 2)


def test_class_attributes_classmethods_and_staticmethods_on_the_actor_class(rt):
    Actor = ray.remote(Child)
    assert Actor.GREETING == "hello" and Actor.LIMIT == 3
    assert Actor.make_label("y") == "Child/y"
    assert Actor.double(4) == 8
    handle = Actor.remote()
    # Through a handle they are methods like any other.
    assert ray.get(handle.double.remote(5)) == 10
    assert ray.get(handle.make_label.remote("z")) == "Child/z"


@ray.remote
class Shadowed:
    def __init__(self):
        self.compute = "an attribute, not the method"

    def compute(self):
        return "the method"

    def read_attribute(self):
        return self.__dict__["compute"]


def test_methods_are_looked_up_on_the_class(rt):
    actor = Shadowed.remote()
    assert ray.get(actor.compute.remote()) == "the method"
    assert ray.get(actor.read_attribute.remote()) == "an attribute, not the method"


def test_what_an_actor_class_refuses(rt):
    @ray.remote
    class Counter:
        def incr(self):
            return 1

    with pytest.raises(TypeError, match=r"Actors cannot be instantiated directly"):
        Counter()
    with pytest.raises(TypeError, match="Inheriting from actor classes is not currently supported"):
        class Derived(Counter):
            pass
    handle = Counter.remote()
    with pytest.raises(TypeError, match=r"Actor methods cannot be called directly"):
        handle.incr()
    with pytest.raises(AttributeError):
        handle.no_such_method


def test_built_in_actor_methods(rt):
    @ray.remote
    class Holder:
        def __init__(self):
            self.items = [1, 2, 3]

    holder = Holder.remote()
    assert ray.get(holder.__ray_ready__.remote()) is True
    assert ray.get(holder.__ray_call__.remote(lambda self, extra: sum(self.items) + extra, 4)) == 10
    with pytest.raises(ActorDiedError):         # the call that ends it reports the death, as in Ray
        ray.get(holder.__ray_terminate__.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        ray.get(holder.__ray_ready__.remote(), timeout=30)


class Flaky(Exception):
    pass


def test_method_decorator_options(rt):
    @ray.remote(concurrency_groups={"io": 2})
    class Worker:
        def __init__(self):
            self.attempts = 0

        @ray.method(num_returns=2)
        def pair(self):
            return "a", "b"

        @ray.method(max_task_retries=3, retry_exceptions=[Flaky])
        def flaky(self):
            self.attempts += 1
            if self.attempts < 3:
                raise Flaky("not yet")
            return self.attempts

        @ray.method(concurrency_group="io")
        def in_io_group(self):
            return "io"

    worker = Worker.remote()
    first, second = worker.pair.remote()
    assert ray.get([first, second]) == ["a", "b"]
    assert ray.get(worker.flaky.remote()) == 3
    assert ray.get(worker.in_io_group.remote()) == "io"
    with pytest.raises(ValueError, match="concurrency_group"):
        worker.pair.options(concurrency_group="nope")


def test_kill_with_restart_runs_init_again(rt):
    @ray.remote(max_restarts=1)
    class Counter:
        def __init__(self):
            self.count = 0

        def incr(self):
            self.count += 1
            return self.count

    counter = Counter.remote()
    assert ray.get([counter.incr.remote() for _ in range(3)])[-1] == 3
    ray.kill(counter, no_restart=False)
    assert ray.get(counter.incr.remote(), timeout=30) == 1          # a new instance
    ray.kill(counter, no_restart=False)                            # no restarts left: it dies
    with pytest.raises(RayActorError):
        ray.get(counter.incr.remote(), timeout=30)


@ray.remote(max_restarts=1)
class Exiter:
    def __init__(self):
        self.calls = 0

    def incr(self):
        self.calls += 1
        return self.calls

    def exit(self, code):
        sys.exit(code)


def test_sys_exit_with_an_error_status_restarts_the_actor(rt):
    # Ray: the actor's process exited unexpectedly; it restarts (max_restarts) and the call in
    # flight fails with ActorUnavailableError unless max_task_retries allows running it again.
    actor = Exiter.remote()
    assert ray.get(actor.incr.remote()) == 1
    with pytest.raises(ActorUnavailableError):
        ray.get(actor.exit.remote(1), timeout=30)
    assert ray.get(actor.incr.remote(), timeout=30) == 1          # __init__ ran again
    with pytest.raises(ActorDiedError):                            # no restarts left
        ray.get(actor.exit.remote(2), timeout=30)
    with pytest.raises(ActorDiedError):
        ray.get(actor.incr.remote(), timeout=30)


def test_sys_exit_zero_is_an_intended_exit(rt):
    actor = Exiter.remote()
    with pytest.raises(ActorDiedError):
        ray.get(actor.exit.remote(0), timeout=30)
    with pytest.raises(ActorDiedError):
        ray.get(actor.incr.remote(), timeout=30)


def test_a_call_interrupted_by_sys_exit_is_retried_per_max_task_retries(rt, tmp_path):
    marker = tmp_path / "crashed-once"

    @ray.remote(max_restarts=-1, max_task_retries=-1)
    class Immortal:
        def update(self, path):
            import os
            if not os.path.exists(path):
                open(path, "w").close()
                sys.exit(1)
            return "done"

    assert ray.get(Immortal.remote().update.remote(str(marker)), timeout=30) == "done"


def test_named_actor_lookups_are_validated_as_in_ray(rt):
    @ray.remote
    class Named:
        def ping(self):
            return "pong"

    with pytest.raises(ValueError, match="non-empty"):
        ray.get_actor("")
    with pytest.raises(TypeError):
        ray.get_actor(42)
    with pytest.raises(ValueError, match="Failed to look up actor with name 'absent'"):
        ray.get_actor("absent")
    with pytest.raises(ValueError, match="namespace"):
        ray.get_actor("absent", namespace="")
    with pytest.raises(ValueError, match="empty"):
        Named.options(name="").remote()
    first = Named.options(name="compat-named", namespace="compat").remote()
    again = Named.options(name="compat-named", namespace="compat", get_if_exists=True).remote()
    assert again == first and ray.get(again.ping.remote()) == "pong"
    with pytest.raises(ValueError, match="already taken"):
        Named.options(name="compat-named", namespace="compat").remote()
    assert ray.get(ray.get_actor("compat-named", namespace="compat").ping.remote()) == "pong"
    listed = ray.util.list_named_actors(all_namespaces=True)
    assert {"name": "compat-named", "namespace": "compat"} in listed
    assert "compat-named" not in ray.util.list_named_actors()     # another namespace than the job's
    ray.kill(first)
    deadline = time.monotonic() + 10
    while {"name": "compat-named", "namespace": "compat"} in ray.util.list_named_actors(all_namespaces=True):
        assert time.monotonic() < deadline, "a killed actor keeps its name"
        time.sleep(0.05)


def test_sys_exit_in_a_task_is_a_worker_crash_retried_per_max_retries(rt, tmp_path):
    # Ray: the worker process exits; a system failure, retried (max_retries), then WorkerCrashedError.
    from ray.exceptions import WorkerCrashedError

    @ray.remote(max_retries=0)
    def leave():
        sys.exit(3)

    with pytest.raises(WorkerCrashedError, match="max_retries"):
        ray.get(leave.remote(), timeout=30)

    marker = tmp_path / "exited-once"

    @ray.remote(max_retries=1)
    def leave_once(path):
        import os
        if not os.path.exists(path):
            open(path, "w").close()
            sys.exit(1)
        return "second try"

    assert ray.get(leave_once.remote(str(marker)), timeout=30) == "second try"


def test_a_huge_actor_class_is_refused_as_in_ray(rt):
    payload = bytes(101 * 2**20)      # captured by the class: its pickle is over Ray's 100 MB limit

    @ray.remote
    class Huge:
        def size(self):
            return len(payload)

    with pytest.raises(ValueError, match="actor Huge is too large"):
        Huge.remote()
