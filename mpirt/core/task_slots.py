"""Task slots as processes: how a worker rank with N CPUs runs N Python tasks at once.

A rank runs each task on a thread of its own (``executor.py``). Threads share one interpreter lock, so on a rank
offering 4 CPUs (``--cpus-per-task=4``, ``MPIRT_NUM_CPUS=4``) four pure-Python tasks took as long as on one CPU.
Here such a rank hands each task to a *slot process* (``slot_process``): a plain Python started with
``subprocess`` (never a fork of the threaded MPI process), using no MPI, fed over a Unix socket (``slot_wire``),
reading large arguments in place from the node's store pool (mapped through a descriptor the rank passes it).
Why not more MPI ranks or free-threaded CPython: ``docs/design.md`` ("Task slots").

The rank's task thread stays in charge of the task: it resolves the arguments, sends them, and serves the slot's
requests until the result comes back, making every mpirt call the task makes as if the task ran on it. Results
are encoded into the store by the rank (copied once from the socket).

``MPIRT_TASK_SLOTS`` (read by the driver): ``auto`` (default) runs tasks in slot processes on ranks offering
more than one CPU and as threads on 1-CPU ranks (one task at a time runs there anyway); ``process`` uses slot
processes on every worker rank; ``thread`` never. Actors always run in their rank's process (as in Ray).
"""
import collections
import mmap
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import Connection

from ..exceptions import ErrorPayload
from . import invoke, log_forward, slot_wire
from .codec import dumps
from .object_ref import REF_CLASSES

MODES = ("auto", "process", "thread")
# Variables a slot process must not see: they would make MPI code in a task believe it is a rank of this job.
_LAUNCHER_PREFIXES = ("OMPI_", "PMIX_", "PRTE_", "PMI_", "OPAL_", "MPI_LOCAL")


