"""Search spaces and searchers, without a running cluster."""
import random

import pytest

from mpirt.libs import tune
from mpirt.libs.tune import search_space


def test_every_domain_samples_inside_its_range():
    rng = random.Random(1)
    space = {
        "c": tune.choice(["a", "b"]), "u": tune.uniform(2, 3), "q": tune.quniform(0, 1, 0.25),
        "l": tune.loguniform(1e-4, 1e-1), "i": tune.randint(0, 5), "qi": tune.qrandint(0, 20, 5),
        "n": tune.randn(10, 0.001), "nested": {"deep": {"x": tune.uniform(-1, 0)}},
        "derived": tune.sample_from(lambda spec: spec.config.i * 2), "plain": 7,
    }
    for config in search_space.generate_variants(space, num_samples=200, rng=rng):
        assert config["c"] in ("a", "b")
        assert 2 <= config["u"] <= 3
        assert config["q"] in (0, 0.25, 0.5, 0.75, 1.0)
        assert 1e-4 <= config["l"] <= 1e-1
        assert config["i"] in range(5)
        assert config["qi"] in (0, 5, 10, 15, 20)
        assert abs(config["n"] - 10) < 0.1
        assert -1 <= config["nested"]["deep"]["x"] <= 0
        assert config["derived"] == config["i"] * 2
        assert config["plain"] == 7


def test_grids_multiply_and_num_samples_repeats_them():
    space = {"a": tune.grid_search([1, 2, 3]), "b": {"c": tune.grid_search(["x", "y"])}, "r": tune.uniform(0, 1)}
    configs = list(search_space.generate_variants(space, num_samples=2, rng=random.Random(0)))
    assert len(configs) == 12
    assert sorted({(c["a"], c["b"]["c"]) for c in configs}) == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]
    assert len({c["r"] for c in configs}) == 12


def test_loguniform_spreads_over_decades():
    values = [tune.loguniform(1e-6, 1).sample(random.Random(i)) for i in range(2000)]
    small = sum(v < 1e-3 for v in values) / len(values)
    assert 0.4 < small < 0.6


@pytest.mark.parametrize("bad, message", [
    ({"a": {"grid_search": 3}}, "grid_search needs a list"),
    ({"a": {"grid_search": [1], "other": 2}}, "no other keys"),
    ({"a": lambda spec: 1}, "sample_from"),
])
def test_malformed_search_spaces_are_named(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        search_space.validate(bad)


@pytest.mark.parametrize("make, message", [
    (lambda: tune.uniform(3, 1), "lower < upper"),
    (lambda: tune.loguniform(0, 1), "lower > 0"),
    (lambda: tune.choice([]), "at least one"),
    (lambda: tune.grid_search("abc"), "list"),
    (lambda: tune.randn(0, -1), "sd > 0"),
    (lambda: tune.uniform("a", 2), "numbers"),
])
def test_bad_domains_raise_at_definition(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_basic_variant_generator_is_reproducible_from_its_seed():
    space = {"x": tune.uniform(0, 1), "g": tune.grid_search([1, 2])}
    first, second = tune.BasicVariantGenerator(random_state=5), tune.BasicVariantGenerator(random_state=5)
    for searcher in (first, second):
        searcher.set_search_properties("m", "max", space, num_samples=3)
    a = [first.suggest(str(i)) for i in range(6)]
    second.skip(2)
    assert [second.suggest(str(i)) for i in range(4)] == a[2:]
    assert first.suggest("x") == tune.Searcher.FINISHED


def test_optuna_searcher_learns_from_results():
    pytest.importorskip("optuna")
    searcher = tune.OptunaSearch(seed=0)
    searcher.set_search_properties("score", "max", {"x": tune.uniform(-5, 5), "k": tune.choice(["a", "b"])},
                                   num_samples=40)
    best = []
    for i in range(40):
        config = searcher.suggest(str(i))
        score = -(config["x"] - 2) ** 2 + (1 if config["k"] == "b" else 0)
        searcher.on_trial_complete(str(i), {"score": score})
        best.append(score)
    # TPE concentrates near the optimum once it has seen the first random points
    assert max(best[20:]) > 0.5
    assert sum(s > -1 for s in best[20:]) > sum(s > -1 for s in best[:10])


def test_optuna_rejects_what_it_cannot_search():
    pytest.importorskip("optuna")
    searcher = tune.OptunaSearch()
    with pytest.raises(ValueError, match="Optuna search does not support parameters of type `Normal`"):
        searcher.set_search_properties("m", "max", {"x": tune.randn()}, num_samples=1)
    searcher = tune.OptunaSearch()
    searcher.set_search_properties(None, None, {"x": tune.uniform(0, 1)}, num_samples=1)
    with pytest.raises(ValueError, match=r"the `metric` \(None\) or `mode` \(None\) parameters have not been set"):
        searcher.suggest("1")


def test_pbt_explore_perturbs_within_the_mutation_spec():
    pbt = tune.PopulationBasedTraining(metric="m", mode="max", hyperparam_mutations={
        "lr": tune.loguniform(1e-4, 1e-1), "batch": [16, 32, 64], "opt": {"momentum": [0.8, 0.9, 0.99]}},
        resample_probability=0.0, seed=0)
    config = {"lr": 0.01, "batch": 32, "opt": {"momentum": 0.9}, "fixed": "keep"}
    seen_lr, seen_batch = set(), set()
    for _ in range(50):
        new = pbt.explore(config)
        seen_lr.add(round(new["lr"] / 0.01, 3))
        seen_batch.add(new["batch"])
        assert new["opt"]["momentum"] in (0.8, 0.99)
        assert new["fixed"] == "keep"
    assert seen_lr == {0.8, 1.2}
    assert seen_batch == {16, 64}
    with pytest.raises(ValueError, match="hyperparam_mutations"):
        tune.PopulationBasedTraining(metric="m", mode="max")


def test_schedulers_need_metric_and_mode():
    for scheduler in (tune.ASHAScheduler(), tune.HyperBandScheduler(), tune.MedianStoppingRule()):
        with pytest.raises(ValueError, match="metric= and mode="):
            scheduler.set_search_properties(None, None)
    with pytest.raises(ValueError, match="grace_period"):
        tune.ASHAScheduler(grace_period=10, max_t=5)
