"""Task slots as processes: how a worker rank with N CPUs runs N Python tasks at once.

A rank runs each task on a thread of its own (``executor.py``). Threads share one
interpreter lock, so on a rank offering 4 CPUs (``--cpus-per-task=4``, ``MPIRT_NUM_CPUS=4``)
four pure-Python tasks took as long as on one CPU. Here such a rank hands each task to a
*slot process*: a plain Python interpreter started with ``subprocess`` (never a fork of the
threaded MPI process), using no MPI, fed over a Unix socket (``slot_wire``), reading large
arguments in place from the node's store pool (it maps the pool file through a descriptor
the rank passes it). Why this and not more MPI ranks or free-threaded CPython: see
``docs/design.md`` ("Task slots").

The rank's task thread stays in charge of the task: it resolves the arguments, sends them,
and serves the slot's requests until the result comes back. Everything the task asks of
mpirt is made there, on that thread, as if the task ran on it (``slot_process`` forwards
the calls): a blocked ``get`` gives the task's CPU back, nested tasks count as its children,
``get_runtime_context()`` names it, its ``runtime_env`` is in place in the slot while it
runs. Results are encoded into the store by the rank (copied once from the socket).

``MPIRT_TASK_SLOTS`` (read by the driver): ``auto`` (default) runs tasks in slot processes on
ranks offering more than one CPU and as threads on 1-CPU ranks (no process hop: one task at a
time runs there anyway); ``process`` uses slot processes on every worker rank; ``thread``
never. Actors always run in their rank's process (a Ray actor is one process too).
"""
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from . import slot_wire
from .exceptions import ErrorPayload, TaskCancelledError, WorkerCrashedError
from .object_ref import ObjectRef
from .serialization import dumps

MODES = ("auto", "process", "thread")
# Variables a slot process must not see: they would make MPI code in a task believe it is a
# rank of this job.
_LAUNCHER_PREFIXES = ("OMPI_", "PMIX_", "PRTE_", "PMI_", "OPAL_", "MPI_LOCAL")


