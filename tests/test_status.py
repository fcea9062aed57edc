"""Status without ports: the driver's status.json (written atomically, every few seconds, marked finished at
shutdown) and ``python -m mpirt status`` reading it, for a running, a finished and a dead job."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import BASE_ENVIRON, REPO, run_app, wait_for
from mpirt.__main__ import render
from mpirt.core import current, status_snapshot
from mpirt.core.status_snapshot import StatusWriter, find, liveness, load, settings, write_atomically


def cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "mpirt", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**BASE_ENVIRON, "PYTHONPATH": REPO, **(env or {})})


# -- settings and files --------------------------------------------------------------------------------------
def test_settings_turn_it_off_change_the_interval_and_refuse_nonsense():
    assert settings({}) == status_snapshot.DEFAULT_INTERVAL_S == 5.0
    assert settings({"MPIRT_STATUS": "0"}) is None and settings({"MPIRT_STATUS": "off"}) is None
    assert settings({"MPIRT_STATUS_INTERVAL": "0.5"}) == 0.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match=f"MPIRT_STATUS_INTERVAL='{bad}'"):
            settings({"MPIRT_STATUS_INTERVAL": bad})
    with pytest.raises(ValueError, match="MPIRT_STATUS='maybe'"):
        settings({"MPIRT_STATUS": "maybe"})


def test_a_snapshot_is_replaced_whole(tmp_path):
    path = str(tmp_path / "status.json")
    write_atomically(path, {"update_time": 1.0, "a": [1] * 1000})
    write_atomically(path, {"update_time": 2.0})
    assert load(path) == {"update_time": 2.0} and os.listdir(tmp_path) == ["status.json"]   # no temp file left
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an mpirt status snapshot"):
        load(str(tmp_path / "other.json"))


def _snapshot(**fields):
    now = time.time()
    base = {"update_time": now, "start_time": now - 65, "interval_s": 5.0, "finished": False, "pid": os.getpid(),
            "hostname": os.uname().nodename, "job_id": "77"}
    return {**base, **fields}


def test_running_finished_and_stale_jobs():
    now = time.time()
    assert liveness(_snapshot(), now)[0] == "running"
    assert liveness(_snapshot(finished=True, update_time=now - 3600), now) == ("finished", pytest.approx(3600, 1))
    state, age = liveness(_snapshot(update_time=now - 60), now)       # not rewritten for 12 intervals
    assert state == "stale" and age == pytest.approx(60, abs=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert liveness(_snapshot(pid=int(dead.stdout)), now)[0] == "stale"   # its writer is gone on this host
    assert liveness(_snapshot(pid=int(dead.stdout), hostname="elsewhere"), now)[0] == "running"


def test_find_by_directory_file_job_id_or_newest(tmp_path):
    env = {"MPIRT_RESULTS_DIR": str(tmp_path)}
    for name, stamp in (("job-111", 1.0), ("job-20260101-000000-42", 2.0)):
        os.makedirs(tmp_path / name)
        write_atomically(str(tmp_path / name / "status.json"), _snapshot(update_time=stamp))
        os.utime(tmp_path / name / "status.json", (stamp, stamp))
    assert find("111", env) == str(tmp_path / "job-111" / "status.json")
    assert find(str(tmp_path / "job-111"), env) == str(tmp_path / "job-111" / "status.json")
    assert find(None, env) == str(tmp_path / "job-20260101-000000-42" / "status.json")
    with pytest.raises(FileNotFoundError, match="no status of Slurm job 999"):
        find("999", env)
    with pytest.raises(FileNotFoundError, match="neither a directory"):
        find("no-such-thing", env)
    with pytest.raises(FileNotFoundError, match="no job status in"):
        find(None, {"MPIRT_RESULTS_DIR": str(tmp_path / "empty")})


def test_render_reads_like_ray_status_and_ray_summary_tasks():
    snapshot = _snapshot(
        resources={"total": {"CPU": 4.0}, "in_use": {"CPU": 1.0}}, ranks={"live": 6, "dead": [4]},
        nodes=[{"node_id": "4e" + "0" * 54, "hostname": "n1", "is_head_node": True}],
        object_store=[{"node": 0, "ranks": [0, 1], "used_bytes": 2 << 20, "capacity_bytes": 1 << 30,
                       "spilled_objects": 3, "spilled_bytes": 3 << 20}],
        actors={"by_state": {"ALIVE": 2}, "by_class": {"Counter": {"ALIVE": 2}}},
        errors=[{"time": time.time(), "func_or_class_name": "f", "error_type": "TASK_EXECUTION_EXCEPTION",
                 "error_message": "RayTaskError: ray::f()\n  File x\nValueError: boom"}],
        tasks={"by_state": {"FINISHED": 5, "RUNNING": 1},
               "by_function": {"f": {"func_or_class_name": "f", "type": "NORMAL_TASK",
                                     "state_counts": {"FINISHED": 5, "RUNNING": 1}}}})
    text = render(snapshot)
    for expected in ("RUNNING: updated", "1.0/4.0 CPU", "dead: [4]", "2.0 MiB/1.0 GiB used", "spilled 3 (3.0 MiB)",
                     "Counter: ALIVE 2", "f TASK_EXECUTION_EXCEPTION: ValueError: boom", "total_tasks: 6",
                     "FUNC_OR_CLASS_NAME", "FINISHED: 5, RUNNING: 1"):
        assert expected in text, (expected, text)
    assert "FINISHED: the job ended" in render({**snapshot, "finished": True})
    assert "STALE: not updated for 1m 40s" in render({**snapshot, "update_time": time.time() - 100})


def test_cli_errors_are_clear(tmp_path):
    bad = cli("status", "--watch", "-2")
    assert bad.returncode == 2 and "--watch -2: expected a positive number of seconds" in bad.stderr
    missing = cli("status", "31337", env={"MPIRT_RESULTS_DIR": str(tmp_path)})
    assert missing.returncode == 1 and "no status of Slurm job 31337" in missing.stderr
    nothing = cli(env={"MPIRT_RESULTS_DIR": str(tmp_path)})
    assert nothing.returncode == 2 and "status" in nothing.stderr


# -- a running job ---------------------------------------------------------------------------------------------
def test_the_writer_rewrites_the_snapshot_and_marks_it_finished(rt, tmp_path):
    @rt.remote
    def work(x):
        time.sleep(0.05)
        return x

    @rt.remote
    def broken():
        raise KeyError("status-boom")

    rt.get([work.remote(i) for i in range(6)])
    with pytest.raises(KeyError):
        rt.get(broken.remote())
    writer = StatusWriter(current.runtime(), str(tmp_path), 0.2)
    writer.start()
    try:
        path = str(tmp_path / "status.json")
        assert wait_for(lambda: os.path.exists(path), 10)
        first = load(path)["update_time"]
        assert wait_for(lambda: load(path)["update_time"] > first, 10)
        snapshot = load(path)
    finally:
        writer.stop()
    assert snapshot["finished"] is False and snapshot["resources"]["total"]["CPU"] == 2.0
    work = next(v for k, v in snapshot["tasks"]["by_function"].items() if k.endswith("work"))   # its __qualname__
    assert work["state_counts"]["FINISHED"] >= 6 and work["type"] == "NORMAL_TASK"
    assert any(e["func_or_class_name"].endswith("broken") and "status-boom" in e["error_message"]
               for e in snapshot["errors"])
    assert snapshot["object_store"][0]["capacity_bytes"] > 0 and snapshot["ranks"]["live"] == 4
    final = load(path)
    assert final["finished"] is True and liveness(final)[0] == "finished"


APP = """
import subprocess, sys, time
import mpirt
mpirt.init(num_cpus=2)

