"""``Pool``: the standard library's ``multiprocessing.Pool`` interface on mpirt actors (Ray's
``ray.util.multiprocessing.Pool``).

Each pool worker is an actor (``_PoolWorker``, holding no CPU while it lives, as Ray's) that runs the
initializer once and then chunks of work: one actor call per chunk, returning the chunk's results
and the exceptions it raised, item by item. The scheduler places actors on the ranks with the fewest
actors first, so a pool of ``processes`` workers spreads over every worker rank of the job (all the
nodes of the allocation). ``processes`` defaults to the cluster's CPUs, as in Ray.

- ``map``/``starmap`` (and their ``_async`` forms) cut the input into chunks (``chunksize``, by
  default len/(4 x workers) rounded up, as the standard library) and submit them all at once, round
  robin over the workers; the result is ready when every chunk is.
- ``imap``/``imap_unordered`` read the input lazily and keep ``IMAP_DEPTH`` chunks in flight per
  worker, giving a worker its next chunk when one of its chunks finishes (a slow item holds up one
  worker only).
- ``apply_async`` sends one call to the next worker, round robin.
- An exception in the user's function comes back from ``get()``/``next()`` as itself (its class, its
  arguments), with the worker's traceback as its ``__cause__`` (``multiprocessing.pool.RemoteTraceback``),
  as the standard library gives it. An error of mpirt itself (a worker killed) comes back as
  mpirt's error.
- ``callback``/``error_callback`` run on one thread per pool (``_Callbacks``), in completion order;
  a result with callbacks is ready once they have run, as in the standard library.
- Functions defined in the driver's ``__main__`` travel by value (cloudpickle); a pool worker gives
  them one shared module namespace (``_MainNamespace``), so the usual ``initializer`` that sets a
  global for the mapped function works as it does with processes.
"""
import collections
import itertools
import logging
import pickle
import queue
import threading
import time
import traceback
import types
import weakref
from multiprocessing import TimeoutError
from multiprocessing.pool import RemoteTraceback  # type: ignore[attr-defined]  # not in typeshed's stub
from typing import Any, Callable, Dict, Iterable, List, Optional

import cloudpickle

from ...actor import kill
from ...api import cluster_resources, get, put, remote, wait
from ...core import current
from ...core._mpi_env import mpi
from ...launch import init

logger = logging.getLogger(__name__)

# How a chunk's items are passed: f(x), f(*x), f(*args, **kwargs) for x = (args, kwargs).
MAP, STARMAP, APPLY = 0, 1, 2
IMAP_DEPTH = 8          # chunks in flight per worker for imap/imap_unordered (the input is read that far ahead)
CALLBACK_POLL_S = 0.05  # how often the callback thread looks again while results are pending
FUNCTION_CACHE = 64     # functions a pool (and each worker) keeps ready, most recently used
FUNCTION_INLINE = 64 * 1024   # a pickled function up to this size travels with each call, a larger one by ref
_context_warned = False


# -- the worker side ---------------------------------------------------------------------------
class _MainNamespace:
    """The module namespace that functions of the driver's ``__main__`` share on one pool worker.

    cloudpickle gives every function it unpickles a fresh dict of the globals it uses, so a
    global that the initializer sets would be lost to the mapped function. Here each such function
    is rebuilt on one dict per worker: a name that worker code assigned (the initializer, or a
    mapped function through ``global``) stays the worker's, as in a worker process; any other name
    takes the driver's value that came with the call (as in Ray)."""

    def __init__(self) -> None:
        self.globals: Dict[str, Any] = {"__name__": "__main__"}
        self.owned: set = set()

    def bind(self, func):
        if not isinstance(func, types.FunctionType) or func.__module__ != "__main__":
            return func
        return self._rebuild(func, {})

    def _rebuild(self, func, memo):
        source = func.__globals__
        if source is self.globals:
            return func
        rebuilt = memo.get(id(func))
        if rebuilt is not None:
            return rebuilt
        rebuilt = types.FunctionType(func.__code__, self.globals, func.__name__, func.__defaults__, func.__closure__)
        rebuilt.__kwdefaults__ = func.__kwdefaults__
        rebuilt.__qualname__ = func.__qualname__
        rebuilt.__doc__ = func.__doc__
        rebuilt.__dict__.update(func.__dict__)
        rebuilt.__module__ = "__main__"
        memo[id(func)] = rebuilt
        for name, value in source.items():
            if name in self.owned or name == "__builtins__":
                continue
            if isinstance(value, types.FunctionType) and value.__globals__ is source:
                value = self._rebuild(value, memo)
            self.globals[name] = value
        return rebuilt

    def run(self, call):
        """``call()``, then remember which names worker code assigned."""
        before = dict(self.globals)
        try:
            return call()
        finally:
            missing = object()
            self.owned.update(name for name, value in self.globals.items() if before.get(name, missing) is not value)


