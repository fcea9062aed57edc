"""mpirt: Ray's programming model on MPI. ``import mpirt as ray`` and go.

Run ``python app.py`` (mpirt spawns its ranks) or ``mpirun -n N python app.py``
(rank 0 runs your program, rank 1 schedules, the rest are workers).
"""
import importlib
import sys

import cloudpickle

from . import _library_names, actor, exceptions, runtime_context, runtime_env, util
from .actor import get_actor, kill, method
from .api import (available_resources, cancel, cluster_resources, get, get_gpu_ids, nodes, object_store_stats, put,
                  remote, timeline, wait)
from .core.current import is_initialized
from .core.object_ref import ObjectRef
from .core.streams import DynamicObjectRefGenerator, ObjectRefGenerator
from .launch import init, shutdown
from .runtime_context import get_runtime_context

# Ray's ``ray.cloudpickle`` is the cloudpickle that pickles functions and ObjectRefs for it;
# mpirt's is the cloudpickle package itself (``import mpirt.cloudpickle`` works too).
sys.modules[__name__ + ".cloudpickle"] = cloudpickle

__version__ = "0.1.0"

# The libraries under Ray's names, imported on first use (they pull in h5py, torch, gymnasium): a training
# function that says ``ray.train.get_context()`` then works on a worker that never imported ``ray.train``;
# ``import mpirt.tune`` works too.
_library_names.install()
_LIBRARIES = _library_names.LIBRARIES


def __getattr__(name):
    if name in _LIBRARIES:
        return importlib.import_module(_LIBRARIES[name])
    raise AttributeError(f"module 'mpirt' has no attribute {name!r}")

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel",
    "cluster_resources", "available_resources", "ObjectRef", "exceptions", "actor", "util",
    "get_actor", "kill", "method", "object_store_stats", "get_gpu_ids", "nodes", "timeline", "get_runtime_context",
    "runtime_context", "runtime_env", "cloudpickle", "ObjectRefGenerator", "DynamicObjectRefGenerator",
]
