"""The jobscripts on a real Slurm: submitted with sbatch, waited for, output and HDF5 files checked.

``.ci/run`` starts a single-node Slurm (``.ci/slurm-up.sh``: 32 CPUs and 4 placeholder GPUs on
this 2-core machine) before the suite. Elsewhere the Slurm tests skip with the reason when
``sbatch`` is absent or no controller answers; ``MPIRT_REQUIRE_SLURM=1`` makes that a failure.
The first tests need no Slurm: they check what mpirt reads from Slurm's variables and how its
ranks take the signals Slurm sends.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from conftest import BASE_ENVIRON, MPIRUN_ENV, REPO, _kill_leftovers, _wait_for_no_leftovers, run_app
from mpirt import slurm

JOBSCRIPTS = os.path.join(REPO, "jobscripts")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}


# -- what mpirt reads from Slurm (no Slurm needed) -----------------------------
def test_hostlist_expansion():
    assert slurm.expand_hostlist("vm") == ["vm"]
    assert slurm.expand_hostlist("n[01-03,07],gpu1") == ["n01", "n02", "n03", "n07", "gpu1"]
    assert slurm.expand_hostlist("rack[1-2]-n[8-9]") == ["rack1-n8", "rack1-n9", "rack2-n8", "rack2-n9"]
    assert slurm.expand_hostlist("") == []


def test_job_and_default_paths_from_slurm_variables():
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "sweep", "SLURM_JOB_NODELIST": "c[1-2]",
           "SLURM_NTASKS": "8", "SLURM_CPUS_PER_TASK": "4", "SLURM_GPUS_PER_TASK": "1",
           "SLURM_SUBMIT_DIR": "/home/u/project", "SLURM_RESTART_COUNT": "2", "SLURM_JOB_NUM_NODES": "2"}
    job = slurm.job(env)
    assert (job["job_id"], job["nodes"], job["ntasks"], job["cpus_per_task"], job["gpus_per_task"],
            job["restart_count"], job["num_nodes"]) == ("42", ["c1", "c2"], 8, 4, 1, 2, 2)
    assert slurm.default_results_dir(env) == "/home/u/project/mpirt_results"
    assert slurm.default_results_dir({**env, "MPIRT_RESULTS_DIR": "/scratch/r"}) == "/scratch/r"
    assert slurm.default_run_name(env) == "sweep-42"
    array = {**env, "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}
    assert slurm.default_run_name(array) == "sweep-40_3"
    assert slurm.spawn_worker_count(env) == 4
    assert slurm.spawn_worker_count({"SLURM_JOB_ID": "1", "SLURM_CPUS_ON_NODE": "6"}) == 6
    assert slurm.job({}) is None and slurm.default_run_name({}) is None
    assert slurm.default_results_dir({}).endswith("mpirt_results")


SIGNALS_APP = r"""
import os, signal, time, mpirt

mpirt.init()

@mpirt.remote
def pid():
    time.sleep(0.2)
    return os.getpid()

workers = set(mpirt.get([pid.remote() for _ in range(8)]))
for worker in workers:             # what srun/mpirun pass on from `--signal` and Slurm's SIGTERM
    os.kill(worker, signal.SIGUSR1)
    os.kill(worker, signal.SIGTERM)
time.sleep(0.5)
assert set(mpirt.get([pid.remote() for _ in range(8)])) <= workers
print("WORKERS SURVIVED", len(workers), flush=True)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
finally:
    print("DRIVER FINALLY", flush=True)
