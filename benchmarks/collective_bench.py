"""Allreduce: mpirt.util.collective vs plain mpi4py vs Ray's collective (gloo) vs torch.distributed gloo.

One allreduce (SUM, float32, in place) of each size among N members (``--actors``, default 2), four ways,
in the same run:

  mpirt   ``mpirt.util.collective.allreduce`` between mpirt actors (backend "mpi": an MPI sub-communicator
          of the actors' ranks; ``python app.py`` spawn mode, as a user runs it);
  mpi4py  plain ``comm.Allreduce(MPI.IN_PLACE, ...)`` under ``mpirun -n N --bind-to none`` (the Open MPI of
          mpirt's venv: what mpirt's numbers would be with no runtime around MPI);
  ray     Ray's ``ray.util.collective.allreduce``, backend "gloo", between Ray actors (Ray 2.60: TorchGLOOGroup,
          torch.distributed gloo under the hood, numpy arrays through ``torch.from_numpy``);
  torch   plain ``torch.distributed.all_reduce`` on the gloo backend, N processes meeting through a FileStore.

Time is measured in the members, around a loop of allreduce calls (a barrier first): per repetition the
time per call of the slowest member; per size the median over the repetitions; then the median over the
interleaved rounds (each runtime a fresh child per round, the order rotated: this 2-core VM's speed drifts).
Each size is checked once first (allreduce of ones gives N everywhere), then timed on zeros. Sizes are
binary (1 KB = 1024 bytes); bandwidth is the algorithm bandwidth, bytes / time per call, in GB/s (1e9).

Reading the numbers (2 members, this 2-core VM, Open MPI 5.0.11): an mpirt call first has the members agree
on it (a tiny non-blocking allreduce of dtype, shape and op, waited for without holding a core), then moves
the data in one blocking ``Allreduce`` (coll/tuned; the non-blocking ``Iallreduce`` of coll/libnbc,
progressed between sleeps, ran 2-3x slower from 64 KB up). Measured 2 rounds, mpirt vs mpi4py: 1 MB 0.87x,
16 MB 1.04x, 256 MB 0.92x (it was 0.35x at 256 MB with the non-blocking data step). At small sizes the
agreement (~12 us) and 15-20 us of Python per call are most of mpirt's latency (~35 us at 1 KB against
mpi4py's ~3 us). gloo (Ray and plain torch alike) took ~1.3 ms per call at 1 KB here.

GPU (``--gpu``): the buffers are CuPy arrays on each member's GPU, and the runtimes are
  mpirt   as above, members with a GPU each (``num_gpus=1``); the group's GPU path (CUDA-aware MPI, NCCL or
          pinned host staging, ``mpirt/util/collective/transports.py``) is printed with the table;
  mpi4py  what a user does without mpirt: ``Allreduce`` on the device array where MPI is CUDA-aware, else
          copied by hand through pageable host memory (``a.get()``, ``Allreduce``, ``a.set()``);
  nccl    plain CuPy NCCL ``allReduce`` under ``mpirun -n N`` (its unique id sent with mpi4py), the
          stream synchronized after each call. NCCL refuses ranks that share a GPU, so on a one-GPU
          machine this row reports NCCL's error instead of numbers.

Run:  RAY_PYTHON=/work/rayvenv/bin/python python benchmarks/collective_bench.py       (3 rounds)
      python benchmarks/collective_bench.py --gpu --sizes 1K,1M,16M,256M,1G           (on a GPU machine)
      python benchmarks/collective_bench.py --quick --rounds 1 --runtimes mpirt,mpi4py
      ... --actors 4 --sizes 1K,64K,1M,16M,256M     (the default list ends at 1 GiB; --quick at 16 MB)

Results go to benchmarks/results/collective_bench.json and, with matplotlib, collective_bench.png
(``--gpu``: collective_bench_gpu.*).
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

RESULT_MARKER = "collective_bench_result"
RUNTIMES = ("mpirt", "mpi4py", "ray", "torch")
GPU_RUNTIMES = ("mpirt", "mpi4py", "nccl")
TITLES = {"mpirt": "mpirt util.collective (mpi)", "mpi4py": "mpi4py Allreduce (mpirun)",
          "ray": "Ray util.collective (gloo)", "torch": "torch.distributed (gloo)", "nccl": "CuPy NCCL (mpirun)"}
CHILD_TIMEOUT_S = 900
# 1 GiB is in the full list by measurement (2 members, this 2-core 24 GB VM): the machine's memory in use
# peaked at 5.1 GB with it (a member's buffer, MPI's or gloo's scratch), and it adds about 1.5 min a round
# for the four runtimes together. With --actors N > 2 it costs N GiB and more: drop it with --sizes.
SIZES_FULL = [1 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30]
SIZES_QUICK = [1 << 10, 64 << 10, 1 << 20, 16 << 20]
# per repetition each member makes ``iters(size)`` calls: about TARGET bytes, within [MIN, MAX] calls
FULL = dict(target_bytes=256 << 20, min_iters=3, max_iters=2000, repeats=5)
QUICK = dict(target_bytes=32 << 20, min_iters=2, max_iters=500, repeats=3)
LATENCY_BELOW = 1 << 20    # sizes under this are shown as latency (us), the others as bandwidth (GB/s)
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def size_label(nbytes):
    for suffix, unit in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= unit and nbytes % unit == 0:
            return f"{nbytes // unit} {suffix}"
    return f"{nbytes} B"


def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        item = item.strip().upper().rstrip("B")
        if item:
            sizes.append(int(item[:-1]) * UNITS[item[-1]] if item[-1] in UNITS else int(item))
    if not sizes or any(s < 4 or s % 4 for s in sizes):
        raise ValueError(f"sizes {text!r}: give multiples of 4 bytes, e.g. 1K,64K,1M,16M,256M,1G")
    return sizes


def key_of(nbytes):
    return f"allreduce_{nbytes}"


def iters_for(nbytes, cfg):
    return max(cfg["min_iters"], min(cfg["max_iters"], round(cfg["target_bytes"] / nbytes)))


# --------------------------------------------------------------------------
# member side: the same loop for every runtime
# --------------------------------------------------------------------------
def measure(allreduce, barrier, make_buffer, fill, first, world, sizes, cfg):
    """Time ``allreduce(buffer)`` per size in this member: {key: [seconds per call, per repetition]}.

    ``make_buffer(n)``: a float32 buffer of n elements; ``fill(buffer, v)``; ``first(buffer)``: its first
    and last element as floats (the check that the result is ``world`` everywhere)."""
    out = {}
    for nbytes in sizes:
        buffer = make_buffer(nbytes // 4)
        fill(buffer, 1.0)
        allreduce(buffer)
        got = first(buffer)
        if got != (float(world), float(world)):
            raise AssertionError(f"allreduce of ones among {world} members gave {got} ({size_label(nbytes)})")
        fill(buffer, 0.0)
        iters = iters_for(nbytes, cfg)
        for _ in range(max(1, iters // 4)):     # warm-up
            allreduce(buffer)
        times = []
        for _ in range(cfg["repeats"]):
            barrier()
            t0 = time.perf_counter()
            for _ in range(iters):
                allreduce(buffer)
            times.append((time.perf_counter() - t0) / iters)
        out[key_of(nbytes)] = times
        del buffer
    return out


def numpy_ops():
    import numpy as np

    def fill(buffer, v):
        buffer[...] = v
    return (lambda n: np.empty(n, dtype=np.float32)), fill, (lambda b: (float(b[0]), float(b[-1])))


def cupy_ops():
    import cupy

    def fill(buffer, v):
        buffer.fill(v)
    return (lambda n: cupy.empty(n, dtype=cupy.float32)), fill, (lambda b: (float(b[0]), float(b[-1])))


def use_rank_gpu(rank):
    """Under mpirun every rank sees every GPU: take one by rank (wrapping when there are fewer)."""
    import cupy

    cupy.cuda.Device(rank % cupy.cuda.runtime.getDeviceCount()).use()


def combine(per_member, sizes):
    """Members' times -> {key: {"value": median over repetitions of the slowest member's time, "values"}}."""
    results = {}
    for nbytes in sizes:
        key = key_of(nbytes)
        slowest = [max(times) for times in zip(*(m[key] for m in per_member))]
        results[key] = {"value": statistics.median(slowest), "values": slowest}
    return results


class Member:
    """An actor of mpirt or Ray: joins the group, then runs ``measure``."""

    def setup(self, runtime, world, rank, gpu=False):
        import os as _os
        if runtime == "mpirt":
            import mpirt.util.collective as col
            from mpirt.core import current
            col.init_collective_group(world, rank, "mpi", "bench")
            where = current.runtime().rank
        else:
            import ray.util.collective as col
            col.init_collective_group(world, rank, backend="gloo", group_name="bench")
            where = None
        self.col, self.world, self.gpu = col, world, gpu
        return {"pid": _os.getpid(), "mpi_rank": where}

    def gpu_path(self):
        return self.col.get_group_handle("bench").group.gpu_path

    def run(self, sizes, cfg):
        col = self.col
        make, fill, first = cupy_ops() if self.gpu else numpy_ops()
        return measure(lambda b: col.allreduce(b, "bench"), lambda: col.barrier("bench"), make, fill, first,
                       self.world, sizes, cfg)


def actors_child(name, world, sizes, cfg, gpu=False):
    def work(rt, result):
        cls = rt.remote(num_cpus=1, num_gpus=1 if gpu else 0)(Member)
        members = [cls.remote() for _ in range(world)]
        placed = rt.get([m.setup.remote(name, world, i, gpu) for i, m in enumerate(members)], timeout=120)
        result["members"] = placed
        if name == "mpirt" and len({p["mpi_rank"] for p in placed}) < world:
            result["note"] = "members share an MPI rank"
        t0 = time.perf_counter()
        per_member = rt.get([m.run.remote(sizes, cfg) for m in members])
        result["bench_s"] = time.perf_counter() - t0
        result["results"] = combine(per_member, sizes)
        if gpu:
            result["note"] = f"GPU path between ranks: {rt.get(members[0].gpu_path.remote())}"

    result = {RESULT_MARKER: True, "runtime": name, "config": cfg, "world": world}
    resources = dict(num_cpus=world, num_gpus=world) if gpu else dict(num_cpus=world)
    return harness.run_in_child(result, name, lambda runtime: harness.init_runtime(runtime, **resources), work)


def mpi4py_gpu_allreduce(comm, result):
    """Allreduce of a CuPy array as a user writes it with mpi4py: on the device array where MPI is
    CUDA-aware, else through host memory by hand."""
    import cupy
    from mpi4py import MPI

    sys.path.insert(0, harness.REPO_ROOT)
    from mpirt.store.device import mpi_is_cuda_aware

    use_rank_gpu(comm.Get_rank())
    if mpi_is_cuda_aware():
        result["note"] = "CUDA-aware MPI: Allreduce on the device array"

        def allreduce(buffer):
            cupy.cuda.Device().synchronize()
            comm.Allreduce(MPI.IN_PLACE, buffer, MPI.SUM)
        return allreduce
    result["note"] = "MPI is not CUDA-aware: a.get(), Allreduce on host memory, a.set()"

    def staged(buffer):
        host = buffer.get()
        comm.Allreduce(MPI.IN_PLACE, host, MPI.SUM)
        buffer.set(host)
    return staged


def nccl_allreduce(comm, result):
    """Plain CuPy NCCL between the mpirun ranks, its unique id sent with mpi4py."""
    import cupy
    from cupy.cuda import nccl

    use_rank_gpu(comm.Get_rank())
    unique_id = comm.bcast(nccl.get_unique_id() if comm.Get_rank() == 0 else None, root=0)
    communicator = nccl.NcclCommunicator(comm.Get_size(), unique_id, comm.Get_rank())
    stream = cupy.cuda.Stream.null
    result["version"] = f"NCCL {nccl.get_version()}, CuPy {cupy.__version__}"

    def allreduce(buffer):
        communicator.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                               stream.ptr)
        stream.synchronize()
    return allreduce


def mpi4py_child(world, sizes, cfg, gpu=False, name="mpi4py"):
    t0 = time.perf_counter()
    from mpi4py import MPI
    import mpi4py

    comm = MPI.COMM_WORLD
    result = {RESULT_MARKER: True, "runtime": name, "config": cfg, "world": comm.Get_size(),
              "init_s": time.perf_counter() - t0,
              "version": f"{mpi4py.__version__} ({MPI.Get_library_version().split(',')[0].strip()})"}
    try:
        if comm.Get_size() != world:
            raise RuntimeError(f"mpirun started {comm.Get_size()} ranks, expected {world}")
        if name == "nccl":
            allreduce = nccl_allreduce(comm, result)
        elif gpu:
            allreduce = mpi4py_gpu_allreduce(comm, result)
        else:
            def allreduce(buffer):
                comm.Allreduce(MPI.IN_PLACE, buffer, MPI.SUM)
        make, fill, first = cupy_ops() if gpu else numpy_ops()
        t0 = time.perf_counter()
        mine = measure(allreduce, comm.Barrier, make, fill, first, world, sizes, cfg)
        all_times = comm.gather(mine, root=0)
        result["bench_s"] = time.perf_counter() - t0
        if comm.Get_rank() == 0:
            result["results"] = combine(all_times, sizes)
        result["status"] = "ok"
    except Exception as exc:
        traceback.print_exc()
        result.update(status="error", error=f"rank {comm.Get_rank()}: {type(exc).__name__}: {exc}")
        harness.emit(result)
        comm.Abort(1)
    result["shutdown_s"] = 0.0
    if comm.Get_rank() == 0:
        harness.emit(result)
    return 0


def torch_member(rank, world, store_path, sizes, cfg, queue):
    try:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)

        def fill(buffer, v):
            buffer.fill_(v)
        times = measure(lambda b: dist.all_reduce(b), dist.barrier,
                        lambda n: torch.empty(n, dtype=torch.float32), fill,
                        lambda b: (float(b[0]), float(b[-1])), world, sizes, cfg)
        dist.destroy_process_group()
        queue.put((rank, times, None))
    except Exception as exc:
        traceback.print_exc()
        queue.put((rank, None, f"{type(exc).__name__}: {exc}"))


def torch_child(world, sizes, cfg):
    import multiprocessing

    result = {RESULT_MARKER: True, "runtime": "torch", "config": cfg, "world": world}
    try:
        import torch

        result["version"] = torch.__version__
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            procs = [ctx.Process(target=torch_member, args=(r, world, os.path.join(tmp, "store"), sizes, cfg, queue))
                     for r in range(world)]
            for p in procs:
                p.start()
            got = [queue.get(timeout=CHILD_TIMEOUT_S) for _ in range(world)]
            result["bench_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for p in procs:
                p.join(30)
            result["shutdown_s"] = time.perf_counter() - t0
        errors = [e for _, _, e in got if e]
        if errors:
            raise RuntimeError("; ".join(errors))
        result["results"] = combine([t for _, t, _ in sorted(got, key=lambda g: g[0])], sizes)
        result["init_s"] = 0.0
        result["status"] = "ok"
    except Exception as exc:
        traceback.print_exc()
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
    harness.emit(result)
    return 0


def child_main(name, quick, world, sizes, gpu=False):
    cfg = QUICK if quick else FULL
    if name in ("mpirt", "ray"):
        return actors_child(name, world, sizes, cfg, gpu)
    if name in ("mpi4py", "nccl"):
        return mpi4py_child(world, sizes, cfg, gpu or name == "nccl", name)
    return torch_child(world, sizes, cfg)


# --------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------
def run_child(name, args, sizes, timeout):
    cmd = harness.child_command(__file__, name, args.quick) + [
        "--actors", str(args.actors), "--sizes", ",".join(str(s) for s in sizes)] + (["--gpu"] if args.gpu else [])
    env = harness.child_env()
    if name in ("mpi4py", "nccl"):
        mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        cmd = [mpirun, "-n", str(args.actors), "--oversubscribe", "--bind-to", "none"] + cmd
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run = harness.run_process(cmd, env, timeout, RESULT_MARKER)
    return harness.runtime_result(run, name, timeout, RESULT_MARKER)


def show(nbytes, seconds):
    """Latency in us for small sizes, algorithm bandwidth in GB/s for the others."""
    if seconds is None:
        return None
    return seconds * 1e6 if nbytes < LATENCY_BELOW else nbytes / seconds / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_round_arguments(parser, RUNTIMES, CHILD_TIMEOUT_S,
                                quick_help="sizes up to 16 MB, fewer calls, for smoke runs")
    parser.add_argument("--actors", type=int, default=2, help="members of the group (actors, ranks, processes)")
    parser.add_argument("--gpu", action="store_true", help="CuPy arrays on the members' GPUs; runtimes "
                                                            "mpirt, mpi4py and plain CuPy NCCL")
    parser.add_argument("--sizes", help="comma-separated sizes in bytes, K/M/G suffixes (default: "
                                        "1K,64K,1M,16M,256M,1G; --quick: up to 16M)")
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes) if args.sizes else (SIZES_QUICK if args.quick else SIZES_FULL)
    except (ValueError, KeyError) as exc:
        parser.error(str(exc))
    if args.runtime:
        return child_main(args.runtime, args.quick, args.actors, sizes, args.gpu)
    if args.gpu and args.runtimes == ",".join(RUNTIMES):
        args.runtimes = ",".join(GPU_RUNTIMES)
    names = harness.runtime_names(parser, args.runtimes, RUNTIMES + ("nccl",))
    if args.rounds < 1 or args.actors < 2:
        parser.error("--rounds must be at least 1 and --actors at least 2")
    runs = harness.interleaved_rounds(names, args.rounds, lambda n: run_child(n, args, sizes, args.timeout))
    keys = [key_of(s) for s in sizes]
    merged = {n: harness.merge_rounds(rs, keys) for n, rs in runs.items()}
    cfg = QUICK if args.quick else FULL

    def val(name, nbytes):
        return harness.value(merged.get(name), key_of(nbytes))

    print(f"Allreduce (SUM, float32, in place{', CuPy arrays in GPU memory' if args.gpu else ''}) among "
          f"{args.actors} members: median over {args.rounds} interleaved "
          f"round(s) of each run's median of {cfg['repeats']} repetitions (the slowest member's time per call)")
    print("latency in us (lower is better) under 1 MB, algorithm bandwidth in GB/s = bytes / time (higher is "
          "better) from 1 MB")
    print("ratios: speed of mpirt over the other (its time / mpirt's time; > 1: mpirt faster); "
          "'within 1.2x of mpi4py' means vs mpi4py >= 0.83x")
    others = [n for n in ("mpi4py", "ray", "torch", "nccl") if n in names and "mpirt" in names]
    header = ["size", "unit"] + [TITLES[n] for n in names] + [f"mpirt vs {n}" for n in others]
    rows, plot_rows = [header], []
    for nbytes in sizes:
        unit = "us" if nbytes < LATENCY_BELOW else "GB/s"
        row = [size_label(nbytes), unit] + [harness.fmt(show(nbytes, val(n, nbytes))) for n in names]
        for other in others:
            q = harness.ratio(val("mpirt", nbytes), val(other, nbytes), higher_is_better=False)
            row.append("n/a" if q is None else f"{q:.2f}x")
            plot_rows.append((f"{size_label(nbytes)} vs {other}", q))
        rows.append(row)
    harness.print_rows(rows, left=2)
    for name in names:
        harness.print_status(name, merged[name])
        harness.print_leftovers(name, merged[name])
        if merged[name].get("note"):
            print(f"{name}: {merged[name]['note']}")
    doc = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick, "config": cfg,
           "actors": args.actors, "gpu": args.gpu, "sizes": sizes, "rounds": args.rounds, "python": sys.version.split()[0],
           "iters": {key_of(s): iters_for(s, cfg) for s in sizes},
           "value": "seconds per allreduce call (median); lower is better",
           "runtimes": merged, "runs": runs}
    title = "GPU allreduce: mpirt vs mpi4py, CuPy NCCL" if args.gpu else "Allreduce: mpirt vs mpi4py, Ray gloo, torch gloo"
    harness.write_results("collective_bench_gpu" if args.gpu else "collective_bench", doc, lambda path: harness.save_ratio_plot(
        plot_rows, path, f"{title} ({args.actors} members)",
        xlabel="other's time / mpirt's time (> 1: mpirt faster; log scale)"))
    return 0 if all(r.get("status") in ("ok", "not installed") for r in merged.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
