"""The end of a job: the driver tells every other rank to stop and waits for each to answer.

Non-driver ranks serve until they are told (``stopped``), then leave their process (``launch.serve``); the
driver finishes ``shutdown()`` once every live rank has answered.
"""
import threading
import time

from . import log_forward
from .protocol import HEAD_RANK

SHUTDOWN_TIMEOUT_S = 10.0


class ShutdownHandshake:
    def __init__(self, rt):
        self.rt = rt
        self.stopped = threading.Event()   # this rank was told to stop
        self.begun = False                 # the driver has begun telling the ranks to stop
        self.free_store = False            # the store's windows may be freed at exit
        self._answered = set()
        rt.register(shutdown=self._on_shutdown, shutdown_ack=self._on_ack)

    def stop_every_rank(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> bool:
        """Driver: tell every other rank to stop; wait until each has answered. True if all did.

        Workers are told first and the scheduler last: a rank leaves as soon as it has answered, and under
        ULFM its exit is seen as a death, which for the scheduler ends the job (``Runtime._on_rank_dead``).
        Told last, the scheduler exits only when no worker is still listening, and the driver, shutting
        down, takes no rank's exit for a death."""
        rt = self.rt
        self.begun = True
        rt.replacement.stop()
        others = {r for r in rt.live_ranks() if r != rt.rank}
        # Arrays the driver got from the store are views of its windows: while any is alive the windows
        # stay (freeing them is collective, so every rank is told).
        self.free_store = rt.store.live_views == 0
        deadline = time.monotonic() + timeout
        for group in (others - {HEAD_RANK}, others & {HEAD_RANK}):
            for rank in group:
                rt.send(rank, ("shutdown", self.free_store))
            with rt.lock:   # a rank may die meanwhile
                rt.cond.wait_for(lambda: self._answered >= group - rt.failures.dead, deadline - time.monotonic())
        rt.transport.stop()
        log_forward.finish()      # progress bars still open end with their last state
        return self._answered >= others - rt.failures.dead

    def _on_shutdown(self, source, free_store):
        log_forward.flush()
        self.free_store = free_store
        self.rt.send(source, ("shutdown_ack",))
        self.stopped.set()

    def _on_ack(self, source):
        self._answered.add(source)
        self.rt.cond.notify_all()
