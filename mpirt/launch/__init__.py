"""Starting and stopping mpirt: ``init()`` and ``shutdown()``.

Under ``mpirun -n N`` every rank runs the user's script and calls ``init()`` (``mpirun.py``): the driver
(rank 0) returns, the head (rank 1) and the workers serve until the driver shuts down, then exit with status
0 (``serve.py``). A plain ``python app.py`` spawns a head and one worker per core with ``MPI_Comm_spawn``
and merges them into one communicator (``spawn.py``). What each rank offers comes from ``discovery.py``.
"""
from __future__ import annotations

import atexit
import numbers
import os
import sys
import threading
import traceback
import warnings
from typing import Any, Callable

from .. import slurm
from ..core import current, signals, status_snapshot
from ..core._mpi_env import mpi
from ..core.protocol import DRIVER_RANK
from ..core.runtime_env import resolve as resolve_runtime_env
from ..scheduler.resources import make_shape
from ..store.capacity import requested_bytes
from .mpirun import start_under_mpirun
from .serve import finalize_with_launcher, release_communicators
from .spawn import start_spawned

_runtime_lock = threading.Lock()
_atexit_registered = False
_finalize_registered = False   # _finalize_at_exit (a spawning driver under ULFM)
_deaths_seen = False           # a rank died: this process leaves without MPI_Finalize
_mpirun_session_ended = False  # under mpirun the other ranks exit at shutdown: no second init
_status_writer = None          # the driver's status_snapshot.StatusWriter while a session runs
_shutdown_hooks: list[Callable[[Any], None]] = []   # on_shutdown's, run in the order registered

_NONE = type(None)
# init()'s keywords, Ray's, with the types each takes; INIT_ACCEPTED_ONLY says why some do nothing here.
INIT_OPTIONS = {
    "address": (str, _NONE), "num_cpus": (int, _NONE), "num_gpus": (int, _NONE), "resources": (dict, _NONE),
    "labels": (dict, _NONE), "object_store_memory": (int, _NONE), "local_mode": bool, "ignore_reinit_error": bool,
    "include_dashboard": (bool, _NONE), "dashboard_host": str, "dashboard_port": (int, _NONE), "job_config": object,
    "configure_logging": bool, "logging_level": (int, str), "logging_format": (str, _NONE), "logging_config": object,
    "log_to_driver": (bool, _NONE), "namespace": (str, _NONE), "runtime_env": (dict, _NONE),
    "enable_resource_isolation": bool, "cgroup_path": (str, _NONE), "system_reserved_cpu": (float, int, _NONE),
    "system_reserved_memory": (int, _NONE), "proxy_server_url": (str, _NONE),
}
# Ray's hidden keywords (``**kwargs``), accepted; any other raises RuntimeError, as in Ray.
INIT_HIDDEN_OPTIONS = ("_enable_object_reconstruction", "_plasma_directory", "object_spilling_directory",
                       "_node_ip_address", "_driver_object_store_memory", "_memory", "_redis_username",
                       "_redis_password", "_temp_dir", "_metrics_export_port", "_system_config",
                       "_tracing_startup_hook", "_node_name", "_skip_env_hook", "storage", "allow_multiple")
INIT_ACCEPTED_ONLY = {
    "labels": "node labels for label selectors, which mpirt does not schedule by",
    "include_dashboard, dashboard_host, dashboard_port": "mpirt has no dashboard (include_dashboard=True warns)",
    "configure_logging, logging_level, logging_format, logging_config":
        "Ray's own loggers; mpirt writes its few messages to stderr",
    "enable_resource_isolation, cgroup_path, system_reserved_cpu, system_reserved_memory":
        "cgroups for Ray's system processes; mpirt has none beside the ranks",
    "proxy_server_url": "the dashboard's proxy",
    "hidden keywords": "Ray's cluster internals (Redis, plasma directory, node IP and name, metrics port, "
                       "system config, temp dir): no counterpart in an MPI job. _system_config must be a dict and "
                       "_temp_dir absolute, as in Ray; storage and allow_multiple raise as in Ray",
}


