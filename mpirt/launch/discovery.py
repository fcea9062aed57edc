"""What each rank offers and what the driver tells them all: resources, GPUs, the session's config.

Resources come from ``init()`` arguments, else ``MPIRT_*`` variables, else Slurm's; GPUs from the
node (``scheduler/gpus.py``); the driver's config (session id, ``sys.path``, working directory,
runtime_env, store size) travels to every rank at start-up.
"""
import itertools
import json
import os
import socket
import sys

from ..core import task_slots

_sessions = itertools.count(1)


def next_session_id():
    return ((os.getpid() & 0x3FF) << 10 | (next(_sessions) & 0x3FF)) or 1


def driver_config(log_to_driver, namespace, object_store_memory, runtime_env):
    return {
        "runtime_env": runtime_env,   # the job's, as runtime_env.resolve gives it
        "session": next_session_id(),
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
        "driver_pid": os.getpid(),
        "log_to_driver": log_to_driver,
        "namespace": namespace,
        "object_store_memory": object_store_memory,
        # Node grouping for tests that make one machine play several nodes (store/arena.py).
        "ranks_per_node": int(os.environ.get("MPIRT_RANKS_PER_NODE", 0)) or None,
        # How multi-CPU worker ranks run tasks: slot processes or threads (task_slots.py).
        "task_slots": task_slots.mode_from_environment(),
        # What a spawned rank runs (``python -c`` and this): the spawn start's and the replacement rounds'.
        "spawned_rank_code": spawned_rank_code(),
    }


def spawned_rank_code():
    """The ``python -c`` program of a rank this job spawns: mpirt from the driver's own copy."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return f"import sys; sys.path.insert(0, {package_parent!r}); from mpirt.launch._spawned import main; main()"


def rank_info(gpu_ids, node_gpus):
    return {"hostname": socket.gethostname(), "gpu_ids": gpu_ids, "node_gpus": node_gpus}


def share_out(resources_by_rank, name, amount):
    """Deal whole units of a node-wide resource round-robin over the worker ranks.

    The head pools them again per node (scheduler/head.py), so a task may ask for all of
    them; the per-rank table only says what each rank brings to its node's pool."""
    workers = sorted(r for r in resources_by_rank if r >= 2)
    if not amount or not workers:
        return
    whole = int(amount)
    for i in range(whole):
        rank = workers[i % len(workers)]
        resources_by_rank[rank][name] = resources_by_rank[rank].get(name, 0.0) + 1.0
    if amount - whole > 1e-9:
        rank = workers[0]
        resources_by_rank[rank][name] = resources_by_rank[rank].get(name, 0.0) + (amount - whole)


def explicit_gpus(num_gpus):
    """GPUs per worker rank if the user said: init(), MPIRT_NUM_GPUS or Slurm's --gpus-per-task."""
    if num_gpus is not None:
        return num_gpus
    for variable in ("MPIRT_NUM_GPUS", "SLURM_GPUS_PER_TASK"):
        if os.environ.get(variable):
            return int(os.environ[variable])
    return None


def rank_resources(num_cpus, num_gpus, resources):
    """What this worker rank adds to its node's pool: init() arguments, else MPIRT_* (then Slurm)
    variables, else 1 CPU. Zero amounts are left out, as Ray leaves them out of its tables."""
    env = os.environ
    cpus = num_cpus
    if cpus is None:
        cpus = float(env.get("MPIRT_NUM_CPUS") or env.get("SLURM_CPUS_PER_TASK") or 1)
    custom = resources if resources is not None else json.loads(env.get("MPIRT_RESOURCES", "{}"))
    own = {"CPU": float(cpus)} if float(cpus) else {}
    if num_gpus:
        own["GPU"] = float(num_gpus)
    own.update({k: float(v) for k, v in custom.items() if float(v)})
    return own