"""


@pytest.mark.parametrize("ranks", [None, 4])
def test_ranks_wait_for_the_driver_on_signals_and_sigterm_ends_all(tmp_path, ranks):
    """Worker ranks outlive SIGUSR1/SIGTERM (the driver may still need them to save state);
    SIGTERM to the driver runs its finally blocks and shutdown, then every rank is gone."""
    proc = run_app(tmp_path, SIGNALS_APP, ranks=ranks, timeout=60)
    assert "WORKERS SURVIVED" in proc.stdout, proc.stderr
    assert "DRIVER FINALLY" in proc.stdout
    assert proc.returncode == 143, proc.stderr


# -- a real Slurm -------------------------------------------------------------------
def _no_slurm(reason):
    if os.environ.get("MPIRT_REQUIRE_SLURM") == "1":
        pytest.fail(reason + " (MPIRT_REQUIRE_SLURM=1)")
    pytest.skip(reason)


class Slurm:
    """Submits jobscripts, polls their state with scontrol, cancels whatever is left at the end."""

    def __init__(self):
        self.jobs = {}  # job id -> marker carried in its processes' environment
        bindir = os.path.dirname(sys.executable)  # this python and its mpirun, in the job too
        self.env = {**BASE_ENVIRON, **MPIRUN_ENV, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
                    "PYTHONPATH": REPO, "MPIRT_OBJECT_STORE_MEMORY": str(64 << 20)}
        self.env.pop("MPIRT_NODE_GPUS", None)  # jobs see the GPUs Slurm binds to them (conftest hides others)

    def submit(self, cwd, *args):
        marker = uuid.uuid4().hex
        proc = subprocess.run(["sbatch", "--parsable", *args], cwd=str(cwd), capture_output=True, text=True,
                              timeout=30, env={**self.env, "MPIRT_TEST_MARKER": marker})
        assert proc.returncode == 0, f"sbatch {' '.join(args)} failed: {proc.stderr}"
        job = proc.stdout.strip().split(";")[0]
        self.jobs[job] = marker
        return job

    def show(self, job):
        """One dict per job (array: per task) from `scontrol show job -o`."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                             timeout=30).stdout
        return [dict(field.split("=", 1) for field in line.split() if "=" in field)
                for line in out.splitlines() if line.strip()]

    def wait(self, job, until=FINAL_STATES, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            records = self.show(job)
            if records and all(r.get("JobState") in until for r in records):
                return records
            if time.monotonic() > deadline:
                pytest.fail(f"job {job} not {sorted(until)} after {timeout} s: "
                            f"{[(r.get('JobState'), r.get('Reason')) for r in records]}")
            time.sleep(0.3)

    def wait_finished(self, job, timeout=120):
        """Wait for the job to end, then for every process it started to be gone."""
        records = self.wait(job, timeout=timeout)
        leftovers = _wait_for_no_leftovers(self.jobs[job], seconds=15)
        assert not leftovers, f"job {job} left processes behind: {leftovers}"
        return records

    def wait_steps_gone(self, job, timeout=30):
        """Until the node has no step daemon of ``job`` (a requeued job must not start before)."""
        needle = f"[{job}.".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(needle in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit()):
                return
            time.sleep(0.2)
        pytest.fail(f"slurmstepd of job {job} still running after {timeout} s")

    def scontrol(self, *args):
        proc = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"scontrol {' '.join(args)}: {proc.stderr}"

    def cancel_all(self):
        if self.jobs:
            subprocess.run(["scancel", *self.jobs], capture_output=True, timeout=30)
        for marker in self.jobs.values():
            if _wait_for_no_leftovers(marker, seconds=15):
                _kill_leftovers(marker)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("sbatch") is None:
        _no_slurm("sbatch not found: no Slurm on this machine (.ci/run starts one with .ci/slurm-up.sh)")
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as error:
        ping = str(error)
    if "UP" not in ping:
        first = (ping.strip().splitlines() or ["no answer"])[0]
        _no_slurm(f"no Slurm controller answers `scontrol ping` ({first}); start one with .ci/slurm-up.sh")
    slurm_cluster = Slurm()
    yield slurm_cluster
    slurm_cluster.cancel_all()


def _output(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read()


def _result_line(text):
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, text
    return json.loads(lines[0][len("RESULT "):])


def _hostnames(nodelist):
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
    return out.stdout.split()


# -- plain, srun, GPU and array jobs: submitted together, checked one by one ------------------
APP = r"""
import json, os, sys
import h5py, numpy as np
import mpirt, mpirt.slurm

mpirt.init()

@mpirt.remote
def square(x):
    return x * x

@mpirt.remote(num_gpus=1)
def gpu_task():
    import time
    time.sleep(0.3)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), mpirt.get_gpu_ids(), os.environ.get("SLURM_STEP_GPUS")

job = mpirt.slurm.job()
info = {"job": job, "nodes": mpirt.nodes(), "cluster": mpirt.cluster_resources(), "args": sys.argv[1:],
        "squares": sum(mpirt.get([square.remote(i) for i in range(20)], timeout=60))}
if info["cluster"].get("GPU"):
    info["gpu_tasks"] = mpirt.get([gpu_task.remote() for _ in range(4)], timeout=60)
out_dir = os.path.join(mpirt.slurm.default_results_dir(), mpirt.slurm.default_run_name())
os.makedirs(out_dir, exist_ok=True)
with h5py.File(os.path.join(out_dir, "result.h5"), "w") as f:
    f.attrs["job_id"] = job["job_id"]
    f.attrs["args"] = json.dumps(sys.argv[1:])
    f["squares"] = np.arange(20) ** 2
print("RESULT " + json.dumps(info), flush=True)
mpirt.shutdown()
"""


@pytest.fixture(scope="module")
def plain_jobs(cluster, tmp_path_factory):
    """Submit the plain-app (mpirun and srun), GPU and array jobs at once: they run side by side."""
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=30).stdout
    directory = tmp_path_factory.mktemp("slurm_jobs")
    (directory / "app.py").write_text(APP)
    (directory / "configs.txt").write_text("--lr 0.1 --layers 2\n--lr 0.01 --layers 3\n")
    jobs = {
        "mpirun": cluster.submit(directory, "--ntasks=3", "--cpus-per-task=2",
                                 os.path.join(JOBSCRIPTS, "app.sbatch"), "app.py", "--mode", "mpirun"),
        "srun": cluster.submit(directory, "--ntasks=4", os.path.join(JOBSCRIPTS, "app-srun.sbatch"), "app.py"),
        "spawn": cluster.submit(directory, "--ntasks=1", "--cpus-per-task=3", "--job-name=mpirt-spawn",
                                "--output=%x-%j.out", "--wrap", "python app.py"),
        "array": cluster.submit(directory, "--array=0-1", "--ntasks=3",
                                os.path.join(JOBSCRIPTS, "sweep.sbatch"), "app.py", "configs.txt"),
    }
    if "gpu" in gres:
        jobs["gpu"] = cluster.submit(directory, "--ntasks=4", "--cpus-per-task=1",
                                     os.path.join(JOBSCRIPTS, "gpu.sbatch"), "app.py")
    return directory, jobs


def _check_plain(cluster, directory, job, job_name, expected_cpus):
    record, = cluster.wait_finished(job)
    output = _output(directory, f"{job_name}-{job}.out")
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", output
    info = _result_line(output)
    assert info["job"]["job_id"] == job
    assert info["job"]["nodes"] == _hostnames(record["NodeList"])
    assert info["squares"] == sum(i * i for i in range(20))
    assert info["cluster"]["CPU"] == expected_cpus, info["cluster"]
    import h5py

    with h5py.File(directory / "mpirt_results" / f"{job_name}-{job}" / "result.h5", "r") as f:
        assert f.attrs["job_id"] == job and list(f["squares"][()]) == [i * i for i in range(20)]
    return info


def test_app_under_mpirun(cluster, plain_jobs):
    """app.sbatch: mpirun in the job; each worker offers --cpus-per-task CPUs (1 worker x 2)."""
    directory, jobs = plain_jobs
    info = _check_plain(cluster, directory, jobs["mpirun"], "mpirt-app", expected_cpus=2.0)
    assert info["job"]["cpus_per_task"] == 2 and info["args"] == ["--mode", "mpirun"]


def test_app_under_srun_pmix(cluster, plain_jobs):
    """app-srun.sbatch: srun --mpi=pmix starts the ranks; rank 0 drives (2 workers x 1 CPU)."""
    directory, jobs = plain_jobs
    info = _check_plain(cluster, directory, jobs["srun"], "mpirt-app", expected_cpus=2.0)
    assert [node["Ranks"] for node in info["nodes"]] == [[0, 1, 2, 3]]


def test_plain_python_in_a_job_spawns_one_worker_per_allocated_cpu(cluster, plain_jobs):
    """`python app.py` in a job (no mpirun): workers = --cpus-per-task, not the node's cores."""
    directory, jobs = plain_jobs
    info = _check_plain(cluster, directory, jobs["spawn"], "mpirt-spawn", expected_cpus=3.0)
    assert len(info["nodes"][0]["Ranks"]) == 2 + 3


def test_gpu_template_gives_each_worker_its_own_gpu(cluster, plain_jobs):
    """gpu.sbatch: Slurm binds one GPU per task; each worker rank keeps its own."""
    directory, jobs = plain_jobs
    if "gpu" not in jobs:
        pytest.skip("the Slurm node has no GPUs (gres); .ci/slurm-up.sh configures placeholder ones")
    info = _check_plain(cluster, directory, jobs["gpu"], "mpirt-gpu", expected_cpus=2.0)
    assert info["cluster"]["GPU"] == 2.0
    node_gpus = info["nodes"][0]["GPUIds"]
    assert len(node_gpus) == 2 and len(set(node_gpus)) == 2, info["nodes"]
    for visible, ids, slurm_gave in info["gpu_tasks"]:  # the GPU Slurm bound to that task, no other
        assert visible == slurm_gave and visible in node_gpus and ids == [int(visible)], info["gpu_tasks"]


def test_job_array_sweeps_configs(cluster, plain_jobs):
    """sweep.sbatch: array task i runs line i+1 of the config file; results apart per task."""
    directory, jobs = plain_jobs
    array_job = jobs["array"]
    records = cluster.wait_finished(array_job)
    assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1"]
    expected_args = [["--lr", "0.1", "--layers", "2"], ["--lr", "0.01", "--layers", "3"]]
    import h5py

    for task in (0, 1):
        record = next(r for r in records if r["ArrayTaskId"] == str(task))
        output = _output(directory, f"mpirt-sweep-{array_job}_{task}.out")
        assert record["JobState"] == "COMPLETED", output
        info = _result_line(output)
        assert info["args"] == expected_args[task]
        assert info["job"]["array_job_id"] == array_job and info["job"]["array_task_id"] == task
        with h5py.File(directory / "mpirt_results" / f"mpirt-sweep-{array_job}_{task}" / "result.h5", "r") as f:
            assert json.loads(f.attrs["args"]) == expected_args[task]


# -- Tune: requeued mid-run, resumed from HDF5 ----------------------------------------
ITERATIONS = 5
XS = [1, 2, 3, 4, 5, 6]
EXPERIMENT = r"""
import json, os, time
import mpirt
from mpirt.libs import tune

LOG = os.path.join(os.environ["SLURM_SUBMIT_DIR"], "executed.jsonl")
RUN = int(os.environ.get("SLURM_RESTART_COUNT", 0))

def note(**fields):
    with open(LOG, "a") as f:
        f.write(json.dumps({"run": RUN, **fields}) + "\n")

def trainable(config):
    checkpoint = tune.get_checkpoint()
    start = checkpoint.to_dict()["iteration"] if checkpoint else 0
    note(x=config["x"], start=start)
    for i in range(start + 1, %(iterations)d + 1):
        time.sleep(0.4)
        note(x=config["x"], iteration=i)
        tune.report({"score": config["x"] * i}, checkpoint=tune.Checkpoint.from_dict({"iteration": i}))

mpirt.init()
print("EXPERIMENT RUN", RUN, flush=True)
tune.run(trainable, config={"x": tune.grid_search(%(xs)r)}, metric="score", mode="max", resume="AUTO",
         verbose=0)
print("EXPERIMENT DONE", flush=True)
""" % {"iterations": ITERATIONS, "xs": XS}


def _executed(directory):
    path = directory / "executed.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["scontrol-requeue", "usr1-before-time-limit"])
def test_tune_experiment_requeued_mid_run_finishes_every_trial_once(cluster, tmp_path, how):
    """tune.sbatch: the job is requeued mid-run, by ``scontrol requeue`` (SIGTERM to every process,
    as on preemption) or by the USR1 that ``--signal=B:USR1@...`` sends before the time limit (the
    script forwards it and requeues itself). The same job resumes the experiment from its HDF5
    checkpoints: every trial ends once, finished trials do not run again, interrupted ones continue."""
    pytest.importorskip("h5py")
    pytest.importorskip("mpirt.libs.tune")
    import h5py

    (tmp_path / "experiment.py").write_text(EXPERIMENT)
    job = cluster.submit(tmp_path, "--ntasks=3", "--cpus-per-task=2", os.path.join(JOBSCRIPTS, "tune.sbatch"),
                         "experiment.py")
    deadline = time.monotonic() + 120
    while sum("iteration" in e for e in _executed(tmp_path)) < 3:  # trials are under way
        assert time.monotonic() < deadline, "the experiment did not start within 120 s"
        assert cluster.show(job)[0].get("JobState") in ("PENDING", "RUNNING"), cluster.show(job)
        time.sleep(0.2)
    if how == "scontrol-requeue":
        cluster.scontrol("requeue", job)
    else:
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True, timeout=30)
    # Back in the queue; Slurm holds a requeued job ~2 minutes: let it start once the old steps are gone.
    records = cluster.wait(job, until={"PENDING"}, timeout=60)
    assert records[0]["Restarts"] == "1", records
    cluster.wait_steps_gone(job)
    cluster.scontrol("update", f"JobId={job}", "StartTime=now")
    record, = cluster.wait_finished(job, timeout=150)
    output = _output(tmp_path, f"mpirt-tune-{job}.out")
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", output
    assert "run 1 starts" in output and "run 2 starts" in output
    assert output.count("EXPERIMENT DONE") == 1, output
    signal_name = "SIGTERM" if how == "scontrol-requeue" else "SIGUSR1"
    assert f"interrupted by {signal_name}" in output, output
    if how != "scontrol-requeue":
        assert "requeueing job" in output

    # HDF5: every trial finished, each iteration's result exactly once.
    with h5py.File(tmp_path / "mpirt_results" / f"mpirt-tune-{job}" / "experiment.h5", "r") as f:
        trials = f["trials"]
        assert len(trials) == len(XS)
        xs = []
        for trial_id in trials:
            trial = trials[trial_id]
            x = int(trial["config"].attrs["x"])
            xs.append(x)
            assert trial.attrs["status"] == "TERMINATED", (trial_id, dict(trial.attrs))
            assert list(trial["metrics"]["training_iteration"][()]) == list(range(1, ITERATIONS + 1))
            assert list(trial["metrics"]["score"][()]) == [x * i for i in range(1, ITERATIONS + 1)]
        assert sorted(xs) == XS

    # What ran: the first run stopped mid-way; the second started no finished trial again and
    # continued the others from their last checkpoint (at most the iteration in flight repeats).
    executed = _executed(tmp_path)
    first = [e for e in executed if e["run"] == 0 and "iteration" in e]
    assert 0 < len(first) < len(XS) * ITERATIONS
    for x in XS:
        done_before = max((e["iteration"] for e in first if e["x"] == x), default=0)
        again = [e for e in executed if e["run"] == 1 and e["x"] == x]
        if done_before == ITERATIONS:
            assert not any("iteration" in e for e in again), (x, again)
        starts = [e["start"] for e in again if "start" in e]
        assert len(starts) <= 1, (x, again)
        if 0 < done_before < ITERATIONS:
            assert starts, (x, "was interrupted but did not resume", executed)
        if done_before and starts:
            assert starts[0] >= done_before - 1, (x, done_before, again)
        ran = sorted(e["iteration"] for e in executed if e["x"] == x and "iteration" in e)
        assert set(ran) == set(range(1, ITERATIONS + 1)) and len(ran) <= ITERATIONS + 1, (x, ran)


def test_train_jobscript_runs_ddp_and_keeps_checkpoints(cluster, tmp_path):
    """train.sbatch: TorchTrainer's example under mpirun in the job; results under mpirt_results/<job>."""
    pytest.importorskip("torch")
    import h5py

    job = cluster.submit(tmp_path, os.path.join(JOBSCRIPTS, "train.sbatch"),
                         os.path.join(REPO, "examples", "train_ddp_cnn.py"), "--epochs", "2", "--samples", "256")
    record, = cluster.wait_finished(job, timeout=240)
    output = _output(tmp_path, f"mpirt-train-{job}.out")
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", output
    assert "final: epoch 1" in output
    checkpoint = output.split("checkpoint: ", 1)[1].split()[0]
    assert checkpoint.startswith(str(tmp_path / "mpirt_results" / f"mpirt-train-{job}")), checkpoint
    with h5py.File(checkpoint, "r") as f:
        assert len(f.keys()) > 0
