"""The examples run unchanged, as plain python and under mpirun."""
import os

import pytest

from conftest import REPO, run_app

EXAMPLES = os.path.join(REPO, "examples")


def _source(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


@pytest.mark.parametrize("ranks", [None, 4])
def test_zeros_multiply(tmp_path, ranks):
    proc = run_app(tmp_path, _source("zeros_multiply.py"), ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    assert "product shape: (100, 100) sum: 0.0" in proc.stdout


def test_parallel_experiments(tmp_path):
    proc = run_app(tmp_path, _source("parallel_experiments.py"), ranks=5)
    assert proc.returncode == 0, proc.stderr
    assert "experiment-A: mean final position" in proc.stdout
    assert "experiment-B: mean final position" in proc.stdout


def test_demo(tmp_path):
    proc = run_app(tmp_path, _source("demo.py"))
    assert proc.returncode == 0, proc.stderr
    assert "tree_sum(0..63) = 2016" in proc.stdout
    assert "caught: ray::fails()" in proc.stdout       # Ray's first line of a task error
    assert proc.stdout.rstrip().endswith("done")


def test_core_benchmark_smoke(tmp_path):
    """The benchmark script runs (tiny sizes, mpirt only); it prints its table."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "core_bench.py"), "--quick", "--runtimes", "mpirt",
         "--timeout", "120"],
        capture_output=True, text=True, timeout=180, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "sync round trip" in proc.stdout and "tasks/s" in proc.stdout


def test_simulator_actor(tmp_path):
    pytest.importorskip("gymnasium")
    proc = run_app(tmp_path, _source("simulator_actor.py"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("observation [") == 4


@pytest.mark.parametrize("ranks", [None, 7])
def test_parameter_server_ends_cleanly_with_workers_still_looping(tmp_path, ranks):
    proc = run_app(tmp_path, _source("parameter_server.py"), ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    values = [float(line.split("=")[1]) for line in proc.stdout.splitlines() if line.startswith("params[0] =")]
    assert len(values) == 5
    assert values == sorted(values, reverse=True) and values[-1] < values[0] <= 0  # the workers keep updating


def test_tune_seed_experiment_under_mpirun(tmp_path):
    proc = run_app(tmp_path, _source("tune_seed_experiment.py"), ranks=4, args=(str(tmp_path / "results"),),
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "alpha=0.6 beta=2 -> 84 timesteps to reach mean_accuracy 100" in proc.stdout
    assert (tmp_path / "results" / "my_experiment" / "experiment.h5").exists()


@pytest.mark.parametrize("name, expect", [("tune_asha.py", "trials ran"), ("tune_pbt.py", "perturbations")])
def test_tune_examples(tmp_path, name, expect):
    proc = run_app(tmp_path, _source(name), args=(str(tmp_path / "results"),), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout


def test_tune_benchmark_smoke(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "tune_bench.py"), "--quick",
                           "--runtimes", "mpirt"], capture_output=True, text=True, timeout=170, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "trivial trials, end to end" in proc.stdout and "results/s" in proc.stdout


@pytest.mark.parametrize("ranks", [None, 4])
def test_es_allreduce_learns_cartpole_with_equal_weights(tmp_path, ranks):
    """ES whose workers average with allreduce: every iteration leaves the weights equal everywhere."""
    pytest.importorskip("gymnasium")
    proc = run_app(tmp_path, _source("es_allreduce.py"), ranks=ranks, timeout=240, args=("--iterations", "30"))
    assert proc.returncode == 0, proc.stderr
    assert "weights equal on all workers: True" in proc.stdout
    assert "weights equal on all workers: False" not in proc.stdout
    final = float(proc.stdout.split("evaluated return of the final policy: ")[1].split()[0])
    assert final >= 195.0, proc.stdout     # CartPole's "solved" bar


def test_train_ddp_cnn_example(tmp_path):
    pytest.importorskip("torch")
    proc = run_app(tmp_path, _source("train_ddp_cnn.py"), ranks=4, timeout=240,
                   args=("--epochs", "2", "--samples", "512"), env={"MPIRT_RESULTS_DIR": str(tmp_path / "results")})
    assert proc.returncode == 0, proc.stderr
    assert "final: epoch 1" in proc.stdout
    assert f"checkpoint: {tmp_path / 'results'}" in proc.stdout
