"""A short run of benchmarks/store_soak.py: put/get/drop of random sizes from every rank of a node
into a pool small enough to spill; nothing may stay in use afterwards (no leak) and the chunks
reserved never exceed the pool."""
import json
import os

from conftest import REPO, run_app

SOAK = os.path.join(REPO, "benchmarks", "store_soak.py")


def test_short_soak_leaves_nothing_in_use(tmp_path):
    source = ("import runpy, sys\n"
              f"sys.argv = ['store_soak.py', '--workers', '3', '--rounds', '40', '--max-bytes', '30000000',\n"
              f"            '--object-store-memory', str(96 << 20), '--sample', '0.02']\n"
              f"runpy.run_path({SOAK!r}, run_name='__main__')\n")
    proc = run_app(tmp_path, source, timeout=180, env={"MPIRT_SPILL_DIR": str(tmp_path / "spill")})
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("store_soak_result "))
    result = json.loads(line.split(" ", 1)[1])
    assert result["put_bytes"] > 100 * 10**6
    assert result["peak_reserved_bytes"] <= result["capacity_bytes"]
    assert result["used_bytes_after"] == 0
    # each rank keeps at most one wholly free chunk for its next put
    assert result["chunks_in_use_after"] <= result["ranks"] + 1
    assert os.listdir(tmp_path / "spill") == []