class _PoolWorker:
    """One pool worker: runs the initializer once, then chunks of calls."""

    def __init__(self, initializer: Optional[Callable] = None, initargs: Optional[Iterable] = None) -> None:
        self.main = _MainNamespace()
        self.functions: collections.OrderedDict = collections.OrderedDict()   # key -> function, unpickled once
        if initializer is not None:
            initializer = self.main.bind(initializer)
            self.main.run(lambda: initializer(*(initargs or ())))

    def ping(self):
        return None

    def run_batch(self, function, mode, chunk):
        """(values, failures): one value per item (None where it failed) and, if any failed,
        {position: (exception, traceback text)}. ``function``: (key, its pickle, or [a ref of it])."""
        key, pickled = function
        func = self.functions.get(key)
        if func is None:
            func = pickle.loads(pickled) if isinstance(pickled, bytes) else get(pickled[0])
            func = self.functions[key] = self.main.bind(func)
            if len(self.functions) > FUNCTION_CACHE:
                self.functions.popitem(last=False)
        else:
            self.functions.move_to_end(key)
        return self.main.run(lambda: _run_chunk(func, mode, chunk))


def _run_chunk(func: Callable, mode: int, chunk: List[Any]) -> tuple:
    values: List[Any] = []
    append = values.append
    failures = None
    for position, item in enumerate(chunk):
        try:
            if mode == MAP:
                append(func(item))
            elif mode == STARMAP:
                append(func(*item))
            else:
                args, kwargs = item
                append(func(*(args if args is not None else ()), **(kwargs or {})))
        except Exception as exc:
            append(None)
            if failures is None:
                failures = {}
            failures[position] = (_picklable(exc), traceback.format_exc())
    return values, failures


def _picklable(exc):
    """``exc`` if it survives the trip back, else a RuntimeError that says what it was."""
    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception as why:
        return RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be pickled: {why})")


_PoolActor = remote(num_cpus=0)(_PoolWorker)


def _rebuilt_error(exc, text):
    """The worker's exception with its traceback as the cause, as the standard library's pool gives it."""
    exc.__cause__ = RemoteTraceback(f'\n"""\n{text}"""')
    return exc


class _Raise:
    """An item whose call failed, in a result list or an iterator's buffer."""

    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


def _chunk_items(ref, size, outcome=None):
    """(items, first error or None) of one finished chunk (``outcome``: its value, if already got):
    values, and ``_Raise`` where the call failed (all of them when the chunk itself failed: its
    worker died)."""
    if outcome is None:
        try:
            outcome = get(ref)
        except Exception as error:  # mpirt's own error: the worker died, the pool was terminated
            return [_Raise(error)] * size, error
    values, failures = outcome
    first = None
    if failures:
        for position in sorted(failures):
            exc, text = failures[position]
            values[position] = _Raise(_rebuilt_error(exc, text))
            first = first or values[position].error
    return values, first


