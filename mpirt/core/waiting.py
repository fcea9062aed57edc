"""Waiting for objects: how ``get`` and ``wait`` block until enough of their objects are ready.

A waiting thread first drives MPI itself for up to ``POLL_BUDGET`` (most results of short calls
arrive within it), then sleeps on the runtime's condition until the object table's ``on_ready``
callbacks count enough objects. A task or threaded actor call that waits gives its CPU and the
rank's runtime_env back meanwhile (a task it waits for may need them).
"""
import itertools
import operator
import time
from typing import List, Optional

from ..exceptions import GetTimeoutError
from . import tracing
from .call_context import task_context
from .object_ref import ObjectRef, all_in_session, count_found, id_of, session_of
from .objects import RESOLVED, Entry
from .signals import HOLD
from .threads import handoffs
from .transport import POLL_BUDGET


_ready_of = operator.attrgetter("ready")
_is_error_of = operator.attrgetter("is_error")


class _Waiter:
    """Counts objects becoming ready for one get/wait call; wakes it when satisfied."""

    __slots__ = ("cond", "needed", "fail_fast", "ready", "done", "seen")

    def __init__(self, cond, needed, fail_fast):
        self.seen = RESOLVED[0]   # entries made ready in the table so far, when this waiter last looked
        self.cond = cond
        self.needed = needed
        self.fail_fast = fail_fast
        self.ready = 0
        self.done = needed <= 0

    def count(self, entry):
        self.ready += 1
        if self.ready >= self.needed or (self.fail_fast and entry.is_error):
            self.done = True

    def count_ready(self, entries):
        """Count those of ``entries`` already ready (one pass, no call per entry)."""
        ready = list(filter(_ready_of, entries))
        self.ready += len(ready)
        if self.ready >= self.needed or (self.fail_fast and any(map(_is_error_of, ready))):
            self.done = True

    def enough_ready(self, entries):
        """Whether ``needed`` of ``entries`` are ready, looked at only when an entry of the table became ready
        since the last look (``objects.RESOLVED``); stops at the ``needed``-th ready one. For a wait polling
        without callbacks."""
        resolved = RESOLVED[0]
        if resolved == self.seen:
            return False
        self.seen = resolved
        return len(list(itertools.islice(filter(_ready_of, entries), self.needed))) >= self.needed

    def on_ready(self, object_id, entry):
        if not self.done:
            self.count(entry)
            if self.done:
                handoffs[0] += 1
                self.cond.notify_all()


class _Absent:
    """Stands for the table entry of an object this rank has not heard of yet: not ready."""
    ready = False


_ABSENT = _Absent()


