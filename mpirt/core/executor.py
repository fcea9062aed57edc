"""Running tasks on a worker rank.

Tasks arrive per lease; a lease is one slot, so its tasks run one after another, each on a thread of its own. On a
rank offering several CPUs that thread hands the task to a slot process and serves it (``task_slots.py``), so the
rank's CPUs run Python at once instead of taking turns on one interpreter lock. When a running task blocks in
``get``/``wait`` its slot goes to the next task queued on the same lease, or, if there is none, its CPU goes back to
the head scheduler until it resumes: a blocked task never holds the CPU that the tasks it waits for need.
"""
import collections
import ctypes
import enum
import inspect
import sys
import threading
import traceback

from ..exceptions import TaskCancelledError
from . import invoke, log_forward
from .codec import dumps, loads
from .lifecycle import refuse
from .object_ref import ObjectRef
from .protocol import HEAD_RANK
from .runtime_env import RankEnvironment, apply_for_good
from .task_slots import TaskSlots, uses_processes
from .threads import WorkerThreads


class LeaseSlot:
    """One leased CPU slot: tasks queued on it, how many run, how many are blocked. Its CPU goes back
    to the head (``released``) while every task on it is blocked and none is queued."""

    __slots__ = ("queue", "active", "blocked", "released", "shape")

    def __init__(self, shape):
        self.queue = collections.deque()
        self.active = 0
        self.blocked = 0
        self.released = False
        self.shape = shape


class WorkState(enum.IntEnum):
    """Where a task sent to this rank is, as the worker sees it."""
    QUEUED = 0     # on its lease slot, not started
    RUNNING = 1    # on a task thread (its code here or in a slot process)
    BLOCKED = 2    # running, waiting in get/wait: its CPU may serve another task
    FINISHED = 3   # answered, or given back unstarted: it has left this rank


QUEUED, RUNNING, BLOCKED, FINISHED = WorkState


class RunningTask:
    """A task on this rank, queued or running. ``runtime_context`` reads its id, name, ``function``, ``shape`` and
    ``cancelled``; ``children`` are the ids of the tasks it submitted that have not finished (``cancel(recursive=True)``
    cancels them too). Its ``state`` changes only through the methods below (under the runtime lock), each of
    which checks the state it leaves. ``cancelled`` is set by ``cancel`` alone: a running task cannot be stopped,
    only interrupted, so it stays RUNNING (or BLOCKED) until its code returns."""

    __slots__ = ("task_id", "name", "lease_id", "submitter", "spec", "thread_id", "in_user_code", "environment",
                 "environment_held", "environment_left", "function", "cancelled", "children", "slot_process",
                 "state")

    def __init__(self, lease_id, submitter, spec):
        self.task_id = spec[0]
        self.name = spec[3]
        self.lease_id = lease_id
        self.submitter = submitter
        self.spec = spec
        self.state = QUEUED
        self.thread_id = None
        self.in_user_code = False
        self.environment = spec[9]       # runtime_env beyond the job's (runtime_env.freeze), or None
        self.environment_held = False    # holds the rank's environment (RankEnvironment)
        self.environment_left = False    # let it go while blocked in get/wait
        self.function = None
        self.cancelled = False
        self.children = set()
        self.slot_process = None         # the task_slots.SlotProcess running it, if any

    @property
    def placement(self):
        """(group id, bundle index, capture child tasks) of the placement group it runs in, or None."""
        return self.spec[10]

    @property
    def shape(self):
        """The resources its lease holds for it, e.g. ``{"CPU": 1.0}``."""
        return self.spec[8]

    def _refuse(self, *allowed):
        refuse(f"task {self.name} ({self.task_id:x})", self.state, allowed, WorkState)

    def started(self):
        """QUEUED -> RUNNING: its lease slot is free; a task thread takes it."""
        if self.state is not QUEUED:    # started and finished run per task: the checks are inline
            self._refuse(QUEUED)
        self.state = RUNNING

    def blocked(self):
        """RUNNING -> BLOCKED: it waits in get/wait."""
        if self.state is not RUNNING:
            self._refuse(RUNNING)
        self.state = BLOCKED

    def unblocked(self):
        """BLOCKED -> RUNNING: its get/wait returned."""
        if self.state is not BLOCKED:
            self._refuse(BLOCKED)
        self.state = RUNNING

    def finished(self):
        """RUNNING -> FINISHED: it ran and its result is sent."""
        if self.state is not RUNNING:
            self._refuse(RUNNING)
        self.state = FINISHED

    def given_back(self):
        """QUEUED -> FINISHED: its submitter took it back unstarted (steal)."""
        if self.state is not QUEUED:
            self._refuse(QUEUED)
        self.state = FINISHED

    def cancel(self):
        """``cancel()`` reached it. QUEUED -> FINISHED: it never runs (True: the caller answers it with
        TaskCancelledError). RUNNING or BLOCKED: only marked (False), to finish as usual once interrupted."""
        state = self.state
        if state == QUEUED:
            self.cancelled = True
            self.state = FINISHED
            return True
        if state == RUNNING or state == BLOCKED:
            self.cancelled = True
            return False
        self._refuse(QUEUED, RUNNING, BLOCKED)


