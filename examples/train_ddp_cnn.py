"""Data-parallel training of a small CNN with TorchTrainer: torch.distributed over MPI, no address, no port.

The data is MNIST-shaped (1x28x28 images, 10 classes) and made up here, nothing is downloaded: each class
is a fixed random pattern plus noise, so the model can learn it. Two workers (or --workers N) train with
DistributedDataParallel; worker 0 saves a checkpoint each epoch, which lands in the run's HDF5 file.

    python examples/train_ddp_cnn.py                 # spawns its ranks
    mpirun -n 4 python examples/train_ddp_cnn.py     # driver, head, 2 workers
    python examples/train_ddp_cnn.py --gpu           # on GPUs (two workers may share one)
    MPIRT_NUM_GPUS=1 mpirun -n 4 python examples/train_ddp_cnn.py --gpu
    sbatch jobscripts/train.sbatch examples/train_ddp_cnn.py --epochs 3
"""
import argparse
import os
import tempfile
import time

import torch
import torch.nn as nn

import mpirt
from mpirt.libs import train
from mpirt.libs.train.torch import TorchTrainer, prepare_data_loader, prepare_model


def synthetic_mnist(samples, seed=0):
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randn(10, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    images = patterns[labels] + 0.8 * torch.randn(samples, 1, 28, 28, generator=generator)
    return torch.utils.data.TensorDataset(images, labels)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classify = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        return self.classify(self.features(x).flatten(1))


def train_loop_per_worker(config):
    torch.set_num_threads(1)       # one core per worker: the workers share the node's cores
    context = train.get_context()
    model = prepare_model(SmallCNN())
    loader = prepare_data_loader(torch.utils.data.DataLoader(synthetic_mnist(config["samples"]),
                                                             batch_size=config["batch_size"], shuffle=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    for epoch in range(config["epochs"]):
        started, steps, correct, seen = time.perf_counter(), 0, 0, 0
        for images, labels in loader:
            optimizer.zero_grad()
            logits = model(images)
            loss = nn.functional.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()
            steps += 1
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        checkpoint = None
        if context.get_world_rank() == 0:
            directory = tempfile.mkdtemp()
            torch.save(model.state_dict(), os.path.join(directory, "model.pt"))
            checkpoint = train.Checkpoint.from_directory(directory)
        train.report({"epoch": epoch, "loss": loss.item(), "accuracy": correct / seen,
                      "steps_per_s": steps / (time.perf_counter() - started)}, checkpoint=checkpoint)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--gpu", action="store_true", help="train on GPUs (ScalingConfig(use_gpu=True)): "
                                                           "gradients are averaged in GPU memory")
    args = parser.parse_args()
    # python app.py: spawn the workers and share this many GPUs over them (wrapping around the node's
    # devices, so two workers may share one GPU). Under mpirun the ranks are the workers, and each worker
    # rank's GPUs come from the node (or MPIRT_NUM_GPUS / Slurm's --gpus-per-task).
    under_mpirun = "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_RANK" in os.environ
    mpirt.init(num_cpus=args.workers, num_gpus=args.workers if args.gpu and not under_mpirun else None)
    trainer = TorchTrainer(train_loop_per_worker,
                           train_loop_config={"lr": 0.05, "epochs": args.epochs, "samples": args.samples,
                                              "batch_size": 64},
                           scaling_config=train.ScalingConfig(num_workers=args.workers, use_gpu=args.gpu))
    result = trainer.fit()
    print(f"final: epoch {result.metrics['epoch']} loss {result.metrics['loss']:.3f} "
          f"accuracy {result.metrics['accuracy']:.3f} ({result.metrics['steps_per_s']:.1f} steps/s per worker)")
    print(f"checkpoint: {result.checkpoint.path}")
    mpirt.shutdown()


if __name__ == "__main__":
    main()
