"""GPU arrays in the store, GPU to GPU transfers and GPU placement, on a real GPU.

Run on a machine with an NVIDIA GPU and CuPy (torch optional):

    python -m pytest tests/test_gpu.py -v

Without CuPy or without a visible GPU every test here skips and says why. The apps run
under ``mpirun -n 4`` (driver, scheduler, two worker ranks) with ``MPIRT_NUM_GPUS=1``:
both workers get one GPU each, the same device on a one-GPU machine, so transfers
between them go through CUDA IPC. ``MPIRT_RANKS_PER_NODE=2`` splits the ranks into two
"nodes" to exercise the staged path (pinned host memory over MPI) on one machine.
"""
import pytest

from conftest import run_app


def _gpu_count():
    """(number of GPUs, why none) on this machine."""
    try:
        import cupy
    except ImportError:
        return 0, "CuPy is not installed (pip install 'mpirt[gpu]'): the GPU tests need it and a GPU"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return 0, f"no usable CUDA GPU here ({type(exc).__name__}: {exc})"
    return count, None if count else "no CUDA GPU is visible here"


_GPUS, _NO_GPU = _gpu_count()
pytestmark = pytest.mark.skipif(_NO_GPU is not None, reason=_NO_GPU or "")

REAL_GPUS = {"MPIRT_NODE_GPUS": str(_GPUS), "MPIRT_QUIET": "1"}  # conftest hides GPUs from other tests
GPU_ENV = {**REAL_GPUS, "MPIRT_NUM_GPUS": "1"}

SAME_NODE_APP = r'''
import os, time
import numpy as np
import cupy as cp
import mpirt

mpirt.init()
MB = 1 << 20

def kind(value):
    return type(value).__module__.split(".")[0]   # cupy, numpy or torch

def exact_sum(a):
    return float(a.astype(cp.float64).sum())

def stats_by_rank():
    return {r["rank"]: r for r in mpirt.object_store_stats()["ranks"]}

# 1. put/get on the driver: the stored value is a snapshot, get returns a new array on the GPU
x = cp.arange(MB, dtype=cp.float32)                     # 4 MB
ref = mpirt.put(x)
x[:] = -1
y = mpirt.get(ref)
print("put_get", kind(y), float(y[10]), exact_sum(y) == MB * (MB - 1) / 2, y.data.ptr != x.data.ptr, y.dtype, y.shape)

@mpirt.remote(num_gpus=1)
def describe(a):
    return kind(a), exact_sum(a), a.device.id, os.environ["CUDA_VISIBLE_DEVICES"], mpirt.get_gpu_ids()

@mpirt.remote(num_gpus=1)
def make(n, value):
    return cp.full(n, value, dtype=cp.float64)

@mpirt.remote(num_gpus=1)
def add(a, b):
    return a + b

# 2. task arguments: a ref of a put array, a large array passed directly (goes by reference), a small one inline
print("arg_ref", mpirt.get(describe.remote(ref))[:2])
big = cp.ones(3 * MB, dtype=cp.float32)
print("arg_direct", mpirt.get(describe.remote(big))[:2])
small = cp.ones(16, dtype=cp.float32)
print("arg_small", mpirt.get(describe.remote(small))[:2])

# 3. returns: made on a worker, read by the driver and by tasks (worker to worker or in place)
a_ref, b_ref = make.remote(MB, 1.5), make.remote(MB, 2.5)
s = mpirt.get(add.remote(a_ref, b_ref))
print("returns", kind(s), float(s[0]), exact_sum(s), mpirt.get(a_ref).device.id)
print("gpu_ids", mpirt.get(describe.remote(a_ref))[2:])

# 4. nested values: GPU arrays beside numpy and small GPU arrays
nested = mpirt.get(mpirt.put({"big": cp.arange(MB), "small": cp.arange(4), "host": np.arange(3)}))
print("nested", kind(nested["big"]), int(nested["big"][-1]), kind(nested["small"]), int(nested["small"].sum()),
      kind(nested["host"]))
noncontig = cp.arange(4 * MB, dtype=cp.float32).reshape(2048, 2048)[:, ::2]
back = mpirt.get(mpirt.put(noncontig))
print("noncontiguous", bool((back == noncontig).all()), back.shape)

# 5. actor state on the GPU, updated by calls in order
@mpirt.remote(num_gpus=1)
class ParameterServer:
    def __init__(self, n):
        self.weights = cp.zeros(n, dtype=cp.float32)
    def apply(self, gradient):
        self.weights += gradient
        return float(self.weights[0])
    def get_weights(self):
        return self.weights

ps = ParameterServer.remote(MB)
steps = [ps.apply.remote(cp.full(MB, 1.0, dtype=cp.float32)) for _ in range(5)]
w = mpirt.get(ps.get_weights.remote())
print("actor", mpirt.get(steps), kind(w), exact_sum(w))

@mpirt.remote(num_gpus=1)
def use_weights(server):
    return float(mpirt.get(server.get_weights.remote()).mean())
print("actor_handle", mpirt.get(use_weights.remote(ps)))

# 6. mixed CPU and GPU tasks in one graph
@mpirt.remote
def cpu_make(i):
    return np.full(200_000, float(i)), mpirt.get_gpu_ids()

@mpirt.remote(num_gpus=0.5)
def gpu_square(pair):
    host, _ = pair
    return cp.asarray(host) ** 2

@mpirt.remote
def cpu_total(*parts):
    return float(sum(float(p.sum()) for p in parts))

squares = [gpu_square.remote(cpu_make.remote(i)) for i in range(6)]
on_host = [cp.asnumpy(square) for square in mpirt.get(squares)]
print("mixed", mpirt.get(cpu_total.remote(*on_host)), mpirt.get(cpu_make.remote(0))[1])

# 7. torch CUDA tensors through DLPack
try:
    import torch
    has_torch = torch.cuda.is_available()
except ImportError:
    has_torch = False
if has_torch:
    t = torch.arange(MB, dtype=torch.float32, device="cuda")
    t_back = mpirt.get(mpirt.put(t))

    @mpirt.remote(num_gpus=1)
    def torch_double(tensor):
        return tensor * 2, str(tensor.device), str(tensor.dtype)

    doubled, device, dtype = mpirt.get(torch_double.remote(t))
    bf = torch.ones(MB, dtype=torch.bfloat16, device="cuda")
    bf_back = mpirt.get(torch_double.remote(bf))[0]
    print("torch", kind(t_back), t_back.is_cuda, bool(torch.equal(t_back, t)), device, dtype,
          float(doubled.sum()) == 2 * float(t.sum()), bf_back.dtype, float(bf_back.float().sum()))
else:
    print("torch skipped")

# 8. lifetime: sealed arrays live while references do, and go when the last one goes
stats = stats_by_rank()
print("ipc_reads", sum(s["gpu_ipc_reads"] for s in stats.values()) > 0,
      sum(s["gpu_local_reads"] for s in stats.values()) > 0)
held = make.remote(8 * MB, 1.0)
mpirt.get(held)
before = sum(s["gpu_objects"] for s in stats_by_rank().values())
del held, a_ref, b_ref, ref, s, w, steps, nested, back, y
deadline = time.time() + 20
while time.time() < deadline:
    left = {r: s["gpu_objects"] for r, s in stats_by_rank().items() if s["gpu_objects"]}
    if set(left) <= {2, 3} and sum(left.values()) <= 1:   # the actor's pending get_weights result may linger
        break
    time.sleep(0.2)
print("freed", before > 0, left)
mpirt.shutdown()
print("done")
'''


