"""A task-slot process: runs tasks for its worker rank in an interpreter of its own (why and how: ``task_slots.py``).

A slot uses no MPI and has no runtime of its own: it runs the function, and everything the task asks of mpirt
(``get``, ``put``, ``wait``, ``.remote()`` of tasks and actor methods, ``get_actor``, ``kill``, ``cancel``,
``get_runtime_context()``, ...) is forwarded over the socket to the rank's thread that waits for this task, which
makes the call as the task itself would have made it there (so a blocked ``get`` gives the task's CPU back, children
are tracked for ``cancel(recursive=True)``, the context names the task). Arguments and ``get`` results that lie in the
node's store pool are read in place (``slot_wire``). Output goes line by line to the rank, which forwards it to the
driver under the task's name. ``cancel`` arrives as SIGINT: ``KeyboardInterrupt`` in the task's code, as in Ray; while
the task is inside a forwarded call the interrupt waits until the call returns.

Run as ``python -c "<block SIGINT>; from mpirt.core.slot_process import main; main()" <socket> <pool> <cell>``
(descriptors; ``task_slots.TaskSlots``).
"""
import collections
import functools
import mmap
import os
import signal
import struct
import sys
import threading
import time
from multiprocessing.connection import Connection

import numpy as np

import mpirt

from .. import actor, launch, remote_function, runtime_context
from ..actor import ActorClass, ActorHandle, _meta_of
from ..exceptions import ErrorPayload, TaskCancelledError
from ..remote_function import RemoteFunction
from ..runtime_context import RuntimeContext, _qualified
from . import current, invoke, log_forward, object_ref, slot_wire
from .codec import dumps, encode_plain, loads
from .log_forward import TextSink
from .object_ref import REF_CLASSES
from .runtime_env import _Applied, _put_in_place, _take_away


class _State:
    """What the SIGINT handler needs to know about the task running now."""

    task_id = None         # the task being run, or None between tasks
    sequence = 0           # its number among the tasks this slot ran (the rank numbers them)
    function = None        # its function
    in_user_code = False   # the task's own code (not a forwarded call, not this module's work)
    pending = False        # an interrupt arrived while it could not be raised


_state = _State()
_channel = None
_pool = None
_cancel_cell = None                 # 8 bytes shared with the rank: the number of the task it cancelled
_call_lock = threading.Lock()       # one forwarded call at a time (their replies share the pipe)
_sent_callables: dict = {}                # id -> RemoteFunction/ActorClass already sent to the rank (kept alive)


# -- forwarding mpirt calls to the rank --------------------------------------------------
def _persistent_id(obj):
    """Handles go to the rank as ids it resolves to its own objects (``task_slots``)."""
    kind = type(obj)
    if kind in REF_CLASSES:
        return ("R", obj.id)
    if kind is ActorHandle:
        return ("A", obj._actor_id)
    if kind is RemoteFunction or kind is ActorClass:
        key = id(obj)
        if key in _sent_callables:
            return ("F", key, None)
        _sent_callables[key] = obj
        return ("F", key, dumps(obj))
    return None


def _persistent_load(pid):
    if pid[0] == "R":
        return object_ref._arrive(pid[1])
    if pid[0] == "A":
        return ActorHandle(pid[1], _meta_of(pid[2]), False)   # untracked: the rank holds the counted one
    raise RuntimeError(f"mpirt task slot: unknown persistent id {pid!r}")


def call_rank(target, attrs, call, args=(), kwargs=None):
    """Evaluate ``target.attr1.attr2...(*args, **kwargs)`` on the rank, for the running task (``target``: an mpirt
    module's name, or an object): the value, or the exception the rank got raised here."""
    body, slices = slot_wire.dumps((target, attrs, call, args, kwargs or {}), _persistent_id, _pool)
    with _call_lock:
        was_user, _state.in_user_code = _state.in_user_code, False
        try:
            _channel.send(("call",), body, slices)
            head, slices, body = _channel.recv()
        finally:
            _state.in_user_code = was_user
    value = slot_wire.loads(body, slices, _persistent_load, _pool)
    if was_user and _state.pending:        # cancelled meanwhile: the task stops here
        _state.pending = False
        raise KeyboardInterrupt
    if head[0] == "raise":
        raise value.to_exception() if isinstance(value, ErrorPayload) else value
    return value


def _forwarding_function(module_name, name, original):
    @functools.wraps(original)
    def forwarded(*args, **kwargs):
        return call_rank(module_name, (name,), True, args, kwargs)

    return forwarded


