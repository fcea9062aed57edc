"""Spill and restore: a full store spills its oldest unviewed objects to disk and restores them on
the next get; objects larger than the store go straight to disk; an error only when the disk
cannot take them either; spill files go at shutdown, and those of killed jobs at the next start."""
import errno
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO, mpirun_has_ulfm, run_app

SPILL_APP = """
import os, numpy as np, mpirt as ray
ray.init(num_cpus=2, object_store_memory=64 << 20)
def node():
    return ray.object_store_stats()["nodes"][0]
refs = [ray.put(np.full(10 << 20, i, dtype=np.uint8)) for i in range(10)]   # 100 MiB into 64 MiB
print("spilled", node()["spilled_objects"])
print("values", [int(ray.get(r)[123]) for r in refs])
stats = node()
print("restored", stats["restored_objects"], stats["restored_from_disk"])
print("within capacity", stats["used_bytes"] <= stats["capacity_bytes"])
held = ray.get(refs[-1])                      # a viewed object is never spilled under its reader
more = [ray.put(np.full(10 << 20, 50 + i, dtype=np.uint8)) for i in range(6)]
print("viewed intact", int(held.min()), int(held.max()))
big = ray.put(np.full(100 << 20, 3, dtype=np.uint8))   # larger than the whole store: on disk
value = ray.get(big)
print("big", value.nbytes, int(value[::4096].sum()) == 3 * (100 << 20) // 4096)
@ray.remote
def tail(a):
    return int(a[-1]), int(a.sum() // a.nbytes)
print("reads_in_tasks", ray.get([tail.remote(r) for r in refs[:3]]), ray.get(tail.remote(big)))
@ray.remote
def make(n, v):
    return np.full(n, v, dtype=np.uint8)
print("result_larger_than_store", int(ray.get(make.remote(80 << 20, 9))[-1]))
print("spill_dir", node()["spill_directory"])
"""


def _spill_dirs(base):
    return sorted(name for name in os.listdir(base) if name.startswith("mpirt-spill-"))


