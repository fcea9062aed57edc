"""Ray Tune as its documentation describes it, run as written (``from ray import tune`` is mpirt's Tune).

From Ray 2.x's Tune guides and API reference: the Tuner and its configs, restoring
experiments, stopping criteria, callbacks, checkpoints, ResultGrid, resources and parameters
per trial, and searchers wrapping optional packages. Results and checkpoints land in HDF5
files as docs/tune.md describes (checked in tests/test_tune.py); everything here writes under
``tmp_path``.
"""
import dataclasses
import inspect
import json
import os
import signal
import sys
import tempfile

import pytest

import ray
from ray import tune


def quadratic(config):
    """Reports ``score`` = -(x-3)^2 each step, with a checkpoint holding the step."""
    checkpoint = tune.get_checkpoint()
    start = 0
    if checkpoint:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "state.json")) as f:
                start = json.load(f)["step"]
    for step in range(start + 1, config.get("steps", 4) + 1):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "state.json"), "w") as f:
                json.dump({"step": step}, f)
            tune.report({"score": -(config["x"] - 3) ** 2 + step / 100, "step": step, "restored_from": start},
                        checkpoint=tune.Checkpoint.from_directory(directory))


def run_config(tmp_path, **kwargs):
    return tune.RunConfig(storage_path=str(tmp_path), verbose=0, **kwargs)


# ---- experiment names and directories

def test_default_experiment_names_never_collide(rt, tmp_path):
    grids = [tune.Tuner(quadratic, param_space={"x": x}, run_config=run_config(tmp_path)).fit() for x in (1, 2, 3)]
    paths = [grid.experiment_path for grid in grids]
    assert len(set(paths)) == 3
    assert all(os.path.basename(p).startswith("quadratic_") for p in paths)
    # each experiment holds its own trial only
    assert [[r.config["x"] for r in grid] for grid in grids] == [[1], [2], [3]]
    analyses = [tune.run(quadratic, config={"x": 5}, storage_path=str(tmp_path), verbose=0) for _ in range(2)]
    assert analyses[0].experiment_path != analyses[1].experiment_path


def test_a_new_experiment_under_an_existing_name_does_not_mix_with_it(rt, tmp_path):
    first = tune.Tuner(quadratic, param_space={"x": tune.grid_search([1, 2])},
                       run_config=run_config(tmp_path, name="same")).fit()
    second = tune.Tuner(quadratic, param_space={"x": 7}, run_config=run_config(tmp_path, name="same")).fit()
    assert first.experiment_path == second.experiment_path
    assert [r.config["x"] for r in second] == [7]
    restored = tune.Tuner.restore(second.experiment_path, trainable=quadratic).get_results()
    assert [r.config["x"] for r in restored] == [7]
    # the earlier experiment's state is kept beside, renamed
    assert any(n.startswith("experiment_state-") for n in os.listdir(second.experiment_path))


# ---- Tuner.restore

FAIL_FLAG = "fail_flag"


def fails_at_step_3_while_flagged(config):
    checkpoint = tune.get_checkpoint()
    start = checkpoint.to_dict()["step"] if checkpoint else 0
    for step in range(start + 1, 6):
        if config["fail"] and step == 3 and os.path.exists(config["flag"]):
            raise RuntimeError("failing on purpose")
        tune.report({"step": step, "restored_from": start}, checkpoint=tune.Checkpoint.from_dict({"step": step}))


def _failed_experiment(tmp_path, name):
    flag = tmp_path / FAIL_FLAG
    flag.write_text("")
    grid = tune.Tuner(fails_at_step_3_while_flagged,
                      param_space={"fail": tune.grid_search([True, False]), "flag": str(flag)},
                      run_config=run_config(tmp_path, name=name)).fit()
    assert grid.num_errors == 1 and grid.num_terminated == 1
    flag.unlink()
    return grid.experiment_path


def _by_fail(grid):
    return {r.config["fail"]: r for r in grid}


def test_restore_resume_errored_continues_failed_trials_from_their_checkpoint(rt, tmp_path):
    path = _failed_experiment(tmp_path, "resume_errored")
    assert tune.Tuner.can_restore(path)
    grid = tune.Tuner.restore(path, trainable=fails_at_step_3_while_flagged, resume_errored=True).fit()
    results = _by_fail(grid)
    assert grid.num_errors == 0 and grid.num_terminated == 2
    assert results[True].metrics["step"] == 5 and results[True].metrics["restored_from"] == 2
    assert list(results[True].metrics_dataframe["step"]) == [1, 2, 3, 4, 5]