class TaskExecutor:
    def __init__(self, runtime):
        self.rt = runtime
        self.slots = {}
        self.running = {}
        self.functions = {}
        # An idle task thread drives MPI for a moment, as an idle actor thread does (Transport.idle_poll): sync
        # task round trips 5.0-5.6k -> 7.3-8.0k/s on the 2-core VM.
        self.pool = WorkerThreads("mpirt-task", idle_poll=runtime.transport.idle_poll)
        # init(runtime_env=...): every task's starting point, in place for the rank's life.
        apply_for_good(runtime.config.get("runtime_env"))
        self.environment = RankEnvironment(runtime.cond)
        cpus = runtime.cluster.resources_by_rank.get(runtime.rank, {}).get("CPU", 0.0)
        processes = uses_processes(runtime.config.get("task_slots", "auto"), cpus)
        self.task_slots = TaskSlots(self, cpus) if processes else None
        runtime.register(task=self._on_task, cancel=self._on_cancel, steal=self._on_steal)

    # -- under runtime.lock ------------------------------------------------
    def _on_task(self, source, lease_id, spec):
        function_id, blob = spec[1], spec[2]
        if blob is not None and function_id not in self.functions:
            self.functions[function_id] = blob  # unpickled on the task thread, once
        slot = self.slots.get(lease_id)
        if slot is None:
            slot = self.slots[lease_id] = LeaseSlot(spec[8])
        slot.queue.append(RunningTask(lease_id, source, spec))
        self._update(lease_id, slot)

    def _update(self, lease_id, slot):
        """Start queued tasks while the slot is free; release or retake its CPU."""
        while slot.active < 1 and slot.queue:
            if slot.released:
                self._set_released(slot, False)
            task = slot.queue.popleft()
            task.started()
            slot.active += 1
            self.running[task.task_id] = task
            self.pool.submit(self._run_logged, task)
        if slot.active == 0 and not slot.queue:
            if slot.blocked:
                if not slot.released:
                    self._set_released(slot, True)
            else:
                del self.slots[lease_id]

    def _set_released(self, slot, released):
        slot.released = released
        cpus = slot.shape.get("CPU", 0.0)
        if cpus:
            self.rt.send(HEAD_RANK, ("cpu_release" if released else "cpu_reacquire", {"CPU": cpus}))

    def task_blocked(self, task):
        task.blocked()
        slot = self.slots[task.lease_id]
        slot.active -= 1
        slot.blocked += 1
        if task.environment_held:   # a task it waits for may need the rank's environment as another
            self._leave_environment(task)
            task.environment_left = True
        self._update(task.lease_id, slot)

    def task_unblocked(self, task):
        task.unblocked()
        slot = self.slots[task.lease_id]
        slot.blocked -= 1
        slot.active += 1
        if slot.released:
            self._set_released(slot, False)
        if task.environment_left:
            task.environment_left = False
            self._enter_environment(task)   # may wait (releasing the lock) for tasks of another environment

    def _enter_environment(self, task):
        self.environment.enter(task.environment)
        task.environment_held = True

    def _leave_environment(self, task):
        task.environment_held = False
        self.environment.leave()

    def _on_steal(self, source, lease_id):
        """Give the submitter back the tasks of a lease that have not started."""
        slot = self.slots.get(lease_id)
        task_ids = []
        if slot is not None:
            for task in slot.queue:
                task.given_back()
                task_ids.append(task.task_id)
            slot.queue.clear()
            self._update(lease_id, slot)
        self.rt.send(source, ("stolen", lease_id, task_ids))

    def _on_cancel(self, source, task_id, force, recursive=True):
        """``cancel()`` of a task sent here: one still queued never runs; a running one gets KeyboardInterrupt
        raised in its thread, as Ray raises it (pure-Python code stops at its next bytecode; a blocking C call
        such as ``time.sleep`` returns first). ``recursive``: its children too. ``force`` changes nothing here
        (a rank is not killed for one task): the submitter has failed the task's results already."""
        for lease_id, slot in self.slots.items():
            for task in slot.queue:
                if task.task_id == task_id:
                    task.cancel()
                    slot.queue.remove(task)
                    self._update(lease_id, slot)
                    blobs = invoke.error_blobs(invoke.task_cancelled(task.name, "before it ran"), len(task.spec[6]))
                    self._reply(task, blobs, True, False, 0.0)
                    return
        task = self.running.get(task_id)
        if task is None or task.cancelled:
            return
        task.cancel()
        if recursive:
            for child in list(task.children):
                self.rt.submitter.cancel_task(child, force, True)
        if task.slot_process is not None:   # its code runs there; in_user_code: a call it made runs here
            task.slot_process.interrupt()
        if task.in_user_code and task.thread_id is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(task.thread_id), ctypes.py_object(KeyboardInterrupt))

    # -- task thread -------------------------------------------------------
    def _run_logged(self, task):
        """Run ``task``, then the tasks queued on its lease, on this thread (no pool hand-off between
        short pipelined tasks)."""
        try:
            while task is not None:
                self._run(task)
                task = self._finish_and_take_next(task)
        except BaseException:  # a bug here must not vanish inside the thread pool
            sys.__stderr__.write(f"mpirt rank {self.rt.rank}: task {task.name} crashed the executor:\n"
                                 + traceback.format_exc())

    def _finish_and_take_next(self, task):
        with self.rt.lock:
            self.running.pop(task.task_id, None)
            task.finished()
            slot = self.slots[task.lease_id]
            slot.active -= 1
            if slot.active < 1 and slot.queue and not slot.released:
                following = slot.queue.popleft()
                following.started()
                slot.active += 1
                self.running[following.task_id] = following
                return following
            self._update(task.lease_id, slot)
            return None

    def _run(self, task):
        task_id, name = task.task_id, task.name
        task.thread_id = threading.get_ident()
        num_gpus = task.spec[8].get("GPU", 0.0)
        invoke.enter(name, num_gpus, task=task)
        started = invoke.clock()
        try:
            # GPU tasks stay in the rank: its CUDA context, its sealed device objects (store/device.py); so do
            # streaming generators, whose values go to the caller while they run (streams.py).
            in_slot = self.task_slots is not None and not num_gpus and task.spec[11] is None
            outcome = self.task_slots.run(task) if in_slot else None
            blobs, is_error, retryable = outcome if outcome is not None else self._run_here(task)
        finally:
            invoke.leave()
            if log_forward.open_bars:     # progress bars the task left open close with it
                log_forward.call_ended()
        seconds = invoke.finished("task", name, started, is_error, task_id=f"{task_id:028x}", blobs=blobs)
        self._reply(task, blobs, is_error, retryable, seconds)

    def _run_here(self, task):
        """Run ``task`` on this thread: ``(blobs, is_error, retryable)``."""
        rt = self.rt
        (_, function_id, _, name, args_blob, inlined, return_ids, retry_exceptions, _, _, _, stream) = task.spec
        try:
            try:
                function = task.function = self._function(function_id)
                args, kwargs = invoke.resolve_arguments(rt, args_blob, inlined)
                with rt.lock:
                    self._enter_environment(task)   # its runtime_env, set now and put back after
                    task.in_user_code = True
                try:
                    result = function(*args, **kwargs)
                    if stream is not None:   # a streaming generator: its values go to the caller as they come
                        rt.streams.produce(result, return_ids[0], stream, task.submitter)
                        result = None
                finally:
                    with rt.lock:
                        task.in_user_code = False
                        if task.environment_held:
                            self._leave_environment(task)
                if inspect.isgenerator(result):    # num_returns=N on a generator: its first N values
                    blobs, failed = invoke.generator_returns(f"task {name}", result, len(return_ids), rt.store, rt.rank)
                    return blobs, failed, False
                return invoke.serialize_returns(f"task {name}", result, len(return_ids), rt.store), False, False
            except BaseException as exc:  # noqa: B902 - the task's failure is its result
                blobs, retryable = task_failure(exc, task, retry_exceptions, rt.rank)
                return blobs, True, retryable
        finally:
            if task.environment_held:   # a cancel's KeyboardInterrupt can land before the inner let-go
                with rt.lock:
                    self._leave_environment(task)

    def function_blob(self, function_id):
        """The pickle of ``function_id`` for a slot process (a large one is read from the store once)."""
        function = self.functions[function_id]
        if isinstance(function, ObjectRef):
            # The stored pickle reads back as a read-only array over the store; the slot needs bytes.
            function = bytes(self.rt.value_of(function))
            with self.rt.lock:
                self.functions[function_id] = function
        elif not isinstance(function, (bytes, bytearray, memoryview)):
            function = dumps(function)
        return function

    def _reply(self, task, blobs, is_error, retryable, seconds):
        self.rt.send(task.submitter, ("done", task.task_id, blobs, is_error, retryable, seconds))

    def _function(self, function_id):
        """The function of ``function_id``, unpickled on first use; a large one came as the ObjectRef of
        its pickle (``submitter.FunctionDescriptor``), read from the store."""
        function = self.functions[function_id]
        if isinstance(function, (bytes, ObjectRef)):
            function = loads(self.rt.value_of(function) if isinstance(function, ObjectRef) else function)
            with self.rt.lock:
                self.functions[function_id] = function
        return function


def task_failure(exc, task, retry_exceptions, rank):
    """``(blobs, retryable)`` of a task run here that raised ``exc`` (being handled): cancelled,
    ``sys.exit()`` (a worker crash in Ray, retried per ``max_retries``) or its own error (``retry_exceptions``)."""
    name, num_returns = task.name, len(task.spec[6])
    if task.cancelled and isinstance(exc, (KeyboardInterrupt, TaskCancelledError)):
        return invoke.error_blobs(invoke.task_cancelled(name), num_returns), False
    if isinstance(exc, SystemExit):
        return invoke.error_blobs(invoke.task_exited(name, repr(exc.code)), num_returns), True
    return invoke.failure_blobs(exc, name, rank, num_returns), invoke.matches_retry(retry_exceptions, exc)