# Module-level API functions a task may call, run on the rank instead.
FORWARDED_FUNCTIONS = {"mpirt.api": ("put", "get", "wait", "cancel", "cluster_resources", "available_resources",
                                     "object_store_stats", "get_gpu_ids", "nodes", "timeline"),
                       "mpirt.actor": ("get_actor", "kill", "list_named_actors"),
                       "mpirt.util.state": ("list_tasks", "list_actors", "list_objects", "list_nodes",
                                            "list_placement_groups", "summarize_tasks", "summarize_actors",
                                            "summarize_objects", "report"),
                       "mpirt.util.report": ("report",)}


def _submit_remote_function(self, args, kwargs, options):
    return call_rank(self, ("_submit",), True, (args, kwargs, options))


def _create_actor(self, args, kwargs, options):
    return call_rank(self, ("_create",), True, (args, kwargs, options))


def _submit_actor_method(self, args, kwargs, call_options):
    return call_rank(self._handle, (self._name, "_submit"), True, (args, kwargs, call_options))


def _not_here(what):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"mpirt: {what} is not available in a task running in a task-slot process "
                           "(MPIRT_TASK_SLOTS=thread runs tasks as threads of their worker rank)")

    return refuse


class SlotRuntimeContext:
    """``get_runtime_context()`` in a slot: every method and property is asked of the rank's context, on the
    thread that runs this task there (which never unpickles the function: its name is answered here)."""

    def get_task_function_name(self):
        return None if _state.function is None else _qualified(_state.function)

    def __repr__(self):
        return "RuntimeContext()"


def _build_context_proxy():
    for name, member in vars(RuntimeContext).items():
        if name.startswith("_") or name in vars(SlotRuntimeContext):
            continue
        if isinstance(member, property):
            setattr(SlotRuntimeContext, name,
                    property(lambda self, _n=name: call_rank("mpirt.runtime_context", ("_context", _n), False)))
        elif callable(member):
            def method(self, *args, _n=name, **kwargs):
                return call_rank("mpirt.runtime_context", ("_context", _n), True, args, kwargs)

            method.__name__ = name
            setattr(SlotRuntimeContext, name, method)
    return SlotRuntimeContext()


def install_forwarding():
    """Make mpirt's API in this process forward to the rank. Names bound elsewhere by ``from ... import``
    before now (``mpirt.get``, ``mpirt.util.wait``) are replaced too; later imports get the replacements."""
    # References made and dropped here are counted by the rank, not in this process: their events vanish.
    object_ref.ref_events = collections.deque(maxlen=0)
    actor.handle_events = collections.deque(maxlen=0)
    replaced = {}
    for module_name, names in FORWARDED_FUNCTIONS.items():
        module = sys.modules[module_name]
        for name in names:
            original = getattr(module, name)
            replaced[id(original)] = _forwarding_function(module_name, name, original)
    context = _build_context_proxy()

    def get_runtime_context():
        return context

    replaced[id(runtime_context.get_runtime_context)] = get_runtime_context
    replaced[id(launch.init)] = _ignore_init
    current.set_runtime(_RankRuntime())
    replaced[id(current.runtime_for_call)] = _not_here("this call")
    replaced[id(launch.shutdown)] = _not_here("shutdown()")
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "mpirt" or module_name.startswith("mpirt.")):
            continue
        for name, value in list(vars(module).items()):
            if id(value) in replaced and callable(value):
                setattr(module, name, replaced[id(value)])
    remote_function.RemoteFunction._submit = _submit_remote_function
    actor.ActorClass._create = _create_actor
    actor.ActorMethod._submit = _submit_actor_method
    assert mpirt.get is not None


class _RankRuntime:
    """``current.runtime()`` in a slot: an attribute (``.rank``, ``.config``) is read of the rank's (it must pickle)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return call_rank("mpirt.core.current", ("_runtime", name), False)


def _ignore_init(*args, ignore_reinit_error=False, **kwargs):
    """``init()`` inside a task: mpirt is running already (Ray's workers ignore it too)."""
    return None


# -- output ------------------------------------------------------------------------------
class _OutputStream(TextSink):
    """stdout/stderr of the slot: complete lines go to the rank, which prints them on the task's thread (so the
    driver shows them under the task's name)."""

    def __init__(self, name):
        self._name = name
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text):
        self.check(text)
        with self._lock:
            self._partial += text
            if "\n" not in text:
                return len(text)
            complete, _, self._partial = self._partial.rpartition("\n")
        _send_output(("out", self._name, complete + "\n"))
        return len(text)

    def flush(self):
        with self._lock:
            text, self._partial = self._partial, ""
        if text:
            _send_output(("out", self._name, text))


def _send_output(message):
    """Output goes to the rank or nowhere: a closed pipe means the rank is gone, and anyone to print for. Leave
    quietly then (an error here would go to this same stream: Python ends with a "lost sys.stderr" report)."""
    try:
        _channel.send(message)
    except OSError:
        os._exit(0)


