"""What each rank offers and what the driver tells them all: resources, GPUs, the session's config.

Resources come from ``init()`` arguments, else ``MPIRT_*`` variables, else Slurm's; GPUs from the node
(``scheduler/gpus.py``); the driver's config (session id, ``sys.path``, working directory, runtime_env,
store size) travels to every rank at start-up.
"""
import itertools
import json
import os
import socket
import sys

from ..core import task_slots

_sessions = itertools.count(1)


def driver_config(log_to_driver, namespace, object_store_memory, runtime_env):
    return {
        "runtime_env": runtime_env,   # the job's, as runtime_env.resolve gives it
        "session": ((os.getpid() & 0x3FF) << 10 | (next(_sessions) & 0x3FF)) or 1,   # pid and init() count
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
        "driver_pid": os.getpid(),
        "log_to_driver": log_to_driver,
        "namespace": namespace,
        "object_store_memory": object_store_memory,
        # Node grouping for tests that make one machine play several nodes (store/arena.py).
        "ranks_per_node": int(os.environ.get("MPIRT_RANKS_PER_NODE", 0)) or None,
        "task_slots": task_slots.mode_from_environment(),   # multi-CPU ranks: slot processes or threads
        "spawned_rank_code": spawned_rank_code(),   # for the spawn start and the replacement rounds
    }


def spawned_rank_code():
    """The ``python -c`` program of a rank this job spawns: mpirt from the driver's own copy."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return f"import sys; sys.path.insert(0, {package_parent!r}); from mpirt.launch._spawned import main; main()"


def rank_info(gpu_ids, node_gpus):
    return {"hostname": socket.gethostname(), "gpu_ids": gpu_ids, "node_gpus": node_gpus}


def share_out(resources_by_rank, name, amount):
    """Deal whole units of a node-wide resource round-robin over the worker ranks.

    The head pools them again per node (scheduler/head.py), so a task may ask for all of them; the
    per-rank table only says what each rank brings to its node's pool."""
    workers = sorted(r for r in resources_by_rank if r >= 2)
    if not amount or not workers:
        return
    whole = int(amount)
    shares = [(workers[i % len(workers)], 1.0) for i in range(whole)]
    if amount - whole > 1e-9:
        shares.append((workers[0], amount - whole))
    for rank, share in shares:
        resources_by_rank[rank][name] = resources_by_rank[rank].get(name, 0.0) + share


def explicit_gpus(num_gpus):
    """GPUs per worker rank if the user said: init(), MPIRT_NUM_GPUS or Slurm's --gpus-per-task."""
    if num_gpus is not None:
        return num_gpus
    value = os.environ.get("MPIRT_NUM_GPUS") or os.environ.get("SLURM_GPUS_PER_TASK")
    return int(value) if value else None


def rank_resources(num_cpus, num_gpus, resources):
    """What this worker rank adds to its node's pool: init() arguments, else MPIRT_* (then Slurm)
    variables, else 1 CPU. Zero amounts are left out, as Ray leaves them out of its tables."""
    env = os.environ
    if num_cpus is None:
        num_cpus = float(env.get("MPIRT_NUM_CPUS") or env.get("SLURM_CPUS_PER_TASK") or 1)
    custom = resources if resources is not None else json.loads(env.get("MPIRT_RESOURCES", "{}"))
    own = {"CPU": float(num_cpus)} if float(num_cpus) else {}
    if num_gpus:
        own["GPU"] = float(num_gpus)
    own.update({k: float(v) for k, v in custom.items() if float(v)})
    return own

