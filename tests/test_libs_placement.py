"""Tune and RL on placement groups: ``tune.PlacementGroupFactory`` (Ray's class, its checks), trials
that reserve a group before they start and run their workers in it, groups removed after, and RL
algorithms' ``default_resource_request`` with their rollout actors in the trial's bundles (under
``mpirun -n 8``)."""
import json
import os
import pickle
import time
import warnings

import pytest

import mpirt
from conftest import run_app, wait_for
from mpirt.exceptions import InfeasibleResourceError
from mpirt.libs import tune
from mpirt.libs.tune.execution.placement_groups import resource_dict_to_pg_factory
from mpirt.libs.tune.trial import Trial
from mpirt.util.placement_group import get_current_placement_group, placement_group_table, remove_placement_group

pytestmark = pytest.mark.timeout(150)

PGF = tune.PlacementGroupFactory


# ---------------------------------------------------------------- PlacementGroupFactory itself
def test_factory_as_rays_docs_describe_it():
    pgf = PGF([{"CPU": 1, "GPU": 0.5, "custom_resource": 2}, {"CPU": 2}, {"CPU": 2}], strategy="PACK")
    assert pgf.bundles == [{"CPU": 1.0, "GPU": 0.5, "custom_resource": 2.0}, {"CPU": 2.0}, {"CPU": 2.0}]
    assert pgf.required_resources == {"CPU": 5.0, "GPU": 0.5, "custom_resource": 2.0}
    assert pgf.strategy == "PACK" and pgf.head_cpus == 1.0 and pgf.head_bundle_is_empty is False
    pgf.bundles[0]["CPU"] = 99                         # a copy
    assert pgf.bundles[0]["CPU"] == 1.0
    # the trainable needs nothing itself: the first bundle is given empty
    empty_head = PGF([{}, {"CPU": 2}, {"CPU": 2}], strategy="PACK")
    assert empty_head.head_bundle_is_empty and empty_head.head_cpus == 0.0
    assert empty_head.bundles == [{"CPU": 2.0}, {"CPU": 2.0}] and empty_head.required_resources == {"CPU": 4.0}
    # zero amounts are dropped, as in Ray
    assert PGF([{"CPU": 1, "GPU": 0}]).bundles == [{"CPU": 1.0}]
    assert PGF([{"CPU": 0}, {"CPU": 1}]).head_bundle_is_empty
    assert "head_bundle_is_empty=False" in repr(pgf) and repr(pgf).startswith("<PlacementGroupFactory")


def test_factory_equality_hash_and_pickling():
    a = PGF([{"CPU": 1}, {"CPU": 2}], "SPREAD")
    assert a == PGF([{"CPU": 1.0}, {"CPU": 2}], strategy="SPREAD") and hash(a) == hash(PGF([{"CPU": 1}, {"CPU": 2}],
                                                                                         "SPREAD"))
    assert a != PGF([{"CPU": 1}, {"CPU": 2}], "PACK") and a != PGF([{"CPU": 2}, {"CPU": 1}], "SPREAD")
    assert PGF([{}, {"CPU": 1}]) != PGF([{"CPU": 1}])          # same bundles, not the same trainable head
    assert PGF([{"CPU": 1}], "PACK", "name") == PGF([{"CPU": 1}], strategy="PACK", name="name")   # bound
    assert a != {"CPU": 3}
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a and hash(copy) == hash(a) and copy.bundles == a.bundles
    assert {a: 1}[copy] == 1


