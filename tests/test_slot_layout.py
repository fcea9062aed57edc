"""The behaviour tests again, with every task in a slot process of its rank.

A worker rank offering several CPUs runs each task in a *slot process* of its own
(``mpirt/core/task_slots.py``), while most of this suite starts 1-CPU ranks, whose tasks run on the
rank's threads. ``MPIRT_TASK_SLOTS=process`` puts the tasks of every rank in slot processes; run
so, the modules below check that tasks, objects, errors, Ray's API and worker deaths behave the
same in that layout. The whole suite passes in it too (``MPIRT_TASK_SLOTS=process python -m
pytest``, about 20 minutes on 2 cores); these modules are the part worth their time on every run.
"""
import subprocess
import sys
import uuid

import pytest

from conftest import BASE_ENVIRON, REPO, TASK_SLOTS, _wait_for_no_leftovers

MODULES = ["tests/test_tasks.py", "tests/test_objects.py", "tests/compat/test_compat_api.py",
           "tests/test_fault_tolerance.py"]
# Left out: the replacement round over all survivors under mpirun. It is MPI's part (Shrink, Spawn,
# Merge), the same in either layout, and it meets a rare crash inside Open MPI's failure detector
# (docs/design.md, "Fault tolerance"), which one run of it per suite is enough to watch for.
DESELECT = "not (mpirun and all-survivors)"
SECONDS = 900


@pytest.mark.timeout(SECONDS + 60)
@pytest.mark.parametrize("module", MODULES)
def test_behaviour_holds_with_every_task_in_a_slot_process(module):
    if TASK_SLOTS:
        pytest.skip("this run has every task in a slot process already")
    marker = uuid.uuid4().hex   # every process the inner run starts inherits it
    env = {**BASE_ENVIRON, "MPIRT_TASK_SLOTS": "process", "MPIRT_TEST_RUN": marker}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module, "-k", DESELECT]
    try:
        proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=SECONDS)
    except subprocess.TimeoutExpired as timeout:
        _wait_for_no_leftovers(marker, seconds=0, variable="MPIRT_TEST_RUN")
        pytest.fail(f"{module} with MPIRT_TASK_SLOTS=process ran over {SECONDS} s:\n{timeout.stdout}")
    leftovers = _wait_for_no_leftovers(marker, variable="MPIRT_TEST_RUN")
    assert proc.returncode == 0, f"{module} with MPIRT_TASK_SLOTS=process:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert not leftovers, f"processes left behind: {leftovers}"