# -- running tasks -----------------------------------------------------------------------
def _cancelled_sequence():
    """The number of the task the rank last cancelled here (``task_slots.SlotProcess.interrupt``)."""
    return struct.unpack_from("q", _cancel_cell, 0)[0]


def _on_sigint(signum, frame):
    """``cancel()`` of the running task: KeyboardInterrupt in its code, now or when the forwarded call it is in
    returns. The rank writes the cancelled task's number before it signals, so a signal meant for an earlier
    task is ignored, and one that came before this task started is seen when it starts."""
    if _state.task_id is None or _cancelled_sequence() != _state.sequence:
        return
    if _state.in_user_code:
        _state.pending = False
        raise KeyboardInterrupt
    _state.pending = True


def _run_task(head, slices, body, functions):
    (_, task_id, sequence, passed_on, name, function_id, function_blob, num_returns, retry_exceptions, environment,
     rank) = head
    _state.sequence = sequence
    _state.task_id = task_id
    _state.pending = _cancelled_sequence() == sequence
    applied = None
    try:
        try:
            if function_blob is not None:
                functions[function_id] = loads(function_blob)
            function = _state.function = functions[function_id]
            if passed_on:     # the submitter's own pickle (task_slots._plain_arguments)
                args, kwargs = loads(body) if body else ((), {})
            else:
                args, kwargs = slot_wire.loads(body, slices, _persistent_load, _pool)
            del body
            if environment is not None:
                applied = _Applied()
                _put_in_place(environment, applied)
            if _state.pending:
                raise KeyboardInterrupt
            _state.in_user_code = True
            try:
                result = function(*args, **kwargs)
            finally:
                _state.in_user_code = False
                if log_forward.open_bars:    # progress bars the task left open close with it
                    log_forward.call_ended()
            del args, kwargs
            values = invoke.split_returns(f"task {name}", result, num_returns)
            del result
            parts = []
            for i, value in enumerate(values):
                try:
                    inline = encode_plain(value)   # as the store encodes it
                    if inline is not None:
                        parts.append((True, inline, ()))
                    else:
                        parts.append((False, *slot_wire.dumps(value, _persistent_id, _pool)))
                except Exception as exc:
                    raise invoke.unserializable_return(i, f"task {name}", value, exc) from exc
        except BaseException as exc:  # noqa: B902 - the task's failure is its result
            if isinstance(exc, (KeyboardInterrupt, TaskCancelledError)):
                kind = "interrupt"
            elif isinstance(exc, SystemExit):
                kind = "exit"
            else:
                kind = "exception"
            blob = invoke.failure_blobs(exc, name, rank, 1)[0]
            sys.stdout.flush()
            sys.stderr.flush()
            retryable = kind == "exception" and invoke.matches_retry(retry_exceptions, exc)
            _channel.send(("error", kind, retryable, repr(exc.code) if kind == "exit" else None), blob)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        _channel.send(("done", [encoded for encoded, _, _ in parts], [len(body) for _, body, _ in parts],
                       [list(s) for _, _, s in parts]), b"".join(body for _, body, _ in parts))
    finally:
        if applied is not None:
            _take_away(applied)
        _state.task_id = None
        _state.function = None
        _state.pending = False


def _watch_parent(parent_pid):
    """End this process if its rank goes (a busy task would not see the pipe close)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def main():
    global _channel, _pool, _cancel_cell
    socket_fd, pool_fd, cell_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    _cancel_cell = mmap.mmap(cell_fd, 8, mmap.MAP_SHARED, mmap.PROT_READ)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="mpirt-slot-watch", daemon=True).start()
    _channel = slot_wire.Channel(Connection(socket_fd))
    if pool_fd >= 0:
        mapping = mmap.mmap(pool_fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        _pool = slot_wire.Pool(np.frombuffer(mapping, dtype=np.uint8))
    (_, sys_path, cwd), _, _ = _channel.recv()
    sys.path[:] = sys_path
    try:
        os.chdir(cwd)
    except OSError:
        pass
    install_forwarding()
    sys.stdout = _OutputStream("stdout")
    sys.stderr = _OutputStream("stderr")
    signal.signal(signal.SIGINT, _on_sigint)
    # SIGINT (a cancel) must reach the main thread, which runs the task: taken by another thread
    # it would not interrupt a blocking call there (``time.sleep``). The command line blocked it
    # before anything started a thread (numpy's BLAS starts some at import); threads started so
    # far keep it blocked, the main thread takes it from now on.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    functions = {}
    while True:
        try:
            head, slices, body = _channel.recv()
        except (EOFError, OSError):
            os._exit(0)
        if head[0] == "task":
            _run_task(head, slices, body, functions)
        elif head[0] == "stop":
            os._exit(0)
