"""Store soak: rounds of put / get / drop of random sizes from every rank of one node.

Every worker rank (one task each) and the driver run ``--rounds`` rounds: put an array of a
log-uniform random size between ``--min-bytes`` and ``--max-bytes`` (default 1 KB - 500 MB),
get it back on the same rank, check its first and last byte, drop both. Meanwhile the driver
samples ``object_store_stats()`` every ``--sample`` seconds. Printed at the end: bytes put,
peak bytes in use by objects and peak bytes reserved in chunks (both must stay bounded: freed
objects must come back), fragmentation (reserved but unused / reserved) at the peak and on
average, objects spilled, and what is left in use after the rounds (must be 0: nothing leaks).

Run:  python benchmarks/store_soak.py                       (16 ranks: driver, scheduler, 14 workers)
      python benchmarks/store_soak.py --workers 2 --rounds 20 --max-bytes 20000000   (short)
The last stdout line is the result as JSON (``store_soak_result ...``).
"""
import argparse
import json
import math
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import mpirt  # noqa: E402

MARKER = "store_soak_result"


def rounds_on_this_rank(seed, rounds, min_bytes, max_bytes):
    """The soak loop one rank runs; (bytes put, largest object)."""
    rng = random.Random(seed)
    put_bytes, largest = 0, 0
    for i in range(rounds):
        size = int(math.exp(rng.uniform(math.log(min_bytes), math.log(max_bytes))))
        array = np.empty(size, dtype=np.uint8)    # untouched pages cost no memory; the put copies them
        stamp = (seed + i) % 251
        array[0] = array[-1] = stamp
        ref = mpirt.put(array)
        del array
        value = mpirt.get(ref)
        if int(value[0]) != stamp or int(value[-1]) != stamp or value.nbytes != size:
            raise AssertionError(f"round {i}: read back a wrong value of {size} bytes")
        del value, ref
        put_bytes += size
        largest = max(largest, size)
    return put_bytes, largest


@mpirt.remote
def soak_task(seed, rounds, min_bytes, max_bytes):
    return rounds_on_this_rank(seed, rounds, min_bytes, max_bytes)


def node_stats():
    return next(iter(mpirt.object_store_stats()["nodes"].values()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--min-bytes", type=int, default=1000)
    parser.add_argument("--max-bytes", type=int, default=500 * 10**6)
    parser.add_argument("--sample", type=float, default=0.25)
    parser.add_argument("--object-store-memory", type=int, default=None)
    args = parser.parse_args()
    mpirt.init(num_cpus=args.workers, object_store_memory=args.object_store_memory)
    capacity = node_stats()["capacity_bytes"]
    samples, done = [], threading.Event()

    def sample():
        while not done.wait(args.sample):
            stats = node_stats()
            samples.append((stats["used_bytes"], stats["reserved_bytes"], stats["spilled_objects"]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    refs = [soak_task.remote(1000 + w, args.rounds, args.min_bytes, args.max_bytes) for w in range(args.workers)]
    mine = rounds_on_this_rank(1, args.rounds, args.min_bytes, args.max_bytes)
    results = mpirt.get(refs) + [mine]
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    time.sleep(0.5)                                   # last frees travel to their holders
    end = node_stats()
    peak_used = max((s[0] for s in samples), default=0)
    peak_reserved = max((s[1] for s in samples), default=0)
    at_peak = max(samples, key=lambda s: s[1]) if samples else (0, 0, 0)
    fragments = [1 - used / reserved for used, reserved, _ in samples if reserved]
    result = {
        "ranks": args.workers + 1, "rounds_per_rank": args.rounds, "seconds": round(seconds, 1),
        "put_bytes": sum(r[0] for r in results), "largest_object": max(r[1] for r in results),
        "capacity_bytes": capacity, "peak_used_bytes": peak_used, "peak_reserved_bytes": peak_reserved,
        "fragmentation_at_peak": round(1 - at_peak[0] / at_peak[1], 3) if at_peak[1] else 0.0,
        "fragmentation_mean": round(sum(fragments) / len(fragments), 3) if fragments else 0.0,
        "spilled_objects": end["spilled_objects"], "samples": len(samples),
        "used_bytes_after": end["used_bytes"], "reserved_bytes_after": end["reserved_bytes"],
        "chunks_in_use_after": end["chunks_in_use"],
    }
    mpirt.shutdown()
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:,}" if isinstance(value, int) else f"{key:<{width}}  {value}")
    print(MARKER, json.dumps(result))


if __name__ == "__main__":
    main()