TWO_NODE_APP = r'''
import numpy as np
import cupy as cp
import mpirt

mpirt.init()
MB = 1 << 20

@mpirt.remote(num_gpus=1)
def make(n):
    return cp.arange(n, dtype=cp.int32)

@mpirt.remote(num_gpus=1)
def checksum(a):
    return float(a[-1]), a.size

for n in (MB // 4, 40 * MB):     # 1 MB and 160 MB (three 64 MB chunks)
    ref = make.remote(n)
    a = mpirt.get(ref)            # the driver is on the other "node": staged through pinned memory
    print("staged", n, type(a).__module__.split(".")[0], float(a[-1]) == n - 1, bool((a[:1000] == cp.arange(1000)).all()))
    print("between_workers", mpirt.get(checksum.remote(ref)))
stats = {r["rank"]: r for r in mpirt.object_store_stats()["ranks"]}
print("paths", stats[0]["gpu_staged_reads"], stats[0]["gpu_ipc_reads"])
mpirt.shutdown()
print("done")
'''


NO_GPU_RANK_APP = r'''
import os, time
import cupy as cp
import mpirt

mpirt.init()        # one GPU, two worker ranks: rank 2 gets it, rank 3 none (CUDA_VISIBLE_DEVICES="")

@mpirt.remote
def read_on_cpu_task(boxed):
    time.sleep(0.3)  # keep both ranks busy, so the tasks spread over them
    try:
        return os.environ["CUDA_VISIBLE_DEVICES"], float(mpirt.get(boxed[0])[0])
    except Exception as exc:
        return os.environ["CUDA_VISIBLE_DEVICES"], str(exc)

big = mpirt.put(cp.ones(1 << 20, dtype=cp.float32))
print("gpus", mpirt.cluster_resources().get("GPU"))
for visible, outcome in sorted(set(mpirt.get([read_on_cpu_task.remote([big]) for _ in range(8)]))):
    print("outcome", repr(visible), outcome)
'''


