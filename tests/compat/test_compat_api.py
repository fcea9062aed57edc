"""The core API's edges as Ray's API reference states them (``import ray`` is mpirt).

From the reference pages of ``ray.get``, ``ray.wait``, ``ray.cancel`` and
``ray.runtime_context.RuntimeContext``, the "Cancelling tasks" guide, and the exception types and
messages Ray 2.x raises for bad arguments (checked against Ray itself). Where mpirt cannot do
what Ray does (``cancel(force=True)`` kills Ray's worker process; an mpirt rank also runs other
tasks and actors) the test says what mpirt does instead.
"""
import os
import re
import textwrap
import time
import warnings

import numpy as np
import pytest

import ray
from conftest import REPO, run_app, wait_for
from ray.exceptions import GetTimeoutError, TaskCancelledError

HEX = re.compile(r"[0-9a-f]+")
SHIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ray_shim")


@ray.remote
def echo(value):
    return value


@ray.remote
def wait_for_file(path):
    """Runs until ``path`` exists (pure Python between sleeps: a cancel interrupts it)."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return "done"


# -- ray.wait -------------------------------------------------------------------
def test_wait_of_an_empty_list_returns_two_empty_lists(rt):
    assert ray.wait([]) == ([], [])
    assert ray.wait([], num_returns=1, timeout=0) == ([], [])


def test_wait_takes_a_list_of_refs(rt):
    ref = ray.put(1)
    with pytest.raises(TypeError, match="wait\\(\\) expected a list of ray.ObjectRef.*got a single"):
        ray.wait(ref)
    with pytest.raises(TypeError, match="wait\\(\\) expected a list of ray.ObjectRef.*got <class 'tuple'>"):
        ray.wait((ref,))
    with pytest.raises(TypeError, match="got list containing <class 'int'>"):
        ray.wait([ref, 1])


def test_wait_refuses_the_same_ref_twice(rt):
    ref = ray.put(1)
    with pytest.raises(ValueError, match="Wait requires a list of unique ray_waitables"):
        ray.wait([ref, ref])


def test_the_not_ready_list_handed_back_is_checked_again_once_something_was_added(rt):
    """``wait`` skips its checks for the not-ready list an earlier wait returned (mpirt's NotReadyRefs, a
    list subclass) only while nothing was added to it: every way of adding a ref makes the next wait check."""
    import copy
    import pickle

    refs = [ray.put(i) for i in range(4)]
    ready, rest = ray.wait(refs)
    assert ready == refs[:1] and rest == refs[1:] and isinstance(rest, list)
    assert ray.wait(rest, num_returns=3) == (refs[1:], [])     # unchanged: the quick path, same answer
    with pytest.raises(ValueError, match="num_returns cannot be greater"):
        ray.wait(rest, num_returns=4)                          # num_returns is still checked
    for add in (lambda r: r.append(r[0]), lambda r: r.extend(r[:1]), lambda r: r.insert(0, r[-1]),
                lambda r: r.__setitem__(1, r[0]), lambda r: r.__iadd__(r[:1]), lambda r: r.__imul__(2)):
        _, rest = ray.wait(refs)
        add(rest)
        with pytest.raises(ValueError, match="Wait requires a list of unique ray_waitables"):
            ray.wait(rest)
    _, rest = ray.wait(refs)
    rest.append(1)
    with pytest.raises(TypeError, match="got list containing <class 'int'>"):
        ray.wait(rest)
    _, rest = ray.wait(refs)
    del rest[0]
    rest.pop()
    assert ray.wait(rest) == (refs[2:3], [])                   # taking refs out keeps them distinct
    _, rest = ray.wait(refs)
    assert type(copy.copy(rest)) is list and type(pickle.loads(pickle.dumps(rest))) is list
    assert type(rest[:]) is list and type(rest + []) is list


def test_wait_num_returns_must_be_between_one_and_the_number_of_refs(rt):
    refs = [ray.put(1), ray.put(2)]
    with pytest.raises(ValueError, match="Invalid number of objects to return 0"):
        ray.wait(refs, num_returns=0)
    with pytest.raises(ValueError, match="num_returns cannot be greater than the number of ray_waitables"):
        ray.wait(refs, num_returns=3)
    with pytest.raises(TypeError, match="num_returns"):
        ray.wait(refs, num_returns="1")
    # Ray takes any whole number.
    assert ray.wait(refs, num_returns=np.int64(2)) == (refs, [])
    assert ray.wait(refs, num_returns=2.0) == (refs, [])


def test_wait_timeout_must_be_a_nonnegative_number(rt):
    ref = ray.put(1)
    with pytest.raises(ValueError, match="The 'timeout' argument must be nonnegative. Received -1"):
        ray.wait([ref], timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        ray.wait([ref], timeout="1")


def test_wait_with_timeout_zero_returns_what_is_ready_now(rt, tmp_path):
    pending = wait_for_file.remote(str(tmp_path / "go"))
    ready = ray.put("here")
    assert ray.wait([pending, ready], timeout=0) == ([ready], [pending])
    (tmp_path / "go").touch()
    assert ray.get(pending) == "done"


def test_wait_takes_fetch_local(rt):
    refs = [echo.remote(i) for i in range(3)]
    ready, not_ready = ray.wait(refs, num_returns=3, fetch_local=False)
    assert ready == refs and not_ready == []


# -- ray.get ----------------------------------------------------------------------
def test_get_takes_a_ref_or_a_list_of_refs(rt):
    ref = ray.put(1)
    for wrong in ((ref,), 1, None, {ref}):
        with pytest.raises(ValueError, match="Invalid type of object refs, .* is given. 'object_refs' must either "
                                             "be an ObjectRef or a list of ObjectRefs"):
            ray.get(wrong)


def test_get_of_a_list_holding_something_else_is_a_type_error(rt):
    with pytest.raises(TypeError, match="Attempting to call `get` on the value 1, which is not an ray.ObjectRef"):
        ray.get([ray.put(0), 1])


def test_get_of_an_empty_list_and_of_repeated_refs(rt):
    ref = ray.put("x")
    assert ray.get([]) == []
    assert ray.get([ref, ref]) == ["x", "x"]


def test_get_with_timeout_zero_returns_a_ready_object_and_raises_for_a_pending_one(rt, tmp_path):
    assert ray.get(ray.put(5), timeout=0) == 5
    pending = wait_for_file.remote(str(tmp_path / "go"))
    with pytest.raises(GetTimeoutError):
        ray.get(pending, timeout=0)
    with pytest.raises(GetTimeoutError):
        ray.get([ray.put(1), pending], timeout=0)
    (tmp_path / "go").touch()
    assert ray.get(pending) == "done"


def test_get_timeout_must_be_a_nonnegative_number(rt):
    ref = ray.put(1)
    with pytest.raises(ValueError, match="nonnegative"):
        ray.get(ref, timeout=-0.5)
    with pytest.raises(TypeError, match="timeout"):
        ray.get(ref, timeout="1")


# -- arguments at .remote() ----------------------------------------------------------
def test_remote_binds_arguments_as_python_does(rt):
    @ray.remote
    def f(a, b=2, *args, c, **kwargs):
        return a, b, args, c, kwargs

    assert ray.get(f.remote(1, 3, 4, 5, c=6, z=7)) == (1, 3, (4, 5), 6, {"z": 7})
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        f.remote()
    with pytest.raises(TypeError, match="missing a required argument: 'c'"):
        f.remote(1)
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        f.remote(1, a=1, c=1)

    @ray.remote
    def g(a):
        return a

    with pytest.raises(TypeError, match="too many positional arguments"):
        g.remote(1, 2)
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'z'"):
        g.remote(1, z=2)


# -- ray.cancel -------------------------------------------------------------------
def test_cancel_takes_an_object_ref(rt):
    with pytest.raises(TypeError, match="ray.cancel\\(\\) only supported for object refs. For actors, try ray.kill"):
        ray.cancel([ray.put(1)])


def test_cancel_of_a_finished_task_does_nothing(rt):
    ref = echo.remote("kept")
    assert ray.get(ref) == "kept"
    assert ray.cancel(ref) is None
    assert ray.get(ref) == "kept"


def test_cancel_of_a_pending_task_means_it_never_runs(rt, tmp_path):
    gate = str(tmp_path / "go")
    blockers = [wait_for_file.remote(gate) for _ in range(2)]   # both CPUs
    marker = tmp_path / "ran"

    @ray.remote
    def touch():
        marker.touch()

    queued = touch.remote()
    ray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        ray.get(queued)
    (tmp_path / "go").touch()
    assert ray.get(blockers) == ["done", "done"]
    assert not marker.exists()


def test_cancel_of_a_running_task_raises_keyboard_interrupt_in_it(rt, tmp_path):
    started = tmp_path / "started"

    @ray.remote
    def interrupted():
        started.touch()
        try:
            while True:
                time.sleep(0.01)
        except KeyboardInterrupt:
            return ray.get_runtime_context().is_canceled()   # a task may clean up, even return

    ref = interrupted.remote()
    assert wait_for(started.exists, 30.0)
    ray.cancel(ref)
    assert ray.get(ref, timeout=60) is True


def test_a_cancelled_running_task_raises_task_cancelled_error(rt, tmp_path):
    ref = wait_for_file.remote(str(tmp_path / "never"))
    time.sleep(0.5)   # running or still queued: either way it ends cancelled
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=60)


@ray.remote
def child(path):
    open(path + ".started", "w").close()
    try:
        while not os.path.exists(path + ".gate"):
            time.sleep(0.01)
    except KeyboardInterrupt:
        open(path + ".cancelled", "w").close()
        raise
    open(path + ".finished", "w").close()
    return "finished"


@ray.remote
def parent(path):
    return ray.get(child.remote(path))


def _cancel_parent(tmp_path, recursive):
    path = str(tmp_path / "child")
    ref = parent.remote(path)
    assert wait_for(lambda: os.path.exists(path + ".started"), 30.0)   # the parent waits for its running child
    ray.cancel(ref, recursive=recursive)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=60)
    return path


def test_cancel_is_recursive_by_default(rt, tmp_path):
    path = _cancel_parent(tmp_path, recursive=True)
    assert wait_for(lambda: os.path.exists(path + ".cancelled"), 30.0)
    open(path + ".gate", "w").close()
    assert not os.path.exists(path + ".finished")


def test_cancel_with_recursive_false_leaves_the_children_running(rt, tmp_path):
    path = _cancel_parent(tmp_path, recursive=False)
    open(path + ".gate", "w").close()
    assert wait_for(lambda: os.path.exists(path + ".finished"), 30.0)
    assert not os.path.exists(path + ".cancelled")


def test_cancel_with_force_fails_the_task_at_once(rt, tmp_path):
    """Ray kills the worker running it; mpirt fails its results at once and interrupts it as
    soon as it runs Python again (here: once its blocking open() of a FIFO returns)."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    started = tmp_path / "started"

    @ray.remote
    def blocked_in_c():
        started.touch()
        with open(fifo) as f:   # blocks in the kernel until a writer opens the FIFO
            return f.readline()

    ref = blocked_in_c.remote()
    assert wait_for(started.exists, 30.0)
    ray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=60)
    # Let the task's thread go (opened read-write, the FIFO never blocks this side): its CPU comes back.
    writer = os.open(fifo, os.O_RDWR)
    try:
        os.write(writer, b"late\n")
        assert wait_for(lambda: ray.available_resources().get("CPU") == 2.0, 30.0)
    finally:
        os.close(writer)
    assert ray.get([echo.remote(i) for i in range(4)]) == [0, 1, 2, 3]


