"""Ray's resource examples, run as written (``import ray`` is mpirt).

From Ray's "Resources" and "GPU support" guides: a node started with
``ray.init(num_cpus=3, num_gpus=4, resources={...})`` offers those amounts as one pool;
tasks and actors ask for amounts of it (whole, fractional or zero); ``cluster_resources()``
and ``available_resources()`` report the pool. Deliberate differences (an infeasible
request raises instead of pending; a task sees its rank's GPUs, not per-task ones) are
tested in tests/test_resources.py.
"""
import os
import time

import pytest

import ray
from conftest import wait_for


@pytest.fixture(scope="module")
def docs_node():
    """The node of Ray's resources guide: 3 logical CPUs, 4 logical GPUs, 2 custom resources."""
    ray.init(num_cpus=3, num_gpus=4, resources={"special_hardware": 1, "custom_label": 1})
    yield ray
    ray.shutdown()


def test_node_resources_are_what_init_was_given(docs_node):
    expected = {"CPU": 3.0, "GPU": 4.0, "special_hardware": 1.0, "custom_label": 1.0}
    assert ray.cluster_resources() == expected
    assert wait_for(lambda: ray.available_resources() == expected)
    assert [node["Resources"] for node in ray.nodes()] == [expected]


def test_resource_requirements_and_overrides(docs_node):
    @ray.remote(num_cpus=2, num_gpus=2, resources={"special_hardware": 1})
    def func():
        return 1

    assert ray.get(func.remote()) == 1
    # "You can override the default resource requirements": all 3 CPUs of the node.
    assert ray.get(func.options(num_cpus=3, num_gpus=1, resources={"special_hardware": 0}).remote()) == 1

    @ray.remote(num_cpus=0, num_gpus=1)
    class Actor:
        def gpus(self):
            return len(ray.get_gpu_ids())

    assert ray.get(Actor.remote().gpus.remote()) >= 1
    assert ray.get(Actor.options(num_cpus=1, num_gpus=0).remote().gpus.remote()) == 0


def test_a_task_holds_what_it_asked_for_while_it_runs(docs_node, tmp_path):
    gate = str(tmp_path / "open")

    @ray.remote(num_cpus=3, resources={"custom_label": 1})
    def hold():
        while not os.path.exists(gate):   # no ray call in here: a blocked get hands CPUs back
            time.sleep(0.01)
        return "done"

    ref = hold.remote()
    # Ray leaves a resource with nothing free out of available_resources() (ray-project/ray#46753).
    assert wait_for(lambda: not {"CPU", "custom_label"} & set(ray.available_resources()), 30)
    (tmp_path / "open").touch()
    assert ray.get(ref) == "done"
    assert wait_for(lambda: ray.available_resources().get("CPU") == 3.0)


def test_fractional_resources(docs_node):
    @ray.remote(num_cpus=0.5)
    def io_bound_task():
        time.sleep(0.2)
        return 2

    assert ray.get([io_bound_task.remote() for _ in range(6)]) == [2] * 6

    @ray.remote(num_gpus=0.5)
    class IOActor:
        def ping(self):
            return os.environ["CUDA_VISIBLE_DEVICES"], ray.get_gpu_ids()

    # "Two actors can share the same GPU": each sees GPUs, and its ids are what CUDA sees.
    for visible, ids in ray.get([IOActor.remote().ping.remote(), IOActor.remote().ping.remote()]):
        assert ids and visible == ",".join(str(i) for i in ids)


def test_default_actors_hold_no_cpu(docs_node):
    """Ray's default: an actor needs 1 CPU to be placed and 0 to run, so more actors than CPUs
    run at once and the CPUs stay available for tasks."""
    @ray.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def increment(self):
            self.n += 1
            return self.n

    counters = [Counter.remote() for _ in range(5)]
    assert ray.get([c.increment.remote() for c in counters]) == [1] * 5
    assert wait_for(lambda: ray.available_resources().get("CPU") == 3.0)


def test_gpu_ids_match_cuda_visible_devices(docs_node):
    @ray.remote(num_gpus=1)
    class GPUActor:
        def ping(self):
            return ray.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"]

    @ray.remote(num_gpus=1)
    def gpu_task():
        return ray.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"]

    for ids, visible in ray.get([GPUActor.remote().ping.remote(), gpu_task.remote()]):
        assert ids and visible == ",".join(str(i) for i in ids)