@pytest.fixture(scope="module")
def same_node(tmp_path_factory):
    proc = run_app(tmp_path_factory.mktemp("gpu"), SAME_NODE_APP, ranks=4, env=GPU_ENV, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.split()[0]: line.split(None, 1)[1] if " " in line else "" for line in proc.stdout.splitlines()}


def test_put_get_keeps_a_gpu_snapshot(same_node):
    assert same_node["put_get"] == "cupy 10.0 True True float32 (1048576,)"


def test_task_arguments_arrive_on_the_gpu(same_node):
    assert same_node["arg_ref"] == "('cupy', 549755289600.0)"
    assert same_node["arg_direct"] == "('cupy', 3145728.0)"
    assert same_node["arg_small"] == "('cupy', 16.0)"


def test_task_returns_and_gpu_placement(same_node):
    assert same_node["returns"] == "cupy 4.0 4194304.0 0"
    assert same_node["gpu_ids"] == "(0, '0', [0])"


def test_nested_and_noncontiguous_values(same_node):
    assert same_node["nested"] == "cupy 1048575 cupy 6 numpy"
    assert same_node["noncontiguous"] == "True (2048, 1024)"


def test_actor_state_on_the_gpu(same_node):
    assert same_node["actor"] == "[1.0, 2.0, 3.0, 4.0, 5.0] cupy 5242880.0"
    assert same_node["actor_handle"] == "5.0"


def test_mixed_cpu_and_gpu_tasks(same_node):
    expected = float(sum(200_000 * i * i for i in range(6)))
    assert same_node["mixed"] == f"{expected} []"


def test_torch_tensors_through_dlpack(same_node):
    if same_node["torch"] == "skipped":
        pytest.skip("torch with CUDA is not installed")
    assert same_node["torch"] == ("torch True True cuda:0 torch.float32 True torch.bfloat16 2097152.0")


def test_same_node_reads_use_ipc_and_memory_is_freed(same_node):
    assert same_node["ipc_reads"] == "True True"
    assert same_node["freed"].startswith("True")
    assert "done" in same_node