def test_restore_restart_errored_starts_failed_trials_over(rt, tmp_path):
    path = _failed_experiment(tmp_path, "restart_errored")
    grid = tune.Tuner.restore(path, trainable=fails_at_step_3_while_flagged, restart_errored=True).fit()
    results = _by_fail(grid)
    assert grid.num_errors == 0
    assert results[True].metrics["restored_from"] == 0
    assert list(results[True].metrics_dataframe["step"]) == [1, 2, 3, 4, 5]


def test_restore_by_default_leaves_errored_trials_as_they_ended(rt, tmp_path):
    path = _failed_experiment(tmp_path, "skip_errored")
    tuner = tune.Tuner.restore(path, trainable=fails_at_step_3_while_flagged)
    before = tuner.get_results()                      # without fit(): the experiment as saved
    assert before.num_errors == 1
    grid = tuner.fit()
    assert grid.num_errors == 1 and "failing on purpose" in str(grid.errors[0])
    assert _by_fail(grid)[True].metrics["step"] == 2


class InterruptOnce(tune.Callback):
    """Sends this process SIGUSR1 (Slurm's time-limit warning) at a trial's 2nd result, once
    (while ``flag`` exists: the restored Tuner gets this callback back, as in Ray)."""

    def __init__(self, flag):
        self.flag = flag

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == 2 and os.path.exists(self.flag):
            os.remove(self.flag)
            os.kill(os.getpid(), signal.SIGUSR1)


def _interrupted_experiment(tmp_path, name):
    flag = tmp_path / "interrupt"
    flag.write_text("")
    tuner = tune.Tuner(quadratic, param_space={"x": tune.grid_search([1, 2]), "steps": 5},
                       tune_config=tune.TuneConfig(max_concurrent_trials=1),
                       run_config=run_config(tmp_path, name=name, callbacks=[InterruptOnce(str(flag))]))
    with pytest.raises(tune.TuneInterrupted, match="resume"):
        tuner.fit()
    return os.path.join(str(tmp_path), name)


def test_restore_resumes_unfinished_trials(rt, tmp_path):
    path = _interrupted_experiment(tmp_path, "unfinished")
    grid = tune.Tuner.restore(path, trainable=quadratic).fit()
    assert grid.num_terminated == 2
    assert sorted(r.metrics["step"] for r in grid) == [5, 5]
    assert max(r.metrics["restored_from"] for r in grid) == 2     # the interrupted one went on from step 2


def test_restore_resume_unfinished_false_marks_them_terminated(rt, tmp_path):
    path = _interrupted_experiment(tmp_path, "unfinished_skipped")
    grid = tune.Tuner.restore(path, trainable=quadratic, resume_unfinished=False).fit()
    assert grid.num_terminated == 2
    assert sorted(r.metrics.get("step", 0) for r in grid) == [0, 2]   # nothing ran again


def model_ref_trainable(config):
    tune.report({"value": ray.get(config["ref"])["value"]})


def test_restore_with_a_new_param_space_refreshes_object_references(rt, tmp_path):
    refs = [ray.put({"value": 1}), ray.put({"value": 2})]
    grid = tune.Tuner(model_ref_trainable, param_space={"ref": tune.grid_search(refs)},
                      run_config=run_config(tmp_path, name="refs")).fit()
    assert sorted(r.metrics["value"] for r in grid) == [1, 2]
    fresh = [ray.put({"value": 1}), ray.put({"value": 2})]
    tuner = tune.Tuner.restore(grid.experiment_path, trainable=model_ref_trainable,
                               param_space={"ref": tune.grid_search(fresh)}, resume_errored=True)
    assert [r.config["ref"] for r in tuner.fit()] == fresh
    with pytest.raises(ValueError, match="Invalid `param_space` input to `Tuner.restore\\(\\)`"):
        tune.Tuner.restore(grid.experiment_path, trainable=model_ref_trainable, param_space={"other": 1})


def test_restore_bad_inputs(rt, tmp_path):
    assert not tune.Tuner.can_restore(str(tmp_path))
    assert not tune.Tuner.can_restore(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="Could not find a Tune experiment"):
        tune.Tuner.restore(str(tmp_path), trainable=quadratic)
    grid = tune.Tuner(quadratic, param_space={"x": 1}, run_config=run_config(tmp_path, name="bad")).fit()
    with pytest.raises(ValueError, match="Invalid `trainable` input to `Tuner.restore\\(\\)`"):
        tune.Tuner.restore(grid.experiment_path, trainable=model_ref_trainable)
    tuner = tune.Tuner(quadratic)
    with pytest.raises(AttributeError, match="is a classmethod and cannot be called on an instance"):
        tuner.restore(grid.experiment_path, trainable=quadratic)
    with pytest.raises(RuntimeError, match="Can't return results as experiment has not been run, yet"):
        tuner.get_results()
    assert signature_names(tune.Tuner.restore) == ["path", "trainable", "resume_unfinished", "resume_errored",
                                                    "restart_errored", "param_space", "storage_filesystem",
                                                    "_resume_config"]