# -- results -------------------------------------------------------------------------------------
class AsyncResult:
    """The result of ``apply_async``, ``map_async`` or ``starmap_async`` (the standard library's
    ``AsyncResult``): ``get(timeout)``, ``wait(timeout)``, ``ready()``, ``successful()``."""

    def __init__(self, pool: Any, chunks: List[tuple], single: bool, callback: Optional[Callable] = None,
                 error_callback: Optional[Callable] = None) -> None:
        self._pool = pool
        self._chunks = chunks          # [(ref, number of items)]
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._value: Any = None
        self._error: Optional[BaseException] = None
        if not chunks:
            self._finish([], None)
        elif callback is not None or error_callback is not None:
            pool._callbacks_thread().add(self)

    def _refs(self):
        return [ref for ref, _ in self._chunks]

    def _collect(self):
        """Gather the finished chunks (once), then run the callback or error_callback."""
        with self._lock:
            if self._done.is_set():
                return
            try:
                outcomes = get(self._refs())          # one call for all chunks, when none failed as a whole
            except Exception:
                outcomes = [None] * len(self._chunks)
            items: List[Any] = []
            error = None
            for (ref, size), outcome in zip(self._chunks, outcomes):
                values, first = _chunk_items(ref, size, outcome)
                items.extend(values)
                error = error or first
            self._finish(items, error)

    def _finish(self, items, error):
        if error is None:
            self._value = items[0] if self._single else items
        self._error = error
        self._chunks = [(None, size) for _, size in self._chunks]   # drop the refs: results held here now
        try:
            if error is None and self._callback is not None:
                self._callback(self._value)
            elif error is not None and self._error_callback is not None:
                self._error_callback(error)
        finally:
            self._done.set()
            self._pool = None

    def wait(self, timeout: Optional[float] = None) -> None:
        """Return once the result is ready, or after ``timeout`` seconds (no error then)."""
        if self._done.is_set():
            return
        if self._callback is not None or self._error_callback is not None:
            self._done.wait(timeout)
            return
        refs = self._refs()
        if timeout is not None:
            timeout = max(0.0, float(timeout))
        ready, _ = wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) == len(refs):
            self._collect()

    def ready(self) -> bool:
        """Whether the call has completed."""
        if not self._done.is_set() and self._callback is None and self._error_callback is None:
            self.wait(0)
        return self._done.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising (``ValueError`` if it is not ready)."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def get(self, timeout: Optional[float] = None) -> Any:
        """The result once it is ready (``multiprocessing.TimeoutError`` after ``timeout`` seconds);
        the function's exception if it raised one."""
        self.wait(timeout)
        if not self._done.is_set():
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


# The standard library's names for the same thing.
ApplyResult = MapResult = AsyncResult


class _Callbacks(threading.Thread):
    """The pool's thread that completes results with callbacks as their chunks finish. It waits
    on the chunks not seen finished yet only (a finished one would make every wait return at once)."""

    def __init__(self) -> None:
        super().__init__(name="mpirt-pool-callbacks", daemon=True)
        self._new: queue.SimpleQueue = queue.SimpleQueue()
        self._outstanding = 0                 # results added and not completed yet
        self.idle = threading.Condition()

    def add(self, result):
        with self.idle:
            self._outstanding += 1
        self._new.put(result)

    def stop(self):
        """End the thread once the results it has are complete (the pool takes no more work)."""
        self._new.put(None)

    def run(self):
        pending: Dict[AsyncResult, set] = {}      # result -> its chunks' refs not seen finished
        stopping = False
        while True:
            if not pending:
                if stopping:
                    return
                result = self._new.get()
                if result is None:
                    return
                pending[result] = set(result._refs())
            while True:
                try:
                    result = self._new.get_nowait()
                except queue.Empty:
                    break
                if result is None:
                    stopping = True
                else:
                    pending[result] = set(result._refs())
            unready = list(set().union(*pending.values()))
            try:
                wait(unready, num_returns=1, timeout=CALLBACK_POLL_S)
                ready = set(wait(unready, num_returns=len(unready), timeout=0)[0])
            except Exception:   # mpirt shut down under the pool: nothing will complete any more
                with self.idle:
                    self._outstanding = 0
                    self.idle.notify_all()
                return
            for result in list(pending):
                pending[result] -= ready
                if pending[result]:
                    continue
                del pending[result]
                try:
                    result._collect()
                except Exception:   # a callback raised: the standard library's thread would die; ours goes on
                    logger.exception("a Pool callback raised")
                with self.idle:
                    self._outstanding -= 1
                    self.idle.notify_all()

    def settle(self):
        """Wait until every result added here is complete (or mpirt shut down)."""
        with self.idle:
            while self._outstanding and self.is_alive():
                self.idle.wait(0.1)


