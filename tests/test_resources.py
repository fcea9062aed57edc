"""Resources: accounting, GPUs (faked counts), custom and Slurm-given resources, nodes(), timeline."""
import json
import os
import time

import pytest

import mpirt

from conftest import run_app, wait_for



def test_available_resources_follow_running_tasks(rt):
    @mpirt.remote
    def hold(seconds):
        time.sleep(seconds)

    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)
    refs = [hold.remote(1.5) for _ in range(2)]
    assert wait_for(lambda: "CPU" not in rt.available_resources(), 5)
    rt.get(refs)
    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)
    assert rt.cluster_resources() == {"CPU": 2.0}


def test_nodes_and_timeline(rt, tmp_path):
    nodes = rt.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert nodes[0]["Ranks"] == [0, 1, 2, 3] and nodes[0]["Resources"] == {"CPU": 2.0}
    runtime = mpirt.core.current.runtime()       # the head's pools group ranks as the store does
    assert runtime.cluster.node_of == {2: runtime.store.arena.node_of[2], 3: runtime.store.arena.node_of[3]}

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
@ray.remote(num_cpus=2, num_gpus=2)
def whole_node():        # both CPUs of the node's pool, both GPUs of the rank that runs it
    return ray.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"], ray.available_resources().get("CPU", 0.0)
print("whole node", ray.get(whole_node.remote()))
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
    assert "whole node ([0, 2], '0,2', 0.0)" in out or "whole node ([1, 3], '1,3', 0.0)" in out


SHARED_GPU_APP = """
import os, mpirt as ray
ray.init(num_cpus=2, num_gpus=2)
@ray.remote(num_gpus=1)
class Holder:
    def where(self):
        return os.environ["CUDA_VISIBLE_DEVICES"], ray.get_gpu_ids()
holders = [Holder.remote() for _ in range(2)]
print("resources", ray.cluster_resources())
print("holders", sorted(ray.get([h.where.remote() for h in holders])))
"""


def test_more_gpus_than_the_node_has_share_its_devices(tmp_path):
    """init(num_gpus=2) on a one-GPU node: both workers get a GPU, the node's one (a device id that does
    not exist would leave CUDA with no device)."""
    proc = run_app(tmp_path, SHARED_GPU_APP, env={"MPIRT_NODE_GPUS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "resources {'CPU': 2.0, 'GPU': 2.0}" in proc.stdout
    assert "holders [('0', [0]), ('0', [0])]" in proc.stdout, proc.stdout


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

    from mpirt.core.submitter import PREFERENCE_WAIT_SECONDS, TaskSubmitter

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


# -- node pools (Ray's model: a node's resources, its ranks as executors) -----------------
def test_a_task_may_hold_every_cpu_of_its_node(rt, tmp_path):
    """2 worker ranks of 1 CPU each make one node of 2 CPUs: a 2-CPU task runs on one rank and
    holds both, so 1-CPU tasks wait for it (their run spans start after its span ends)."""
    gate = str(tmp_path / "open")

    @mpirt.remote(num_cpus=2)
    def whole_node():
        while not os.path.exists(gate):      # no mpirt call here: a blocked get hands CPUs back
            time.sleep(0.01)
        return time.monotonic()

    @mpirt.remote
    def one_cpu():
        return time.monotonic()

    assert rt.cluster_resources() == {"CPU": 2.0}
    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)
    big = whole_node.remote()
    assert wait_for(lambda: "CPU" not in rt.available_resources(), 30)   # it runs, holding both
    small = [one_cpu.remote() for _ in range(3)]
    time.sleep(0.3)                          # room for a wrongly granted small task to start
    (tmp_path / "open").touch()
    big_end = rt.get(big)
    starts = rt.get(small)
    assert all(start >= big_end for start in starts), (big_end, starts)
    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)


def test_fractional_and_zero_cpu_requests_share_the_pool(rt, tmp_path):
    gate = str(tmp_path / "open")

    @mpirt.remote(num_cpus=0.5)
    def half():
        while not os.path.exists(gate):      # no mpirt call here: a blocked get hands CPUs back
            time.sleep(0.01)
        return 0.5

    @mpirt.remote(num_cpus=0)
    def free():
        return 0

    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)
    refs = [half.remote() for _ in range(3)]
    assert wait_for(lambda: rt.available_resources().get("CPU") == 0.5, 30)
    assert rt.get(free.remote()) == 0          # needs nothing: runs while the CPUs are taken
    (tmp_path / "open").touch()
    assert rt.get(refs) == [0.5] * 3
    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)


