"""Task slots as processes (``mpirt/core/task_slots.py``): a worker rank with several CPUs runs its
tasks in slot processes, and everything a task may do still works from there.

One mpirun job (one worker rank offering 2 CPUs) runs every scenario and reports what it saw
as JSON; each test checks one part. How fast slots are is measured in
``benchmarks/task_slots_bench.py``, not here.
"""
import json

import pytest

from conftest import run_app

APP = r'''
import json, os, sys, time
import numpy as np
import mpirt as ray
from mpirt.exceptions import RayTaskError, TaskCancelledError, WorkerCrashedError

ray.init()
WORK = sys.argv[1]
seen = {}


@ray.remote
class Probe:
    def pid(self):
        return os.getpid()

    def echo(self, x):
        return x


def in_slot_pool(array):
    """Whether ``array``'s memory lies in this slot's mapping of the node's store pool."""
    from mpirt.core import slot_process
    pool = slot_process._pool
    if pool is None:
        return None
    address = array.ctypes.data
    return pool.base <= address and address + array.nbytes <= pool.base + pool.size


@ray.remote
def rendezvous(me, other):
    open(os.path.join(WORK, me), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(WORK, other)):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    return os.getpid()


@ray.remote
def double(x):
    return 2 * x


@ray.remote
def nested(n):
    refs = [double.remote(i) for i in range(n)]
    ready, _ = ray.wait(refs, num_returns=n, timeout=60)
    stored = ray.put({"k": list(range(5))})
    return sum(ray.get(refs)), len(ready), ray.get(stored), double.remote(21)


@ray.remote
def through_future_and_await(refs):
    """``ref.future()`` and ``await ref`` from a slot: both get through the rank."""
    import asyncio

    async def awaited():
        return await refs[0]

    return refs[0].future().result(timeout=60), asyncio.run(awaited())


@ray.remote
def context():
    ctx = ray.get_runtime_context()
    return (ctx.get_task_id(), ctx.get_assigned_resources(), ctx.get_task_function_name(), ctx.get_worker_id(),
            ctx.get_node_id(), ray.is_initialized())


@ray.remote
def with_actors(handle):
    made = Probe.remote()
    named = ray.get_actor("probe-named")
    return ray.get(handle.echo.remote(5)), ray.get(made.echo.remote(6)), ray.get(named.echo.options(name="x").remote(7))


@ray.remote
def printer():
    print("hello from a slot")
    print("to stderr", file=sys.stderr)
    return True


@ray.remote
def read_env():
    return os.environ.get("MPIRT_SLOT_VAR")


@ray.remote
def boom():
    raise ValueError("boom in a slot")


@ray.remote(max_retries=1, retry_exceptions=[KeyError])
def flaky():
    path = os.path.join(WORK, "flaky")
    if not os.path.exists(path):
        open(path, "w").close()
        raise KeyError("first try")
    return "second try"


@ray.remote(max_retries=0)
def exits():
    sys.exit(3)


@ray.remote(max_retries=0)
def dies():
    os._exit(1)


@ray.remote(max_retries=1)
def dies_once():
    path = os.path.join(WORK, "died")
    if not os.path.exists(path):
        open(path, "w").close()
        os._exit(1)
    return "survived"


@ray.remote
def spin_forever(marker):
    open(os.path.join(WORK, marker), "w").close()
    x = 0
    while True:
        x += 1


@ray.remote
def sleeper():
    time.sleep(600)


@ray.remote
def waits_on(marker):
    open(os.path.join(WORK, marker), "w").close()
    return ray.get(sleeper.remote())


@ray.remote
def big_argument(array, ref_list):
    inner = ray.get(ref_list[0])
    return float(array.sum()), in_slot_pool(array), in_slot_pool(inner), array.flags.writeable


@ray.remote
def big_result(n):
    return np.ones(n)


@ray.remote(num_cpus=2)
def two_cpus():
    return ray.get_runtime_context().get_assigned_resources()


def wait_file(name):
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(WORK, name)):
        assert time.monotonic() < deadline, name
        time.sleep(0.01)


probe = Probe.remote()
seen["rank_pid"] = ray.get(probe.pid.remote())
seen["pids"] = ray.get([rendezvous.remote("a", "b"), rendezvous.remote("b", "a")], timeout=120)
total, ready, stored, ref = ray.get(nested.remote(6), timeout=60)
seen["nested"] = [total, ready, stored, ray.get(ref, timeout=60)]
seen["future_and_await"] = ray.get(through_future_and_await.remote([double.remote(20)]), timeout=60)
first, second = ray.get([context.remote(), context.remote()], timeout=60)
task_id, resources, function_name, worker_id, node_id, initialized = first
driver = ray.get_runtime_context()
seen["context"] = [len(task_id) == 28 and task_id != second[0], resources, function_name, worker_id != driver.get_worker_id(),
                   node_id == driver.get_node_id(), initialized]
named = Probe.options(name="probe-named").remote()
seen["actors"] = ray.get(with_actors.remote(probe), timeout=60)
seen["printed"] = ray.get(printer.remote(), timeout=60)
seen["env"] = [ray.get(read_env.options(runtime_env={"env_vars": {"MPIRT_SLOT_VAR": "set"}}).remote(), timeout=60),
               ray.get(read_env.remote(), timeout=60)]
try:
    ray.get(boom.remote(), timeout=60)
except ValueError as exc:
    seen["error"] = [isinstance(exc, RayTaskError), str(exc)]
seen["retry"] = ray.get(flaky.remote(), timeout=60)
for name, task in (("exit", exits), ("died", dies)):
    try:
        ray.get(task.remote(), timeout=60)
    except WorkerCrashedError as exc:
        seen[name] = str(exc)
seen["died_once"] = ray.get(dies_once.remote(), timeout=60)
ref = spin_forever.remote("spinning")
wait_file("spinning")
ray.cancel(ref)
try:
    ray.get(ref, timeout=60)
except TaskCancelledError:
    seen["cancel_running"] = True
ref = waits_on.remote("waiting")
wait_file("waiting")
time.sleep(0.2)
ray.cancel(ref)
try:
    ray.get(ref, timeout=60)
except TaskCancelledError:
    seen["cancel_waiting"] = True
array = np.arange(2_000_000, dtype=np.float64)
seen["big_argument"] = ray.get(big_argument.remote(array, [ray.put(np.ones(1_000_000))]), timeout=60)
seen["big_result"] = float(ray.get(big_result.remote(3_000_000), timeout=60).sum())
seen["two_cpus"] = ray.get(two_cpus.remote(), timeout=60)
seen["after"] = ray.get(double.remote(4), timeout=60)
print("RESULT " + json.dumps(seen))
ray.shutdown()
'''


