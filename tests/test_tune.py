"""mpirt.libs.tune end to end on a running mpirt: APIs, schedulers, storage, failures, bad input."""
import json
import os

import h5py
import numpy as np
import pytest

from mpirt.libs import tune


def seed_func(config, reporter):
    for step in range(5):
        reporter(timesteps_total=step, mean_accuracy=config["alpha"] * config["beta"] * step)


def quadratic(config):
    """Converges towards -(x-3)^2; checkpoints its step so it can be paused and resumed."""
    checkpoint = tune.get_checkpoint()
    start = checkpoint.to_dict()["step"] if checkpoint else 0
    for step in range(start + 1, 31):
        score = -(config["x"] - 3) ** 2 * (1 + 1 / step)
        tune.report({"score": score, "step": step}, checkpoint=tune.Checkpoint.from_dict({"step": step}))


class Counter(tune.Trainable):
    def setup(self, config):
        self.total = 0
        self.rate = config["rate"]

    def step(self):
        self.total += self.rate
        return {"total": self.total, "rate": self.rate}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"total": self.total}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.total = json.load(f)["total"]


def test_seed_api_runs_unchanged(rt, tmp_path):
    tune.register_trainable("seed_func", seed_func)
    trials = tune.run_experiments({
        "seed_experiment": {
            "run": "seed_func",
            "resources": {"cpu": 1, "gpu": 0},
            "stop": {"mean_accuracy": 100},
            "config": {"alpha": tune.grid_search([0.2, 0.4, 0.6]), "beta": tune.grid_search([1, 2])},
            "local_dir": str(tmp_path),
        }
    }, verbose=0)
    assert len(trials) == 6 and all(t.status == "TERMINATED" for t in trials)
    got = sorted((t.config["alpha"], t.config["beta"], t.last_result["mean_accuracy"]) for t in trials)
    assert got == sorted((a, b, pytest.approx(a * b * 4)) for a in (0.2, 0.4, 0.6) for b in (1, 2))
    path = tmp_path / "seed_experiment"
    with h5py.File(path / "experiment.h5", "r") as f:
        assert len(f["trials"]) == 6
        for trial in trials:
            group = f["trials"][trial.trial_id]
            assert group.attrs["status"] == "TERMINATED"
            assert group["config"].attrs["alpha"] == trial.config["alpha"]
            np.testing.assert_allclose(group["metrics/mean_accuracy"][()],
                                       [trial.config["alpha"] * trial.config["beta"] * s for s in range(5)])
            np.testing.assert_array_equal(group["metrics/training_iteration"][()], [1, 2, 3, 4, 5])
    trial_dir = path / trials[0].trial_name
    lines = (trial_dir / "result.json").read_text().splitlines()
    assert [json.loads(line)["timesteps_total"] for line in lines] == [0, 1, 2, 3, 4]
    csv_lines = (trial_dir / "progress.csv").read_text().splitlines()
    assert "mean_accuracy" in csv_lines[0].split(",") and len(csv_lines) == 6
    assert json.loads((trial_dir / "params.json").read_text()) == trials[0].config


def test_stop_criteria_end_trials_early(rt, tmp_path):
    analysis = tune.run(seed_func, config={"alpha": 1, "beta": 1}, stop={"training_iteration": 2},
                        local_dir=str(tmp_path), name="stopped", verbose=0)
    assert analysis.trials[0].last_result["training_iteration"] == 2


def test_class_trainable_checkpoints_into_hdf5(rt, tmp_path):
    analysis = tune.run(Counter, config={"rate": tune.grid_search([1, 2])}, stop={"training_iteration": 6},
                        checkpoint_freq=2, checkpoint_at_end=True, metric="total", mode="max",
                        local_dir=str(tmp_path), name="counter", verbose=0)
    assert analysis.best_config == {"rate": 2}
    assert analysis.best_result["total"] == 12
    checkpoint = analysis.best_checkpoint
    with checkpoint.as_directory() as directory:
        assert json.load(open(os.path.join(directory, "state.json"))) == {"total": 12}
    with h5py.File(tmp_path / "counter" / "experiment.h5", "r") as f:
        best = f["trials"][analysis.best_trial.trial_id]
        assert sorted(best["checkpoints"]) == ["checkpoint_000002", "checkpoint_000004", "checkpoint_000006"]
        linked = best["checkpoints/checkpoint_000004"]       # an external link into the checkpoint's file
        assert linked.attrs["iteration"] == 4
    df = analysis.dataframe()
    assert sorted(df["config/rate"]) == [1, 2]
    restored = Counter({"rate": 2})
    restored.restore(checkpoint)
    assert restored.train()["total"] == 14 and restored.iteration == 7


