"""Probe: are a dead worker's chunks of its node's object store given back?

    mpirun --with-ft ulfm --oversubscribe -n 4 python benchmarks/probes/dead_rank_chunks_probe.py

A worker stores four 8 MiB task results in the node's store and is SIGKILLed. The values stay readable
(same node: the node's lowest live rank adopts the dead rank's chunks, ``mpirt/store/manager.py``); then the
driver drops every ref. ``reserved`` falls to a spare chunk or so per live rank with 0 bytes used, and no
chunk stays with the dead rank. Before adoption (found by benchmarks/soak.py) about 20 MiB stayed reserved
for the rest of the job (2 MiB chunks of a 64 MiB store), more with each death.
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
    """The one node's figures, with the bytes of chunks no live rank holds."""
    stats = mpirt.object_store_stats()
    figures = next(iter(stats["nodes"].values()))
    figures["held_by_dead_ranks_bytes"] = figures["reserved_bytes"] - sum(r["reserved_bytes"] for r in stats["ranks"])
    return figures


refs = [big.remote(i) for i in range(4)]
victim = sorted({mpirt.get(r)[1] for r in refs})[0]
stats = node()
print("before the kill: reserved MiB", stats["reserved_bytes"] >> 20, "used MiB", stats["used_bytes"] >> 20)
os.kill(victim, 9)
time.sleep(2)
print("still readable", all(int(mpirt.get(r)[0][0]) == i for i, r in enumerate(refs)),
      "held by dead ranks MiB", node()["held_by_dead_ranks_bytes"] >> 20)
del refs
time.sleep(2)
stats = node()
print("after every ref is dropped: reserved MiB", stats["reserved_bytes"] >> 20, "used MiB", stats["used_bytes"] >> 20,
      "chunks in use", stats["chunks_in_use"], "of", stats["chunks"],
      "held by dead ranks MiB", stats["held_by_dead_ranks_bytes"] >> 20)
mpirt.shutdown()