@mpirt.remote
def step(i):
    time.sleep(0.05)
    return i

@mpirt.remote
class Keeper:
    def ping(self):
        return 1

keeper = Keeper.remote()
mpirt.get(keeper.ping.remote())
mpirt.get([step.remote(i) for i in range(8)])
time.sleep(1.5)
seen = subprocess.run([sys.executable, "-m", "mpirt", "status", "4242"], capture_output=True, text=True)
print("WHILE-RUNNING-BEGIN"); print(seen.stdout); print(seen.stderr); print("WHILE-RUNNING-END")
mpirt.shutdown()
"""


def test_a_job_writes_its_status_and_the_cli_reads_it(tmp_path):
    results = tmp_path / "results"
    env = {"MPIRT_STATUS": "1", "MPIRT_STATUS_INTERVAL": "0.5", "MPIRT_RESULTS_DIR": str(results),
           "SLURM_JOB_ID": "4242"}
    done = run_app(tmp_path, APP, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    running = done.stdout.split("WHILE-RUNNING-BEGIN")[1].split("WHILE-RUNNING-END")[0]
    assert "RUNNING: updated" in running and "Job 4242" in running, running
    assert "step" in running and "FINISHED: 8" in running and "Keeper: ALIVE 1" in running, running
    assert "2.0 CPU" in running and "Object store (per node)" in running
    path = results / "job-4242" / "status.json"
    final = json.loads(path.read_text())
    assert final["finished"] is True and final["job_id"] == "4242"
    after = cli("status", str(results / "job-4242"))
    assert after.returncode == 0 and "FINISHED: the job ended" in after.stdout
    raw = cli("status", "--json", "4242", env={"MPIRT_RESULTS_DIR": str(results)})
    assert json.loads(raw.stdout)["job_id"] == "4242"
    off = run_app(tmp_path, APP.replace("4242", "4343"), timeout=120,
                  env={**env, "MPIRT_STATUS": "0", "SLURM_JOB_ID": "4343"})
    assert off.returncode == 0 and not (results / "job-4343" / "status.json").exists()   # (the report may be there)


def test_watch_refreshes_until_interrupted(tmp_path):
    directory = tmp_path / "job-5"
    os.makedirs(directory)
    write_atomically(str(directory / "status.json"), _snapshot())
    watch = subprocess.Popen([sys.executable, "-m", "mpirt", "status", str(directory), "--watch", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                             env={**BASE_ENVIRON, "PYTHONPATH": REPO})
    try:
        time.sleep(1.5)
    finally:
        watch.send_signal(2)
        out, err = watch.communicate(timeout=10)
    assert watch.returncode == 0 and out.count("======== Job status") >= 3, (out, err)