@pytest.mark.parametrize("make, error, message", [
    (lambda: PGF([]), ValueError, "Cannot initialize a ResourceRequest with zero bundles"),
    (lambda: PGF([{}]), ValueError, "empty head and zero worker bundles"),
    (lambda: PGF([{"CPU": 0, "GPU": 0}]), ValueError, "empty head and zero worker bundles"),
    (lambda: PGF([{"CPU": 1}], strategy="PACKED"), ValueError, "Invalid placement group strategy PACKED"),
    (lambda: PGF([{"CPU": 1}], strategy="pack"), ValueError, "Invalid placement group strategy pack"),
    (lambda: PGF([{"CPU": -1}]), ValueError, "amounts must be numbers >= 0"),
    (lambda: PGF([{"CPU": "1"}]), ValueError, "amounts must be numbers >= 0"),
    (lambda: PGF([{"CPU": True}]), ValueError, "amounts must be numbers >= 0"),
    (lambda: PGF({"CPU": 1}), ValueError, "bundles must be a list"),
    (lambda: PGF(["CPU"]), ValueError, "each bundle must be a dict"),
    (lambda: PGF([{"CPU": 1}, {}]), ValueError, "only the first bundle"),
    (lambda: PGF([{"CPU": 1}], "PACK", nmae="x"), RuntimeError, "Invalid definition for resource request"),
])
def test_factory_bad_input(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_resource_dicts_as_factories():
    assert resource_dict_to_pg_factory() == PGF([{"CPU": 1}])
    assert resource_dict_to_pg_factory({"cpu": 2, "gpu": 0.5, "custom_resources": {"hdd": 80}}) == \
        PGF([{"CPU": 2, "GPU": 0.5, "hdd": 80}])
    trial = Trial("t", "t", {}, {"cpu": 2, "gpu": 1})
    assert trial.placement_group_factory == PGF([{"CPU": 2, "GPU": 1}])
    trial.resources = PGF([{"CPU": 1}, {"CPU": 1}])
    assert trial.placement_group_factory is trial.resources


def test_with_resources_takes_factories_and_functions_of_the_config():
    def fn(config):
        pass

    pgf = PGF([{"CPU": 1}, {"CPU": 2}])
    assert tune.with_resources(fn, pgf) is fn and fn._resources is pgf

    class Probe(tune.Trainable):
        def step(self):
            return {"done": True}

    assert Probe.default_resource_request({}) is None
    wrapped = tune.with_resources(Probe, pgf)
    assert wrapped.default_resource_request({}) is pgf
    by_config = tune.with_resources(Probe, lambda config: PGF([{"CPU": config["cpus"]}]))
    assert by_config.default_resource_request({"cpus": 3}) == PGF([{"CPU": 3}])
    with pytest.raises(ValueError, match="Invalid resource type"):
        tune.with_resources(fn, [{"CPU": 1}])


def test_rl_default_resource_request():
    rl = pytest.importorskip("mpirt.libs.rl")
    PPO, PPOConfig = rl.PPO, rl.PPOConfig
    # mpirt's env runners hold nothing by default: only the algorithm's own bundle
    assert PPO.default_resource_request(PPOConfig()) == PGF([{"CPU": 1}])
    assert PPO.default_resource_request({"env": "CartPole-v1", "num_workers": 3}) == PGF([{"CPU": 1}])
    config = PPOConfig().env_runners(num_env_runners=2, num_cpus_per_env_runner=1)
    assert PPO.default_resource_request(config) == PGF([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}])
    assert PPO.default_resource_request(config.to_dict()) == PGF([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}])
    config = (PPOConfig().learners(num_gpus_per_learner=1).resources(placement_strategy="SPREAD")
              .env_runners(num_env_runners=3, num_cpus_per_env_runner=2, num_gpus_per_env_runner=0.25,
                           custom_resources_per_env_runner={"sim": 1}))
    assert PPO.default_resource_request(config) == PGF(
        [{"CPU": 1, "GPU": 1}] + [{"CPU": 2, "GPU": 0.25, "sim": 1}] * 3, strategy="SPREAD")
    assert PPO.default_resource_request(PPOConfig().resources(num_gpus=1, num_cpus_for_main_process=2)) == \
        PGF([{"CPU": 2, "GPU": 1}])
    local = PPOConfig().env_runners(num_env_runners=0, num_cpus_per_env_runner=1)
    assert PPO.default_resource_request(local) == PGF([{"CPU": 1}])
    nothing = PPOConfig().resources(num_cpus_for_main_process=0)
    assert PPO.default_resource_request(nothing) == {"cpu": 0}
    with pytest.raises(ValueError, match="unknown config key 'lrr'"):
        PPO.default_resource_request({"lrr": 1})


# ---------------------------------------------------------------- trials on a running mpirt
@pytest.fixture(scope="module")
def four():
    mpirt.init(num_cpus=4)
    yield mpirt
    mpirt.shutdown()


@mpirt.remote(num_cpus=1)
def child():
    return mpirt.get_runtime_context().get_placement_group_id()


def spanning(config):
    """Reports where it ran: its group (and that it was reserved), its CPUs, its children's groups."""
    group = get_current_placement_group()
    start = time.time()
    children = mpirt.get([child.remote() for _ in range(config.get("children", 2))])
    time.sleep(config.get("sleep", 0.3))
    tune.report({"group": group.id.hex() if group else None,
                 "state": placement_group_table(group)["state"] if group else None,
                 "cpus": mpirt.get_runtime_context().get_assigned_resources().get("CPU", 0.0),
                 "children": children, "start": start, "end": time.time()})


def run_config(tmp_path, **kwargs):
    return tune.RunConfig(storage_path=str(tmp_path), verbose=0, **kwargs)