def signature_names(fn):
    return [name for name in inspect.signature(fn).parameters if name not in ("self", "cls")]


# ---- the Tuner's inputs

class AlgoConfigLike:
    """What RLlib's AlgorithmConfig offers the Tuner: ``to_dict()``."""

    def to_dict(self):
        return {"x": 3, "steps": 1}


def test_tuner_takes_registered_names_and_configs_with_to_dict(rt, tmp_path):
    tune.register_trainable("compat_quadratic", quadratic)
    grid = tune.Tuner("compat_quadratic", param_space=AlgoConfigLike(), run_config=run_config(tmp_path)).fit()
    assert grid[0].config == {"x": 3, "steps": 1} and grid[0].metrics["step"] == 1
    with pytest.raises(ValueError, match="The `param_space` passed to the `Tuner` must be a dict"):
        tune.Tuner(quadratic, param_space=[1, 2])
    with pytest.raises(tune.TuneError, match="You need to provide a trainable to tune"):
        tune.Tuner()
    with pytest.raises(ValueError, match="unknown trainable 'no_such_trainable'"):
        tune.Tuner("no_such_trainable", run_config=run_config(tmp_path)).fit()


def test_config_classes_take_rays_arguments():
    ray_fields = {
        tune.TuneConfig: ["mode", "metric", "search_alg", "scheduler", "num_samples", "max_concurrent_trials",
                          "time_budget_s", "reuse_actors", "trial_name_creator", "trial_dirname_creator",
                          "chdir_to_trial_dir"],
        tune.RunConfig: ["name", "storage_path", "storage_filesystem", "failure_config", "checkpoint_config",
                         "sync_config", "verbose", "stop", "callbacks", "progress_reporter", "log_to_file",
                         "local_dir"],
        tune.CheckpointConfig: ["num_to_keep", "checkpoint_score_attribute", "checkpoint_score_order",
                                "checkpoint_frequency", "checkpoint_at_end"],
        tune.FailureConfig: ["max_failures", "fail_fast"],
    }
    for cls, names in ray_fields.items():
        fields = [f.name for f in dataclasses.fields(cls)]
        assert fields[:len(names)] == names, cls
    assert tune.RunConfig().storage_path                      # filled with the default, as in Ray
    assert tune.RunConfig().checkpoint_config == tune.CheckpointConfig()
    assert tune.CheckpointConfig().checkpoint_score_order == "max"


@pytest.mark.parametrize("make, error, message", [
    (lambda: tune.FailureConfig(fail_fast="later"), ValueError, "fail_fast must be one of"),
    (lambda: tune.FailureConfig(fail_fast=True, max_failures=2), ValueError, "max_failures must be 0 if fail_fast"),
    (lambda: tune.CheckpointConfig(num_to_keep=0), ValueError, "Received invalid num_to_keep: 0"),
    (lambda: tune.CheckpointConfig(checkpoint_score_order="best"), ValueError, "checkpoint_score_order must be"),
    (lambda: tune.CheckpointConfig(checkpoint_frequency=-1), ValueError, "checkpoint_frequency must be >=0"),
    (lambda: tune.RunConfig(local_dir="/tmp"), DeprecationWarning, "RunConfig\\(local_dir\\)"),
    (lambda: tune.RunConfig(failure_config={"max_failures": 1}), TypeError, "needs a tune.FailureConfig"),
    (lambda: tune.TuneConfig(mode="best"), ValueError, "`mode` must be 'min' or 'max'"),
])
def test_config_classes_reject_bad_values(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_checkpoint_frequency_is_for_class_trainables(rt, tmp_path):
    tuner = tune.Tuner(quadratic, param_space={"x": 1},
                       run_config=run_config(tmp_path, checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2)))
    with pytest.raises(ValueError, match="'checkpoint_frequency' cannot be set for a function trainable"):
        tuner.fit()