def mode_from_environment():
    """``MPIRT_TASK_SLOTS`` as the driver reads it (ValueError for an unknown value)."""
    mode = os.environ.get("MPIRT_TASK_SLOTS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"MPIRT_TASK_SLOTS={mode!r}: use one of {', '.join(MODES)}")
    return mode


def uses_processes(mode, cpus):
    """Whether a worker rank offering ``cpus`` CPUs runs its tasks in slot processes. A free-threaded
    CPython (3.13t and later, GIL off) runs threads in parallel: ``auto`` keeps threads there."""
    return mode == "process" or (mode == "auto" and cpus > 1 and getattr(sys, "_is_gil_enabled", lambda: True)())


def describe(mode, resources_by_rank, worker_ranks):
    """The start-up line: how many tasks each worker rank really runs at once, or None when every
    rank has one CPU and runs tasks as threads (the default, nothing to say)."""
    by_cpus = collections.Counter(resources_by_rank[rank].get("CPU", 0.0) for rank in worker_ranks)
    if all(cpus <= 1 for cpus in by_cpus) and mode != "process":
        return None
    parts = []
    for cpus, count in sorted(by_cpus.items()):
        what = f"{count} worker rank{'s' if count > 1 else ''} x {cpus:g} CPU{'s' if cpus != 1 else ''}"
        if uses_processes(mode, cpus):
            parts.append(f"{what}: {cpus:g} task slot{'s' if cpus != 1 else ''} each, as processes")
        else:
            parts.append(f"{what}: tasks run as threads of the rank (one interpreter lock: pure-Python tasks "
                         "use about one CPU per rank)")
    return f"mpirt: {'; '.join(parts)} (MPIRT_TASK_SLOTS={mode})"


def _plain_arguments(args_blob, inlined):
    """Whether a task's arguments can go to its slot as the submitter pickled them: nothing to fetch
    (no ``ArgRef``, nothing inlined beside) and no handle inside (``ObjectRef`` and ``ActorHandle``
    unpickle through ``_arrive``, which would count them as arrived nowhere). Looking for the names
    in the pickle can only err towards the general path."""
    return not inlined and (args_blob is None or (b"ArgRef" not in args_blob and b"_arrive" not in args_blob))


def _warn_if_bound(rank, cpus):
    """Slot processes run where their rank may run: say so when that is fewer CPUs than the rank offers
    (``mpirun`` binds each rank to one core by default; ``srun`` binds to ``--cpus-per-task``)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if usable < cpus:
        sys.__stderr__.write(f"mpirt rank {rank}: offers {cpus:g} CPUs but may run on {usable} (CPU binding or a "
                             f"smaller machine): its task slots share {usable}. Under mpirun use --bind-to none or "
                             f"--map-by slot:PE={int(cpus)}\n")


# Handle types other than ObjectRef that stay on the rank when a task's arguments go to its slot: type ->
# function giving the persistent id the slot gets, whose first two items are its key. actor.py registers
# ActorHandle (("A", actor id, meta blob)): it sits above the runtime, so it tells the runtime its type.
_RANK_HANDLES: dict = {}


def keep_on_rank(kind, persistent_id):
    """Instances of ``kind`` cross to a slot as ``persistent_id(instance)`` and come back as themselves."""
    _RANK_HANDLES[kind] = persistent_id


class SlotProcess:
    """One slot process, the rank's end of its socket, and the cell that tells it which task a SIGINT cancels."""

    def __init__(self, popen, channel, cell):
        self.popen = popen
        self.channel = channel
        self.cell = cell
        self.sequence = 0        # number of the task it runs now (counted per slot process)
        self.functions = set()   # function ids it has unpickled already
        self.callables = {}      # its remote functions and actor classes, by the key it sent them under
        self.alive = True

    def interrupt(self):
        """``cancel()`` of the task it runs: SIGINT, which it raises as KeyboardInterrupt. The task's
        number goes first into the cell, so the slot knows the signal is for this task even if it
        arrives before the task starts there or after it ended."""
        struct.pack_into("q", self.cell, 0, self.sequence)
        try:
            os.kill(self.popen.pid, signal.SIGINT)
        except OSError:
            pass

    def stop(self):
        self.alive = False
        try:
            self.channel.send(("stop",))
        except OSError:
            pass
        self.channel.close()
        self.cell.close()
        try:
            self.popen.wait(timeout=0)
        except subprocess.TimeoutExpired:
            threading.Thread(target=self.popen.wait, daemon=True).start()   # reap it when it exits


class TaskSlots:
    """The slot processes of one worker rank, and running a task in one of them.

    ``cpus`` processes start in the background when the rank starts (0.2-0.4 s of CPU each, once). A task
    blocked in ``get``/``wait`` keeps its slot process while its CPU goes back to the head, which may then send
    the rank more tasks: more processes start for them, up to twice ``cpus`` (so one level of tasks waiting on
    children keeps every CPU busy). Beyond that, a task runs on its thread in the rank (``run`` returns None),
    as on a 1-CPU rank: starting a process per waiting task made a recursive ``fib(15)`` take minutes."""

    def __init__(self, executor, cpus):
        self.executor = executor
        self.rt = executor.rt
        self.max_processes = 2 * max(1, int(cpus))
        self._idle = []
        self._count = 0          # live slot processes, idle or busy
        self._lock = threading.Lock()
        arena = getattr(self.rt.store, "arena", None)
        memory = getattr(arena, "memory", None)
        self.pool = slot_wire.Pool(memory) if memory is not None else None
        self.pool_fd = arena._fd if self.pool is not None else -1
        self.environ = {name: value for name, value in os.environ.items() if not name.startswith(_LAUNCHER_PREFIXES)}
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self._code = ("import signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}); "
                      f"import sys; sys.path.insert(0, {package_parent!r}); "
                      "from mpirt.core.slot_process import main; main()")
        _warn_if_bound(self.rt.rank, cpus)
        threading.Thread(target=self._prestart, args=(max(1, int(cpus)),), name="mpirt-slot-start", daemon=True).start()

    def _prestart(self, count):
        for _ in range(count):
            process = self._acquire()
            if process is None:
                return
            self._release(process)

    # -- processes ------------------------------------------------------------------
    def _start(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cell_file = tempfile.TemporaryFile()
        try:
            cell_file.truncate(8)
            cell = mmap.mmap(cell_file.fileno(), 8, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            fds = (theirs.fileno(), cell_file.fileno()) + ((self.pool_fd,) if self.pool_fd >= 0 else ())
            popen = subprocess.Popen([sys.executable, "-c", self._code, str(theirs.fileno()), str(self.pool_fd),
                                      str(cell_file.fileno())],
                                     pass_fds=fds, env=self.environ, stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
            cell_file.close()
        channel = slot_wire.Channel(Connection(ours.detach()))
        channel.send(("hello", list(sys.path), os.getcwd()))
        return SlotProcess(popen, channel, cell)

    def _acquire(self):
        """An idle slot process, a new one, or None when there are ``max_processes`` already."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._count >= self.max_processes:
                return None
            self._count += 1
        try:
            return self._start()
        except OSError as exc:
            with self._lock:
                self._count -= 1
            sys.__stderr__.write(f"mpirt rank {self.rt.rank}: cannot start a task slot process ({exc}); "
                                 "the task runs on a thread of the rank\n")
            return None

    def _release(self, process):
        with self._lock:
            if process.alive:
                self._idle.append(process)
                return
            self._count -= 1
        process.stop()

    # -- running a task (on the rank's task thread) -----------------------------------
    def run(self, task):
        """Run ``task`` in a slot process: ``(blobs, is_error, retryable)``, or None when none is free."""
        process = self._acquire()
        if process is None:
            return None
        rt = self.rt
        task_id, function_id, _, name, args_blob, inlined, return_ids, retry_exceptions, _, environment, _, _ = task.spec
        num_returns = len(return_ids)
        held = {}      # handles the slot has seen, by persistent id: it refers to them by id
        kept = []      # values it may view in place (store views stay pinned while kept)
        try:
            function_blob = self.executor.function_blob(function_id)
            passed_on = _plain_arguments(args_blob, inlined)
            if passed_on:      # the slot unpickles the submitter's pickle itself
                body, slices = args_blob or b"", ()
            else:
                args, kwargs = invoke.resolve_arguments(rt, args_blob, inlined)
                kept.append((args, kwargs))
                body, slices = slot_wire.dumps((args, kwargs), self._outgoing(held), self.pool)
                del args, kwargs
        except BaseException as exc:  # noqa: B902 - the task's failure is its result
            self._release(process)
            return (invoke.failure_blobs(exc, name, rt.rank, num_returns), True,
                    invoke.matches_retry(retry_exceptions, exc))
        try:
            with rt.lock:
                if task.cancelled:
                    return self._cancelled(name, num_returns)
                process.sequence += 1
                task.slot_process = process
            blob = None if function_id in process.functions else function_blob
            head = ("task", task_id, process.sequence, passed_on, name, function_id, blob,
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
            return invoke.error_blobs(invoke.slot_died(name, process.popen.pid, status), num_returns), True, True
        finally:
            with rt.lock:
                task.slot_process = None
            self._release(process)

    def _serve(self, task, process, held, kept, name, num_returns):
        rt = self.rt
        incoming = self._incoming(held, process)
        channel = process.channel
        while True:
            head, slices, body = channel.recv()
            kind = head[0]
            if kind == "out":
                log_forward.write_slot_output(head[1], head[2])
            elif kind == "call":
                channel.send(*self._call(task, body, slices, held, kept, incoming))
            elif kind == "done":
                try:
                    blobs, start = [], 0
                    for encoded, length, part_slices in zip(head[1], head[2], head[3]):
                        part = body[start:start + length]
                        start += length
                        # Small plain values come encoded as the store would encode them; others are
                        # encoded here (large ones into the store, refs counted as this rank's).
                        blobs.append(part if encoded else invoke.encode_returns(
                            f"task {name}", [slot_wire.loads(part, part_slices, incoming, self.pool)], rt.store)[0])
                    return blobs, False, False
                except BaseException as exc:  # noqa: B902 - e.g. the store is full
                    rt.store.discard(blobs)   # the returns encoded before this one are never published
                    return invoke.failure_blobs(exc, name, rt.rank, num_returns), True, False
            elif kind == "error":
                _, how, retryable, detail = head
                if how == "interrupt" and task.cancelled:
                    return self._cancelled(name, num_returns)
                if how == "exit":
                    # As on the thread path: Ray's sys.exit() ends the worker process, a system failure.
                    return invoke.error_blobs(invoke.task_exited(name, detail), num_returns), True, True
                return [body] * num_returns, True, retryable

    @staticmethod
    def _cancelled(name, num_returns):
        return invoke.error_blobs(invoke.task_cancelled(name), num_returns), True, False

    def _call(self, task, body, slices, held, kept, incoming):
        """One mpirt call the task made in its slot, made here: the reply's ``(head, body, slices)``."""
        rt = self.rt
        head = ("ok",)
        try:
            target, attrs, call, args, kwargs = slot_wire.loads(body, slices, incoming, self.pool)
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
        """persistent_id for what goes to the slot: refs and actor handles stay here (counted), it gets ids."""

        def persistent_id(obj):
            kind = type(obj)
            if kind in REF_CLASSES:
                held[("R", obj.id)] = obj
                return ("R", obj.id)
            token = _RANK_HANDLES.get(kind)
            if token is not None:
                pid = token(obj)
                held[pid[:2]] = obj
                return pid
            return None

        return persistent_id

    @staticmethod
    def _incoming(held, process):
        """persistent_load for what comes from the slot: the rank's own handles back, and the slot's
        remote functions and actor classes (each sent once per slot, cached)."""
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