def live_groups():
    return {k for k, v in placement_group_table().items() if v["state"] != "REMOVED"}


def test_trials_reserve_groups_run_children_in_them_and_remove_them(four, tmp_path):
    before = live_groups()
    grid = tune.Tuner(tune.with_resources(spanning, PGF([{"CPU": 1}, {"CPU": 1}])),
                      param_space={"x": tune.grid_search([1, 2, 3, 4])}, run_config=run_config(tmp_path)).fit()
    assert not grid.errors
    metrics = [r.metrics for r in grid]
    assert all(m["state"] == "CREATED" and m["cpus"] == 1.0 for m in metrics)   # reserved before it started
    assert all(set(m["children"]) == {m["group"]} for m in metrics)             # its tasks ran in its group
    spans = [(m["start"], m["end"]) for m in metrics]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2                               # 4 CPUs, 2 per trial: two at a time, the others queued
    running = {m["group"] for m in metrics}
    assert wait_for(lambda: not (live_groups() - before), 10)                  # every group removed
    assert running and not (running & live_groups())
    assert wait_for(lambda: mpirt.available_resources().get("CPU") == 4.0, 10)


def test_empty_head_bundle_the_trainable_holds_nothing(four, tmp_path):
    pgf = PGF([{}, {"CPU": 2}], strategy="PACK")
    analysis = tune.run(tune.with_resources(spanning, pgf), config={"children": 2}, storage_path=str(tmp_path),
                        name="empty_head", verbose=0)
    result = analysis.trials[0].last_result
    assert result["cpus"] == 0.0 and result["state"] == "CREATED" and set(result["children"]) == {result["group"]}


def test_resources_per_trial_factory_and_functions_of_the_config(four, tmp_path):
    analysis = tune.run(spanning, config={"children": 1}, resources_per_trial=PGF([{"CPU": 1}, {"CPU": 1}]),
                        storage_path=str(tmp_path), name="per_trial", verbose=0)
    assert analysis.trials[0].last_result["state"] == "CREATED"
    assert analysis.trials[0].placement_group_factory == PGF([{"CPU": 1}, {"CPU": 1}])
    # a function of the config: each trial gets its own request (a dict becomes a one-bundle group)
    by_config = tune.with_resources(spanning, lambda config: {"cpu": config["cpus"]} if config["cpus"] < 2
                                    else PGF([{"CPU": 2}, {"CPU": 1}]))
    grid = tune.Tuner(by_config, param_space={"cpus": tune.grid_search([1, 2]), "children": 0},
                      run_config=run_config(tmp_path, name="by_config")).fit()
    assert [(r.metrics["cpus"], r.metrics["state"]) for r in grid] == [(1.0, "CREATED"), (2.0, "CREATED")]


def test_dict_resources_need_no_group(four, tmp_path):
    tables = len(placement_group_table())
    grid = tune.Tuner(tune.with_resources(spanning, {"cpu": 1}),
                      param_space={"x": tune.grid_search([1, 2, 3]), "children": 0, "sleep": 0},
                      run_config=run_config(tmp_path)).fit()
    assert not grid.errors and [r.metrics["group"] for r in grid] == [None] * 3
    assert len(placement_group_table()) == tables     # the fast path: plain actors, no group made


def test_a_group_that_can_never_fit_fails_the_trial_at_start(four, tmp_path):
    grid = tune.Tuner(tune.with_resources(spanning, PGF([{"CPU": 1}, {"CPU": 8}])),
                      run_config=run_config(tmp_path)).fit()
    assert len(grid.errors) == 1 and isinstance(grid.errors[0], InfeasibleResourceError)
    assert "can never be created" in str(grid.errors[0]) and grid[0].metrics == {}
    with pytest.raises(tune.TuneError, match="can never be created"):
        tune.run(spanning, resources_per_trial=PGF([{"CPU": 2}, {"CPU": 2}], strategy="STRICT_SPREAD"),
                 storage_path=str(tmp_path), name="strict", verbose=0)


def flaky(config):
    group = get_current_placement_group().id.hex()
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        tune.report({"group": group, "step": 1}, checkpoint=tune.Checkpoint.from_dict({"group": group}))
        raise RuntimeError("fails once")
    tune.report({"group": group, "first": checkpoint.to_dict()["group"], "step": 2})


