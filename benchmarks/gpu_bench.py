"""GPU objects between two ranks on one node: CUDA IPC vs staged vs a plain device copy.

For each size (default 1 MB, 256 MB, 2 GB; MB = 2**20 bytes) an actor on one worker
rank returns a CuPy array of that size (sealed in its GPU memory by mpirt's store); an
actor on the other worker rank reads it with ``mpirt.get`` several times and times each
read until the array is on its device:

- ``ipc``: the default on one node, a device-to-device copy from the holder's memory
  through a CUDA IPC handle;
- ``staged``: the path used between nodes when MPI is not CUDA-aware (forced here on one
  node): the holder copies to pinned host memory, MPI moves it, the reader copies to its GPU;
- ``d2d``: a plain device-to-device copy of the same size inside one process, the bound.

GB/s = 10**9 bytes per second, medians over the reads (the first read, which also asks
the object's owner where it lives, is not counted). Ray is not compared: the GPU machine
has no Ray, and Ray moves CuPy arrays through pickled host memory.

Run on a GPU node (both worker ranks share the GPU when the node has one):
    mpirun -n 4 python benchmarks/gpu_bench.py [--sizes 1MB,256MB,2GB] [--out DIR]
Results: a table on stdout, DIR/gpu_bench.json and (with matplotlib) DIR/gpu_bench.png.
"""
import argparse
import json
import os
import statistics
import sys
import time

import mpirt

HERE = os.path.dirname(os.path.abspath(__file__))
REPEATS = {1 << 20: 50, 256 << 20: 10, 2 << 30: 4}


@mpirt.remote(num_gpus=1)
class Endpoint:
    def make(self, nbytes):
        import cupy as cp

        return cp.ones(nbytes, dtype=cp.uint8)

    def read(self, boxed_ref, path, repeats):
        """Seconds per ``mpirt.get`` of ``boxed_ref[0]`` over ``path`` (ipc or staged)."""
        import cupy as cp
        from mpirt.core.current import runtime as current_runtime

        current_runtime().store.device.ipc_enabled = path == "ipc"
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            array = mpirt.get(boxed_ref[0])
            cp.cuda.get_current_stream().synchronize()
            times.append(time.perf_counter() - t0)
            assert array.nbytes == boxed_ref[1]
            del array
        current_runtime().store.device.ipc_enabled = True
        return times[1:]

    def device_copy(self, nbytes, repeats):
        import cupy as cp

        source, target = cp.ones(nbytes, dtype=cp.uint8), cp.empty(nbytes, dtype=cp.uint8)
        stream = cp.cuda.get_current_stream()
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            cp.cuda.runtime.memcpyAsync(target.data.ptr, source.data.ptr, nbytes,
                                        cp.cuda.runtime.memcpyDeviceToDevice, stream.ptr)
            stream.synchronize()
            times.append(time.perf_counter() - t0)
        return times[1:]

    def where(self):
        return os.getpid(), mpirt.get_gpu_ids()


def parse_size(text):
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    text = text.strip().upper()
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def label(nbytes):
    return f"{nbytes >> 30} GB" if nbytes >= 1 << 30 else f"{nbytes >> 20} MB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1MB,256MB,2GB")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]

    mpirt.init(num_gpus=1)
    holder, reader = Endpoint.remote(), Endpoint.remote()
    (holder_pid, _), (reader_pid, _) = mpirt.get([holder.where.remote(), reader.where.remote()])
    assert holder_pid != reader_pid, "the two actors must run on different ranks"
    rows = []
    for nbytes in sizes:
        repeats = REPEATS.get(nbytes, 5)
        ref = holder.make.remote(nbytes)
        mpirt.wait([ref])
        row = {"bytes": nbytes}
        for path in ("ipc", "staged"):
            row[path + "_s"] = statistics.median(mpirt.get(reader.read.remote([ref, nbytes], path, repeats)))
        row["d2d_s"] = statistics.median(mpirt.get(holder.device_copy.remote(nbytes, repeats)))
        for path in ("ipc", "staged", "d2d"):
            row[path + "_gbps"] = nbytes / row[path + "_s"] / 1e9
        rows.append(row)
        del ref
    mpirt.shutdown()

    print(f"\nGPU objects between two ranks on one node ({_device_name()}), GB/s (median)")
    print(f"{'size':>8} {'ipc':>10} {'staged':>10} {'d2d copy':>10} {'ipc/staged':>11} {'ipc/d2d':>8}")
    for row in rows:
        print(f"{label(row['bytes']):>8} {row['ipc_gbps']:>10.1f} {row['staged_gbps']:>10.2f} {row['d2d_gbps']:>10.1f} "
              f"{row['ipc_gbps'] / row['staged_gbps']:>10.1f}x {row['ipc_gbps'] / row['d2d_gbps']:>7.2f}")
    os.makedirs(args.out, exist_ok=True)
    doc = {"benchmark": "gpu_bench", "device": _device_name(), "rows": rows,
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump(doc, f, indent=1)
    _plot(rows, os.path.join(args.out, "gpu_bench.png"))


def _device_name():
    try:
        import cupy as cp

        name = cp.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return "unknown GPU"


def _plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    for i, (path_name, title) in enumerate((("ipc", "CUDA IPC"), ("staged", "staged (pinned host + MPI)"),
                                            ("d2d", "device copy, one process"))):
        ax.bar([j + (i - 1) * width for j in range(len(rows))], [r[path_name + "_gbps"] for r in rows], width,
               label=title)
    ax.set_xticks(range(len(rows)), [label(r["bytes"]) for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("GB/s")
    ax.set_title(f"mpirt GPU object transfer, two ranks on one node ({_device_name()})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