def test_spill_restore_and_objects_larger_than_the_store(tmp_path):
    spill = tmp_path / "spill"
    proc = run_app(tmp_path, SPILL_APP, env={"MPIRT_SPILL_DIR": str(spill)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert int(lines["spilled"]) >= 4
    assert lines["values"] == str(list(range(10)))
    restored_objects, _ = map(int, lines["restored"].split())
    assert restored_objects >= 4                     # spilled objects came back into memory
    assert lines["within"] == "capacity True"
    assert lines["viewed"] == "intact 9 9"
    assert lines["big"] == f"{100 << 20} True"
    assert lines["reads_in_tasks"] == "[(0, 0), (1, 1), (2, 2)] (3, 3)"
    assert lines["result_larger_than_store"] == "9"
    assert lines["spill_dir"].startswith(str(spill))
    assert _spill_dirs(spill) == []                  # removed at shutdown


TOO_BIG_APP = """
import numpy as np, mpirt as ray
from mpirt.exceptions import ObjectStoreFullError
ray.init(num_cpus=1, object_store_memory=32 << 20)
try:
    ray.put(np.zeros(40 << 20, dtype=np.uint8))
except ObjectStoreFullError as exc:
    print("too big:", exc)
@ray.remote
def big():
    return np.zeros(40 << 20, dtype=np.uint8)
try:
    ray.get(big.remote())
except ObjectStoreFullError as exc:
    print("task too big:", isinstance(exc, ObjectStoreFullError), "41,94" in str(exc))
print("still works", int(ray.get(ray.put(np.ones(1 << 20, dtype=np.uint8))).sum()))
"""


def test_error_only_when_neither_memory_nor_disk_can_hold_it(tmp_path):
    # A threshold of 0 plays a full disk: spilling stops before any byte is written.
    proc = run_app(tmp_path, TOO_BIG_APP, env={"MPIRT_SPILL_DIR": str(tmp_path / "spill"),
                                               "MPIRT_SPILL_DISK_THRESHOLD": "0"})
    assert proc.returncode == 0, proc.stderr
    message = next(line for line in proc.stdout.splitlines() if line.startswith("too big:"))
    assert "41,94" in message and "33,554,432" in message        # the object's (40 MiB and its layout) and the store's sizes
    assert "object_store_memory" in message and "MPIRT_SPILL_DIR" in message   # the knobs
    assert "task too big: True True" in proc.stdout
    assert f"still works {1 << 20}" in proc.stdout


def test_a_later_start_removes_only_dead_jobs_spill_directories(tmp_path):
    spill = tmp_path / "spill"
    host = socket.gethostname()
    dead = spill / f"mpirt-spill-{host}-999999-dead"
    live = spill / f"mpirt-spill-{host}-{os.getpid()}-live"
    other_host = spill / "mpirt-spill-otherhost-1-x"
    for path, owner in ((dead, "999999:1"), (live, _identity()), (other_host, "1:1")):
        (path / "rank2").mkdir(parents=True)
        (path / "rank2" / "1.obj").write_bytes(b"x" * 100)
        (path / "owners").write_text(owner + "\n")
    (spill / "unrelated").mkdir()
    proc = run_app(tmp_path, "import mpirt as ray\nray.init(num_cpus=1)\nray.shutdown()\n",
                   env={"MPIRT_SPILL_DIR": str(spill)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(spill)) == sorted([live.name, other_host.name, "unrelated"])


def _identity():
    from mpirt.store.spill import process_identity

    return process_identity()


NODE_WIDE_APP = """
import numpy as np, mpirt as ray
ray.init(num_cpus=2, object_store_memory=96 << 20)
refs = [ray.put(np.full(10 << 20, i, dtype=np.uint8)) for i in range(8)]   # the driver fills the pool
@ray.remote
def make():
    return np.full(40 << 20, 7, dtype=np.uint8)
result = make.remote()
ray.wait([result])
ranks = ray.object_store_stats()["ranks"]
print("driver spilled", ranks[0]["spilled_objects"] > 0)
print("worker stored in memory", sum(r["objects_in_memory"] for r in ranks[2:]), sum(r["objects_on_disk"] for r in ranks[2:]))
print("values", int(ray.get(result)[-1]), [int(ray.get(r)[0]) for r in refs])
"""


def test_a_full_pool_spills_other_ranks_objects_for_a_new_one(tmp_path):
    # The driver's objects fill the pool; a worker's result makes the driver spill its oldest.
    proc = run_app(tmp_path, NODE_WIDE_APP, env={"MPIRT_SPILL_DIR": str(tmp_path / "spill")})
    assert proc.returncode == 0, proc.stderr
    assert "driver spilled True" in proc.stdout
    assert "worker stored in memory 1 0" in proc.stdout
    assert f"values 7 {list(range(8))}" in proc.stdout


DISCARD_APP = """
import numpy as np, mpirt as ray
from mpirt.core.current import runtime_for_call
from mpirt.core.codec import encode
ray.init(num_cpus=1, object_store_memory=64 << 20)
store = runtime_for_call().store
blobs = [encode(np.ones(20 << 20, dtype=np.uint8), store) for _ in range(2)]   # one in memory, one on disk
blobs.append(encode(np.ones(100 << 20, dtype=np.uint8), store))
before = ray.object_store_stats()["ranks"][0]
store.discard(blobs)
after = ray.object_store_stats()["ranks"][0]
print("before", before["objects_in_memory"] + before["objects_on_disk"], "after", after["objects_in_memory"],
      after["objects_on_disk"], after["used_bytes"])
"""


def test_discard_frees_stored_values_that_were_never_published(tmp_path):
    spill = tmp_path / "spill"
    proc = run_app(tmp_path, DISCARD_APP, env={"MPIRT_SPILL_DIR": str(spill)})
    assert proc.returncode == 0, proc.stderr
    assert "before 3 after 0 0 0" in proc.stdout


CROSS_NODE_RESTORE_APP = """
import numpy as np, mpirt as ray
ray.init(num_cpus=2, object_store_memory=64 << 20)   # each node's pool; the workers are node 2
@ray.remote
def make(i):
    return np.full(10 << 20, i, dtype=np.uint8)
refs = [make.remote(i) for i in range(10)]            # 100 MiB made on node 2: the first ones spill
ray.wait(refs, num_returns=len(refs))
for round in range(3):                                # restores spill others, which later reads restore
    print("round", round, [int(ray.get(r)[-1]) for r in refs])
nodes = ray.object_store_stats()["nodes"]
workers = next(n for n in nodes.values() if 2 in n["ranks"])
driver = next(n for n in nodes.values() if 0 in n["ranks"])
print("restored", workers["restored_objects"] > 0, "remote", driver["remote_gets"] >= 30)
"""


def test_cross_node_reads_of_spilled_and_restored_objects(tmp_path):
    # The driver's locations name the first write of each object; once the holder spilled and
    # restored it (maybe into the same block) the reader is refused there, asks where it is now,
    # and reads the restored copy.
    proc = run_app(tmp_path, CROSS_NODE_RESTORE_APP, timeout=180,
                   env={"MPIRT_RANKS_PER_NODE": "2", "MPIRT_SPILL_DIR": str(tmp_path / "spill")})
    assert proc.returncode == 0, proc.stderr
    for round in range(3):
        assert f"round {round} {list(range(10))}" in proc.stdout
    assert "restored True remote True" in proc.stdout


def test_a_spill_file_the_disk_cannot_hold_is_an_oserror_not_a_crash(small_disk):
    # The disk fills between room_for() and the write (another job, the results directory): writing into a
    # mapped sparse file would be a SIGBUS that kills the rank; the blocks are reserved first instead.
    code = (f"from mpirt.store.spill import RankSpill\n"
            f"spill = RankSpill({str(small_disk)!r}, 2)\n"
            f"try:\n"
            f"    spill.write(1, 40 << 20, lambda view: view.__setitem__(slice(None), b'x' * len(view)))\n"
            f"except OSError as exc:\n"
            f"    print('refused', exc.errno)\n"
            f"print('left', sorted(__import__('os').listdir(spill.directory)))\n"
            f"print('fits', spill.write(2, 1 << 20, lambda view: None).endswith('2.obj'))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr          # -7 (SIGBUS) before
    assert proc.stdout.split("\n")[:3] == [f"refused {errno.ENOSPC}", "left []", "fits True"]


FULL_DISK_APP = """
import numpy as np, mpirt as ray
from mpirt.exceptions import ObjectStoreFullError
ray.init(num_cpus=1, object_store_memory=32 << 20)
refs = []
try:
    for i in range(8):                           # 80 MiB into a 32 MiB store and a 24 MiB disk
        refs.append(ray.put(np.full(10 << 20, i, dtype=np.uint8)))
except ObjectStoreFullError as exc:
    print("full after", len(refs), "MPIRT_SPILL_DIR" in str(exc))
print("kept", [int(ray.get(r)[7]) for r in refs])
del refs
print("still works", int(ray.get(ray.put(np.ones(1 << 20, dtype=np.uint8))).sum()))
"""


def test_a_full_spill_disk_is_object_store_full_and_the_job_goes_on(tmp_path, small_disk):
    proc = run_app(tmp_path, FULL_DISK_APP, env={"MPIRT_SPILL_DIR": str(small_disk)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    full = next(line for line in proc.stdout.splitlines() if line.startswith("full after"))
    count = int(full.split()[2])
    assert 3 <= count < 8 and full.endswith("True")
    assert f"kept {list(range(count))}" in proc.stdout
    assert f"still works {1 << 20}" in proc.stdout
    assert _spill_dirs(small_disk) == []


DEAD_RANK_SPILL_APP = """
import os, time, numpy as np, mpirt as ray
ray.init(num_cpus=2, object_store_memory=16 << 20)
@ray.remote
def spill_here():
    refs = [ray.put(np.full(3 << 20, i)) for i in range(4)]    # 4 x 24 MiB into 16 MiB: spilled by this rank
    return os.getpid(), refs
pid, refs = ray.get(spill_here.remote())
print("spilled", sorted(os.listdir(os.environ["MPIRT_SPILL_DIR"])) != [])
os.kill(pid, 9)
time.sleep(2)
ray.shutdown()
"""


def test_a_killed_ranks_spill_files_go_at_shutdown(tmp_path):
    # A dead rank's files stay while the job runs (readers on its node may still need them); at shutdown
    # the survivors remove them with their own.
    if not mpirun_has_ulfm():
        pytest.skip("no ULFM: a killed worker ends the job")
    spill = tmp_path / "spill"
    proc = run_app(tmp_path, DEAD_RANK_SPILL_APP, timeout=120, env={"MPIRT_SPILL_DIR": str(spill)})
    assert proc.returncode == 0, proc.stderr
    assert "spilled True" in proc.stdout and "died" in proc.stderr
    assert os.listdir(spill) == []