def test_cancel_of_a_ref_owned_by_another_process(rt, tmp_path):
    """A task returns the ref of a task it submitted; the driver cancels it through its owner."""
    @ray.remote
    def start_child(path):
        return [wait_for_file.remote(path)]

    [ref] = ray.get(start_child.remote(str(tmp_path / "never")))
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=60)



def test_cancel_of_a_pending_actor_task(rt, tmp_path):
    @ray.remote
    class Actor:
        def run(self, path):
            while not os.path.exists(path):
                time.sleep(0.01)
            return "ran"

    actor = Actor.remote()
    gate = str(tmp_path / "go")
    running = actor.run.remote(gate)
    pending = actor.run.remote(gate)
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        ray.cancel(pending, force=True)
    ray.cancel(pending)
    (tmp_path / "go").touch()
    assert ray.get(running) == "ran"
    with pytest.raises(TaskCancelledError):
        ray.get(pending, timeout=60)


# -- ray.get_runtime_context() ----------------------------------------------------------
def test_runtime_context_on_the_driver(rt):
    ctx = ray.get_runtime_context()
    assert isinstance(ctx, ray.runtime_context.RuntimeContext)
    assert HEX.fullmatch(ctx.get_job_id())
    assert ctx.get_node_id() in [node["NodeID"] for node in ray.nodes()]
    assert HEX.fullmatch(ctx.get_worker_id())
    assert ctx.get_task_id() is None and ctx.get_actor_id() is None
    assert ctx.get_task_name() is None and ctx.get_actor_name() is None
    assert isinstance(ctx.namespace, str)
    with pytest.raises(RuntimeError, match="only available in an actor"):
        ctx.current_actor