def test_an_actor_may_hold_every_cpu_of_its_node(rt):
    @mpirt.remote(num_cpus=2)
    class WholeNode:
        def ping(self):
            return "pong"

    @mpirt.remote
    def one_cpu():
        return 1

    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)
    actor = WholeNode.remote()
    assert rt.get(actor.ping.remote()) == "pong"
    assert "CPU" not in rt.available_resources()       # held for the actor's life
    waiting = one_cpu.remote()
    ready, _ = rt.wait([waiting], timeout=0.5)
    assert ready == []                                 # no CPU left on the node for it
    rt.kill(actor)
    assert rt.get(waiting, timeout=30) == 1
    assert wait_for(lambda: rt.available_resources().get("CPU") == 2.0)


def test_bad_and_infeasible_requests_name_the_argument_and_the_job_goes_on(rt):
    @mpirt.remote
    def square(x):
        return x * x

    with pytest.raises(ValueError, match=r"CPU=3.*no node has that much.*largest on one node: 2"):
        square.options(num_cpus=3).remote(2)
    with pytest.raises(ValueError, match=r"The quantity of resource num_cpus cannot be negative.*num_cpus=-1"):
        square.options(num_cpus=-1).remote(2)
    with pytest.raises(ValueError, match=r"num_cpus: resource quantities >1 must be whole numbers, got 1.5"):
        square.options(num_cpus=1.5).remote(2)
    with pytest.raises(TypeError, match=r"The quantity of resource disk must be a number.*resources=\{'disk': 'a'\}"):
        square.options(resources={"disk": "a"}).remote(2)
    with pytest.raises(TypeError, match=r"The type of keyword 'num_gpus' must be .* received type <class 'str'>"):
        square.options(num_gpus="1").remote(2)
    with pytest.raises(ValueError, match=r"instead of 'CPU' and 'GPU' in 'resources'"):
        square.options(resources={"CPU": 1}).remote(2)
    assert rt.get(square.options(num_cpus=None).remote(4)) == 16      # None: the default, 1 CPU
    with pytest.raises(ValueError, match=r"disk=1.*no node has that much"):
        square.options(resources={"disk": 1}).remote(2)
    assert rt.get(square.remote(3)) == 9


ZERO_CPU_APP = """
import mpirt as ray
from mpirt.exceptions import InfeasibleResourceError
try:
    ray.init(num_cpus=-1)
except ValueError as exc:
    print("negative:", exc)
ray.init(num_cpus=0)
print("resources", ray.cluster_resources(), ray.available_resources())
print("ranks", ray.nodes()[0]["Ranks"])
@ray.remote(num_cpus=0)
def free(x):
    return x + 1
@ray.remote
def needs_cpu():
    return 1
@ray.remote(num_cpus=0)
class Free:
    def ping(self):
        return "pong"
@ray.remote
class Default:
    pass
print("free task", ray.get(free.remote(1)))
print("free actor", ray.get(Free.remote().ping.remote()))
for what, make in (("cpu task", needs_cpu.remote), ("default actor", Default.remote)):
    try:
        make()
    except InfeasibleResourceError as exc:
        print(what, "infeasible:", exc)
print("still", ray.get(free.remote(2)))
"""