@signals.holds_signals
def init(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
         resources: dict[str, float] | None = None, labels: dict[str, str] | None = None,
         object_store_memory: int | None = None, local_mode: bool = False, ignore_reinit_error: bool = False,
         include_dashboard=None, dashboard_host="127.0.0.1", dashboard_port=None, job_config=None,
         configure_logging=True, logging_level="info", logging_format=None, logging_config=None, log_to_driver=None,
         namespace: str | None = None, runtime_env: dict | None = None, enable_resource_isolation=False,
         cgroup_path=None, system_reserved_cpu=None, system_reserved_memory=None, proxy_server_url=None, **kwargs):
    """Start mpirt. Returns on the driver only; other ranks serve, then exit.

    Ray's keywords, checked as Ray checks them (``INIT_OPTIONS``; those without effect here are in
    ``INIT_ACCEPTED_ONLY``). ``num_cpus``: workers to spawn in plain-python mode (default: one per CPU this
    process may use, in a Slurm job the CPUs of the allocation); under mpirun, CPUs each worker rank offers
    (default 1). ``num_gpus`` and ``resources``: offered by each worker rank under mpirun, shared out over
    the spawned workers otherwise. ``runtime_env``: the job's (``env_vars``, ``working_dir``: see
    ``mpirt.runtime_env``), in place on every worker rank, and what tasks' and actors' own are merged onto.
    ``address``: None, "auto" or "local" (mpirt starts or joins its own ranks; it cannot connect to a Ray
    cluster).
    """
    global _atexit_registered
    arguments = dict(locals())
    del arguments["kwargs"]
    _check_init_keywords(arguments, kwargs)
    _check_init_args(num_cpus, num_gpus, resources)
    if include_dashboard:
        warnings.warn("init(include_dashboard=True): mpirt has no dashboard; use mpirt.timeline() for a trace "
                      "of tasks and actor calls", stacklevel=3)
    if runtime_env is None and job_config is not None:
        runtime_env = getattr(job_config, "runtime_env", None) or None
    job_env = resolve_runtime_env(runtime_env)
    log_to_driver = True if log_to_driver is None else log_to_driver
    object_store_memory = requested_bytes(object_store_memory)   # None: each node takes Ray's default
    # Ctrl-C while ranks start would leave them, and this process's MPI_Finalize, waiting forever.
    signals.driver_holds_signals()
    with _runtime_lock:
        if current.runtime() is not None:
            if ignore_reinit_error:
                return
            raise RuntimeError("Maybe you called ray.init twice by accident? This error can be suppressed by passing "
                               "in 'ignore_reinit_error=True' or by calling 'ray.shutdown()' prior to 'ray.init()'.")
        if _mpirun_session_ended:
            raise RuntimeError("under mpirun, mpirt cannot start again after shutdown(): the other ranks have "
                               "exited. Call shutdown() once, at the end of the program.")
        status_interval = status_snapshot.settings()   # a bad MPIRT_STATUS* raises before any rank starts
        MPI = mpi()
        start = start_spawned if MPI.COMM_WORLD.Get_size() == 1 else start_under_mpirun
        rt = start(MPI, num_cpus, num_gpus, resources, log_to_driver, namespace, object_store_memory, job_env)
        current.set_runtime(rt)
        _start_status_writer(rt, status_interval)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True


def _start_status_writer(rt, interval):
    """The driver writes ``status.json`` into the job's results directory (``core/status_snapshot.py``)."""
    global _status_writer
    if interval is None or rt.rank != DRIVER_RANK:
        return
    writer = status_snapshot.StatusWriter(rt, slurm.job_results_dir(), interval)
    try:
        writer.start()
    except OSError as exc:
        sys.stderr.write(f"mpirt: no status snapshot: cannot create {writer.directory}: {exc} (MPIRT_RESULTS_DIR "
                         "moves it, MPIRT_STATUS=0 turns it off)\n")
        return
    _status_writer = writer


def _stop_status_writer():
    """The last snapshot, marked finished, while the ranks still answer."""
    global _status_writer
    writer, _status_writer = _status_writer, None
    if writer is not None:
        writer.stop()


def _check_init_keywords(arguments, hidden):
    """Types (TypeError naming the keyword and value), then Ray's refusals, in Ray's words."""
    for key, value in arguments.items():
        types = INIT_OPTIONS[key]
        takes_bool = bool in (types if isinstance(types, tuple) else (types,))
        if not isinstance(value, types) or (isinstance(value, bool) and not takes_bool):
            raise TypeError(f"init(): the type of keyword '{key}' must be {types}, but received type "
                            f"{type(value)}: {key}={value!r}")
    unknown = [key for key in hidden if key not in INIT_HIDDEN_OPTIONS]
    address = arguments["address"]
    if address is not None and address not in ("auto", "local"):
        raise ValueError(f"init(address={address!r}): mpirt cannot connect to a Ray cluster. It starts its own ranks "
                         f"(python app.py) or joins those of its mpirun; leave address out (or use 'auto').")
    if hidden.get("allow_multiple"):
        raise RuntimeError("`allow_multiple` argument is passed to `ray.init` when the ray client is not used. Do "
                           "not pass the `allow_multiple` to `ray.init` to fix the issue.")
    if hidden.get("storage"):
        raise RuntimeError("Cluster-wide storage configuration has been removed. The last Ray version supporting "
                           "the `storage` argument is `ray==2.47`.")
    if unknown:
        raise RuntimeError(f"Unknown keyword argument(s): {', '.join(unknown)}")
    if arguments["local_mode"]:
        raise RuntimeError("`local_mode` is no longer supported. For interactive debugging consider using the Ray "
                           "distributed debugger.")
    if hidden.get("_system_config") is not None and not isinstance(hidden["_system_config"], dict):
        raise TypeError("The _system_config must be a dict.")
    temp_dir = hidden.get("_temp_dir")
    if temp_dir is not None and not (isinstance(temp_dir, str) and os.path.isabs(temp_dir)):
        raise ValueError("temp_dir must be absolute path or None.")


