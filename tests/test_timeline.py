"""``timeline()`` as Ray's: the events returned without a filename, written (and None returned) with one,
RuntimeError before ``init()``; and besides tasks, calls and waits, the events of object transfers between
ranks (a store block read from another node, an inline value sent by its owner), spills and restores."""
import json

import pytest

import mpirt
from conftest import run_app

APP = """
import json, sys
import numpy as np, mpirt as ray
ray.init(num_cpus=2, object_store_memory=64 << 20)    # MPIRT_RANKS_PER_NODE=2: driver and head, the workers
@ray.remote
def make(i):
    return np.full(8 << 20, i, dtype=np.uint8)         # stored on the workers' node
@ray.remote
def first(refs):
    return ray.get(refs[0])[:3]                        # a ref owned by the driver: its owner sends the value
assert [int(a[0]) for a in ray.get([make.remote(i) for i in range(2)])] == [0, 1]
small = ray.put(list(range(300)))
assert ray.get(first.remote([small])) == [0, 1, 2]
big = [ray.put(np.full(10 << 20, i, dtype=np.uint8)) for i in range(10)]   # 100 MiB into 64 MiB: spills
assert [int(ray.get(r)[-1]) for r in big] == list(range(10))              # and restores
events = ray.timeline()
returned = ray.timeline(sys.argv[1])
print("returned", returned)
print("events", json.dumps(events))
"""


@pytest.mark.timeout(200)
def test_transfers_spills_and_restores_are_traced(tmp_path):
    path = tmp_path / "trace.json"
    proc = run_app(tmp_path, APP, env={"MPIRT_RANKS_PER_NODE": "2"}, args=(str(path),), timeout=150)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines["returned"] == "None"
    events = json.loads(lines["events"])
    written = json.loads(path.read_text())
    assert {e["cat"] for e in written if e["ph"] == "X"} >= {"task", "wait", "transfer", "spill", "restore"}
    spans = [e for e in events if e["ph"] == "X"]
    assert all(e["dur"] >= 0 and e["ts"] > 0 for e in spans)

    reads = [e for e in spans if e["cat"] == "transfer" and e["name"] == "store read" and e["pid"] == 0]
    assert len(reads) >= 2, reads                         # the driver read both results across nodes
    for read in reads[:2]:
        assert read["args"]["bytes"] >= 8 << 20 and read["args"]["peer"] in (2, 3)
        assert read["dur"] < 30e6

    replies = [e for e in spans if e["cat"] == "transfer" and e["name"] == "object reply"]
    assert any(e["pid"] in (2, 3) and e["args"]["peer"] == 0 and 300 < e["args"]["bytes"] < 100_000
               and len(e["args"]["object_id"]) == 28 for e in replies), replies

    spills = [e for e in spans if e["cat"] == "spill" and e["pid"] == 0]
    restores = [e for e in spans if e["cat"] == "restore" and e["pid"] == 0]
    assert len(spills) >= 4 and len(restores) >= 4, (spills, restores)
    assert all(e["args"]["bytes"] >= 10 << 20 for e in spills + restores)
    assert {e["args"]["key"] for e in restores} <= {e["args"]["key"] for e in spills}   # what came back had gone


def test_timeline_before_init_raises_as_in_ray():
    assert not mpirt.is_initialized()
    with pytest.raises(RuntimeError, match="Timeline requires mpirt to be initialized first"):
        mpirt.timeline()
