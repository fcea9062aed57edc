"""What a rank does once its Runtime is built: the driver starts its threads and returns to the user's
program; every other rank serves until the driver shuts the job down, then leaves."""
import contextlib
import os
import sys
import threading

from ..core import current, log_forward, signals, task_slots
from ..core._debug import dump_state
from ..core._mpi_env import ENABLE_HINT, mpi
from ..core.protocol import HEAD_RANK


class Launch:
    """How this session was started, for shutdown."""

    def __init__(self, mode, comm, parent=None):
        self.mode = mode        # "mpirun" or "spawn"
        self.comm = comm
        self.parent = parent    # spawn mode: the intercommunicator to the children
        self.watchdog = None    # spawn mode without ULFM: fault.SpawnedRankWatchdog


def start_driver(rt):
    rt.register(log=log_forward.print_forwarded)
    rt.failures.handlers.append(log_forward.rank_died)
    signals.driver_exits_cleanly_on_sigterm()
    signals.driver_holds_signals()
    if rt.launch.mode == "mpirun" and not rt.failures.enabled and not os.environ.get("MPIRT_QUIET"):
        sys.stderr.write(f"mpirt: without ULFM a worker rank that dies ends the whole job; {ENABLE_HINT}\n")
    slots_line = task_slots.describe(rt.config["task_slots"], rt.cluster.resources_by_rank, rt.cluster.worker_ranks)
    if slots_line and not os.environ.get("MPIRT_QUIET"):
        sys.stderr.write(slots_line + "\n")
    start_runtime(rt)


def start_runtime(rt):
    rt.start()
    if os.environ.get("MPIRT_DEBUG_DUMP"):
        rt.transport.add_ticker(float(os.environ["MPIRT_DEBUG_DUMP"]), lambda: dump_state(rt))


def adopt_driver_environment(config, chdir=True):
    for entry in reversed(config["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if chdir:
        with contextlib.suppress(OSError):
            os.chdir(config["cwd"])


PARENT_CHECK_S = 2.0


def serve(rt):
    """Non-driver ranks: run until the driver says shutdown, then leave the process."""
    current.set_runtime(rt)  # tasks running here submit and get through it
    if rt.config.get("log_to_driver", True):
        log_forward.install(rt, "scheduler" if rt.rank == HEAD_RANK else "worker")
    signals.serve_until_driver_says(rt.shutdown.stopped)
    start_runtime(rt)
    _wait_for_shutdown(rt)
    log_forward.flush()
    rt.transport.stop()
    rt.store.close(rt.shutdown.free_store)
    try:
        if not rt.failures.dead:        # after a death MPI_Finalize could hang on the dead rank
            release_communicators(rt)
            mpi().Finalize()
        else:
            finalize_with_launcher()
    finally:
        sys.__stdout__.flush()
        sys.__stderr__.flush()
        os._exit(0)


def _wait_for_shutdown(rt):
    """Wait for the driver's shutdown; leave if the launcher that started this process is gone.

    A rank's parent is its launcher (prte or prted, slurmstepd, or the driver's prte in spawn mode), which
    never goes before the job ends. When it dies without the ranks learning of it (seen under
    ``mpirun --with-ft ulfm`` after the head rank's death: a worker left orphaned, waiting for ever),
    nothing else would end this rank. Checked every ``PARENT_CHECK_S`` s: one wake-up, no spinning."""
    parent = os.getppid()
    while not rt.shutdown.stopped.wait(PARENT_CHECK_S):
        if os.getppid() != parent:
            sys.__stderr__.write(f"mpirt: rank {rt.rank} leaves: its launcher (pid {parent}) is gone\n")
            sys.__stderr__.flush()
            os._exit(1)


def finalize_with_launcher(exit_status_if_hung: int = 0) -> None:
    """Leave without MPI_Finalize (after a death it would wait on the dead rank) yet properly: a process
    that exits unfinalized is an improper exit to the launcher, which then ends the whole job by signal.
    Under ``mpirun --with-ft ulfm`` that killed the driver between its ``shutdown()`` and its next line
    about 1 run in 15 (tests/test_collective.py's death tests); a rank that joined in place of a dead
    one is a launcher job of its own and was ended so every time. So this only tells the launcher the
    process finalized (PMIx's own call, where Open MPI's PMIx library is loaded). Should that call hang,
    the process leaves after 5 s with ``exit_status_if_hung``."""
    import ctypes

    try:
        finalize = ctypes.CDLL("libpmix.so.2").PMIx_Finalize
    except (OSError, AttributeError):
        return
    leave = threading.Timer(5.0, os._exit, (exit_status_if_hung,))   # foreign calls release the GIL: this can fire
    leave.daemon = True
    leave.start()
    finalize(None, ctypes.c_size_t(0))


def release_communicators(rt):
    rt.replacement.release()
    if rt.collective_comm is not None:
        rt.collective_comm.Free()
    rt.launch.comm.Free()
    if rt.launch.mode == "spawn":
        rt.launch.parent.Disconnect()

