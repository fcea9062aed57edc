"""What the current thread or coroutine is running: a task, an actor call, or nothing (the driver).

A leaf module (it imports nothing of mpirt), so the roles that set it (executor, actor host) and
the modules that read it (get/wait releasing a task's CPU, runtime_context, runtime_env, log
forwarding) need no import of the runtime for it.
"""
import contextvars
import threading


class _ThreadCall(threading.local):
    """What a thread runs (``invoke.enter`` sets it): the task (worker ranks, so get/wait know to release its
    CPU), or the actor and call, with the call's label and GPU count. The class attributes are what a thread
    that set nothing (the driver's) reads: a ``getattr`` with a default on a bare ``threading.local`` raises and
    catches AttributeError, which made these lookups ~7 % of the driver's time submitting tasks."""
    task = None
    actor = None
    call = None
    label = None
    num_gpus = 0.0
    environment_actor = None


task_context = _ThreadCall()
# The call a coroutine of an async actor runs for: (hosted actor, CallContext, label). An actor's coroutines
# share its loop's thread, so thread-local state would mix them up; each asyncio task has a context of its own.
async_call: contextvars.ContextVar = contextvars.ContextVar("mpirt_async_actor_call", default=None)


def running_actor_call():
    """(hosted actor, CallContext) of the actor call or constructor running here, async or not;
    (None, None) in a task or on the driver."""
    current = async_call.get()
    if current is not None:
        return current[0], current[1]
    return task_context.actor, task_context.call


def current_placement():
    """(group id, bundle index, capture child tasks) of the placement group the task or actor
    running here was placed in, or None (the driver, and work outside groups)."""
    current = async_call.get()
    placed = current[0] if current is not None else task_context.actor or task_context.task
    return None if placed is None else getattr(placed, "placement", None)
