"""One store pool per node, shared by all its ranks: objects far larger than a per-rank share,
with default settings, from every rank at once; at 2 and 16 ranks per node, in spawn and mpirun
mode, on one node and on emulated nodes (``MPIRT_RANKS_PER_NODE``) for the cross-node path."""
import os

import pytest

from conftest import run_app

GiB = 1 << 30

ONE_NODE_APP = """
import os, numpy as np, mpirt as ray
ray.init(num_cpus=int(os.environ["APP_WORKERS"]) if "APP_WORKERS" in os.environ else None)   # default store size
node = ray.object_store_stats()["nodes"][0]
print("ranks", len(node["ranks"]), "capacity", node["capacity_bytes"], node["capacity_reason"])
array = np.empty(1 << 30, dtype=np.uint8)           # 1 GiB: more than a 16th of the pool
array[::4096] = 1
ref = ray.put(array)
del array
@ray.remote
def stride_sum(a):
    return a.nbytes, int(a[::4096].sum())
print("1GiB", ray.get(stride_sum.remote(ref)))
@ray.remote
def make(i):
    return np.full(100 << 20, i % 251, dtype=np.uint8)
workers = len(node["ranks"]) - 2
refs = [make.remote(i) for i in range(workers)]      # every worker puts at once
print("concurrent", all(int(v[-1]) == i % 251 for i, v in enumerate(ray.get(refs))))
node = ray.object_store_stats()["nodes"][0]
print("holders", sum(1 for r in ray.object_store_stats()["ranks"] if r["used_bytes"] > 0))
print("spilled", node["spilled_objects"])
"""


@pytest.mark.parametrize("mode", ["mpirun", "spawn"])
def test_sixteen_ranks_on_one_node_share_the_pool(tmp_path, mode):
    env = {"MPIRT_SPILL_DIR": str(tmp_path / "spill")}
    if mode == "spawn":
        env["APP_WORKERS"] = "14"                     # driver + scheduler + 14 spawned workers
    proc = run_app(tmp_path, ONE_NODE_APP, ranks=16 if mode == "mpirun" else None, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ranks 16 capacity" in out and "30% of" in out
    assert f"1GiB ({GiB}, {GiB // 4096})" in out
    assert "concurrent True" in out
    holders = int(out.split("holders ")[1].split()[0])
    assert holders >= 8                              # the workers' results, each in the one pool
    assert "spilled 0" in out


THREE_GIB_APP = """
import numpy as np, mpirt as ray
ray.init(num_cpus=2)                                 # spawn mode, default store size
array = np.empty(3 << 30, dtype=np.uint8)
array[::4096] = 2
array[-1] = 7
ref = ray.put(array)
del array
view = ray.get(ref)
print("local", view.nbytes, int(view[-1]), not view.flags.writeable)
@ray.remote
def tail(a):
    return int(a[-1]), int(a[::4096].sum())
print("task", ray.get(tail.remote(ref)))
print("spilled", ray.object_store_stats()["nodes"][0]["spilled_objects"])
"""


def test_a_3_gib_object_with_default_settings(tmp_path):
    proc = run_app(tmp_path, THREE_GIB_APP, timeout=240, env={"MPIRT_SPILL_DIR": str(tmp_path / "spill")})
    assert proc.returncode == 0, proc.stderr
    assert f"local {3 * GiB} 7 True" in proc.stdout
    assert f"task (7, {2 * (3 * GiB // 4096)})" in proc.stdout
    assert "spilled 0" in proc.stdout


EMULATED_NODES_APP = """
import os, numpy as np, mpirt as ray
ray.init()
@ray.remote
def make(i):
    return np.full(20 << 20, i, dtype=np.uint8), os.getpid()
@ray.remote
def check(i, a):
    return int(a[0]) == i and int(a[-1]) == i
pairs = [make.remote(i) for i in range(24)]
arrays = [ray.get(p)[0] for p in pairs]              # the driver copies each from the workers' nodes
print("driver reads", all(int(a[-1]) == i for i, a in enumerate(arrays)))
refs = [ray.put(np.full(20 << 20, 100 + i, dtype=np.uint8)) for i in range(8)]
print("task reads", all(ray.get([check.remote(100 + i, r) for i, r in enumerate(refs)])))
nodes = ray.object_store_stats()["nodes"]
print("nodes", len(nodes), "remote", sum(n["remote_gets"] > 0 for n in nodes.values()))
"""


def test_emulated_nodes_of_two_ranks_read_across_nodes(tmp_path):
    proc = run_app(tmp_path, EMULATED_NODES_APP, ranks=16, timeout=240,
                   env={"MPIRT_RANKS_PER_NODE": "2", "MPIRT_SPILL_DIR": str(tmp_path / "spill")})
    assert proc.returncode == 0, proc.stderr
    assert "driver reads True" in proc.stdout
    assert "task reads True" in proc.stdout
    nodes, remote = proc.stdout.split("nodes ")[1].split()[0], proc.stdout.split("remote ")[1].split()[0]
    assert nodes == "8" and int(remote) >= 2


SMALL_SHM_APP = """
import numpy as np, mpirt as ray
ray.init(num_cpus=2, object_store_memory=512 << 20)
node = ray.object_store_stats()["nodes"][0]
print("directory", node["memory_directory"])
value = ray.get(ray.put(np.full(200 << 20, 5, dtype=np.uint8)))
print("value", int(value[0]), int(value[-1]), value.nbytes)
"""


def test_a_small_dev_shm_puts_the_store_in_node_local_temp_space(tmp_path):
    # A container's 64 MB /dev/shm, played by telling the store that is all it has.
    local = tmp_path / "local"
    local.mkdir()
    proc = run_app(tmp_path, SMALL_SHM_APP, env={"MPIRT_SHM_AVAILABLE_BYTES": str(64 * 10**6),
                                                 "TMPDIR": str(local), "MPIRT_SPILL_DIR": str(tmp_path / "spill")})
    assert proc.returncode == 0, proc.stderr
    assert f"directory {local}" in proc.stdout
    assert f"value 5 5 {200 << 20}" in proc.stdout
    assert proc.stderr.count("does not fit in /dev/shm (64,000,000 bytes free)") == 1   # said once
    assert not [name for name in os.listdir(local) if name.startswith("mpirt-store-")]   # nothing left
