"""Resume after the whole job was killed with SIGKILL (as when a node or a Slurm allocation disappears)."""
import collections
import json

import h5py
import numpy as np

from conftest import run_app, start_app, wait_for

EXPERIMENT = """
import sys, time
import mpirt
from mpirt.libs import tune

mpirt.init()

def slow(config):
    checkpoint = tune.get_checkpoint()
    start = checkpoint.to_dict()["step"] if checkpoint else 0
    for step in range(start + 1, 9):
        time.sleep(0.15)
        with open(config["log"], "a") as f:
            f.write(f"{config['i']} {step}\\n")
        tune.report({"score": config["i"] * step, "restored_from": start},
                    checkpoint=tune.Checkpoint.from_dict({"step": step}))

analysis = tune.run(slow, config={"i": tune.grid_search(list(range(6))), "log": sys.argv[2]},
                    local_dir=sys.argv[1], name="killed", resume=sys.argv[3] == "resume" or False,
                    metric="score", mode="max", verbose=0)
print("BEST", analysis.best_config["i"], len(analysis.trials))
mpirt.shutdown()
"""


def _statuses(journal):
    return _journal(journal)[0]


def _journal(journal):
    """(trial id -> last status, ids of trials with a checkpoint) as the journal says so far."""
    status, checkpointed = {}, set()
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event["e"] == "status":
                status[event["id"]] = event["status"]
            elif event["e"] == "checkpoint":
                checkpointed.add(event["id"])
    return status, checkpointed


def _some_finished_and_some_checkpointed(journal):
    status, checkpointed = _journal(journal)
    finished = {tid for tid, s in status.items() if s == "TERMINATED"}
    return len(finished) >= 2 and bool(checkpointed - finished)


def test_resume_after_kill_9_keeps_finished_trials_and_continues_from_checkpoints(tmp_path):
    results, log = tmp_path / "results", tmp_path / "steps.log"
    journal = results / "killed" / "experiment_state.jsonl"
    app = start_app(tmp_path, EXPERIMENT, ranks=4, args=(str(results), str(log), "fresh"))
    try:
        finished_early = wait_for(lambda: _some_finished_and_some_checkpointed(journal), 60)
    finally:
        app.kill()
    assert finished_early, "the experiment did not get going"
    before = _statuses(journal)
    done_before = {tid for tid, s in before.items() if s == "TERMINATED"}
    assert 2 <= len(done_before) < 6
    lines_before = len(log.read_text().splitlines())

    again = run_app(tmp_path, EXPERIMENT, ranks=4, args=(str(results), str(log), "resume"), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "BEST 5 6" in again.stdout
    steps = collections.Counter(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    after = _statuses(journal)
    assert set(after.values()) == {"TERMINATED"} and len(after) == 6
    with h5py.File(results / "killed" / "experiment.h5", "r") as f:
        restored = 0
        for trial_id, group in f["trials"].items():
            # every trial's series is whole and nothing in it was recorded twice
            np.testing.assert_array_equal(group["metrics/training_iteration"][()], np.arange(1, 9))
            i = json.loads(group.attrs["config_json"])["i"]
            np.testing.assert_array_equal(group["metrics/score"][()], i * np.arange(1, 9))
            if trial_id in done_before:
                assert all(steps[(i, s)] == 1 for s in range(1, 9)), f"finished trial {i} ran again"
            restored += int(group["metrics/restored_from"][()].max() > 0)
    assert restored >= 1, "no unfinished trial continued from its checkpoint"
    assert len(log.read_text().splitlines()) - lines_before < 6 * 8 - 2 * 8


def test_sigterm_saves_state_and_resume_finishes(tmp_path):
    """What Slurm does before a requeue or at the time limit: SIGTERM (or the --signal warning)."""
    import os
    import signal
    results, log = tmp_path / "results", tmp_path / "steps.log"
    journal = results / "killed" / "experiment_state.jsonl"
    app = start_app(tmp_path, EXPERIMENT, args=(str(results), str(log), "fresh"))
    try:
        assert wait_for(lambda: _some_finished_and_some_checkpointed(journal), 60)
        os.kill(app.proc.pid, signal.SIGTERM)
        out, err = app.proc.communicate(timeout=30)
    finally:
        app.kill()
    assert app.proc.returncode != 0
    assert "interrupted by SIGTERM" in err and "resume=True" in err
    with h5py.File(results / "killed" / "experiment.h5", "r") as f:
        assert len(f["trials"]) == 6                       # written on the way out
    again = run_app(tmp_path, EXPERIMENT, args=(str(results), str(log), "resume"), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "BEST 5 6" in again.stdout
    assert set(_statuses(journal).values()) == {"TERMINATED"}


def test_journal_cut_short_by_a_kill_loses_no_event_appended_after_resume(tmp_path):
    """kill -9 in the middle of a journal write leaves a partial last line; the events a resumed run
    appends must not join it (replay skips an undecodable line, and would skip them with it)."""
    from mpirt.libs.tune.storage import ExperimentStorage
    from mpirt.libs.tune.trial import Trial

    storage = ExperimentStorage(str(tmp_path), "exp")
    storage.open(fresh=True)
    trial = Trial("t0", "trial_t0", {"i": 1}, {"CPU": 1})
    storage.record_trial(trial)
    storage.record_result(trial, {"training_iteration": 1, "score": 1})
    storage._journal.close()
    with open(storage.journal_path, "a") as journal:
        journal.write('{"e": "result", "id": "t0", "res')        # the write the kill cut short

    resumed = ExperimentStorage(str(tmp_path), "exp")
    resumed.open(fresh=False)
    resumed.record_result(trial, {"training_iteration": 2, "score": 2})
    resumed._journal.close()
    _, trials = resumed.replay()
    assert [r["training_iteration"] for r in trials[0]["results"]] == [1, 2]