# -- imap ------------------------------------------------------------------------------------------
class IMapIterator:
    """The iterator of ``imap`` (in order) and ``imap_unordered`` (as they finish): ``next(timeout)``
    raises ``multiprocessing.TimeoutError`` if no result comes in ``timeout`` seconds."""

    def __init__(self, pool: Any, func: Callable, iterable: Iterable, chunksize: int, ordered: bool) -> None:
        self._pool = pool
        self._func = func
        self._ordered = ordered
        self._source = iter(iterable)
        self._chunksize = chunksize
        self._exhausted = False
        self._lock = threading.RLock()
        self._next_chunk = 0                 # index of the next chunk to submit
        self._running: Dict[Any, tuple] = {}  # ref -> (chunk index, size, worker) not seen finished
        self._finished: Dict[int, tuple] = {}  # chunk index -> (ref, size), finished, not yet read
        self._next_read = 0                   # ordered: the next chunk to hand out
        self._buffer: collections.deque = collections.deque()
        pool._iterators.add(self)
        for _ in range(IMAP_DEPTH):
            for worker in range(pool._size):
                if not self._submit(worker):
                    return

    def _submit(self, worker):
        """Send the next chunk to ``worker``; False once the input is used up."""
        if self._exhausted:
            return False
        chunk = list(itertools.islice(self._source, self._chunksize))
        if not chunk:
            self._exhausted = True
            return False
        ref, worker = self._pool._run(worker, self._func, MAP, chunk)
        self._running[ref] = (self._next_chunk, len(chunk), worker)
        self._next_chunk += 1
        return True

    def _submit_rest(self):
        """Send all of the remaining input (``Pool.close`` does: the standard library reads it all)."""
        with self._lock:
            worker = 0
            while self._submit(worker % self._pool._size):
                worker += 1

    def __iter__(self):
        return self

    def next(self, timeout: Optional[float] = None) -> Any:
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
            while not self._buffer:
                if not self._read_one(deadline):
                    raise StopIteration
            item = self._buffer.popleft()
        if isinstance(item, _Raise):
            raise item.error
        return item

    __next__ = next

    def _read_one(self, deadline):
        """Move the next chunk's items into the buffer; False when there is none left."""
        while True:
            wanted = self._next_read if self._ordered else next(iter(self._finished), None)
            if wanted in self._finished:
                ref, size = self._finished.pop(wanted)
                self._next_read += 1
                self._buffer.extend(_chunk_items(ref, size)[0])
                return True
            if not self._running:
                return False
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = wait(list(self._running), num_returns=1, timeout=remaining)
            if not ready:
                raise TimeoutError
            ready, _ = wait(list(self._running), num_returns=len(self._running), timeout=0)
            for ref in ready:
                index, size, worker = self._running.pop(ref)
                self._finished[index] = (ref, size)
                if not self._pool._closed:
                    self._submit(worker)


# -- the pool --------------------------------------------------------------------------------------
def _check_chunksize(chunksize):
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be an int or None, got {type(chunksize).__name__}")
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")


