"""What the current thread or coroutine is running: a task, an actor call, or nothing (the driver).

A leaf module (it imports nothing of mpirt), so the roles that set it (executor, actor host) and
the modules that read it (get/wait releasing a task's CPU, runtime_context, runtime_env, log
forwarding) need no import of the runtime for it.
"""
import contextvars
import threading

# The task a thread is running (worker ranks), so get/wait know to release its CPU.
task_context = threading.local()
# The call a coroutine of an async actor runs for: (hosted actor, CallContext, label). An actor's coroutines
# share its loop's thread, so thread-local state would mix them up; each asyncio task has a context of its own.
async_call: contextvars.ContextVar = contextvars.ContextVar("mpirt_async_actor_call", default=None)


def running_actor_call():
    """(hosted actor, CallContext) of the actor call or constructor running here, async or not;
    (None, None) in a task or on the driver."""
    current = async_call.get()
    if current is not None:
        return current[0], current[1]
    return getattr(task_context, "actor", None), getattr(task_context, "call", None)


def current_placement():
    """(group id, bundle index, capture child tasks) of the placement group the task or actor
    running here was placed in, or None (the driver, and work outside groups)."""
    current = async_call.get()
    placed = current[0] if current is not None else getattr(task_context, "actor", None) or getattr(
        task_context, "task", None)     # (every task submitted from the driver asks: no call in between)
    return None if placed is None else getattr(placed, "placement", None)