class ObjectWaits:
    def __init__(self, rt):
        self.rt = rt

    def first_ready(self, refs: List[ObjectRef], num_required: int) -> Optional[List[int]]:
        """The positions in ``refs`` of the first ``num_required`` objects ready now, or None if fewer are.

        ``wait`` called in a loop on what the last call left (Ray's "wait 1k refs") mostly finds a ready ref
        near the front: this look stops there, with no step per ref behind it and no lock. A ready flag read
        without the lock is safe as ``value_of`` explains; an object lost just after the look is as if it were
        lost just after ``wait`` returned."""
        entries = map(self.rt.objects.entries.get, map(id_of, refs), itertools.repeat(_ABSENT))
        positions = list(itertools.islice(itertools.compress(itertools.count(), map(_ready_of, entries)),
                                          num_required))
        return positions if len(positions) == num_required else None

    def wait_entries(self, refs: List[ObjectRef], num_required: int, timeout: Optional[float],
                     fail_fast: bool) -> List[Entry]:
        """Block until ``num_required`` of ``refs`` are ready (or one failed, if ``fail_fast``, as
        ``get`` wants); return their table entries (which stay while the refs live). On timeout
        ``get`` (fail_fast) raises GetTimeoutError; ``wait`` just returns."""
        rt = self.rt
        deadline = None if timeout is None else time.monotonic() + timeout
        ids = list(map(id_of, refs))
        session = rt.session
        if not all_in_session(ids, session):
            stale = next(ref for ref in refs if session_of(ref.id) != session)
            raise ValueError(f"{stale} belongs to an earlier mpirt session (it was created before shutdown())")
        with rt.lock:
            known = rt.objects.entries.get
            ensure = rt.objects.ensure
            entries = list(map(known, ids))
            if None in entries:   # values this rank will keep now: found refs among them are counted from here
                for ref, entry in zip(refs, entries):
                    if entry is None:
                        count_found(ref)
                entries = [entry or ensure(object_id) for object_id, entry in zip(ids, entries)]
            waiter = _Waiter(rt.cond, num_required, fail_fast)
            waiter.count_ready(entries)
            if waiter.done:
                return entries
            if fail_fast:
                self._watch(waiter, refs, entries)
        waited_from = tracing.now()

        def record_wait():
            tracing.record("wait", "get" if fail_fast else "wait", waited_from, tracing.now(), objects=len(refs))

        budget = POLL_BUDGET if deadline is None else min(POLL_BUDGET, deadline - time.monotonic())
        if budget > 0 and not rt.lock._is_owned():
            # Most waits for a call's result are short: drive MPI here for a moment rather than
            # sleep until the progress thread wakes us (and before giving a task's CPU back).
            if rt.transport.poll(lambda: waiter.done if fail_fast else waiter.enough_ready(entries), budget):
                record_wait()
                return entries
        if not fail_fast:
            with rt.lock:
                waiter.ready = 0
                waiter.count_ready(entries)
                if waiter.done:
                    record_wait()
                    return entries
                self._watch(waiter, refs, entries)
        while True:
            with rt.lock:
                if waiter.done:
                    record_wait()
                    return entries
                blocked = self._enter_blocked()
                try:
                    while not waiter.done and not HOLD.pending_here():
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            if not fail_fast:
                                break
                            raise GetTimeoutError(f"Get timed out: some object(s) not ready (timeout={timeout} s).")
                        # A signal held meanwhile (Ctrl-C) is seen within signals.SIGNAL_CHECK.
                        rt.cond.wait(HOLD.wait_slice(1.0 if remaining is None else remaining))
                finally:
                    if blocked:
                        self._exit_blocked()
                    record_wait()
                if not HOLD.pending_here():
                    return entries
            HOLD.deliver()   # outside the lock; raises KeyboardInterrupt for Ctrl-C, else wait on

    def _watch(self, waiter, refs, entries):
        """Have ``waiter`` counted as each of ``entries`` not ready yet becomes ready (runtime lock held).

        ``get`` watches at once: it needs them all. A ``wait`` first polls without this, looking again only when
        some entry of the table became ready (``_Waiter.enough_ready``): its callbacks would stay on every entry until
        that one is ready, and ``wait`` called in a loop on what the last call left (Ray's "wait 1k refs")
        registered some 16,000 an op, most never needed."""
        on_ready = self.rt.objects.on_ready
        for ref, entry in zip(refs, entries):
            if not entry.ready:
                on_ready(ref.id, waiter.on_ready)

    def _enter_blocked(self):
        """A task or actor call about to wait (runtime lock held): a task gives its CPU back,
        and either lets go of the rank's runtime_env, which a task it waits for may need."""
        if self.rt.executor is None:
            return False
        task = task_context.task
        if task is not None:
            self.rt.executor.task_blocked(task)
            return True
        actor = task_context.environment_actor
        if actor is not None:            # a threaded actor call holding its actor's runtime_env
            self.rt.actor_host.leave_environment(actor)
            return True
        return False

    def _exit_blocked(self):
        task = task_context.task
        if task is not None:
            self.rt.executor.task_unblocked(task)
        else:
            self.rt.actor_host.enter_environment(task_context.environment_actor)