def _check_init_args(num_cpus, num_gpus, resources):
    if num_cpus is not None and num_cpus < 0:
        raise ValueError(f"init(num_cpus=...) must be an integer >= 0 (0: only 0-CPU tasks and actors run), "
                         f"got {num_cpus!r}")
    if num_gpus is not None and num_gpus < 0:
        raise ValueError(f"init(num_gpus=...) must be an integer >= 0, got {num_gpus!r}")
    if resources is not None:
        for name, amount in resources.items():
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
                raise TypeError(f"init(resources=...): the quantity of resource {name} must be a number, got "
                                f"{amount!r}")
        make_shape(0, 0, resources)


def on_shutdown(hook: Callable[[Any], None]) -> None:
    """Run ``hook(runtime)`` in ``shutdown()`` while every rank still serves, before they are told to stop: how
    a layer above this one (``util/report.py``: the job report) acts at shutdown without being imported here.
    Each hook must bound its own time; one that raises is reported and the shutdown goes on."""
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


def _run_shutdown_hooks(rt):
    for hook in _shutdown_hooks:
        try:
            hook(rt)
        except KeyboardInterrupt:   # the ranks must still be stopped
            sys.stderr.write(f"mpirt: interrupted in {hook.__qualname__} at shutdown; shutting down anyway\n")
        except Exception:  # noqa: B902 - a hook's bug must not leave the ranks running
            sys.stderr.write(f"mpirt: {hook.__qualname__} failed at shutdown; shutting down anyway:\n"
                             f"{traceback.format_exc()}")


@signals.holds_signals
def shutdown() -> None:
    """Stop every rank of this session. ``init()`` may be called again afterwards."""
    global _mpirun_session_ended
    with _runtime_lock:
        rt = current.runtime()
        if rt is None:
            return
        current.set_runtime(None)
        _mpirun_session_ended = rt.launch.mode == "mpirun"
    _stop_status_writer()
    _run_shutdown_hooks(rt)
    if rt.launch.watchdog is not None:
        rt.launch.watchdog.stop()          # the spawned ranks now exit on purpose
    if not rt.shutdown.stop_every_rank():
        sys.stderr.write("mpirt: some ranks did not acknowledge shutdown within 10 s\n")
        return
    rt.store.close(rt.shutdown.free_store)
    if rt.failures.enabled:
        _leave_after_failures(rt)
        return
    release_communicators(rt)


def _leave_after_failures(rt):
    """Under ULFM mpi4py does not finalize MPI at exit (see _mpi_env): after a rank died, MPI_Finalize can
    hang on the dead rank, so a rank that saw a death leaves without it. Under mpirun the driver then tells
    the launcher it finalized when the process exits (``finalize_with_launcher``): an unfinalized exit is
    improper to prte, which then dropped what the driver printed after ``shutdown()`` about 1 run in 2
    (tests/test_collective.py's death tests). A spawning driver may call init() again, so it finalizes
    only when the process exits."""
    global _deaths_seen, _finalize_registered
    if rt.failures.dead:
        _deaths_seen = True
        if rt.launch.mode == "mpirun":
            atexit.register(finalize_with_launcher, exit_status_if_hung=1)
        return
    release_communicators(rt)
    if rt.launch.mode != "spawn":
        mpi().Finalize()
    elif not _finalize_registered:
        atexit.register(_finalize_at_exit)
        _finalize_registered = True


def _finalize_at_exit():
    shutdown()        # registered after shutdown's own atexit hook, so it runs first
    MPI = mpi()
    if not _deaths_seen and not MPI.Is_finalized():
        MPI.Finalize()


current.set_default_starter(init)