def test_num_to_keep_keeps_the_best_checkpoints_by_score(rt, tmp_path):
    def scores(config):
        for step, score in enumerate([5, 1, 9, 2, 3], start=1):
            tune.report({"score": score}, checkpoint=tune.Checkpoint.from_dict({"step": step}))

    grid = tune.Tuner(scores, run_config=run_config(tmp_path, checkpoint_config=tune.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="score"))).fit()
    result = grid[0]
    kept = sorted((metrics["score"], checkpoint.to_dict()["step"]) for checkpoint, metrics in result.best_checkpoints)
    assert kept == [(3, 5), (5, 1), (9, 3)]          # the best two by score, and the latest (needed to resume)
    assert result.get_best_checkpoint("score", "max").to_dict() == {"step": 3}
    assert result.checkpoint.to_dict() == {"step": 5}


def test_fail_fast_stops_the_experiment_at_the_first_error(rt, tmp_path):
    def maybe_fail(config):
        if config["should_fail"]:
            raise RuntimeError("Failing (on purpose)!")
        for _ in range(200):
            tune.report({"mean_accuracy": 0.9})

    grid = tune.Tuner(maybe_fail, param_space={"should_fail": tune.grid_search([True, False])},
                      tune_config=tune.TuneConfig(max_concurrent_trials=1),
                      run_config=run_config(tmp_path, failure_config=tune.FailureConfig(fail_fast=True))).fit()
    assert grid.num_errors == 1
    assert not any(r.metrics.get("training_iteration") for r in grid)      # the second trial never ran
    with pytest.raises(RuntimeError, match="Failing \\(on purpose\\)!"):
        tune.Tuner(maybe_fail, param_space={"should_fail": True},
                   run_config=run_config(tmp_path, failure_config=tune.FailureConfig(fail_fast="raise"))).fit()


# ---- stopping

def count_up(config):
    i = 1
    while True:
        tune.report({"mean_accuracy": min(i / 10, 1.0)})
        i += 1


def test_stop_dict_and_function(rt, tmp_path):
    grid = tune.Tuner(count_up, run_config=run_config(
        tmp_path, stop={"training_iteration": 10, "mean_accuracy": 0.8})).fit()
    assert grid[0].metrics["training_iteration"] == 8

    def stop_fn(trial_id, result):
        return result["mean_accuracy"] >= 0.5 or result["training_iteration"] >= 10

    grid = tune.Tuner(count_up, run_config=run_config(tmp_path, stop=stop_fn)).fit()
    assert grid[0].metrics["training_iteration"] == 5


def test_a_stopper_can_stop_every_trial(rt, tmp_path):
    class CustomStopper(tune.Stopper):
        def __init__(self):
            self.should_stop = False

        def __call__(self, trial_id, result):
            if not self.should_stop and result["mean_accuracy"] >= 0.8:
                self.should_stop = True
            return self.should_stop

        def stop_all(self):
            return self.should_stop

    grid = tune.Tuner(count_up, run_config=run_config(tmp_path, stop=CustomStopper()),
                      tune_config=tune.TuneConfig(num_samples=3, max_concurrent_trials=1)).fit()
    iterations = [r.metrics.get("training_iteration", 0) for r in grid]
    assert iterations[0] == 8 and iterations[1:] == [0, 0]       # the others never started


def test_stopper_classes(rt, tmp_path):
    from ray.tune.stopper import (CombinedStopper, ExperimentPlateauStopper, FunctionStopper,
                                  MaximumIterationStopper, NoopStopper, TimeoutStopper, TrialPlateauStopper)
    grid = tune.Tuner(count_up, run_config=run_config(tmp_path, stop=MaximumIterationStopper(max_iter=3))).fit()
    assert grid[0].metrics["training_iteration"] == 3
    combined = CombinedStopper(MaximumIterationStopper(4), TrialPlateauStopper(metric="mean_accuracy"))
    grid = tune.Tuner(count_up, run_config=run_config(tmp_path, stop=combined)).fit()
    assert grid[0].metrics["training_iteration"] == 4
    plateau = TrialPlateauStopper(metric="loss", std=0.01, num_results=3, grace_period=3)
    assert [plateau("t", {"loss": v}) for v in (5, 1, 1, 1)] == [False, False, False, True]
    experiment = ExperimentPlateauStopper(metric="loss", top=2, patience=0, std=0.001)
    assert [experiment("t", {"loss": v}) for v in (3.0, 1.0, 1.0)] == [False, False, True]
    assert experiment.stop_all()
    timeout = TimeoutStopper(0)
    timeout.stop_all()
    assert timeout.stop_all() and not timeout("t", {})
    assert not NoopStopper()("t", {}) and FunctionStopper(lambda t, r: True)("t", {})
    grid = tune.Tuner(count_up, run_config=run_config(tmp_path, stop=[MaximumIterationStopper(2)])).fit()
    assert grid[0].metrics["training_iteration"] == 2


