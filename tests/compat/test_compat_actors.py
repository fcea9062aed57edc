"""Actor classes as Ray's "Actors" guide and API reference describe them (``import ray`` is mpirt).

Python's rules hold for the class behind an actor (methods looked up on the class, bases,
mixins, MRO, ``super()``, class attributes, classmethods and staticmethods), Ray's rules for
what an actor class refuses, its built-in methods, ``@ray.method`` options, restarts
(``kill(no_restart=False)``, ``sys.exit()`` in a method) and named actors.
"""
import os
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


def test_await_an_object_ref_in_an_async_actor(rt):
    @ray.remote
    def double(x):
        return 2 * x

    @ray.remote
    class Awaiting:
        async def total(self, values):
            refs = [double.remote(v) for v in values]
            return sum([await ref for ref in refs])

    assert ray.get(Awaiting.remote().total.remote([1, 2, 3]), timeout=60) == 12
    assert ray.put(5).future().result(timeout=60) == 5


def test_each_async_call_sees_its_own_context(rt):
    import asyncio

    @ray.remote
    class Slow:
        async def ids(self, pause):
            ctx = ray.get_runtime_context()
            before = ctx.get_task_id()
            await asyncio.sleep(pause)
            return before, ctx.get_task_id(), ctx.get_task_name()

    actor = Slow.remote()
    slow, fast = actor.ids.remote(0.5), actor.ids.remote(0.0)
    for before, after, name in ray.get([slow, fast], timeout=60):
        assert before == after and name == "Slow.ids"
    assert ray.get(slow)[0] != ray.get(fast)[0]


def test_a_retried_call_after_a_restart_runs_in_its_actor(rt, tmp_path):
    marker = tmp_path / "exited"

    @ray.remote(max_restarts=1, max_task_retries=1)
    class Once:
        def who(self, path):
            import os
            if not os.path.exists(path):
                open(path, "w").close()
                sys.exit(1)
            ctx = ray.get_runtime_context()
            return ctx.get_actor_id() is not None, ctx.was_current_actor_reconstructed

    assert ray.get(Once.remote().who.remote(str(marker)), timeout=60) == (True, True)


def test_calls_pending_on_an_async_actor_fail_when_it_is_killed(rt):
    import asyncio

    @ray.remote
    class Sleeper:
        async def sleep(self):
            await asyncio.sleep(60)

    actor = Sleeper.remote()
    pending = [actor.sleep.remote() for _ in range(3)]
    time.sleep(0.3)
    ray.kill(actor)
    for ref in pending:
        with pytest.raises(ActorDiedError):
            ray.get(ref, timeout=30)


def test_tasks_submitted_by_an_actor_inherit_its_runtime_env(rt):
    @ray.remote
    def read_var():
        import os
        return os.environ.get("INHERITED_VAR")

    @ray.remote
    class Parent:
        def child_sees(self):
            return ray.get(read_var.remote())

    parent = Parent.options(runtime_env={"env_vars": {"INHERITED_VAR": "from-actor"}}).remote()
    assert ray.get(parent.child_sees.remote(), timeout=60) == "from-actor"


def test_an_async_actor_with_a_runtime_env_shares_its_rank_with_plain_tasks(tmp_path):
    """Its calls hold the rank's environment across awaits; a plain task waits for them, and a
    second call of the actor joins the first instead of queueing behind the task (which would
    block the loop the first call needs to finish)."""
    from conftest import REPO, run_app

    proc = run_app(tmp_path, """
import asyncio, os, ray
ray.init(num_cpus=1)

@ray.remote
class Env:
    async def read(self, pause):
        await asyncio.sleep(pause)
        return os.environ.get("ACTOR_X")

@ray.remote
def plain():
    return os.environ.get("ACTOR_X")

actor = Env.options(runtime_env={"env_vars": {"ACTOR_X": "x"}}).remote()
first = actor.read.remote(1.0)
import time; time.sleep(0.3)
task = plain.remote()
second = actor.read.remote(0.0)
print("RESULTS", ray.get([first, second, task], timeout=60))
ray.shutdown()
""", env={"PYTHONPATH": os.path.join(REPO, "tests", "ray_shim") + os.pathsep + REPO}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "RESULTS ['x', 'x', None]" in proc.stdout
