"""Copying a large buffer into store memory on several threads at once.

One thread's copy is bound by what one core can move, not by the memory: on the 2-core development VM
``numpy.copyto`` of 800 MB moved 13-19 GB/s on one thread and 23-37 GB/s split over two. Ray's object store
copies large objects on several threads too, so a put of a large array was as fast in Ray as in mpirt.

A copy uses the cores this process may run on (``os.sched_getaffinity``), at most ``MPIRT_COPY_THREADS``
(default 4): a rank that its launcher bound to one core (``mpirun --bind-to core``, ``srun --cpu-bind``)
copies on that core alone, and never takes its neighbours'. Copies under ``PARALLEL_BYTES`` stay on the
calling thread: handing parts to other threads costs tens of microseconds.
"""
import concurrent.futures
import os
import threading

import numpy as np

from ..slurm import affinity_cpus

PARALLEL_BYTES = 16 << 20      # smaller copies are not split
PART_BYTES = 8 << 20           # no part smaller than this
_SPLIT_ALIGNMENT = 1 << 12     # parts start on a page boundary of the destination's offset
_DEFAULT_THREADS = 4

_state_lock = threading.Lock()
_pool = None                   # threads beside the caller's, made at the first large copy
_threads = None                # how many threads a copy may use (the caller's included)


def copy_threads():
    """How many threads a large copy uses here: the cores this process may run on, capped by
    ``MPIRT_COPY_THREADS``."""
    global _threads
    if _threads is None:
        try:
            cap = int(os.environ.get("MPIRT_COPY_THREADS", _DEFAULT_THREADS))
        except ValueError:
            raise ValueError(f"MPIRT_COPY_THREADS={os.environ['MPIRT_COPY_THREADS']!r}: expected a whole number of "
                             f"threads (1 copies on the calling thread only)") from None
        _threads = max(1, min(affinity_cpus(), cap))
    return _threads


def copy_into(destination, source):
    """Copy the bytes of ``source`` into ``destination`` (writable, the same length), on several
    threads when it is large and this process may use several cores."""
    size = destination.nbytes
    threads = copy_threads() if size >= PARALLEL_BYTES else 1
    parts = min(threads, size // PART_BYTES)
    if parts < 2:
        destination[:] = source
        return
    target = np.frombuffer(destination, dtype=np.uint8)
    origin = np.frombuffer(source, dtype=np.uint8)
    step = -(-size // parts)
    step += -step % _SPLIT_ALIGNMENT
    pool = _thread_pool(threads - 1)
    # numpy releases the GIL while it copies: the parts run side by side.
    others = [pool.submit(np.copyto, target[start:start + step], origin[start:start + step])
              for start in range(step, size, step)]
    np.copyto(target[:step], origin[:step])
    for part in others:
        part.result()


def _thread_pool(workers):
    global _pool
    with _state_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpirt-copy")
        return _pool


def _forget_after_fork():
    """A forked child has none of its parent's threads, and may run on other cores."""
    global _pool, _threads, _state_lock
    _pool, _threads, _state_lock = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