class Pool:
    """A pool of worker actors with the standard library's ``multiprocessing.Pool`` interface.

    ``processes``: the workers (default: the cluster's CPUs; more than it has raises, as in Ray).
    ``initializer(*initargs)`` runs once in each worker as it starts. ``maxtasksperchild``: a
    worker is replaced by a new one after that many chunks. ``context`` is ignored (a warning),
    as in Ray. ``ray_address``: passed to ``init()`` when mpirt is not running yet (None, "auto"
    or "local"). ``ray_remote_args``: options of the worker actors (``num_cpus``, ``resources``,
    ``runtime_env``, ...; by default they hold no CPU, as Ray's). Starts mpirt if it is not running.
    """

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable] = None,
                 initargs: Optional[Iterable] = None, maxtasksperchild: Optional[int] = None,
                 context: Any = None, ray_address: Optional[str] = None,
                 ray_remote_args: Optional[Dict[str, Any]] = None):
        global _context_warned
        self._closed = True            # until it has started
        if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int)):
            raise TypeError(f"processes must be an int or None, got {type(processes).__name__}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (isinstance(maxtasksperchild, bool) or not isinstance(maxtasksperchild, int)
                                             or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if ray_remote_args is not None and not isinstance(ray_remote_args, dict):
            raise TypeError(f"ray_remote_args must be a dict of actor options, got {type(ray_remote_args).__name__}")
        if context is not None and not _context_warned:
            _context_warned = True
            logger.warning("The 'context' argument is not supported using ray. Please refer to the documentation "
                           "for how to control ray initialization.")
        self._initializer = initializer
        self._initargs = tuple(initargs) if initargs is not None else ()
        self._maxtasksperchild = maxtasksperchild
        self._actor_class = _PoolActor.options(**(ray_remote_args or {}))
        self._lock = threading.Lock()
        self._iterators: weakref.WeakSet = weakref.WeakSet()
        self._callbacks: Optional[_Callbacks] = None
        self._stopping: List[Any] = []    # refs of __ray_terminate__ calls of workers let go
        # id(function) -> (function, key, pickle or [ref]): each function is pickled once per pool;
        # calls carry its key and pickle (a large one as a ref), and a worker unpickles it the first
        # time it sees the key (a call's arguments are pickled anew each time: bytes cost the least).
        self._functions: collections.OrderedDict = collections.OrderedDict()
        self._function_keys = itertools.count()
        self._next_worker = 0
        self._size = self._start_mpirt(processes, ray_address)
        self._workers: List[Any] = []
        self._tasks_run: List[int] = []
        try:
            for _ in range(self._size):
                self._workers.append(self._new_worker())
                self._tasks_run.append(0)
            get([worker.ping.remote() for worker in self._workers])
        except BaseException:
            for worker in self._workers:
                kill(worker)
            raise
        self._closed = False
        self._terminated = False

    @staticmethod
    def _start_mpirt(processes, ray_address):
        """Start mpirt unless it runs (Ray's rules: ``processes`` CPUs for a new local session),
        then check ``processes`` against the cluster's CPUs."""
        if not current.is_initialized():
            # A plain ``python app.py`` spawns its ranks: ``processes`` of them, as Ray's local cluster.
            # Under mpirun the job's ranks are the cluster (num_cpus would be the CPUs of each rank).
            spawns = mpi().COMM_WORLD.Get_size() == 1     # the test init() makes
            if ray_address is not None:
                init(address=ray_address, num_cpus=processes if ray_address == "local" and spawns else None)
            else:
                init(num_cpus=processes if spawns else None)
        cpus = int(cluster_resources().get("CPU", 0))
        if processes is None:
            processes = cpus
        if processes <= 0:
            raise ValueError("Processes in the pool must be >0.")
        if cpus < processes:
            raise ValueError(f"Tried to start a pool with {processes} processes on an existing ray cluster, but "
                             f"there are only {cpus} CPUs in the ray cluster.")
        return processes

    def _new_worker(self):
        return self._actor_class.remote(self._initializer, self._initargs)

    def __repr__(self):
        state = "TERMINATE" if getattr(self, "_terminated", False) else "CLOSE" if self._closed else "RUN"
        return f"<{type(self).__module__}.{type(self).__qualname__} state={state} pool_size={getattr(self, '_size', 0)}>"

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    # -- submitting ----------------------------------------------------------------------------
    def _check_running(self):
        if self._closed:
            raise ValueError("Pool not running")

    def _function(self, func: Callable) -> tuple:
        """(key, pickle or [ref]) standing for ``func`` in calls (a ref inside a list reaches the worker as a ref)."""
        entry = self._functions.get(id(func))
        if entry is not None and entry[0] is func:
            self._functions.move_to_end(id(func))
        else:
            try:
                pickled: Any = cloudpickle.dumps(func)
            except Exception as why:
                raise TypeError(f"Pool: the function {func!r} cannot be pickled to send to the workers: {why}") from why
            if len(pickled) > FUNCTION_INLINE:
                pickled = [put(func)]
            entry = self._functions[id(func)] = (func, next(self._function_keys), pickled)
            if len(self._functions) > FUNCTION_CACHE:
                self._functions.popitem(last=False)
        return entry[1], entry[2]

    def _run(self, worker, func, mode, chunk):
        """One chunk on worker ``worker`` (None: the next, round robin); (ref, worker index)."""
        with self._lock:
            if worker is None:
                worker = self._next_worker
                self._next_worker = (worker + 1) % self._size
            ref = self._workers[worker].run_batch.remote(self._function(func), mode, chunk)
            if self._maxtasksperchild is not None:
                self._tasks_run[worker] += 1
                if self._tasks_run[worker] >= self._maxtasksperchild:
                    # Its calls so far run first (one caller's calls run in order), then it exits.
                    self._stopping.append(self._workers[worker].__ray_terminate__.remote())
                    self._workers[worker] = self._new_worker()
                    self._tasks_run[worker] = 0
        return ref, worker

    def _callbacks_thread(self):
        with self._lock:
            if self._callbacks is None:
                self._callbacks = _Callbacks()
                self._callbacks.start()
            return self._callbacks

    def _map_async(self, func, iterable, chunksize, mode, callback, error_callback):
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(iterable), self._size * 4)
            if extra:
                chunksize += 1
            chunksize = max(chunksize, 1)
        else:
            _check_chunksize(chunksize)
        items = iter(iterable)
        chunks = []
        while True:
            chunk = list(itertools.islice(items, chunksize))
            if not chunk:
                break
            ref, _ = self._run(None, func, mode, chunk)
            chunks.append((ref, len(chunk)))
        return AsyncResult(self, chunks, False, callback, error_callback)

    def apply(self, func: Callable, args: Optional[tuple] = (), kwds: Optional[dict] = None, *,
              kwargs: Optional[dict] = None) -> Any:
        """``func(*args, **kwds)`` on one of the workers; its result (``kwargs=`` is Ray's name for ``kwds``)."""
        return self.apply_async(func, args, kwds, kwargs=kwargs).get()

    def apply_async(self, func: Callable, args: Optional[tuple] = (), kwds: Optional[dict] = None,
                    callback: Optional[Callable[[Any], None]] = None,
                    error_callback: Optional[Callable[[BaseException], None]] = None, *,
                    kwargs: Optional[dict] = None) -> AsyncResult:
        """``func(*args, **kwds)`` on the next worker: an ``AsyncResult`` (``kwargs=`` is Ray's name for ``kwds``)."""
        self._check_running()
        if kwargs is not None:
            if kwds is not None:
                raise TypeError("apply_async() got both 'kwds' and 'kwargs' (Ray's name for it): give one")
            kwds = kwargs
        ref, _ = self._run(None, func, APPLY, [(args, kwds)])
        return AsyncResult(self, [(ref, 1)], True, callback, error_callback)

    def map(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> List[Any]:
        """``[func(x) for x in iterable]``, computed by the workers in chunks."""
        return self._map_async(func, iterable, chunksize, MAP, None, None).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                  callback: Optional[Callable[[List[Any]], None]] = None,
                  error_callback: Optional[Callable[[BaseException], None]] = None) -> AsyncResult:
        """``map`` without waiting: an ``AsyncResult`` of the list."""
        return self._map_async(func, iterable, chunksize, MAP, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> List[Any]:
        """``[func(*args) for args in iterable]``."""
        return self._map_async(func, iterable, chunksize, STARMAP, None, None).get()

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                      callback: Optional[Callable[[List[Any]], None]] = None,
                      error_callback: Optional[Callable[[BaseException], None]] = None) -> AsyncResult:
        """``starmap`` without waiting (the standard library's signature: ``chunksize`` third)."""
        return self._map_async(func, iterable, chunksize, STARMAP, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = 1) -> IMapIterator:
        """``func(x)`` for each x, lazily, results in order."""
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = 1) -> IMapIterator:
        """``func(x)`` for each x, lazily, results as they finish."""
        return self._imap(func, iterable, chunksize, False)

    def _imap(self, func, iterable, chunksize, ordered):
        self._check_running()
        if chunksize is None:    # Ray's: a size from the length, 1 for an iterator
            chunksize = 1
            if hasattr(iterable, "__len__"):
                chunksize = max(1, -(-len(iterable) // (self._size * 4)))
        _check_chunksize(chunksize)
        return IMapIterator(self, func, iterable, chunksize, ordered)

    # -- ending ------------------------------------------------------------------------------
    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()

    def close(self) -> None:
        """No more work may be submitted; the workers exit once what was submitted is done."""
        if self._closed:
            return
        for iterator in list(self._iterators):
            iterator._submit_rest()
        with self._lock:
            self._closed = True
            self._stopping.extend(worker.__ray_terminate__.remote() for worker in self._workers)
            if self._callbacks is not None:
                self._callbacks.stop()

    def terminate(self) -> None:
        """Stop the workers now; work not done fails (its results raise mpirt's ``ActorDiedError``)."""
        with self._lock:
            if not self._closed and self._callbacks is not None:
                self._callbacks.stop()
            self._closed = True
            self._terminated = True
            workers = list(self._workers)
        for worker in workers:
            try:
                kill(worker)
            except Exception:   # mpirt already shut down
                pass

    def join(self) -> None:
        """Wait for the workers to exit (after ``close()`` or ``terminate()``) and for the
        callbacks of results still pending."""
        if not self._closed:
            raise ValueError("Pool is still running")
        if self._terminated:
            return
        with self._lock:
            stopping, self._stopping = self._stopping, []
        if stopping:
            wait(stopping, num_returns=len(stopping))
        if self._callbacks is not None:
            self._callbacks.settle()