def test_runtime_context_in_a_task(rt):
    @ray.remote
    def describe():
        ctx = ray.get_runtime_context()
        return {"job": ctx.get_job_id(), "node": ctx.get_node_id(), "worker": ctx.get_worker_id(),
                "task": ctx.get_task_id(), "actor": ctx.get_actor_id(), "name": ctx.get_task_name(),
                "function": ctx.get_task_function_name(), "resources": ctx.get_assigned_resources(),
                "gpus": ctx.get_accelerator_ids()["GPU"], "namespace": ctx.namespace}

    driver = ray.get_runtime_context()
    first, second = ray.get([describe.remote(), describe.options(name="custom", num_cpus=0.5).remote()])
    for seen in (first, second):
        assert seen["job"] == driver.get_job_id() and seen["namespace"] == driver.namespace
        assert seen["node"] in [node["NodeID"] for node in ray.nodes()]
        assert HEX.fullmatch(seen["task"]) and seen["actor"] is None and seen["gpus"] == []
        assert seen["worker"] != driver.get_worker_id()
        assert seen["function"].endswith(".describe")
    assert first["task"] != second["task"]
    assert (first["name"], second["name"]) == ("describe", "custom")
    assert first["resources"] == {"CPU": 1.0} and second["resources"] == {"CPU": 0.5}



