"""Surviving a worker rank's death: detection under ULFM, and who is told.

Open MPI's ULFM (``mpirun --with-ft ulfm``) keeps the other ranks running when
one dies: MPI calls that involve the dead rank, and any-source receives, raise
``ERR_PROC_FAILED`` until the failure is acknowledged. ``FailureMonitor`` runs
on the progress thread: it acknowledges failures, asks MPI which ranks failed
(``Get_failed``, also polled every ``POLL_SECONDS``), and calls every death
handler once per dead rank, under the runtime lock. The handlers (submitter,
actor caller, object table, head scheduler) retry tasks, restart actors and
rebuild lost objects; see docs/design.md "Fault tolerance".

A dead worker process that exits without SIGKILL (``os._exit`` inside a task)
is only noticed by ULFM's heartbeat detector, so mpirt turns it on with a short
period when ULFM is enabled. Without ULFM a dead rank ends the whole job.
"""
import os
import sys

from ._mpi_env import mpi

POLL_SECONDS = 0.05
# ULFM's heartbeat detector. It beats from MPI progress, which the progress thread drives at
# least every millisecond; a rank silent for the timeout is declared dead (and aborts itself
# if it was alive after all), so the timeout is generous: a rank waiting for a core on a busy
# node must not be taken for dead (timeout > 3 periods). The detector's own thread
# (mpi_ft_detector_thread) hung or failed start-up in most runs here: not used.
_DETECTOR_DEFAULTS = {
    "OMPI_MCA_mpi_ft_detector": "true",
    "OMPI_MCA_mpi_ft_detector_period": "0.5",
    "OMPI_MCA_mpi_ft_detector_timeout": "4.0",
}
ENABLE_HINT = ("run the job with `mpirun --with-ft ulfm -n N python app.py` (Open MPI 5) so that mpirt "
               "survives the death of a worker rank")


def ulfm_requested(environ=os.environ):
    """True when mpirun was started with ``--with-ft ulfm`` (it sets this for every rank)."""
    return environ.get("OMPI_MCA_mpi_ft_enable", "").lower() in ("1", "true", "yes")


def apply_defaults(environ=os.environ):
    if ulfm_requested(environ):
        for key, value in _DETECTOR_DEFAULTS.items():
            environ.setdefault(key, value)


def _failure_classes(MPI):
    names = ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED")
    return {getattr(MPI, name) for name in names if hasattr(MPI, name)}


class FailureMonitor:
    def __init__(self, runtime):
        self.rt = runtime
        self.comm = runtime.comm
        MPI = mpi()
        self.enabled = ulfm_requested() and hasattr(MPI.Comm, "Get_failed") and hasattr(MPI.Comm, "Ack_failed")
        self.failure_classes = _failure_classes(MPI)
        self.dead = set()
        self.handlers = []        # fn(rank), called under runtime.lock by whichever thread drives MPI
        if self.enabled:
            runtime.transport.failures = self
            runtime.transport.add_ticker(POLL_SECONDS, self.check)

    def on_mpi_error(self, error):
        """An MPI call raised: True if it was a process failure (now handled), else False."""
        if not self.enabled:
            return False
        try:
            error_class = error.Get_error_class()
        except Exception:  # noqa: BLE001 - not an MPI error at all
            return False
        if error_class not in self.failure_classes:
            return False
        self.check()
        return True

    def check(self):
        """Acknowledge failures MPI knows of and report ranks that died since the last check."""
        MPI = mpi()
        try:
            self.comm.Ack_failed()
            failed = self.comm.Get_failed()
        except MPI.Exception:
            return
        count = failed.Get_size()
        if count == len(self.dead):
            failed.Free()
            return
        ranks = MPI.Group.Translate_ranks(failed, list(range(count)), self.comm.Get_group())
        failed.Free()
        for rank in sorted(set(ranks) - self.dead):
            self.declare_dead(rank)

    def declare_dead(self, rank):
        # The progress thread's ticker and a thread in Transport.poll may both get here: the
        # test-and-add happens under the runtime lock, so each death is handled once.
        with self.rt.lock:
            if rank in self.dead:
                return
            self.dead.add(rank)
            self.rt.transport.forget(rank)
            for handler in self.handlers:
                try:
                    handler(rank)
                except Exception:  # noqa: BLE001 - one component's bug must not stop the others
                    import traceback
                    sys.__stderr__.write(f"mpirt rank {self.rt.rank}: handling the death of rank {rank} failed:\n"
                                         + traceback.format_exc())