class NotAStopper:
    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return False


@pytest.mark.parametrize("stop, error, message", [
    (5, ValueError, "Invalid stop criteria: 5"),
    ([lambda t, r: True], ValueError, "each element must be an instance of `tune.stopper.Stopper`"),
    (NotAStopper(), ValueError, "Stop object must be ray.tune.Stopper subclass"),
    ({"training_iteration": "ten"}, TypeError, "stop\\['training_iteration'\\] must be a number"),
])
def test_bad_stop_criteria(rt, tmp_path, stop, error, message):
    with pytest.raises(error, match=message):
        tune.Tuner(count_up, run_config=run_config(tmp_path, stop=stop)).fit()


def test_stopper_argument_checks():
    from ray.tune.stopper import ExperimentPlateauStopper, TimeoutStopper, TrialPlateauStopper
    with pytest.raises(ValueError, match="The mode parameter can only be either min or max"):
        ExperimentPlateauStopper(metric="m", mode="best")
    with pytest.raises(ValueError, match="Top results to consider must be"):
        ExperimentPlateauStopper(metric="m", top=1)
    with pytest.raises(ValueError, match="`timeout` parameter has to be either a number or a `datetime.timedelta`"):
        TimeoutStopper("soon")
    with pytest.raises(ValueError, match="When specifying a `metric_threshold`, the `mode` argument"):
        TrialPlateauStopper(metric="m", metric_threshold=0.5)


def test_time_budget_stops_the_experiment(rt, tmp_path):
    import datetime
    import time

    def slow(config):
        while True:
            time.sleep(0.2)
            tune.report({"alive": 1})

    grid = tune.Tuner(slow, tune_config=tune.TuneConfig(time_budget_s=datetime.timedelta(seconds=1)),
                      run_config=run_config(tmp_path)).fit()
    assert grid.num_terminated == 1 and grid[0].metrics["training_iteration"] < 50


# ---- callbacks, tune.result, checkpoints

def test_callbacks_see_the_experiment_and_can_ask_for_checkpoints(rt, tmp_path):
    from ray.tune.experiment import Trial
    from ray.tune.result import SHOULD_CHECKPOINT, TRAINING_ITERATION

    class Steps(tune.Trainable):
        def setup(self, config):
            self.count = 0

        def step(self):
            self.count += 1
            return {"count": self.count}

        def save_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "count.txt"), "w") as f:
                f.write(str(self.count))

        def load_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "count.txt")) as f:
                self.count = int(f.read())

    class CheckpointEveryTwo(tune.Callback):
        def __init__(self):
            self.events = []

        def on_trial_start(self, iteration, trials, trial, **info):
            assert isinstance(trial, Trial)
            self.events.append("start")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.events.append(result[TRAINING_ITERATION])
            if result[TRAINING_ITERATION] % 2 == 0:
                result[SHOULD_CHECKPOINT] = True

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.events.append("complete")

        def on_experiment_end(self, trials, **info):
            self.events.append("end")

    callback = CheckpointEveryTwo()
    grid = tune.Tuner(Steps, run_config=run_config(tmp_path, stop={"training_iteration": 5},
                                                   callbacks=[callback])).fit()
    assert callback.events == ["start", 1, 2, 3, 4, 5, "complete", "end"]
    saved = sorted(metrics["count"] for _checkpoint, metrics in grid[0].best_checkpoints)
    assert saved == [2, 4]
    with pytest.raises(TypeError, match="callbacks must be tune.Callback instances"):
        tune.Tuner(Steps, run_config=run_config(tmp_path, callbacks=[print])).fit()


def test_result_constants():
    from ray.tune import result
    assert (result.TRAINING_ITERATION, result.TIME_TOTAL_S, result.DONE, result.SHOULD_CHECKPOINT) == (
        "training_iteration", "time_total_s", "done", "should_checkpoint")
    assert result.EXPR_PROGRESS_FILE == "progress.csv" and result.EXPR_RESULT_FILE == "result.json"


