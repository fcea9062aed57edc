"""DDP training: mpirt's TorchTrainer vs Ray Train's TorchTrainer (Ray 2.60), in the same run.

A small CNN (two conv layers and a linear one, LeNet-like: conv 1->16 5x5, pool, conv 16->32 5x5, pool,
linear 512->10; 18 k parameters, 73 KB of gradients per step) trains on synthetic MNIST-shaped data
(1x28x28 images, 10 classes, made in each worker from a fixed seed; no download), batch 64 per worker, SGD,
with ``num_workers`` DDP workers (default 2, CPU). The same training function runs under both:
``prepare_model`` / ``prepare_data_loader`` of the runtime's ``train.torch``, ``train.report`` once at the
end (worker 0 with a tiny checkpoint: Ray Train 2.60 keeps only the metrics reported with one in
``result.metrics``). torch.distributed runs on mpirt's "mpirt" backend (MPI, a Python ProcessGroup) under mpirt and on
gloo under Ray Train.

Every worker sets ``torch.set_num_threads(1)``: 2 workers on this 2-core VM, so neither runtime
oversubscribes the cores with intra-op threads.

Measured:
  steps/s    inside the training loop, after warm-up steps: worker 0's timed steps / their wall time (the
             step ends at ``optimizer.step()``; DDP's gradient allreduce is inside ``backward()``),
             reported through ``train.report`` and read from ``result.metrics``;
  fit() s    the driver's wall time of ``trainer.fit()``: workers started, process group set up, training,
             results collected.

Each runtime runs in a fresh subprocess per round, rounds interleaved; the table shows the median over the
rounds. Ray runs under ``$RAY_PYTHON`` (it needs torch there too).

Run:  RAY_PYTHON=/work/rayvenv/bin/python python benchmarks/train_bench.py       (3 rounds)
      python benchmarks/train_bench.py --quick --rounds 1 --runtimes mpirt

Results go to benchmarks/results/train_bench.json and, with matplotlib, train_bench.png.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

RESULT_MARKER = "train_bench_result"
CHILD_TIMEOUT_S = 600
RUNTIMES = ("mpirt", "ray")

# key, label, unit, higher_is_better
WORKLOADS = [
    ("steps_per_s", "DDP steps/s in the loop (worker 0, after warm-up)", "steps/s", True),
    ("fit_s", "trainer.fit() wall time", "s", False),
]
FULL = dict(warmup_steps=20, steps=300, batch_size=64, lr=0.01)
QUICK = dict(warmup_steps=5, steps=40, batch_size=64, lr=0.01)


def train_loop(config):
    """The training function of every worker, the same under mpirt and Ray."""
    import time as _time

    import torch
    import torch.nn as nn

    torch.set_num_threads(1)
    if config["runtime"] == "mpirt":
        from mpirt.libs import train
        from mpirt.libs.train.torch import prepare_data_loader, prepare_model
    else:
        from ray import train
        from ray.train.torch import prepare_data_loader, prepare_model
    ctx = train.get_context()
    torch.manual_seed(0)
    model = prepare_model(nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),           # 16 x 12 x 12
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),          # 32 x 4 x 4
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10)))
    steps, warmup, batch = config["steps"], config["warmup_steps"], config["batch_size"]
    samples = (steps + warmup) * batch * ctx.get_world_size()    # one epoch covers every step
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(samples, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (samples,), generator=gen)
    loader = prepare_data_loader(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=batch, shuffle=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    done, t0, loss = 0, None, None
    for x, y in loader:
        if done == warmup:
            t0 = _time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        done += 1
        if done == warmup + steps:
            break
    elapsed = _time.perf_counter() - t0
    metrics = {"steps_per_s": steps / elapsed, "timed_steps": steps, "loop_s": elapsed, "loss": float(loss),
               "rank": ctx.get_world_rank(), "world_size": ctx.get_world_size(),
               "torch_threads": torch.get_num_threads(), "backend": torch.distributed.get_backend()}
    # Ray Train 2.60 (Train V2) keeps only the metrics reported with a checkpoint in ``result.metrics``:
    # worker 0 reports a tiny one (under both runtimes, so both pay for it)
    checkpoint = None
    if ctx.get_world_rank() == 0:
        import json
        import os as _os
        import tempfile

        folder = tempfile.mkdtemp(prefix="train_bench_ckpt_")
        with open(_os.path.join(folder, "metrics.json"), "w") as f:
            json.dump(metrics, f)
        checkpoint = train.Checkpoint.from_directory(folder)
    train.report(metrics, checkpoint=checkpoint)


def run_workloads(rt, name, cfg, workers, storage):
    if name == "mpirt":
        from mpirt.libs import train
        from mpirt.libs.train.torch import TorchTrainer
    else:
        from ray import train
        from ray.train.torch import TorchTrainer
    trainer = TorchTrainer(train_loop, train_loop_config=dict(cfg, runtime=name),
                           scaling_config=train.ScalingConfig(num_workers=workers, use_gpu=False),
                           run_config=train.RunConfig(name=f"train_bench_{name}", storage_path=storage))
    t0 = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - t0
    metrics = dict(result.metrics or {})
    if getattr(result, "error", None):
        raise RuntimeError(f"fit() failed: {result.error}")
    if "steps_per_s" not in metrics:
        raise RuntimeError(f"no steps_per_s in the result's metrics: {metrics}")
    return {"steps_per_s": {"value": metrics["steps_per_s"]}, "fit_s": {"value": fit_s}}, metrics


def child_main(name, quick, workers):
    cfg = QUICK if quick else FULL
    storage = tempfile.mkdtemp(prefix="train_bench_")

    def work(rt, result):
        result["results"], result["metrics"] = run_workloads(rt, name, cfg, workers, storage)

    result = {RESULT_MARKER: True, "runtime": name, "config": cfg, "workers": workers}
    try:
        import torch

        result["torch"] = torch.__version__
    except ImportError as exc:
        result.update(status="error", error=f"torch is missing: {exc}")
        harness.emit(result)
        return 0
    try:
        return harness.run_in_child(result, name, lambda runtime: harness.init_runtime(runtime, num_cpus=workers),
                                    work)
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def run_child(name, args):
    cmd = harness.child_command(__file__, name, args.quick) + ["--workers", str(args.workers)]
    run = harness.run_process(cmd, harness.child_env(), args.timeout, RESULT_MARKER)
    return harness.runtime_result(run, name, args.timeout, RESULT_MARKER)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_round_arguments(parser, RUNTIMES, CHILD_TIMEOUT_S, quick_help="fewer steps, for smoke runs")
    parser.add_argument("--workers", type=int, default=2, help="DDP workers (ScalingConfig(num_workers=))")
    args = parser.parse_args(argv)
    if args.runtime:
        return child_main(args.runtime, args.quick, args.workers)
    names = harness.runtime_names(parser, args.runtimes, RUNTIMES)
    if args.rounds < 1 or args.workers < 1:
        parser.error("--rounds and --workers must be at least 1")
    runs = harness.interleaved_rounds(names, args.rounds, lambda n: run_child(n, args))
    merged = {n: harness.merge_rounds(rs, [key for key, *_ in WORKLOADS]) for n, rs in runs.items()}
    cfg = QUICK if args.quick else FULL
    print(f"DDP training of a small CNN (batch {cfg['batch_size']} per worker, {args.workers} CPU workers, "
          f"torch.set_num_threads(1) in each): {cfg['steps']} timed steps after {cfg['warmup_steps']} warm-up; "
          f"median over {args.rounds} interleaved round(s)")
    entries = [(label, unit, harness.value(merged.get("mpirt"), key), harness.value(merged.get("ray"), key), hib)
               for key, label, unit, hib in WORKLOADS]
    harness.print_comparison(entries)
    for name in names:
        harness.print_status(name, merged[name])
        harness.print_leftovers(name, merged[name])
        metrics = merged[name].get("metrics")
        if metrics:
            print(f"  {name} worker 0: backend {metrics.get('backend')}, torch threads {metrics.get('torch_threads')}, "
                  f"final loss {metrics.get('loss', float('nan')):.3f}")
    doc = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick, "config": cfg,
           "workers": args.workers, "rounds": args.rounds, "python": sys.version.split()[0],
           "workloads": [{"key": k, "label": l, "unit": u, "higher_is_better": h} for k, l, u, h in WORKLOADS],
           "runtimes": merged, "runs": runs}
    rows = [(label, harness.ratio(m, r, hib)) for label, unit, m, r, hib in entries]
    harness.write_results("train_bench", doc,
                          lambda path: harness.save_ratio_plot(rows, path, "DDP training: mpirt vs Ray Train"))
    return 0 if all(r.get("status") in ("ok", "not installed") for r in merged.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