def _result(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def two_cpu_rank(tmp_path_factory):
    """The app under ``mpirun -n 3`` with a worker rank offering 2 CPUs: (seen, stdout, stderr)."""
    tmp_path = tmp_path_factory.mktemp("slots")
    work = tmp_path / "work"
    work.mkdir()
    proc = run_app(tmp_path, APP, ranks=3, timeout=240, env={"MPIRT_NUM_CPUS": "2", "MPIRT_TASK_SLOTS": "auto"},
                   args=(str(work),))
    return _result(proc), proc.stdout, proc.stderr


def test_tasks_run_at_once_in_slot_processes(two_cpu_rank):
    seen, _, stderr = two_cpu_rank
    first, second = seen["pids"]
    assert first and second and first != second
    assert seen["rank_pid"] not in (first, second)
    assert "1 worker rank x 2 CPUs: 2 task slots each, as processes (MPIRT_TASK_SLOTS=auto)" in stderr


def test_nested_tasks_get_wait_put_from_a_slot(two_cpu_rank):
    seen, _, _ = two_cpu_rank
    assert seen["nested"] == [30, 6, {"k": [0, 1, 2, 3, 4]}, 42]
    assert seen["after"] == 8
    assert seen["future_and_await"] == [40, 40]


def test_runtime_context_names_the_task(two_cpu_rank):
    seen, _, _ = two_cpu_rank
    assert seen["context"] == [True, {"CPU": 1.0}, "__main__.context", True, True, True]
    assert seen["two_cpus"] == {"CPU": 2.0}


def test_actor_handles_creation_and_named_lookup_from_a_slot(two_cpu_rank):
    seen, _, _ = two_cpu_rank
    assert seen["actors"] == [5, 6, 7]


def test_print_is_forwarded_under_the_task_name(two_cpu_rank):
    seen, stdout, stderr = two_cpu_rank
    assert seen["printed"] is True
    assert "(printer rank=2 pid=" in stdout and "hello from a slot" in stdout
    assert "to stderr" in stderr


def test_runtime_env_vars_hold_only_for_their_task(two_cpu_rank):
    seen, _, _ = two_cpu_rank
    assert seen["env"] == ["set", None]


def test_errors_retries_and_exits(two_cpu_rank):
    seen, _, _ = two_cpu_rank
    is_task_error, text = seen["error"]
    assert is_task_error and "boom in a slot" in text and "in boom" in text
    assert seen["retry"] == "second try"
    assert "sys.exit(3)" in seen["exit"]
    assert "slot process" in seen["died"] and "died" in seen["died"]
    assert seen["died_once"] == "survived"


def test_cancel_reaches_running_and_waiting_tasks(two_cpu_rank):
    seen, _, _ = two_cpu_rank
    assert seen.get("cancel_running") is True
    assert seen.get("cancel_waiting") is True


def test_large_arguments_are_read_in_place(two_cpu_rank):
    seen, _, _ = two_cpu_rank
    total, in_pool, inner_in_pool, writeable = seen["big_argument"]
    assert total == float(sum(range(2_000_000)))
    assert in_pool is True and inner_in_pool is True and writeable is False
    assert seen["big_result"] == 3_000_000.0


ONE_CPU_APP = r'''
import os, sys
import mpirt as ray
ray.init()

@ray.remote
class Probe:
    def pid(self):
        return os.getpid()

@ray.remote
def pid():
    return os.getpid()

probe = Probe.remote()
gpus = int(sys.argv[1])
print("SAME", ray.get(pid.options(num_gpus=gpus).remote(), timeout=60) == ray.get(probe.pid.remote(), timeout=60))
ray.shutdown()
'''


@pytest.mark.parametrize("env, gpus", [({"MPIRT_TASK_SLOTS": "auto"}, 0),
                                       ({"MPIRT_NUM_CPUS": "2", "MPIRT_TASK_SLOTS": "thread"}, 0),
                                       ({"MPIRT_NUM_CPUS": "2", "MPIRT_NODE_GPUS": "1", "MPIRT_TASK_SLOTS": "auto"}, 1)],
                         ids=["one-cpu", "threads-asked", "gpu-task"])
def test_thread_path_for_one_cpu_ranks_threads_asked_and_gpu_tasks(tmp_path, env, gpus):
    """Tasks run in the rank's process on a 1-CPU rank, with MPIRT_TASK_SLOTS=thread, and when
    they ask for GPUs (the rank's CUDA context); only the first layout prints no slot line."""
    proc = run_app(tmp_path, ONE_CPU_APP, ranks=3, timeout=120, env=env, args=(str(gpus),))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SAME True" in proc.stdout
    if env.get("MPIRT_TASK_SLOTS") == "thread":
        assert "tasks run as threads of the rank" in proc.stderr
    elif "MPIRT_NUM_CPUS" not in env:
        assert "task slot" not in proc.stderr
