"""mpirt: Ray's programming model on MPI. ``import mpirt as ray`` and go.

Run ``python app.py`` (mpirt spawns its ranks) or ``mpirun -n N python app.py``
(rank 0 runs your program, rank 1 schedules, the rest are workers).
"""
from . import actor, exceptions, util
from .actor import get_actor, kill, method
from .api import (available_resources, cancel, cluster_resources, get, get_gpu_ids, nodes, object_store_stats, put,
                  remote, timeline, wait)
from .launch import init, is_initialized, shutdown
from .object_ref import ObjectRef

__version__ = "0.1.0"

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel",
    "cluster_resources", "available_resources", "ObjectRef", "exceptions", "actor", "util",
    "get_actor", "kill", "method", "object_store_stats", "get_gpu_ids", "nodes", "timeline",
]
