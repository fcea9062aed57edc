"""Asking another rank something and waiting for the answer.

A query is a ``*_query`` message carrying a request id; the asked rank's handler answers with ``query_reply``
(``answer``). Queries serve the few calls that need another rank's state now (``available_resources``,
``object_store_stats``, named actors, store reads of spilled objects, the state API and the status snapshot),
never the task path.
"""
import itertools
import threading
import time
from typing import Any, Dict, List, Tuple

from . import rank_state, tracing
from .signals import HOLD

QUERY_TIMEOUT_S = 30.0
_DIED = object()   # the answer of a query whose rank died before it answered


class QueryRankDied(TimeoutError):
    """The asked rank died before it answered (ULFM). A ``TimeoutError``, so a caller that copes with a rank
    that does not answer copes with this too, at once instead of after the query's whole timeout (600 s for
    store reads: a get on an object whose holder was SIGKILLed mid-read hung that long in the soak)."""


class Queries:
    def __init__(self, rt):
        self.rt = rt
        self._ids = itertools.count(1)
        self._waiting = {}     # request id -> [event, answer, asked rank]
        rt.register(query_reply=self._on_reply, timeline_query=self._on_timeline_query,
                    state_query=self._on_state_query)
        rt.failures.handlers.append(self._on_rank_dead)

    def ask(self, dest: int, kind: str, *payload: Any, timeout: float = QUERY_TIMEOUT_S) -> Any:
        """Send rank ``dest`` the query ``kind`` and return its answer; TimeoutError after ``timeout``
        seconds, ``QueryRankDied`` as soon as ``dest`` is known dead. Ctrl-C held meanwhile is raised here."""
        event = threading.Event()
        with self.rt.lock:
            request_id = next(self._ids)
            self._waiting[request_id] = [event, _DIED if dest in self.rt.failures.dead else None, dest]
        if self._waiting[request_id][1] is _DIED:
            event.set()
        else:
            self.rt.send(dest, (kind, request_id, *payload))
        deadline = time.monotonic() + timeout
        try:
            while not event.wait(HOLD.wait_slice(deadline - time.monotonic())):
                if HOLD.pending_here():
                    HOLD.deliver()   # Ctrl-C: raises; else wait on
                elif time.monotonic() >= deadline:
                    raise TimeoutError(f"rank {dest} did not answer {kind} within {timeout} s")
            answer = self._waiting[request_id][1]
            if answer is _DIED:
                raise QueryRankDied(f"rank {dest} died before it answered {kind}")
            return answer
        finally:
            with self.rt.lock:
                self._waiting.pop(request_id, None)

    def ask_each(self, kind: str, *payload: Any,
                 timeout: float = QUERY_TIMEOUT_S) -> Tuple[Dict[int, Any], List[int]]:
        """Ask every other live rank ``kind``, one after the other within ``timeout`` seconds in all:
        ``({rank: answer}, [ranks that did not answer in time or died first])``."""
        answers: Dict[int, Any] = {}
        missing: List[int] = []
        deadline = time.monotonic() + timeout
        for rank in self.rt.live_ranks():
            if rank == self.rt.rank:
                continue
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                answers[rank] = self.ask(rank, kind, *payload, timeout=left)
            except TimeoutError:      # QueryRankDied too
                missing.append(rank)
        return answers, missing

    def answer(self, dest: int, request_id: int, value: Any) -> None:
        self.rt.send(dest, ("query_reply", request_id, value))

    def _on_reply(self, source, request_id, value):
        slot = self._waiting.get(request_id)
        if slot is not None:
            slot[1] = value
            slot[0].set()

    def _on_rank_dead(self, rank):
        """Wake every query waiting on ``rank``: it will never answer."""
        for slot in self._waiting.values():
            if slot[2] == rank and not slot[0].is_set():
                slot[1] = _DIED
                slot[0].set()

    def _on_timeline_query(self, source, request_id):
        self.answer(source, request_id, list(tracing.events))

    def _on_state_query(self, source, request_id, what):
        self.answer(source, request_id, rank_state.collect(self.rt, what))
