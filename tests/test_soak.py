"""The short form of benchmarks/soak.py that CI runs: 5 minutes of mixed load (tasks, nested tasks, actor
calls, large objects, spills, Tune) on 8 ranks under ``mpirun --with-ft ulfm`` with a worker rank SIGKILLed
every 60 s. Nothing may be wrong, lost or hung, memory, descriptors and threads must stay bounded, and no
process may be left behind. About 5.5 minutes of wall time on 2 cores."""
import json
import os

import pytest

from conftest import REPO, mpirun_has_ulfm, run_app

SOAK = os.path.join(REPO, "benchmarks", "soak.py")
MINUTES = 5


@pytest.mark.timeout(MINUTES * 60 + 150)
def test_five_minute_soak_with_a_kill_every_minute(tmp_path):
    if not mpirun_has_ulfm():
        pytest.skip("this Open MPI has no ULFM (Open MPI 5 has it): a killed worker would end the job")
    report = tmp_path / "soak.json"
    source = ("import runpy, sys\n"
              f"sys.argv = ['soak.py', '--minutes', '{MINUTES}', '--kill-every', '60', '--report', {str(report)!r}]\n"
              f"runpy.run_path({SOAK!r}, run_name='__main__')\n")
    proc = run_app(tmp_path, source, timeout=MINUTES * 60 + 120)
    assert report.exists(), f"no report\nstdout:\n{proc.stdout[-5000:]}\nstderr:\n{proc.stderr[-5000:]}"
    result = json.loads(report.read_text())
    counts = result["counts"]
    assert counts.get("tasks", 0) > 1000 and counts.get("actor_calls", 0) > 1000, counts
    assert counts.get("tune_runs", 0) >= 2 and counts.get("large_objects_checked", 0) > 0, counts
    assert result["spilled_objects"] > 0 and result["kills_done"] >= MINUTES - 1
    assert not result["failures"], f"soak failed: {result['failures']}\nstdout:\n{proc.stdout[-8000:]}"
    assert proc.returncode == 0, proc.stdout[-8000:]
