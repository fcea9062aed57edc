"""Resources: accounting, GPUs (faked counts), custom and Slurm-given resources, nodes(), timeline."""
import json
import time

import mpirt

from conftest import run_app, wait_for



def test_available_resources_follow_running_tasks(rt):
    @mpirt.remote
    def hold(seconds):
        time.sleep(seconds)

    assert wait_for(lambda: rt.available_resources()["CPU"] == 2.0)
    refs = [hold.remote(1.5) for _ in range(2)]
    assert wait_for(lambda: rt.available_resources()["CPU"] == 0.0, 5)
    rt.get(refs)
    assert wait_for(lambda: rt.available_resources()["CPU"] == 2.0)
    assert rt.cluster_resources() == {"CPU": 2.0}


def test_nodes_and_timeline(rt, tmp_path):
    nodes = rt.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert nodes[0]["Ranks"] == [0, 1, 2, 3] and nodes[0]["Resources"] == {"CPU": 2.0}

    @mpirt.remote
    def traced_square(x):
        return x * x

    @mpirt.remote
    class TracedActor:
        def poke(self):
            return 1

    rt.get([traced_square.remote(i) for i in range(5)])
    actor = TracedActor.remote()
    rt.get(actor.poke.remote())
    path = tmp_path / "trace.json"
    rt.timeline(str(path))
    trace = json.loads(path.read_text())
    spans = [e for e in trace if e["ph"] == "X"]
    assert sum(e["name"] == "traced_square" for e in spans) >= 5
    assert any(e["name"] == "TracedActor.poke" and e["cat"] == "actor" for e in spans)
    assert any(e["cat"] == "wait" and e["pid"] == 0 for e in spans)
    assert all(e["dur"] >= 0 and e["pid"] in (0, 1, 2, 3) for e in spans)
    names = {e["args"]["name"] for e in trace if e["ph"] == "M"}
    assert "rank 0 (driver)" in names and "rank 2 (worker)" in names


GPU_APP = """
import os, mpirt as ray
ray.init(num_cpus=2)          # MPIRT_NODE_GPUS=4 fakes a node with 4 GPUs
@ray.remote(num_gpus=1)
def one():
    return ray.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"]
@ray.remote(num_gpus=0.5)
def half():
    return tuple(ray.get_gpu_ids())
@ray.remote
def none():
    return ray.get_gpu_ids()
@ray.remote(num_gpus=2)
class GpuActor:
    def ids(self):
        return ray.get_gpu_ids()
print("resources", ray.cluster_resources())
print("one", sorted(ray.get([one.remote() for _ in range(2)])))
print("half", sorted(set(ray.get([half.remote() for _ in range(4)]))))
print("none", ray.get(none.remote()))
print("actor", ray.get(GpuActor.remote().ids.remote()))
try:
    one.options(num_gpus=3).remote()
except ValueError as exc:
    print("infeasible", "GPU=3" in str(exc))
print("nodes", ray.nodes()[0]["GPUIds"])
"""


def test_gpu_assignment_with_faked_gpus(tmp_path):
    proc = run_app(tmp_path, GPU_APP, env={"MPIRT_NODE_GPUS": "4"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "resources {'CPU': 2.0, 'GPU': 4.0}" in out
    # GPUs are dealt round-robin by node-local rank; which worker runs a task is the scheduler's choice
    one = out.split("one ")[1].splitlines()[0]
    first, second = "([0, 2], '0,2')", "([1, 3], '1,3')"
    assert one in (f"[{first}, {second}]", f"[{first}, {first}]", f"[{second}, {second}]")
    half = out.split("half ")[1].splitlines()[0]
    assert half in ("[(0, 2)]", "[(1, 3)]", "[(0, 2), (1, 3)]")
    assert "none []" in out
    assert "actor [0, 2]" in out or "actor [1, 3]" in out
    assert "infeasible True" in out


MPIRUN_RESOURCES_APP = """
import os, mpirt as ray
ray.init()
@ray.remote(resources={"disk": 1}, num_gpus=1)
def where():
    return os.environ["CUDA_VISIBLE_DEVICES"], ray.get_gpu_ids()
print("resources", sorted(ray.cluster_resources().items()))
print("gpu tasks", sorted(ray.get([where.remote() for _ in range(4)])))
print("nodes", [(n["Ranks"], sorted(n["Resources"].items())) for n in ray.nodes()])
"""


def test_per_rank_resources_from_environment_and_slurm_under_mpirun(tmp_path):
    env = {"MPIRT_NUM_GPUS": "1", "MPIRT_RESOURCES": '{"disk": 2}', "SLURM_CPUS_PER_TASK": "2",
           "MPIRT_NODE_GPUS": "2"}
    proc = run_app(tmp_path, MPIRUN_RESOURCES_APP, ranks=4, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "resources [('CPU', 4.0), ('GPU', 2.0), ('disk', 4.0)]" in out  # 2 worker ranks x (2 CPU, 1 GPU, 2 disk)
    assert "('0', [0])" in out and "('1', [1])" in out


def test_a_task_waits_for_its_preferred_worker_only_briefly():
    """The lease-matching rule (submitter._next_for): a task preferring another worker rank
    (it holds the task's large argument, or its actor) is not sent to a busy or long-held lease
    elsewhere, but an idle lease takes it once it has waited PREFERENCE_WAIT_SECONDS, or at once
    if the head just granted that lease knowing the preference."""
    from collections import deque
    from types import SimpleNamespace

    from mpirt.submitter import PREFERENCE_WAIT_SECONDS, TaskSubmitter

    next_for = TaskSubmitter._next_for
    workers = [2, 3]
    now = 100.0

    def queue(*tasks):
        return deque(SimpleNamespace(preferred=p, queued_at=now - age) for p, age in tasks)

    mine = queue((3, 0.0), (2, 0.0))
    assert next_for(mine, 2, False, False, workers, now).preferred == 2       # its own first
    assert next_for(queue((None, 0.0)), 2, True, False, workers, now).preferred is None
    assert next_for(queue((0, 0.0)), 2, True, False, workers, now).preferred == 0  # the driver: not a worker
    young, old = queue((3, 0.0)), queue((3, 2 * PREFERENCE_WAIT_SECONDS))
    assert next_for(young, 2, False, False, workers, now) is None             # waits for rank 3
    assert next_for(old, 2, True, False, workers, now) is None                # never onto a busy lease
    assert next_for(old, 2, False, False, workers, now) is not None and not old
    assert next_for(queue((3, 0.0)), 2, False, True, workers, now) is not None  # fresh and idle