def mode_from_environment():
    """``MPIRT_TASK_SLOTS`` as the driver reads it (ValueError for an unknown value)."""
    mode = os.environ.get("MPIRT_TASK_SLOTS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"MPIRT_TASK_SLOTS={mode!r}: use one of {', '.join(MODES)}")
    return mode


def uses_processes(mode, cpus):
    """Whether a worker rank offering ``cpus`` CPUs runs its tasks in slot processes."""
    return mode == "process" or (mode == "auto" and cpus > 1)


def describe(mode, resources_by_rank, worker_ranks):
    """The start-up line: how many tasks each worker rank really runs at once, or None when
    every rank has one CPU and runs tasks as threads (the default, nothing to say)."""
    by_cpus = {}
    for rank in worker_ranks:
        cpus = resources_by_rank[rank].get("CPU", 0.0)
        by_cpus.setdefault(cpus, []).append(rank)
    if all(cpus <= 1 for cpus in by_cpus) and mode != "process":
        return None
    parts = []
    for cpus, ranks in sorted(by_cpus.items()):
        what = f"{len(ranks)} worker rank{'s' if len(ranks) > 1 else ''} x {cpus:g} CPU{'s' if cpus != 1 else ''}"
        if uses_processes(mode, cpus):
            parts.append(f"{what}: {cpus:g} task slot{'s' if cpus != 1 else ''} each, as processes")
        else:
            parts.append(f"{what}: tasks run as threads of the rank (one interpreter lock: pure-Python tasks "
                         "use about one CPU per rank)")
    return f"mpirt: {'; '.join(parts)} (MPIRT_TASK_SLOTS={mode})"


class SlotProcess:
    """One slot process and the rank's end of its socket."""

    def __init__(self, popen, channel):
        self.popen = popen
        self.pid = popen.pid
        self.channel = channel
        self.functions = set()   # function ids it has unpickled already
        self.callables = {}      # its remote functions and actor classes, by the key it sent them under
        self.alive = True

    def interrupt(self):
        """``cancel()`` of the task it runs: SIGINT, which it raises as KeyboardInterrupt."""
        try:
            os.kill(self.pid, signal.SIGINT)
        except OSError:
            pass

    def stop(self):
        self.alive = False
        try:
            self.channel.send(("stop",))
        except OSError:
            pass
        self.channel.close()
        try:
            self.popen.wait(timeout=0)
        except subprocess.TimeoutExpired:
            threading.Thread(target=self.popen.wait, daemon=True).start()   # reap it when it exits


class TaskSlots:
    """The slot processes of one worker rank, and running a task in one of them.

    Processes start when a task needs one and none is idle (0.2-0.4 s each, once); up to
    ``cpus`` idle ones are kept. A task blocked in ``get`` keeps its slot process while its
    CPU goes back to the head, so a rank may run more slots than CPUs for a while."""

    def __init__(self, executor, cpus):
        self.executor = executor
        self.rt = executor.rt
        self.keep_idle = max(1, int(cpus))
        self._idle = []
        self._lock = threading.Lock()
        arena = getattr(self.rt.store, "arena", None)
        memory = getattr(arena, "memory", None)
        self.pool = slot_wire.Pool(memory) if memory is not None else None
        self.pool_fd = arena._fd if self.pool is not None else -1
        self.environ = {name: value for name, value in os.environ.items() if not name.startswith(_LAUNCHER_PREFIXES)}
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
                      "from mpirt.slot_process import main; main()")

    # -- processes ------------------------------------------------------------------
    def _start(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = (theirs.fileno(),) + ((self.pool_fd,) if self.pool_fd >= 0 else ())
        try:
            popen = subprocess.Popen([sys.executable, "-c", self._code, str(theirs.fileno()), str(self.pool_fd)],
                                     pass_fds=fds, env=self.environ, stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        channel = slot_wire.Channel(Connection(ours.detach()))
        channel.send(("hello", list(sys.path), os.getcwd()))
        return SlotProcess(popen, channel)

    def _acquire(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._start()

    def _release(self, process):
        if process.alive:
            with self._lock:
                if len(self._idle) < self.keep_idle:
                    self._idle.append(process)
                    return
        process.stop()

    def stop(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for process in idle:
            process.stop()

    # -- running a task (on the rank's task thread) -----------------------------------
    def run(self, task):
        """Run ``task`` in a slot process: ``(blobs, is_error, retryable)``."""
        from .executor import as_task_failure, error_blobs, matches_retry, resolve_arguments

        rt = self.rt
        task_id, function_id, _, name, args_blob, inlined, return_ids, retry_exceptions, _, environment = task.spec
        num_returns = len(return_ids)
        held = {}      # handles the slot has seen, by persistent id: it refers to them by id
        kept = []      # values it may view in place (store views stay pinned while kept)
        try:
            args, kwargs = resolve_arguments(rt, args_blob, inlined)
            function_blob = self.executor.function_blob(function_id)
            kept.append((args, kwargs))
            body, slices = slot_wire.dumps((args, kwargs), self._outgoing(held), self.pool)
            del args, kwargs
        except BaseException as exc:  # noqa: B902 - the task's failure is its result
            return error_blobs(as_task_failure(exc, name, rt.rank), num_returns), True, matches_retry(
                retry_exceptions, exc)
        process = self._acquire()
        try:
            with rt.lock:
                if task.cancelled:
                    return self._cancelled(name, num_returns)
                task.slot_process = process
            head = ("task", task_id, name, function_id, None if function_id in process.functions else function_blob,
                    num_returns, retry_exceptions, environment, rt.rank)
            process.functions.add(function_id)
            process.channel.send(head, body, slices)
            del body
            return self._serve(task, process, held, kept, name, num_returns)
        except (EOFError, OSError):
            process.alive = False
            status = process.popen.poll()
            if status is None:
                process.popen.kill()
                status = process.popen.wait()
            return error_blobs(WorkerCrashedError(
                f"task {name}: its slot process (pid {process.pid}) died (exit status {status}), and the task has no "
                "retries left (max_retries)"), num_returns), True, True
        finally:
            with rt.lock:
                task.slot_process = None
            self._release(process)

    def _serve(self, task, process, held, kept, name, num_returns):
        from .executor import as_task_failure, encode_returns, error_blobs

        rt = self.rt
        incoming = self._incoming(held, process)
        channel = process.channel
        while True:
            head, slices, body = channel.recv()
            kind = head[0]
            if kind == "out":
                (sys.stdout if head[1] == "stdout" else sys.stderr).write(head[2])
            elif kind == "call":
                channel.send(*self._call(task, process, body, slices, held, kept))
            elif kind == "done":
                try:
                    values, start = [], 0
                    for length, part_slices in zip(head[1], head[2]):
                        values.append(slot_wire.loads(body[start:start + length], part_slices, incoming, self.pool))
                        start += length
                    return encode_returns(f"task {name}", values, rt.store), False, False
                except BaseException as exc:  # noqa: B902 - e.g. the store is full
                    return error_blobs(as_task_failure(exc, name, rt.rank), num_returns), True, False
            elif kind == "error":
                _, how, retryable, detail = head
                if how == "interrupt" and task.cancelled:
                    return self._cancelled(name, num_returns)
                if how == "exit":
                    # As on the thread path: Ray's sys.exit() ends the worker process, a system failure.
                    return error_blobs(WorkerCrashedError(
                        f"task {name} called sys.exit({detail}), which ends its worker process in Ray, and it has no "
                        "retries left (max_retries)"), num_returns), True, True
                return [body] * num_returns, True, retryable

    @staticmethod
    def _cancelled(name, num_returns):
        from .executor import error_blobs

        return error_blobs(TaskCancelledError(f"task {name} was cancelled"), num_returns), True, False

    def _call(self, task, process, body, slices, held, kept):
        """One mpirt call the task made in its slot, made here: the reply's ``(head, body, slices)``."""
        rt = self.rt
        head = ("ok",)
        try:
            target, attrs, call, args, kwargs = slot_wire.loads(body, slices, self._incoming(held, process), self.pool)
            if isinstance(target, str):
                if target != "mpirt" and not target.startswith("mpirt."):
                    raise ValueError(f"a task slot may call mpirt only, not {target!r}")
                target = sys.modules[target]
            with rt.lock:
                task.in_user_code = True     # cancel() may raise KeyboardInterrupt in this thread now
            try:
                for attr in attrs:
                    target = getattr(target, attr)
                value = target(*args, **kwargs) if call else target
            finally:
                with rt.lock:
                    task.in_user_code = False
        except BaseException as exc:  # noqa: B902 - the slot raises it where the task called
            head, value = ("raise",), ErrorPayload(exc.__dict__.get("_task_error", exc))
        kept.append(value)
        try:
            body, slices = slot_wire.dumps(value, self._outgoing(held), self.pool)
        except Exception as exc:
            head = ("raise",)
            body, slices = dumps(ErrorPayload(TypeError(
                f"mpirt: the result of a call made from a task slot could not be pickled back to it: {exc}"))), []
        return head, body, slices

    # -- handles across the socket ------------------------------------------------------
    @staticmethod
    def _outgoing(held):
        """persistent_id for what goes to the slot: refs and actor handles stay here (counted
        as this rank's), the slot gets their ids."""
        from .actor import ActorHandle, _meta_blob_of

        def persistent_id(obj):
            kind = type(obj)
            if kind is ObjectRef:
                held[("R", obj.id)] = obj
                return ("R", obj.id)
            if kind is ActorHandle:
                held[("A", obj._actor_id)] = obj
                return ("A", obj._actor_id, _meta_blob_of(obj._meta))
            return None

        return persistent_id

    @staticmethod
    def _incoming(held, process):
        """persistent_load for what comes from the slot: the rank's own handles back, and the
        slot's remote functions and actor classes (each sent once per slot, cached)."""
        callables = process.callables

        def persistent_load(pid):
            if pid[0] in ("R", "A"):
                found = held.get(pid[:2])
                if found is None:
                    raise ValueError(f"a task slot sent a reference this rank did not give it: {pid!r}")
                return found
            if pid[0] == "F":
                _, key, blob = pid
                if blob is not None:
                    callables[key] = pickle.loads(blob)
                return callables[key]
            raise ValueError(f"unknown persistent id from a task slot: {pid!r}")

        return persistent_load