def test_tuner_fit_returns_a_result_grid(rt, tmp_path):
    tuner = tune.Tuner(quadratic, param_space={"x": tune.grid_search([1.0, 2.5, 4.0])},
                       tune_config=tune.TuneConfig(metric="score", mode="max"),
                       run_config=tune.RunConfig(name="grid", storage_path=str(tmp_path),
                                                 stop={"training_iteration": 3}, verbose=0))
    grid = tuner.fit()
    assert len(grid) == 3 and grid.num_errors == 0 and grid.num_terminated == 3
    best = grid.get_best_result()
    assert best.config == {"x": 2.5}
    assert best.checkpoint.to_dict()["step"] == 3
    assert list(best.metrics_dataframe["step"]) == [1, 2, 3]
    assert len(grid.get_dataframe()) == 3
    assert tune.Tuner.can_restore(grid.experiment_path)


def test_asha_stops_poor_trials_early(rt, tmp_path):
    scheduler = tune.ASHAScheduler(metric="score", mode="max", max_t=30, grace_period=2, reduction_factor=3)
    analysis = tune.run(quadratic, config={"x": tune.grid_search([3.0, 2.8, 0.0, -2.0, 8.0, -5.0])},
                        scheduler=scheduler, local_dir=str(tmp_path), name="asha", verbose=0)
    iterations = {t.config["x"]: t.last_result["training_iteration"] for t in analysis.trials}
    assert iterations[3.0] == 30 or iterations[2.8] == 30
    assert min(iterations[x] for x in (-5.0, 8.0)) < 30
    assert sum(iterations.values()) < 6 * 30


def test_hyperband_pauses_brackets_and_promotes_the_best(rt, tmp_path):
    scheduler = tune.HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    analysis = tune.run(quadratic, config={"x": tune.grid_search([3.0, 0.0, 6.0, 9.0, -3.0, 2.0])},
                        scheduler=scheduler, local_dir=str(tmp_path), name="hyperband", verbose=0)
    iterations = {t.config["x"]: t.last_result["training_iteration"] for t in analysis.trials}
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert max(iterations.values()) == 9
    assert iterations[3.0] == 9                # the best survives every cut
    assert sorted(iterations.values())[0] < 9  # and some were cut at a milestone


def test_median_stopping_rule_stops_below_median_trials(rt, tmp_path):
    scheduler = tune.MedianStoppingRule(time_attr="training_iteration", metric="score", mode="max",
                                        grace_period=3, min_samples_required=2)
    analysis = tune.run(quadratic, config={"x": tune.grid_search([3.0, 3.1, 2.9, -20.0])}, scheduler=scheduler,
                        max_concurrent_trials=2, local_dir=str(tmp_path), name="median", verbose=0)
    iterations = {t.config["x"]: t.last_result["training_iteration"] for t in analysis.trials}
    assert iterations[-20.0] < 30
    assert iterations[3.0] == 30


def pbt_trainable(config):
    checkpoint = tune.get_checkpoint()
    state = checkpoint.to_dict() if checkpoint else {"value": 0.0, "step": 0}
    value, step = state["value"], state["step"]
    while step < 20:
        step += 1
        value += config["lr"]                  # a better lr climbs faster
        tune.report({"value": value, "lr": config["lr"]},
                    checkpoint=tune.Checkpoint.from_dict({"value": value, "step": step}))