def test_a_failed_trial_gives_its_group_back_and_reserves_a_new_one(four, tmp_path):
    before = live_groups()
    grid = tune.Tuner(tune.with_resources(flaky, PGF([{"CPU": 1}, {"CPU": 1}])),
                      run_config=run_config(tmp_path, failure_config=tune.FailureConfig(max_failures=1))).fit()
    assert not grid.errors
    metrics = grid[0].metrics
    assert metrics["step"] == 2 and metrics["group"] != metrics["first"]
    assert wait_for(lambda: not (live_groups() - before), 10)


@mpirt.remote(num_cpus=3)
def big_child():
    return 1


def asks_too_much(config):
    try:
        big_child.remote()
    except ValueError as error:
        tune.report({"error": str(error)})
        return
    tune.report({"error": None})


def test_a_child_bigger_than_every_bundle_is_refused_at_remote(four, tmp_path):
    grid = tune.Tuner(tune.with_resources(asks_too_much, PGF([{"CPU": 1}, {"CPU": 2}])),
                      run_config=run_config(tmp_path)).fit()
    assert "cannot fit into any bundles" in grid[0].metrics["error"]


def endless(config):
    for step in range(1000):
        tune.report({"step": step, "group": get_current_placement_group().id.hex()})
        time.sleep(0.01)