def test_runtime_context_in_an_actor(rt):
    @ray.remote
    class Named:
        def describe(self):
            ctx = ray.get_runtime_context()
            return (ctx.get_actor_id(), ctx.get_actor_name(), ctx.get_task_name(), ctx.get_assigned_resources(),
                    ctx.was_current_actor_reconstructed, ctx.current_actor)

    actor = Named.options(name="named-context").remote()
    actor_id, name, task_name, resources, reconstructed, handle = ray.get(actor.describe.remote())
    assert HEX.fullmatch(actor_id) and name == "named-context" and task_name == "Named.describe"
    assert resources == {} and reconstructed is False and handle == actor
    ray.kill(actor)


# -- names Ray programs import ----------------------------------------------------------
def test_is_initialized(rt):
    assert ray.is_initialized() is True


def test_ray_cloudpickle_pickles_object_refs(rt):
    from ray import cloudpickle

    ref = ray.put({"hello": "world"})
    assert ray.get(cloudpickle.loads(cloudpickle.dumps(ref))) == {"hello": "world"}


def test_util_get_node_ip_address(rt):
    address = ray.util.get_node_ip_address()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", address)


def test_util_as_completed_and_map_unordered(rt):
    refs = [echo.remote(i) for i in range(5)]
    assert sorted(ray.util.as_completed(refs, chunk_size=2)) == [0, 1, 2, 3, 4]
    assert sorted(ray.util.map_unordered(echo, range(5), backpressure_size=2, chunk_size=1)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="chunk_size"):
        list(ray.util.as_completed(refs, num_returns=2))


# -- large functions ------------------------------------------------------------------
def test_a_large_function_is_stored_once_with_a_warning(rt):
    table = np.arange(1_500_000, dtype=np.float64)   # 12 MB captured by the function

    @ray.remote
    def lookup(i):
        return float(table[i])

    with pytest.warns(UserWarning, match="The remote function .*lookup is very large \\(11 MiB\\)"):
        refs = [lookup.remote(i) for i in (0, 7, 1_499_999)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # warned once, at its first submission
        refs += [lookup.remote(i) for i in range(10)]
    assert ray.get(refs) == [0.0, 7.0, 1_499_999.0] + [float(i) for i in range(10)]


def test_a_function_over_100_mb_is_refused(rt):
    table = np.zeros(13_000_000)   # 104 MB

    @ray.remote
    def first():
        return table[0]

    with pytest.raises(ValueError, match="The remote function .*first is too large \\(99 MiB > "
                                         "FUNCTION_SIZE_ERROR_THRESHOLD=95 MiB\\)"):
        first.remote()


def test_a_large_function_runs_again_after_shutdown_and_init(tmp_path):
    """Stored once per session: a second session stores it again (the first one's store is gone)."""
    source = textwrap.dedent("""
        import numpy as np
        import ray

        table = np.arange(200_000.0)   # 1.6 MB: more than the store's inline limit, under the warning

        @ray.remote
        def lookup(i):
            return float(table[i])

        for session in range(2):
            ray.init(num_cpus=2)
            print(session, ray.get([lookup.remote(i) for i in (1, 199_999)]))
            ray.shutdown()
    """)
    proc = run_app(tmp_path, source, env={"PYTHONPATH": SHIM + os.pathsep + REPO})
    assert proc.returncode == 0, proc.stderr
    assert "0 [1.0, 199999.0]" in proc.stdout and "1 [1.0, 199999.0]" in proc.stdout


def test_ray_submodules_are_attributes_after_import_ray():
    """Ray programs use ``ray.util.scheduling_strategies.X`` or ``ray.runtime_env.RuntimeEnv`` after a
    plain ``import ray``: those modules are attributes of the package, as in Ray."""
    for name in ("actor", "exceptions", "remote_function", "runtime_context", "runtime_env", "util", "cloudpickle"):
        assert hasattr(ray, name), name
    assert ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy
    assert ray.runtime_env.RuntimeEnv
