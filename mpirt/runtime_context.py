"""``get_runtime_context()``: who is calling, as Ray's ``RuntimeContext`` tells it.

Ids are hex strings, as Ray's ``get_*_id()`` methods return them, but shaped by what mpirt has: the job is
the session (``init`` to ``shutdown``), a node is a group of ranks sharing a store (``nodes()[i]["NodeID"]``
is the same string), a worker is a rank, and tasks and actors have the ids ``ObjectRef``/``ActorHandle``
print. On the driver, task and actor methods return None, as in Ray.

What the executing task or actor call is comes from ``call_context.task_context`` (thread-local):

- ``task``: the ``executor.RunningTask`` of a task (its id, name, function, resource shape, ``cancelled``
  flag); None elsewhere.
- ``actor``: the hosted actor (``actor_host.HostedActor``) an actor method or constructor runs for: read
  here are ``actor_id``, ``name`` ("" if unnamed), ``restarts`` (times its constructor ran again), ``held``
  (resources it holds), ``class_name``, ``table`` (its methods) and ``concurrency_groups()``, from which
  ``current_actor`` makes a handle to it.
- ``call``: the actor call running (``call_id``, ``method``, ``cancelled``), None in the constructor.
- ``label``: the task or call name.
"""
from __future__ import annotations

from .actor import ActorHandle, _Meta
from .core import current
from .core.call_context import async_call, current_placement, running_actor_call, task_context
from .core.ids import hex_id, node_id_hex, worker_id_hex


def gpu_ids(rt):
    """``get_gpu_ids()`` of the task or actor running in this thread on ``rt``."""
    if not task_context.num_gpus:
        return []
    ids = rt.config["rank_info"][rt.rank]["gpu_ids"]
    return [int(i) if i.isdigit() else i for i in ids]


def _running(what):
    rt = current.runtime()
    if rt is None:
        raise RuntimeError(f"{what} is not available because Ray has not been initialized.")
    return rt


def _in_worker_only(method):
    return (f"RuntimeContext.{method}() is only available in a task or an actor (this process is the driver, "
            f"or this thread runs neither)")


class RuntimeContext:
    """The runtime context of the current driver, task or actor (Ray's class of this name)."""

    # -- the job, node and process -----------------------------------------
    def get_job_id(self):
        """The job id in hex: the same for the driver and everything it started."""
        return format(_running("Job ID").session, "08x")

    def get_node_id(self):
        """The id of the node this process runs on, in hex, as ``nodes()`` reports it."""
        rt = _running("Node ID")
        return node_id_hex(rt.session, rt.store.arena.node_of[rt.rank])

    def get_worker_id(self):
        """The id of this process (an MPI rank) in hex."""
        rt = _running("Worker ID")
        return worker_id_hex(rt.session, rt.rank)

    def get_session_name(self):
        """A name for this session, the same in every process of it."""
        return f"session_mpirt_{_running('Session name').session:08x}"

    def get_node_labels(self):
        """Labels of this node: only Ray's built-in one, its id."""
        return {"ray.io/node-id": self.get_node_id()}

    @property
    def namespace(self):
        """The job's namespace (``init(namespace=)``; ``"default"`` when none was given)."""
        return _running("Namespace").config.get("namespace") or "default"

    @property
    def gcs_address(self):
        raise NotImplementedError("mpirt has no GCS (its ranks talk over MPI): there is no gcs_address")

    # -- the task or actor call running on this thread ------------------------
    def get_task_id(self):
        """The id of the running task or actor call in hex; None on the driver."""
        task = task_context.task
        if task is not None:
            return hex_id(task.task_id)
        _, call = running_actor_call()
        return None if call is None else hex_id(call.call_id)

    def get_task_name(self):
        """The running task's name (its ``name`` option, else the function's name; ``Class.method`` for an
        actor call); None on the driver."""
        current = async_call.get()
        if current is not None:
            return current[2]
        if task_context.task is None and task_context.actor is None:
            return None
        return task_context.label

    def get_task_function_name(self):
        """``module.function`` of the running task (``module.Class.method`` for an actor call)."""
        task = task_context.task
        if task is not None:
            return None if task.function is None else _qualified(task.function)
        actor, call = running_actor_call()
        if actor is None:
            return None
        method = getattr(call, "method", None) or "__init__"
        return f"{_qualified(actor.cls)}.{method}"

    def get_assigned_resources(self):
        """What the running task or actor holds: ``{"CPU": 1.0}`` for a default task, ``{}`` for a default
        actor (it holds no CPU while it lives)."""
        task = task_context.task
        if task is not None:
            return dict(task.shape)
        actor, _ = running_actor_call()
        if actor is not None:
            return dict(getattr(actor, "held", None) or {})
        raise AssertionError(_in_worker_only("get_assigned_resources"))

    def get_accelerator_ids(self):
        """``{"GPU": [ids]}``: the GPUs of the running task or actor, as strings (none on the driver)."""
        return {"GPU": [str(i) for i in gpu_ids(_running("Accelerator ids"))]}

    def get_resource_ids(self):
        """Ray's older name of ``get_accelerator_ids``."""
        return self.get_accelerator_ids()

    def get_placement_group_id(self):
        """The hex id of the placement group the running task or actor was placed in; None on
        the driver and outside groups."""
        placement = current_placement()
        return None if placement is None else format(placement[0], "036x")

    def is_canceled(self):
        """Whether ``cancel()`` was called on the running task or actor call."""
        task = task_context.task
        if task is not None:
            return task.cancelled
        if async_call.get() is not None:
            raise RuntimeError("This method is not supported in an async actor.")   # Ray's words
        _, call = running_actor_call()
        if call is not None:
            return bool(getattr(call, "cancelled", False))
        raise RuntimeError(_in_worker_only("is_canceled"))

    # -- the actor ------------------------------------------------------------
    def get_actor_id(self):
        """The id of the actor this runs in, in hex; None in a task or on the driver."""
        actor, _ = running_actor_call()
        return None if actor is None else hex_id(actor.actor_id)

    def get_actor_name(self):
        """The actor's name ("" for an unnamed actor); None in a task or on the driver."""
        actor, _ = running_actor_call()
        return None if actor is None else getattr(actor, "name", None) or ""

    @property
    def was_current_actor_reconstructed(self):
        """Whether this actor's constructor has run more than once (it was restarted)."""
        actor, _ = running_actor_call()
        if actor is None:
            raise AssertionError("was_current_actor_reconstructed is only available in an actor")
        return getattr(actor, "restarts", 0) != 0

    @property
    def current_actor(self):
        """A handle to the actor this runs in."""
        actor, _ = running_actor_call()
        if actor is None:
            raise RuntimeError("This method is only available in an actor.")
        # Not counted as a reference: the actor lives on its callers' handles.
        return ActorHandle(actor.actor_id, _Meta(actor.class_name, actor.table, actor.concurrency_groups(), -1),
                           False)

    def __repr__(self):
        return "RuntimeContext()"


def _qualified(obj):
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    return f"{module}.{name}" if module else name


_context = RuntimeContext()


def get_runtime_context() -> RuntimeContext:
    """The runtime context of the calling driver, task or actor (``RuntimeContext``)."""
    return _context
