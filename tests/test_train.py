"""mpirt.libs.train: TorchTrainer on gang-placed workers, torch.distributed over MPI, results through Tune."""
import os
import tempfile

import pytest

torch = pytest.importorskip("torch")

import mpirt  # noqa: E402
from mpirt.exceptions import InfeasibleResourceError  # noqa: E402
from mpirt.libs import train, tune  # noqa: E402
from mpirt.libs.train.torch import TorchTrainer, prepare_data_loader, prepare_model  # noqa: E402

from conftest import wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _data(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(96, 6, generator=generator),
                                          torch.randn(96, 1, generator=generator))


def ddp_loop(config):
    """Each worker starts from different weights (its own seed): DDP's broadcast must align them, and its
    gradient allreduce keep them equal. Final weights go to files the test compares."""
    context = train.get_context()
    torch.manual_seed(100 + context.get_world_rank())
    model = prepare_model(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)))
    loader = prepare_data_loader(torch.utils.data.DataLoader(_data(0), batch_size=16, shuffle=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    start = train.get_checkpoint()
    first_epoch = 0 if start is None else start.to_dict()["epoch"] + 1
    for epoch in range(first_epoch, config["epochs"]):
        seen = 0
        for x, y in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            seen += len(x)
        checkpoint = train.Checkpoint.from_dict({"epoch": epoch}) if context.get_world_rank() == 0 else None
        train.report({"loss": loss.item(), "epoch": epoch, "samples": seen, "lr": config["lr"]}, checkpoint=checkpoint)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save(weights, os.path.join(config["out"], f"weights_{context.get_world_rank()}.pt"))
    torch.save({"rank": context.get_world_rank(), "size": context.get_world_size(),
                "local_rank": context.get_local_rank(), "local_size": context.get_local_world_size(),
                "node_rank": context.get_node_rank(), "env_rank": os.environ["RANK"],
                "backend": torch.distributed.get_backend(), "master": os.environ.get("MASTER_PORT")},
               os.path.join(config["out"], f"context_{context.get_world_rank()}.pt"))


def test_ddp_weights_equal_on_every_worker(rt, tmp_path):
    out = str(tmp_path)
    trainer = TorchTrainer(ddp_loop, train_loop_config={"lr": 0.05, "epochs": 3, "out": out},
                           scaling_config=train.ScalingConfig(num_workers=2),
                           run_config=train.RunConfig(name="ddp", storage_path=str(tmp_path / "results")))
    result = trainer.fit()
    assert result.error is None
    assert result.metrics["epoch"] == 2 and result.metrics["training_iteration"] == 3
    assert result.metrics["samples"] == 48         # half of the 96 samples: a DistributedSampler split them
    w0, w1 = (torch.load(os.path.join(out, f"weights_{r}.pt")) for r in (0, 1))
    assert torch.equal(w0, w1)
    contexts = [torch.load(os.path.join(out, f"context_{r}.pt")) for r in (0, 1)]
    assert [c["rank"] for c in contexts] == [0, 1] and {c["size"] for c in contexts} == {2}
    assert [c["local_rank"] for c in contexts] == [0, 1] and {c["local_size"] for c in contexts} == {2}
    assert {c["node_rank"] for c in contexts} == {0} and [c["env_rank"] for c in contexts] == ["0", "1"]
    assert {c["backend"] for c in contexts} == {"mpirt"} and {c["master"] for c in contexts} == {None}
    assert result.checkpoint is not None and result.checkpoint.path.endswith(".h5")
    assert result.checkpoint.to_dict() == {"epoch": 2}
    assert os.path.isdir(result.path)


def test_resume_from_checkpoint_and_no_config_loop(rt, tmp_path):
    out = str(tmp_path)
    trainer = TorchTrainer(ddp_loop, train_loop_config={"lr": 0.05, "epochs": 3, "out": out},
                           scaling_config=train.ScalingConfig(num_workers=2),
                           resume_from_checkpoint=train.Checkpoint.from_dict({"epoch": 1}),
                           run_config=train.RunConfig(name="resume", storage_path=str(tmp_path / "results")))
    result = trainer.fit()
    assert result.metrics["training_iteration"] == 1 and result.metrics["epoch"] == 2

    def no_config():
        train.report({"world": train.get_context().get_world_size()})

    result = TorchTrainer(no_config, scaling_config=train.ScalingConfig(num_workers=1),
                          run_config=train.RunConfig(name="one", storage_path=str(tmp_path / "r1"))).fit()
    assert result.metrics["world"] == 1


def failing_loop(config):
    if train.get_context().get_world_rank() == 1:
        raise ValueError("worker one fails on purpose")
    # worker 0 waits in a collective its peer never joins: the run must still end
    torch.distributed.barrier()


def test_worker_error_fails_fit_without_hanging(rt, tmp_path):
    trainer = TorchTrainer(failing_loop, train_loop_config={}, scaling_config=train.ScalingConfig(num_workers=2),
                           run_config=train.RunConfig(name="fail", storage_path=str(tmp_path)))
    with pytest.raises(train.TrainingFailedError, match="worker one fails on purpose"):
        trainer.fit()
    # the workers and their placement group are gone: the next run gets both CPUs
    assert mpirt.get(mpirt.remote(lambda: 1).remote(), timeout=30) == 1
    assert wait_for(lambda: mpirt.available_resources().get("CPU") == 2)


def test_tune_sweep_of_trainers(rt, tmp_path):
    out = str(tmp_path)
    trainer = TorchTrainer(ddp_loop, train_loop_config={"lr": 0.05, "epochs": 2, "out": out},
                           scaling_config=train.ScalingConfig(num_workers=2))
    tuner = tune.Tuner(trainer, param_space={"train_loop_config": {"lr": tune.grid_search([0.01, 0.1])}},
                       run_config=tune.RunConfig(name="sweep", storage_path=str(tmp_path / "results")))
    results = tuner.fit()
    assert len(results) == 2 and not results.errors
    assert sorted(r.metrics["lr"] for r in results) == [0.01, 0.1]
    assert {r.metrics["training_iteration"] for r in results} == {2}


def uneven_loop(config):
    if train.get_context().get_world_rank() == 0:
        train.report({"x": 1})


def test_bad_input(rt, tmp_path):
    with pytest.raises(ValueError, match="num_workers=0"):
        train.ScalingConfig(num_workers=0)
    with pytest.raises(ValueError, match="placement_strategy"):
        train.ScalingConfig(placement_strategy="ANYWHERE")
    with pytest.raises(ValueError, match="scaling_config"):
        TorchTrainer(ddp_loop, scaling_config={"num_workers": 2})
    with pytest.raises(TypeError, match="train_loop_per_worker"):
        TorchTrainer("not a function")
    with pytest.raises(RuntimeError, match="train_loop_per_worker"):
        train.report({"x": 1})
    too_big = TorchTrainer(ddp_loop, scaling_config=train.ScalingConfig(num_workers=2,
                                                                         resources_per_worker={"CPU": 64}),
                           run_config=train.RunConfig(name="big", storage_path=str(tmp_path)))
    with pytest.raises(train.TrainingFailedError) as caught:
        too_big.fit()
    assert isinstance(caught.value.__cause__, InfeasibleResourceError)
    uneven = TorchTrainer(uneven_loop, train_loop_config={}, scaling_config=train.ScalingConfig(num_workers=2),
                          run_config=train.RunConfig(name="uneven", storage_path=str(tmp_path)))
    with pytest.raises(train.TrainingFailedError, match="same number of times"):
        uneven.fit()
    three = TorchTrainer(ddp_loop, train_loop_config={"lr": 0.1, "epochs": 1, "out": tempfile.mkdtemp()},
                         scaling_config=train.ScalingConfig(num_workers=3, resources_per_worker={"CPU": 0.5}),
                         run_config=train.RunConfig(name="shared", storage_path=str(tmp_path)))
    with pytest.raises(train.TrainingFailedError, match="share a process"):
        three.fit()
