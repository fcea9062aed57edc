"""MPI environment defaults and the one place that imports mpi4py.MPI.

MPI reads most of these variables once, when it initializes, so they are set
before the first ``from mpi4py import MPI``. A value the user already set wins, in the environment or
in an MCA parameter file. Which network MPI may use is ``_mpi_network``'s part.
"""
import os
import sys

from ._mpi_network import apply_network_defaults, mca_parameter_set

_DEFAULTS = {
    # Spawning more ranks than cores (plain ``python app.py`` on a laptop): Open MPI 5 (PRRTE),
    # and Open MPI 4 (a site's MPI), whose singleton spawn otherwise stops at the core count.
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    # Where _mpi_network has not chosen the BTLs (several hosts, a site's MPI): libfabric's BTL probes
    # every provider, which costs a second at start-up, and TCP does its work.
    "OMPI_MCA_btl": "^ofi",
    # UCX one-sided components misbehave with shared-memory windows here.
    "OMPI_MCA_osc": "^ucx",
    # Ranks waiting inside MPI (start-up, Finalize) yield the core instead of spinning.
    "OMPI_MCA_mpi_yield_when_idle": "1",
}

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
# Set by an MPI launcher (mpirun/prterun, srun, hydra) in the processes it starts; a process
# with none of them is a singleton: mpirt spawns its ranks (launch/spawn.py).
_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS")
_SPAWN_DEFAULTS = {
    "OMPI_MCA_mpi_ft_enable": "1",
    "PRTE_MCA_state_base_recoverable": "1",
}


def ulfm_requested(environ=os.environ):
    """True when ULFM is asked for: ``mpirun --with-ft ulfm`` sets this for every rank, and
    mpirt sets it for a plain ``python app.py`` (``apply_ft_defaults``)."""
    return environ.get("OMPI_MCA_mpi_ft_enable", "").lower() in ("1", "true", "yes")


def is_singleton(environ=os.environ) -> bool:
    """True for a plain ``python app.py``: no MPI launcher started this process."""
    return not any(environ.get(name) for name in _LAUNCHER_VARIABLES)


def apply_ft_defaults(environ=os.environ):
    """ULFM for spawned jobs (their ranks survive a worker's death), and the detector's settings."""
    singleton = is_singleton(environ)
    if singleton and "OMPI_MCA_mpi_ft_enable" not in environ:
        for key, value in _SPAWN_DEFAULTS.items():
            environ.setdefault(key, value)
    if ulfm_requested(environ):
        # Spawned ranks are children of the singleton's prte, which reports every exit at once:
        # no heartbeats needed. They would cost: a task holding the GIL in C code for longer than
        # the timeout (sum(range(10**8)) on a busy machine) stops its rank's heartbeats, and the
        # detector then declares the live rank dead and aborts it.
        defaults = {"OMPI_MCA_mpi_ft_detector": "false"} if singleton else _DETECTOR_DEFAULTS
        for key, value in defaults.items():
            environ.setdefault(key, value)


ENABLE_HINT = ("run the job with `mpirun --with-ft ulfm -n N python app.py` (Open MPI 5) so that mpirt "
               "survives the death of a worker rank")


_ROOT_DEFAULTS = dict.fromkeys(("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "PRTE_ALLOW_RUN_AS_ROOT",
                                "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM"), "1")


def apply_defaults(environ=os.environ):
    """Set mpirt's MPI defaults in ``environ`` where the user has not set them."""
    apply_ft_defaults(environ)
    apply_network_defaults(environ, is_singleton(environ), ulfm_requested(environ))
    for key, value in _DEFAULTS.items():
        if not (key.startswith("OMPI_MCA_") and mca_parameter_set(key[len("OMPI_MCA_"):], environ)):
            environ.setdefault(key, value)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        for key, value in _ROOT_DEFAULTS.items():
            environ.setdefault(key, value)
    # MPI_Comm_spawn from a singleton starts ``prte``, which the Open MPI wheel installs next to the Python
    # executable; that folder is not always on PATH (pyenv shims, a venv used without activation).
    bindir = os.path.dirname(sys.executable)
    path = environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        environ["PATH"] = bindir + (os.pathsep + path if path else "")
    # The wheel's mpirun sets OPAL_PREFIX from its own location; a singleton's processes do not,
    # and then look for their data files (the ULFM parameter set among them) at the wheel's build
    # prefix, printing a "missing-param-file" notice per rank.
    prefix = os.path.dirname(bindir)
    if os.path.isdir(os.path.join(prefix, "share", "openmpi")):
        environ.setdefault("OPAL_PREFIX", prefix)


_MPI = None


def mpi():
    """Return ``mpi4py.MPI``, initializing MPI (thread level MULTIPLE) on first use."""
    global _MPI
    if _MPI is None:
        apply_defaults()
        import mpi4py

        mpi4py.rc.thread_level = "multiple"
        if ulfm_requested():
            # After a rank dies MPI_Finalize may hang: mpirt finalizes itself when it is safe.
            mpi4py.rc.finalize = False
        from mpi4py import MPI

        _MPI = MPI
    return _MPI


def quiet_barrier(comm):
    """A barrier that waits without spinning: ranks reach it at different times (start-up, or busy
    running tasks), and a blocking one would spin a core each meanwhile."""
    import time

    request = comm.Ibarrier()
    delay = 1e-5
    while not request.Test():
        time.sleep(delay)
        delay = min(delay * 2, 5e-3)