def test_pbt_exploits_better_trials_and_explores(rt, tmp_path):
    pbt = tune.PopulationBasedTraining(metric="value", mode="max", perturbation_interval=4,
                                       hyperparam_mutations={"lr": [0.01, 0.1, 1.0, 2.0]}, seed=1)
    analysis = tune.run(pbt_trainable, config={"lr": tune.grid_search([0.01, 0.1, 1.0, 2.0])}, scheduler=pbt,
                        local_dir=str(tmp_path), name="pbt", verbose=0)
    assert pbt.num_perturbations > 0
    final = sorted(t.last_result["value"] for t in analysis.trials)
    # the worst trial started with lr=0.01 (0.2 after 20 steps alone); exploiting lifted it
    assert final[0] > 0.5
    started_low = next(t for t in analysis.trials if t.trial_name.endswith("00000"))
    assert started_low.config["lr"] != 0.01


def flaky(config):
    checkpoint = tune.get_checkpoint()
    start = checkpoint.to_dict()["step"] if checkpoint else 0
    for step in range(start + 1, 6):
        if config["fail"] and step == 3 and start == 0:
            raise RuntimeError("boom at step 3")
        tune.report({"step": step, "restored_from": start}, checkpoint=tune.Checkpoint.from_dict({"step": step}))


def always_fails(config):
    if config["fail"]:
        raise ValueError("this trial always fails")
    tune.report({"ok": 1})


def test_failed_trial_retries_from_its_checkpoint(rt, tmp_path):
    analysis = tune.run(flaky, config={"fail": tune.grid_search([True, False])}, max_failures=1,
                        local_dir=str(tmp_path), name="flaky", verbose=0)
    failing = next(t for t in analysis.trials if t.config["fail"])
    assert failing.status == "TERMINATED" and failing.num_failures == 1
    assert failing.last_result["step"] == 5 and failing.last_result["restored_from"] == 2


def test_a_reported_checkpoint_is_journaled_after_its_result(rt, tmp_path):
    """A kill -9 between the two journal lines must not leave a checkpoint without its result: a resumed trial
    would go on from the checkpoint, and that result would be missing for good."""
    tune.run(quadratic, config={"x": tune.grid_search([1, 2])}, stop={"step": 4}, local_dir=str(tmp_path),
             name="order", verbose=0)
    seen_results, checkpoints = set(), 0
    with open(tmp_path / "order" / "experiment_state.jsonl") as journal:
        for line in journal:
            event = json.loads(line)
            if event["e"] == "result":
                seen_results.add((event["id"], event["result"]["training_iteration"]))
            elif event["e"] == "checkpoint":
                checkpoints += 1
                assert (event["id"], event["iteration"]) in seen_results, event
    assert checkpoints == 8


