"""Asking another rank something and waiting for the answer.

A query is a ``*_query`` message carrying a request id; the asked rank's handler answers with ``query_reply``
(``answer``). Queries serve the few calls that need another rank's state now (``available_resources``,
``object_store_stats``, named actors, store reads of spilled objects, the state API and the status snapshot),
never the task path.
"""
import itertools
import threading
import time
from typing import Any

from . import rank_state, tracing
from .signals import HOLD

QUERY_TIMEOUT_S = 30.0


class Queries:
    def __init__(self, rt):
        self.rt = rt
        self._ids = itertools.count(1)
        self._waiting = {}     # request id -> [event, answer]
        rt.register(query_reply=self._on_reply, timeline_query=self._on_timeline_query,
                    state_query=self._on_state_query)

    def ask(self, dest: int, kind: str, *payload: Any, timeout: float = QUERY_TIMEOUT_S) -> Any:
        """Send rank ``dest`` the query ``kind`` and return its answer; TimeoutError after ``timeout``
        seconds. Ctrl-C held meanwhile is raised here."""
        event = threading.Event()
        with self.rt.lock:
            request_id = next(self._ids)
            self._waiting[request_id] = [event, None]
        self.rt.send(dest, (kind, request_id, *payload))
        deadline = time.monotonic() + timeout
        try:
            while not event.wait(HOLD.wait_slice(deadline - time.monotonic())):
                if HOLD.pending_here():
                    HOLD.deliver()   # Ctrl-C: raises; else wait on
                elif time.monotonic() >= deadline:
                    raise TimeoutError(f"rank {dest} did not answer {kind} within {timeout} s")
            return self._waiting[request_id][1]
        finally:
            with self.rt.lock:
                self._waiting.pop(request_id, None)

    def answer(self, dest: int, request_id: int, value: Any) -> None:
        self.rt.send(dest, ("query_reply", request_id, value))

    def _on_reply(self, source, request_id, value):
        slot = self._waiting.get(request_id)
        if slot is not None:
            slot[1] = value
            slot[0].set()

    def _on_timeline_query(self, source, request_id):
        self.answer(source, request_id, list(tracing.events))

    def _on_state_query(self, source, request_id, what):
        self.answer(source, request_id, rank_state.collect(self.rt, what))