@pytest.mark.parametrize("ranks", [None, 3], ids=["spawned", "mpirun"])
def test_init_with_zero_cpus_runs_zero_cpu_work(tmp_path, ranks):
    proc = run_app(tmp_path, ZERO_CPU_APP, ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "negative: init(num_cpus=...) must be an integer >= 0" in out and "got -1" in out
    assert "resources {} {}" in out
    assert "ranks [0, 1, 2]" in out          # driver, head and one worker offering nothing
    assert "free task 2" in out and "free actor pong" in out and "still 3" in out
    assert "cpu task infeasible: task needs_cpu asks for CPU=1" in out
    assert "default actor infeasible: actor Default asks for CPU=1" in out


NODES_APP = """
import time, mpirt as ray
from mpirt.core.current import runtime as current_runtime
ray.init()
@ray.remote(num_cpus=2)
def whole_node():
    start = time.monotonic()
    time.sleep(0.5)
    return current_runtime().rank // 2, start, time.monotonic()
print("resources", ray.cluster_resources())
print("nodes", [(n["Ranks"], n["Resources"]) for n in ray.nodes()])
rt = current_runtime()
print("pools grouped as the store", all(rt.cluster.node_of[r] == rt.store.arena.node_of[r] for r in range(2, 6)))
runs = ray.get([whole_node.remote() for _ in range(4)])
by_node = {}
for node, start, end in runs:
    by_node.setdefault(node, []).append((start, end))
print("worker nodes", sorted(by_node))
overlap = any(a[0] < b[1] and b[0] < a[1] for spans in by_node.values()
              for i, a in enumerate(spans) for b in spans[i + 1:])
print("overlap on one node", overlap)
try:
    whole_node.options(num_cpus=3).remote()
except ValueError as exc:
    print("infeasible:", exc)
deadline = time.monotonic() + 30     # leases linger 10 ms after their last task
while ray.available_resources() != ray.cluster_resources() and time.monotonic() < deadline:
    time.sleep(0.05)
print("available", ray.available_resources())
"""


def test_emulated_nodes_each_have_a_pool_under_mpirun(tmp_path):
    """Ranks 2,3 and 4,5 play two nodes of 2 CPUs: a 2-CPU task holds a whole node, so two run at
    once (one per node) and never two on one node; 3 CPUs fit no node though the cluster has 4."""
    proc = run_app(tmp_path, NODES_APP, ranks=6, env={"MPIRT_RANKS_PER_NODE": "2"}, timeout=150)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "resources {'CPU': 4.0}" in out
    assert "nodes [([0, 1], {}), ([2, 3], {'CPU': 2.0}), ([4, 5], {'CPU': 2.0})]" in out
    assert "pools grouped as the store True" in out
    assert "worker nodes [1, 2]" in out
    assert "overlap on one node False" in out
    assert "infeasible: task whole_node asks for CPU=3, but no node has that much (largest on one node: 2; " \
           "cluster total: 4" in out
    assert "available {'CPU': 4.0}" in out


def test_cluster_view_judges_requests_against_node_totals():
    from mpirt.exceptions import InfeasibleResourceError
    from mpirt.scheduler.resources import ClusterView

    info = {r: {"hostname": host} for r, host in enumerate(["a", "a", "a", "a", "b", "b"])}
    cpu_gpu = {"CPU": 2.0, "GPU": 1.0}
    view = ClusterView({0: {}, 1: {}, 2: cpu_gpu, 3: cpu_gpu, 4: {"CPU": 1.0}, 5: {}}, {"rank_info": info})
    assert view.worker_ranks == [2, 3, 4, 5]            # rank 5 offers nothing and still executes
    assert view.node_of == {2: 0, 3: 0, 4: 4, 5: 4}
    assert view.node_totals() == {0: {"CPU": 4.0, "GPU": 2.0}, 4: {"CPU": 1.0}}
    view.check_feasible({"CPU": 4.0, "GPU": 1.0})       # node a's 4 CPUs, one rank's GPU
    assert view.rank_could_run(5, {"CPU": 1.0}) and not view.rank_could_run(5, {"CPU": 2.0})
    with pytest.raises(InfeasibleResourceError, match=r"GPU=2, but no worker rank has that many GPUs of its "
                                                      r"own \(most on one rank: 1; most on one node: 2"):
        view.check_feasible({"GPU": 2.0}, what="task t")
    with pytest.raises(InfeasibleResourceError, match=r"CPU=5.*largest on one node: 4; cluster total: 5"):
        view.check_feasible({"CPU": 5.0})
    view.remove_rank(3)
    with pytest.raises(InfeasibleResourceError, match=r"CPU=3.*largest on one node: 2"):
        view.check_feasible({"CPU": 3.0})
    emulated = ClusterView({r: {"CPU": 1.0} for r in range(2, 6)}, {"ranks_per_node": 2, "rank_info": info})
    assert emulated.node_of == {2: 2, 3: 2, 4: 4, 5: 4}


def test_node_pool_accounts_pooled_and_rank_bound_resources():
    from mpirt.scheduler.head import NodePool

    pool = NodePool([2, 3], {2: {"CPU": 1.0, "GPU": 2.0}, 3: {"CPU": 1.0, "disk": 1.0}})
    assert pool.total == {"CPU": 2.0, "disk": 1.0} and pool.rank_total == {2: {"GPU": 2.0}, 3: {}}
    two_cpus = {"CPU": 2.0}
    assert pool.fits_now(3, two_cpus) and not pool.fits_now(3, {"GPU": 1.0})
    pool.take(3, two_cpus)
    assert pool.spare_cpus(3) == -1.0 and pool.spare_cpus(2) == 1.0
    assert not pool.fits_now(2, {"CPU": 0.5}) and pool.fits_now(2, {"GPU": 2.0})
    assert pool.available() == {"disk": 1.0, "GPU": 2.0}             # nothing free: no "CPU", as in Ray
    pool.take(3, two_cpus, -1)
    pool.take(2, {"CPU": 1.0, "GPU": 1.0})
    pool.remove_rank(3, {"CPU": 1.0, "disk": 1.0})    # rank 3 died
    assert pool.total == {"CPU": 1.0, "disk": 0.0} and pool.free["CPU"] == 0.0
    assert not pool.could_fit(2, two_cpus) and pool.could_fit(2, {"CPU": 1.0, "GPU": 2.0})
    pool.take(3, two_cpus)                             # late news from the dead rank: ignored
    assert pool.available() == {"GPU": 1.0}


DEAD_RANK_APP = """
import os, sys, time, mpirt as ray
ray.init()
def rank():
    return int(ray.get_runtime_context().get_worker_id(), 16) & 0xFFFFFFFF
def rank_pid():   # a task in a slot process of its rank (MPIRT_TASK_SLOTS=process) has a pid of its own
    return os.getppid() if "mpirt.core.slot_process" in sys.modules else os.getpid()
@ray.remote
def where():
    time.sleep(0.02)
    return rank(), rank_pid()
@ray.remote(num_cpus=2)
def whole_node():
    return rank()
pids = {}
while len(pids) < 4:
    pids.update(ray.get([where.remote() for _ in range(8)]))
os.kill(pids[3], 9)                  # node {2, 3} keeps rank 2's CPU only
deadline = time.monotonic() + 30
while ray.cluster_resources().get("CPU") != 3.0 and time.monotonic() < deadline:
    time.sleep(0.05)
while ray.available_resources().get("CPU") != 3.0 and time.monotonic() < deadline:
    time.sleep(0.05)
print("after", ray.cluster_resources(), ray.available_resources())
print("whole node on", sorted(set(ray.get([whole_node.remote() for _ in range(4)]))))
print("one cpu on", sorted({r for r, _ in ray.get([where.remote() for _ in range(24)])}))
try:
    whole_node.options(num_cpus=3).remote()
except ValueError as exc:
    print("infeasible:", exc)
"""


def test_a_dead_rank_leaves_its_node_pool_smaller(tmp_path):
    """Under ULFM a worker's death takes what it offered out of its node's pool: a 2-CPU task then
    fits only the other node, 1-CPU tasks still run on the survivor of the first (replacement off:
    a replacement would make the node whole again, tests/test_fault_tolerance.py)."""
    from conftest import mpirun_has_ulfm

    if not mpirun_has_ulfm():
        pytest.skip("this mpirun has no --with-ft ulfm (Open MPI 5 has it): worker deaths end the job")
    proc = run_app(tmp_path, DEAD_RANK_APP, ranks=6, env={"MPIRT_RANKS_PER_NODE": "2", "MPIRT_REPLACE_RANKS": "0"},
                   mpirun_args=("--with-ft", "ulfm"), timeout=150)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert "after {'CPU': 3.0} {'CPU': 3.0}" in out
    assert "whole node on [4]" in out or "whole node on [5]" in out or "whole node on [4, 5]" in out
    assert "one cpu on [2, 4, 5]" in out
    assert "CPU=3, but no node has that much (largest on one node: 2; cluster total: 3" in out