def test_a_failing_trial_never_takes_the_experiment_down(rt, tmp_path):
    with pytest.raises(tune.TuneError, match="1 of 3 trials failed") as info:
        tune.run(always_fails, config={"fail": tune.grid_search([False, True, False])}, max_failures=2,
                 local_dir=str(tmp_path), name="fails", verbose=0)
    assert "this trial always fails" in str(info.value)
    grid = tune.Tuner(always_fails, param_space={"fail": tune.grid_search([False, True])},
                      run_config=tune.RunConfig(name="fails2", storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 1 and grid.num_terminated == 1
    assert isinstance(grid.errors[0], ValueError) and "this trial always fails" in str(grid.errors[0])
    with h5py.File(tmp_path / "fails2" / "experiment.h5", "r") as f:
        statuses = sorted(g.attrs["status"] for g in f["trials"].values())
    assert statuses == ["ERROR", "TERMINATED"]


def test_bad_input_gets_clear_errors(rt, tmp_path):
    with pytest.raises(ValueError, match="unknown trainable 'no_such_thing'"):
        tune.run("no_such_thing", local_dir=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match="no other keys"):
        tune.run(seed_func, config={"alpha": {"grid_search": [1], "beta": 2}}, local_dir=str(tmp_path), verbose=0)
    with pytest.raises(tune.TuneError, match="did not report the metric 'accuracy'"):
        tune.run(seed_func, config={"alpha": 1, "beta": 1}, metric="accuracy", mode="max",
                 local_dir=str(tmp_path), name="nometric", verbose=0)
    with pytest.raises(tune.TuneError, match=r"stop criteria \['loss'\] name no metric"):
        tune.run(seed_func, config={"alpha": 1, "beta": 1}, stop={"loss": 0.1},
                 local_dir=str(tmp_path), name="nostop", verbose=0)
    with pytest.raises(tune.TuneError, match="needs gpu=1"):
        tune.run(seed_func, resources_per_trial={"cpu": 1, "gpu": 1}, local_dir=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match="unknown keys"):
        tune.run_experiments({"e": {"run": seed_func, "confg": {}}})
    # a metric with no mode runs, as in Ray; only asking for the best result needs the mode
    analysis = tune.run(seed_func, config={"alpha": 1, "beta": 1}, metric="mean_accuracy",
                        local_dir=str(tmp_path), name="nomode", verbose=0)
    assert analysis.trials[0].last_result["mean_accuracy"] == 4
    with pytest.raises(ValueError, match="pass a `metric` and `mode`"):
        analysis.best_result



def test_progress_table_is_printed(rt, tmp_path, capsys):
    tune.run(seed_func, config={"alpha": tune.grid_search([1, 2]), "beta": 1}, local_dir=str(tmp_path),
             name="table", verbose=1, progress_interval=0.0)
    out = capsys.readouterr().out
    assert "== Status ==" in out and "2 TERMINATED" in out and "mean_accuracy" in out
    assert "| seed_func_" in out
    tune.run(seed_func, config={"alpha": tune.grid_search([1, 2]), "beta": 1}, local_dir=str(tmp_path),
             name="silent", verbose=0)
    assert "== Status ==" not in capsys.readouterr().out     # verbose=0 is silent, the final table too


def test_tensorboard_events_are_written(rt, tmp_path):
    pytest.importorskip("tensorboardX")   # the reader: its protobuf classes and CRC, not mpirt's encoder
    analysis = tune.run(seed_func, config={"alpha": 1, "beta": 1}, local_dir=str(tmp_path), name="tb", verbose=0)
    trial = analysis.trials[0]
    files = [name for name in os.listdir(trial.local_path) if name.startswith("events.out.tfevents")]
    assert len(files) == 1
    events = _read_tensorboard_events(os.path.join(trial.local_path, files[0]))
    assert events[0].file_version == "brain.Event:2"
    scalars = [{v.tag: v.simple_value for v in event.summary.value} for event in events[1:]]
    assert [event.step for event in events[1:]] == [r["training_iteration"] for r in trial.results]
    assert [s["mpirt/mean_accuracy"] for s in scalars] == pytest.approx([r["mean_accuracy"] for r in trial.results])
    assert all("mpirt/time_total_s" in s and "mpirt/done" not in s for s in scalars)   # numbers only, no bools


def _read_tensorboard_events(path):
    """The events of a TensorBoard event file: TFRecords (length, its masked CRC-32C, data, its masked CRC-32C)
    of Event protobufs, every CRC checked."""
    import struct

    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto.event_pb2 import Event

    def masked(data):
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    events = []
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if not header:
                return events
            (length,) = struct.unpack("<Q", header[:8])
            assert struct.unpack("<I", header[8:])[0] == masked(header[:8])
            data = f.read(length)
            assert struct.unpack("<I", f.read(4))[0] == masked(data)
            event = Event()
            event.ParseFromString(data)
            events.append(event)


def _asks_for_its_directory(config):
    directory = tune.get_context().get_trial_dir() if config["ask"] else ""
    if directory:
        with open(os.path.join(directory, "note.txt"), "w") as f:
            f.write("kept")
    tune.report({"directory": directory})


def test_get_trial_dir_is_the_trials_results_directory_and_nothing_is_left_elsewhere(rt, tmp_path):
    import glob
    import tempfile
    analysis = tune.run(_asks_for_its_directory, config={"ask": tune.grid_search([True, False])},
                        local_dir=str(tmp_path), name="trial_dirs", verbose=0)
    asked, silent = sorted(analysis.trials, key=lambda trial: not trial.config["ask"])
    assert asked.last_result["directory"] == asked.local_path              # as in Ray: beside its result.json
    assert open(os.path.join(asked.local_path, "note.txt")).read() == "kept"
    assert os.path.exists(os.path.join(asked.local_path, "result.json"))
    for trial in (asked, silent):                                          # no scratch directory anywhere else
        assert glob.glob(os.path.join(tempfile.gettempdir(), f"mpirt_trial_{trial.trial_id}_*")) == []