def test_checkpoint_directories(tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "model.txt").write_text("weights")
    (source / "sub" / "extra.bin").write_bytes(b"\x00\x01")
    checkpoint = tune.Checkpoint.from_directory(str(source))
    assert checkpoint.path == str(source)
    checkpoint.set_metadata({"epoch": 3})
    checkpoint.update_metadata({"loss": 0.5})
    assert checkpoint.get_metadata() == {"epoch": 3, "loss": 0.5}
    target = checkpoint.to_directory(str(tmp_path / "out"))
    assert (tmp_path / "out" / "model.txt").read_text() == "weights"
    assert (tmp_path / "out" / "sub" / "extra.bin").read_bytes() == b"\x00\x01"
    assert target == str(tmp_path / "out")
    with checkpoint.as_directory() as directory:
        with open(os.path.join(directory, "model.txt")) as f:
            assert f.read() == "weights"
    assert not os.path.exists(directory)
    assert tune.Checkpoint(str(source)) == tune.Checkpoint.from_directory(str(source))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tune.Checkpoint.from_directory(str(tmp_path / "missing"))


# ---- ResultGrid

def test_result_grid(rt, tmp_path):
    def trainable(config):
        if config["x"] == 99:
            raise ValueError("x=99 is not allowed")
        for step in range(1, 6):
            tune.report({"score": config["x"] * step if step < 5 else 0, "eval": {"loss": -config["x"]}})

    grid = tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2, 3, 99])},
                      run_config=run_config(tmp_path)).fit()
    assert len(grid) == 4 and [r.config["x"] for r in grid] == [1, 2, 3, 99]
    assert [r.config["x"] for r in list(grid)[:2]] == [grid[0].config["x"], grid[1].config["x"]]
    assert grid.num_errors == 1 and grid.num_terminated == 3
    assert isinstance(grid.errors[0], ValueError) and "x=99 is not allowed" in str(grid.errors[0])
    assert grid[3].error is grid.errors[0] and grid[0].error is None
    assert grid.get_best_result("score", "max", scope="all").config["x"] == 3      # 3*4 before the final 0
    assert grid.get_best_result("score", "max", scope="last-5-avg").config["x"] == 3
    assert grid.get_best_result("score", "min", scope="last").metrics["score"] == 0
    assert grid.get_best_result("eval/loss", "min").config["x"] == 3              # nested metrics
    df = grid.get_dataframe()
    assert len(df) == 4 and "config/x" in df.columns
    best_rows = grid.get_dataframe(filter_metric="score", filter_mode="max")
    assert sorted(best_rows["score"].dropna()) == [4, 8, 12]
    assert grid[0].metrics_dataframe["score"].tolist() == [1, 2, 3, 4, 0]
    assert "Result(" in repr(grid[0]) and repr(grid).startswith("ResultGrid<[")
    with pytest.raises(ValueError, match="No metric is provided"):
        grid.get_best_result()
    with pytest.raises(ValueError, match="No mode is provided"):
        grid.get_best_result(metric="score")
    with pytest.raises(ValueError, match="for scope bad not in"):
        grid.get_best_result("score", "max", scope="bad")
    with pytest.raises(RuntimeError, match="No best trial found for the given metric: nothing"):
        grid.get_best_result("nothing", "max")
    with pytest.raises(ValueError, match="If set, `mode` has to be one of \\[min, max\\]"):
        grid.get_best_result("score", "best")


def test_result_grid_of_one_trial_needs_no_metric(rt, tmp_path):
    grid = tune.Tuner(quadratic, param_space={"x": 1}, run_config=run_config(tmp_path)).fit()
    assert grid.get_best_result() is grid[0]
    assert grid[0].checkpoint.path.endswith(".h5") and grid[0].path.startswith(grid.experiment_path)


# ---- resources and parameters

def assigned_cpus(config):
    return {"cpus": ray.get_runtime_context().get_assigned_resources().get("CPU"), "model_id": config["model_id"]}


def test_with_resources_keeps_a_function_a_function(rt, tmp_path):
    wrapped = tune.with_resources(assigned_cpus, {"cpu": 2})
    assert wrapped is assigned_cpus and inspect.isfunction(wrapped)
    grid = tune.Tuner(wrapped, param_space={"model_id": tune.grid_search(["a", "b"])},
                      run_config=run_config(tmp_path)).fit()
    assert [r.metrics["cpus"] for r in grid] == [2.0, 2.0]
    # Ray's docs then run the same function as plain tasks
    futures = [ray.remote(wrapped).remote({"model_id": i}) for i in range(3)]
    assert [r["model_id"] for r in ray.get(futures)] == [0, 1, 2]