def test_stopped_trials_free_their_groups_and_the_journal_keeps_the_request(four, tmp_path):
    before = live_groups()
    pgf = PGF([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    grid = tune.Tuner(tune.with_resources(endless, pgf), param_space={"x": tune.grid_search([1, 2, 3])},
                      tune_config=tune.TuneConfig(scheduler=tune.schedulers.ASHAScheduler(
                          metric="step", mode="min", grace_period=2, max_t=20)),
                      run_config=run_config(tmp_path, name="stopped", stop={"step": 30})).fit()
    assert not grid.errors and all(r.metrics["step"] < 30 for r in grid)
    assert wait_for(lambda: not (live_groups() - before), 10)
    with open(os.path.join(grid.experiment_path, "experiment_state.jsonl")) as f:
        trials = [json.loads(line) for line in f if '"e": "trial"' in line]
    assert [t["resources"] for t in trials] == [{"bundles": [{"CPU": 1.0}, {"CPU": 1.0}], "strategy": "SPREAD",
                                                 "head_bundle_is_empty": False}] * 3
    restored = tune.Tuner.restore(grid.experiment_path, tune.with_resources(endless, pgf)).get_results()
    assert len(restored) == 3 and all(r.metrics["step"] < 30 for r in restored)


def test_calling_a_factory_makes_a_placement_group(four):
    pgf = PGF([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    group = pgf.to_placement_group()
    assert group.wait(20) and group.bundle_specs == [{"CPU": 1.0}, {"CPU": 1.0}]
    assert placement_group_table(group)["strategy"] == "SPREAD"
    remove_placement_group(group)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = pgf()
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert group.wait(20)
    remove_placement_group(group)


GPU_TRIALS = r'''
import json, time
import mpirt
from mpirt.libs import tune

mpirt.init(num_cpus=2)          # MPIRT_NODE_GPUS=2 fakes a node with 2 GPUs, one per worker rank


def train(config):
    time.sleep(0.5)
    tune.report({"gpus": mpirt.get_gpu_ids(), "rank": mpirt.get_runtime_context().get_worker_id(),
                 "group": mpirt.get_runtime_context().get_placement_group_id()})


grid = tune.Tuner(tune.with_resources(train, tune.PlacementGroupFactory([{"CPU": 1, "GPU": 1}])),
                  param_space={"x": tune.grid_search([1, 2])},
                  run_config=tune.RunConfig(storage_path=".", name="gpu", verbose=0)).fit()
print("RESULT", json.dumps([r.metrics for r in grid]))
mpirt.shutdown()
'''


def test_a_trials_gpu_bundle_gives_its_actor_the_gpu(tmp_path):
    proc = run_app(tmp_path, GPU_TRIALS, env={"MPIRT_NODE_GPUS": "2"}, timeout=90)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    metrics = json.loads(line[len("RESULT "):])
    assert [len(m["gpus"]) for m in metrics] == [1, 1] and all(m["group"] for m in metrics)
    assert metrics[0]["rank"] != metrics[1]["rank"] and metrics[0]["gpus"] != metrics[1]["gpus"]


# ---------------------------------------------------------------- PPO trials, mpirun -n 8
PPO_TRIALS = r'''
import json, os, sys, time

import mpirt
from mpirt.core.call_context import current_placement
from mpirt.libs import tune
from mpirt.libs.rl import PPO, PPOConfig
from mpirt.util.placement_group import get_current_placement_group, placement_group_table, remove_placement_group

mpirt.init()
out = sys.argv[1]


def where(worker):
    ctx = mpirt.get_runtime_context()
    return {"rank": ctx.get_worker_id(), "group": ctx.get_placement_group_id(), "bundle": current_placement()[1],
            "cpus": ctx.get_assigned_resources().get("CPU", 0.0)}


class ProbedPPO(PPO):
    """PPO that notes where it and its rollout actors run, and when it starts and ends."""

    def setup(self, config):
        group = get_current_placement_group()
        self.probe = {"start": time.time(), "group": group.id.hex(), "state": placement_group_table(group)["state"],
                      "bundles": group.bundle_specs, "learner": where(None)}
        super().setup(config)
        self.probe["workers"] = mpirt.get([w.__ray_call__.remote(where) for w in self.workers])

    def cleanup(self):
        super().cleanup()
        with open(os.path.join(out, f"{self.trial_id}.json"), "w") as f:
            json.dump({**self.probe, "end": time.time()}, f)


class MostRunning(tune.Callback):
    most = 0

    def on_trial_start(self, iteration, trials, trial, **info):
        MostRunning.most = max(MostRunning.most, sum(t.status == "RUNNING" for t in trials))


config = (PPOConfig().environment("CartPole-v1")
          .env_runners(num_env_runners=2, num_cpus_per_env_runner=1)
          .training(lr=tune.grid_search([1e-3, 3e-4, 1e-4]), train_batch_size=128, minibatch_size=64, num_epochs=1,
                    model={"fcnet_hiddens": [16]})
          .debugging(seed=0))
grid = tune.Tuner(ProbedPPO, param_space=config,
                  run_config=tune.RunConfig(storage_path=out, name="ppo", stop={"training_iteration": 2},
                                            callbacks=[MostRunning()], verbose=0)).fit()
deadline = time.time() + 10
while any(v["state"] != "REMOVED" for v in placement_group_table().values()) and time.time() < deadline:
    time.sleep(0.05)
print("RESULT", json.dumps({
    "errors": [str(e) for e in grid.errors], "iterations": [r.metrics.get("training_iteration") for r in grid],
    "request": ProbedPPO.default_resource_request(config).bundles, "most_running": MostRunning.most,
    "probes": [json.load(open(os.path.join(out, n))) for n in sorted(os.listdir(out)) if n.endswith(".json")],
    "states": [v["state"] for v in placement_group_table().values()],
    "available": mpirt.available_resources(), "cluster": mpirt.cluster_resources()}))
mpirt.shutdown()
'''


def test_ppo_trials_reserve_learner_and_rollout_bundles(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("gymnasium")
    out = tmp_path / "out"
    out.mkdir()
    proc = run_app(tmp_path, PPO_TRIALS, ranks=8, timeout=120, args=(str(out),))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["errors"] == [] and result["iterations"] == [2, 2, 2]
    assert result["cluster"] == {"CPU": 6.0}                      # 8 ranks: driver, scheduler, 6 one-CPU workers
    assert result["request"] == [{"CPU": 1.0}] * 3                # 1 learner + 2 rollout workers
    probes = result["probes"]
    assert len(probes) == 3
    for probe in probes:
        assert probe["state"] == "CREATED"                         # reserved before the trial started
        assert probe["bundles"] == [{"CPU": 1.0}] * 3
        assert probe["learner"]["bundle"] == 0 and probe["learner"]["group"] == probe["group"]
        workers = probe["workers"]
        assert [w["group"] for w in workers] == [probe["group"]] * 2   # rollout actors in the trial's group,
        assert sorted(w["bundle"] for w in workers) == [1, 2]         # one in each of its worker bundles
        assert all(w["cpus"] == 1.0 for w in workers)
        assert len({probe["learner"]["rank"]} | {w["rank"] for w in workers}) == 3
    # no over-subscription: at most two trials at once (6 CPUs, 3 each), and trials that overlapped in
    # time used different ranks (each rank offers one CPU)
    assert result["most_running"] == 2
    for i, a in enumerate(probes):
        for b in probes[i + 1:]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                ranks_a = {a["learner"]["rank"]} | {w["rank"] for w in a["workers"]}
                ranks_b = {b["learner"]["rank"]} | {w["rank"] for w in b["workers"]}
                assert not ranks_a & ranks_b and a["group"] != b["group"]
    overlapping = sum(1 for p in probes if any(p is not q and p["start"] < q["end"] and q["start"] < p["end"]
                                               for q in probes))
    assert overlapping >= 2                                      # two ran together, the third waited
    assert all(state == "REMOVED" for state in result["states"])  # every group removed after
    assert result["available"] == {"CPU": 6.0}
