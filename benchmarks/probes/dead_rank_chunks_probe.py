"""Probe: are a dead worker's chunks of its node's object store given back?

    mpirun --with-ft ulfm --oversubscribe -n 4 python benchmarks/probes/dead_rank_chunks_probe.py

A worker stores four 8 MiB task results in the node's store and is SIGKILLed. The values stay readable
(same node, as designed); then the driver drops every ref. If the dead rank's chunks were reclaimed,
``reserved`` would fall to a chunk or so per live rank with 0 bytes used; found by benchmarks/soak.py: about
20 MiB stay reserved for the rest of the job (2 MiB chunks of a 64 MiB store), more with each death.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import numpy as np  # noqa: E402

import mpirt  # noqa: E402

mpirt.init(object_store_memory=64 << 20)


@mpirt.remote
def big(i):
    return np.full(1 << 20, i), os.getpid()      # 8 MiB, stored by the worker that ran it


def node():
    return next(iter(mpirt.object_store_stats()["nodes"].values()))


refs = [big.remote(i) for i in range(4)]
victim = sorted({mpirt.get(r)[1] for r in refs})[0]
print("before the kill: reserved MiB", node()["reserved_bytes"] >> 20, "used MiB", node()["used_bytes"] >> 20)
os.kill(victim, 9)
time.sleep(2)
print("still readable", all(int(mpirt.get(r)[0][0]) == i for i, r in enumerate(refs)))
del refs
time.sleep(2)
stats = node()
print("after every ref is dropped: reserved MiB", stats["reserved_bytes"] >> 20, "used MiB", stats["used_bytes"] >> 20,
      "chunks in use", stats["chunks_in_use"], "of", stats["chunks"])
mpirt.shutdown()