def test_with_resources_on_a_class_gives_a_trainable_class(rt, tmp_path):
    class Probe(tune.Trainable):
        def step(self):
            return {"cpus": ray.get_runtime_context().get_assigned_resources().get("CPU"), "done": True}

    wrapped = tune.with_resources(Probe, {"cpu": 2})
    assert inspect.isclass(wrapped) and issubclass(wrapped, tune.Trainable)
    grid = tune.Tuner(wrapped, run_config=run_config(tmp_path)).fit()
    assert grid[0].metrics["cpus"] == 2.0


@pytest.mark.parametrize("make, error, message", [
    (lambda: tune.with_resources(5, {"cpu": 1}), ValueError, "only works with function trainables"),
    (lambda: tune.with_resources(object, {"cpu": 1}), ValueError, "only works with function trainables"),
    (lambda: tune.with_resources(assigned_cpus, "cpu"), ValueError, "Invalid resource type for `with_resources"),
    (lambda: tune.with_resources(assigned_cpus, {"cpu": -1}), ValueError, "resources\\['cpu'\\] must be a number"),
    (lambda: tune.with_parameters("x", data=1), ValueError, "only works with function trainables"),
])
def test_with_resources_and_parameters_bad_inputs(rt, make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_with_parameters_passes_objects_to_functions_and_classes(rt, tmp_path):
    import numpy as np
    data = np.arange(100_000)

    def train_fn(config, data=None):
        tune.report({"total": int(data.sum()) * config["scale"]})

    wrapped = tune.with_parameters(train_fn, data=data)
    assert inspect.isfunction(wrapped) and wrapped.__name__ == "train_fn"
    grid = tune.Tuner(wrapped, param_space={"scale": tune.grid_search([1, 2])}, run_config=run_config(tmp_path)).fit()
    assert sorted(r.metrics["total"] for r in grid) == [int(data.sum()), 2 * int(data.sum())]

    class Model(tune.Trainable):
        def setup(self, config, data=None):
            self.total = int(data.sum())

        def step(self):
            return {"total": self.total, "done": True}

    grid = tune.Tuner(tune.with_parameters(Model, data=data), run_config=run_config(tmp_path)).fit()
    assert grid[0].metrics["total"] == int(data.sum())


# ---- search spaces and searchers

def test_quantized_normal_and_log_integer_domains():
    import random
    rng = random.Random(0)
    normals = [tune.qrandn(10, 2, 0.2).sample(rng) for _ in range(200)]
    assert all(abs(v / 0.2 - round(v / 0.2)) < 1e-6 for v in normals) and 9 < sum(normals) / 200 < 11
    ints = [tune.qlograndint(1, 10, 2).sample(rng) for _ in range(200)]
    assert set(ints) <= {2, 4, 6, 8, 10} and all(isinstance(v, int) for v in ints)


def bowl(config):
    tune.report({"loss": (config["x"] - 2) ** 2 + (0 if config["kind"] == "b" else 1)})


@pytest.mark.parametrize("module, name", [("ray.tune.search.hyperopt", "HyperOptSearch"),
                                          ("ray.tune.search.optuna", "OptunaSearch")])
def test_model_based_searchers_run_in_a_tuner(rt, tmp_path, module, name):
    import importlib
    pytest.importorskip(name[:-len("Search")].lower())
    searcher = getattr(importlib.import_module(module), name)()
    grid = tune.Tuner(bowl, param_space={"x": tune.uniform(-5, 5), "kind": tune.choice(["a", "b"])},
                      tune_config=tune.TuneConfig(metric="loss", mode="min", search_alg=searcher, num_samples=6),
                      run_config=run_config(tmp_path)).fit()
    assert len(grid) == 6 and grid.num_terminated == 6
    assert all(-5 <= r.config["x"] <= 5 and r.config["kind"] in ("a", "b") for r in grid)
    best = grid.get_best_result()
    assert best.metrics["loss"] == min(r.metrics["loss"] for r in grid)


def test_hyperopt_learns_from_results():
    pytest.importorskip("hyperopt")
    from ray.tune.search.hyperopt import HyperOptSearch
    searcher = HyperOptSearch(metric="score", mode="max", random_state_seed=0, n_initial_points=10,
                              points_to_evaluate=[{"x": 2.0, "k": "b"}])
    searcher.set_search_properties(None, None, {"x": tune.uniform(-5, 5), "k": tune.choice(["a", "b"]),
                                                "n": tune.randint(1, 4), "twice": tune.sample_from(
                                                    lambda spec: spec.config.n * 2)})
    scores = []
    for i in range(40):
        config = searcher.suggest(str(i))
        if i == 0:
            assert (config["x"], config["k"]) == (2.0, "b")              # points_to_evaluate come first
        assert config["n"] in (1, 2, 3) and config["twice"] == 2 * config["n"]
        score = -(config["x"] - 2) ** 2 + (1 if config["k"] == "b" else 0)
        searcher.on_trial_complete(str(i), {"score": score})
        scores.append(score)
    # TPE concentrates near the optimum once it has seen its random start
    assert sum(s > -1 for s in scores[20:]) > sum(s > -1 for s in scores[1:11])


def test_bayesopt_searches_float_ranges(rt, tmp_path):
    pytest.importorskip("bayes_opt")
    from ray.tune.search.bayesopt import BayesOptSearch

    def peak(config):
        tune.report({"score": -(config["a"] - 0.7) ** 2 - (config["b"] - 3) ** 2})

    grid = tune.Tuner(peak, param_space={"a": tune.uniform(0, 1), "b": tune.uniform(0, 20)},
                      tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=8,
                                                  search_alg=BayesOptSearch(random_search_steps=4)),
                      run_config=run_config(tmp_path)).fit()
    assert len(grid) == 8 and grid.num_terminated == 8
    assert all(0 <= r.config["a"] <= 1 and 0 <= r.config["b"] <= 20 for r in grid)
    with pytest.raises(ValueError, match="BayesOpt does not support parameters of type `Categorical`"):
        BayesOptSearch(metric="m", mode="max").set_search_properties(None, None, {"k": tune.choice([1, 2])})
    with pytest.raises(ValueError, match="patience must be set to a value greater than 0"):
        BayesOptSearch(patience=0)


