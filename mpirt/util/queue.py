"""Ray's ``ray.util.queue``: a first-in, first-out queue shared by the driver, tasks and actors.

The items live in an async actor (``_QueueActor``: an ``asyncio.Queue`` on its event loop); a
``Queue`` object is a thin client holding the actor's handle, so it can be passed to tasks and
actors like any handle (it pickles as its handle and ``maxsize``). Every operation is one actor
call; a blocking ``get``/``put`` waits inside the actor (the caller's ``get`` on the call's result
gives its CPU back while it waits), so waiting costs no polling.

As in Ray, ``import mpirt.util.queue`` (``from ray.util.queue import Queue``) is needed: ``mpirt.util``
does not import it by itself. ``Empty`` and ``Full`` are the standard library's ``queue.Empty`` and
``queue.Full`` underneath, so code written against ``queue.Queue`` catches them too.
"""
import asyncio
import numbers
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any, Dict, List, Optional

from ..actor import kill
from ..api import cancel, get, remote, wait

__all__ = ["Queue", "Empty", "Full"]


class Empty(_stdlib_queue.Empty):
    """Raised by a ``get`` from an empty Queue: at once without blocking, or when the timeout ends."""


class Full(_stdlib_queue.Full):
    """Raised by a ``put`` into a full Queue: at once without blocking, or when the timeout ends."""


class _QueueActor:
    """Holds the items. Every method answers with a status rather than raising ``Empty``/``Full``,
    so the caller raises a plain exception of its own (no remote traceback around an ordinary
    outcome)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self):
        return self.queue.qsize()

    def empty(self):
        return self.queue.empty()

    def full(self):
        return self.queue.full()

    async def put(self, item, timeout=None):
        """True once ``item`` is in; False if the queue stayed full for ``timeout`` seconds."""
        if not self.queue.full():
            self.queue.put_nowait(item)
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def get(self, timeout=None):
        """(True, item), or (False, None) if the queue stayed empty for ``timeout`` seconds."""
        if not self.queue.empty():
            return True, self.queue.get_nowait()
        if timeout is not None and timeout <= 0:
            return False, None
        try:
            return True, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return False, None

    def put_nowait(self, item):
        if self.queue.full():
            return False
        self.queue.put_nowait(item)
        return True

    def get_nowait(self):
        if self.queue.empty():
            return False, None
        return True, self.queue.get_nowait()

    def put_nowait_batch(self, items):
        """All of ``items`` in order, or none of them and why (a message for ``Full``)."""
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return (f"Cannot add {len(items)} items to queue of size {self.queue.qsize()} "
                    f"and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)
        return None

    def get_nowait_batch(self, num_items):
        """(True, the next ``num_items`` items), or (False, a message for ``Empty``) if fewer are there."""
        if num_items > self.queue.qsize():
            return False, f"Cannot get {num_items} items from queue of size {self.queue.qsize()}."
        return True, [self.queue.get_nowait() for _ in range(num_items)]


_QueueActorClass = remote(_QueueActor)


def _check_timeout(timeout):
    if timeout is None:
        return
    if not isinstance(timeout, numbers.Real):
        raise TypeError(f"'timeout' must be a non-negative number, got {type(timeout).__name__}")
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A first-in, first-out queue on an mpirt actor, usable from the driver, tasks and actors.

    ``maxsize``: the most items it holds (0 or less: unbounded). ``actor_options``: options for
    the actor that holds the items (``.options(**actor_options)``), e.g. ``{"num_cpus": 1}`` to
    reserve a CPU for it, or a ``name``/``lifetime``.

    ``put``/``get`` block while the queue is full/empty (``block=False``: raise ``Full``/``Empty``
    at once; ``timeout``: raise after that many seconds). ``put_async``/``get_async`` are the same
    for ``await``. With several producers on a full queue, or several consumers on an empty one,
    which goes first is not defined.
    """

    def __init__(self, maxsize: int = 0, actor_options: Optional[Dict] = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"Queue: 'maxsize' must be an int, got {type(maxsize).__name__}")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"Queue: 'actor_options' must be a dict of actor options, got "
                            f"{type(actor_options).__name__}")
        self.maxsize = maxsize
        self.actor: Any = _QueueActorClass.options(**(actor_options or {})).remote(maxsize)

    def _handle(self):
        if self.actor is None:
            raise RuntimeError("This Queue was shut down (Queue.shutdown()); make a new one")
        return self.actor

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return get(self._handle().qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return get(self._handle().empty.remote())

    def full(self) -> bool:
        """Whether the queue is full (never, if unbounded)."""
        return get(self._handle().full.remote())

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Add ``item``. A full queue: wait (up to ``timeout`` s, None: for ever) for room, then
        raise ``Full``; with ``block=False`` raise ``Full`` at once. ``ValueError`` for a negative
        timeout."""
        if not block:
            if not get(self._handle().put_nowait.remote(item)):
                raise Full
            return
        _check_timeout(timeout)
        if not _wait_for_call(self._handle().put.remote(item, timeout)):
            raise Full

    async def put_async(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """``put`` for asyncio code: ``await q.put_async(item)``."""
        if not block:
            if not await self._handle().put_nowait.remote(item):
                raise Full
            return
        _check_timeout(timeout)
        if not await self._handle().put.remote(item, timeout):
            raise Full

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the next item. An empty queue: wait (up to ``timeout`` s, None: for
        ever) for one, then raise ``Empty``; with ``block=False`` raise ``Empty`` at once.
        ``ValueError`` for a negative timeout."""
        if not block:
            found, item = get(self._handle().get_nowait.remote())
        else:
            _check_timeout(timeout)
            found, item = _wait_for_call(self._handle().get.remote(timeout))
        if not found:
            raise Empty
        return item

    async def get_async(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """``get`` for asyncio code: ``item = await q.get_async()``."""
        if not block:
            found, item = await self._handle().get_nowait.remote()
        else:
            _check_timeout(timeout)
            found, item = await self._handle().get.remote(timeout)
        if not found:
            raise Empty
        return item

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``: raise ``Full`` if there is no room."""
        return self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add all of ``items`` in order, or, if they do not all fit, none of them (``Full``)."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        refused = get(self._handle().put_nowait_batch.remote(list(items)))
        if refused is not None:
            raise Full(refused)

    def get_nowait(self) -> Any:
        """``get(block=False)``: raise ``Empty`` if there is no item."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> List[Any]:
        """The next ``num_items`` items, in order; ``Empty`` (and nothing removed) if fewer are there."""
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        found, items = get(self._handle().get_nowait_batch.remote(num_items))
        if not found:
            raise Empty(items)
        return items

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the actor holding the items (and free what it holds). ``force``: kill it now;
        otherwise ask it to exit after the calls it has, and kill it if it has not within
        ``grace_period_s`` seconds. The queue cannot be used afterwards."""
        if self.actor is not None:
            if force:
                kill(self.actor, no_restart=True)
            else:
                _, pending = wait([self.actor.__ray_terminate__.remote()], timeout=grace_period_s)
                if pending:
                    kill(self.actor, no_restart=True)
        self.actor = None


def _wait_for_call(ref):
    """The result of a blocking queue call. If the caller is interrupted (Ctrl-C, a cancelled
    task) the call is cancelled in the actor, so it takes no item (or room) for nobody."""
    try:
        return get(ref)
    except BaseException:
        _cancel(ref)
        raise


def _cancel(ref):
    try:
        cancel(ref)
    except Exception:  # the actor or mpirt is gone: nothing waits there any more
        pass