def test_staged_transfer_between_nodes(tmp_path):
    proc = run_app(tmp_path, TWO_NODE_APP, ranks=4, env={**GPU_ENV, "MPIRT_RANKS_PER_NODE": "2"}, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "staged 262144 cupy True True" in lines
    assert "staged 41943040 cupy True True" in lines
    assert "between_workers (262143.0, 262144)" in lines and "between_workers (41943039.0, 41943040)" in lines
    staged, ipc = (int(x) for x in next(l for l in lines if l.startswith("paths")).split()[1:])
    assert staged >= 2 and ipc == 0


def test_ipc_can_be_switched_off(tmp_path):
    proc = run_app(tmp_path, TWO_NODE_APP, ranks=4, env={**GPU_ENV, "MPIRT_GPU_IPC": "0"}, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "staged 41943040 cupy True True" in proc.stdout.splitlines()


def test_a_rank_without_gpu_gets_a_clear_error(tmp_path):
    proc = run_app(tmp_path, NO_GPU_RANK_APP, ranks=4, env=REAL_GPUS, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "gpus 1.0" in lines
    outcomes = [line for line in lines if line.startswith("outcome")]
    assert "outcome '0' 1.0" in outcomes                   # the rank that has the GPU reads it
    without = [line for line in outcomes if line.startswith("outcome ''")]
    assert without and all("has no GPU" in line and "num_gpus" in line for line in without), outcomes


def test_gpu_parameter_server_example(tmp_path):
    import os

    from conftest import REPO

    source = open(os.path.join(REPO, "examples", "gpu_parameter_server.py")).read()
    proc = run_app(tmp_path, source, ranks=5, env=REAL_GPUS, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "after 20 steps: mean |w - 1| = " in proc.stdout and "cupy" in proc.stdout


# -- collective groups on GPU tensors (mpirt.util.collective) ----------------------------------------

COLLECTIVE_APP = r'''
import sys
sys.path.insert(0, TESTS_DIR)
import mpirt

mpirt.init()
import cupy as cp
import test_collective as tc
from mpirt.util import collective as col
from mpirt.util.collective import CollectiveGroupError

KINDS = ["cupy_float32", "cupy_float64", "cupy_int64", "cupy_float16", "cupy_noncontig",
         "torch_cuda_float32", "torch_cuda_bfloat16", "torch_cuda_float16", "torch_cuda_noncontig"]


def path_of(_, name):
    return col.get_group_handle(name).group.gpu_path


def mixed(i, name):
    """Member 0 passes GPU memory, the others host memory: every member gets the error."""
    try:
        col.allreduce(tc.make(tc.x_of(i), "cupy_float32" if i == 0 else "np_float32"), name)
        return "no error"
    except CollectiveGroupError as error:
        return "different arguments" in str(error)


def large(i, name, n):
    """Allreduce of n float32 (CuPy) and of n float32 (torch CUDA): first and last elements."""
    import torch
    a = cp.full(n, i + 1, dtype=cp.float32)
    col.allreduce(a, name)
    t = torch.full((n,), float(i + 1), device="cuda")
    col.allreduce(t, name, col.ReduceOp.MAX)
    return float(a[0]), float(a[-1]), float(t[0]), float(t[-1])


def check(name, members):
    n = len(members)
    for kind in KINDS:
        try:
            tc.check_all_ops(tc.run_all(members, tc.all_ops, name, kind), n)
            print("OPS", name, kind, "ok", flush=True)
        except Exception as error:
            print("OPS", name, kind, "FAILED", repr(error)[:800], flush=True)
    print("PATH", name, tc.run_all(members, path_of, name), flush=True)
    print("MIXED", name, tc.run_all(members, mixed, name), flush=True)
    tc.check_all_ops(tc.run_all(members, tc.all_ops, name, "cupy_float32"), n)
    print("AFTER_MIXED", name, "ok", flush=True)
    total = n * (n + 1) / 2
    got = tc.run_all(members, large, name, 16 << 20)
    print("LARGE", name, all(g == (total, total, float(n), float(n)) for g in got), got[0], flush=True)


solo = [tc.Member.options(num_gpus=1).remote() for _ in range(2)]
print("SOLO_PIDS", len(set(mpirt.get([a.pid.remote() for a in solo]))), flush=True)
tc.run_all(solo, tc.init, 2, "solo")
check("solo", solo)
for a in solo:
    mpirt.kill(a)
shared = [tc.Member.options(num_gpus=0.5, num_cpus=0).remote() for _ in range(4)]
pids = mpirt.get([a.pid.remote() for a in shared])
print("SHARED_LAYOUT", sorted(pids.count(p) for p in set(pids)), flush=True)
col.create_collective_group(shared, 4, [0, 1, 2, 3], group_name="shared")
tc.run_all(shared, tc.join_by_barrier, "shared")
check("shared", shared)
mpirt.shutdown()
print("DONE", flush=True)
'''


def _collective_run(tmp_path, extra_env):
    import os
    source = COLLECTIVE_APP.replace("TESTS_DIR", repr(os.path.dirname(os.path.abspath(__file__))))
    proc = run_app(tmp_path, source, ranks=4, env={**GPU_ENV, **extra_env}, timeout=240)
    assert "DONE" in proc.stdout, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.parametrize("path", ["auto", "staged"])
def test_collective_ops_on_gpu_tensors(tmp_path, path):
    """Every operation on CuPy arrays and torch CUDA tensors (float16, bfloat16, int64, non-contiguous
    views), members with a GPU rank each and members sharing ranks; a member passing host memory while
    the others pass GPU memory gets an error and the group still works; 64 MB tensors. ``auto``: the path
    the ranks choose (on one GPU shared by the ranks NCCL refuses them and MPI here is not CUDA-aware, so
    staged too: the PATH lines say which); ``staged``: forced by MPIRT_COLLECTIVE_GPU_PATH."""
    out = _collective_run(tmp_path, {} if path == "auto" else {"MPIRT_COLLECTIVE_GPU_PATH": "staged"})
    lines = out.splitlines()
    assert "SOLO_PIDS 2" in lines and "SHARED_LAYOUT [2, 2]" in lines, out
    failed = [line for line in lines if line.startswith("OPS") and not line.endswith(" ok")]
    assert not failed, "\n".join(failed)
    assert sum(line.startswith("OPS") for line in lines) == 18, out
    assert "MIXED solo [True, True]" in lines and "MIXED shared [True, True, True, True]" in lines, out
    assert [line.split()[2] for line in lines if line.startswith("LARGE")] == ["True", "True"], out
    if path == "staged":
        assert "PATH solo ['staged mpi', 'staged mpi']" in lines, out


def test_ddp_example_trains_on_the_gpu(tmp_path):
    """examples/train_ddp_cnn.py --gpu: two DDP workers on GPUs (sharing one where the machine has one),
    gradients averaged in GPU memory by the collective group."""
    import os
    import subprocess
    import sys
    from conftest import REPO
    env = {**os.environ, **REAL_GPUS, "PYTHONPATH": REPO, "MPIRT_STATUS": "0", "MPIRT_REPORT": "0"}
    done = subprocess.run([sys.executable, os.path.join(REPO, "examples", "train_ddp_cnn.py"), "--gpu", "--epochs", "2"],
                          capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    final = [line for line in done.stdout.splitlines() if line.startswith("final:")]
    assert final and float(final[0].split("accuracy ")[1].split()[0]) > 0.9, done.stdout