def test_model_based_searchers_reject_grids_and_need_a_metric():
    pytest.importorskip("hyperopt")
    from ray.tune.search.hyperopt import HyperOptSearch
    with pytest.raises(ValueError, match="Grid search parameters cannot be automatically converted"):
        HyperOptSearch(metric="m", mode="max").set_search_properties(None, None, {"x": tune.grid_search([1, 2])})
    searcher = HyperOptSearch()
    searcher.set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    with pytest.raises(ValueError, match="the `metric` \\(None\\) or `mode` \\(None\\) parameters have not been set"):
        searcher.suggest("1")
    with pytest.raises(ValueError, match="`mode` must be 'min' or 'max'"):
        HyperOptSearch(mode="best")


def test_a_rejected_experiment_leaves_no_directory(rt, tmp_path):
    pytest.importorskip("hyperopt")
    from ray.tune.search.hyperopt import HyperOptSearch
    tuner = tune.Tuner(bowl, param_space={"x": tune.grid_search([1, 2]), "kind": "a"},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", search_alg=HyperOptSearch()),
                       run_config=run_config(tmp_path))
    with pytest.raises(ValueError, match="Grid search parameters cannot be automatically converted"):
        tuner.fit()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("package, module, name, message", [
    ("hyperopt", "ray.tune.search.hyperopt", "HyperOptSearch", "HyperOpt must be installed! Run `pip install "
                                                               "hyperopt`."),
    ("optuna", "ray.tune.search.optuna", "OptunaSearch", "Optuna must be installed! Run `pip install optuna`."),
    ("bayes_opt", "ray.tune.search.bayesopt", "BayesOptSearch", "BayesOpt must be installed!. You can install "
                                                                "BayesOpt with the command: `pip install "
                                                                "bayesian-optimization==1.4.3`."),
    ("nevergrad", "ray.tune.search.nevergrad", "NevergradSearch", "Nevergrad must be installed!"),
])
def test_a_missing_searcher_package_is_named(monkeypatch, package, module, name, message):
    import importlib
    monkeypatch.setitem(sys.modules, package, None)          # as if it were not installed
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ImportError) as info:
        cls()
    assert str(info.value) == message or str(info.value).startswith(message)
    assert isinstance(info.value, AssertionError)            # what Ray's failed assert raises


def test_create_searcher_and_scheduler():
    pytest.importorskip("hyperopt")
    from ray.tune.search.hyperopt import HyperOptSearch
    searcher = tune.create_searcher("hyperopt", metric="m", mode="max", not_an_argument=1)
    assert isinstance(searcher, HyperOptSearch) and searcher.metric == "m"
    with pytest.raises(ValueError, match="The `search_alg` argument must be one of"):
        tune.create_searcher("bogus")
    assert isinstance(tune.create_scheduler("async_hyperband", metric="m", mode="max"), tune.AsyncHyperBandScheduler)
    with pytest.raises(ValueError, match="The `scheduler` argument must be one of"):
        tune.create_scheduler("bogus")
