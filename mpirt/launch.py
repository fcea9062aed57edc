"""Starting and stopping mpirt: role split under mpirun, spawning otherwise.

Under ``mpirun -n N`` every rank runs the user's script and calls ``init()``:
rank 0 (the driver) returns, rank 1 becomes the head scheduler and the other
ranks workers; those serve until the driver shuts down and then exit the
process with status 0. A plain ``python app.py`` spawns a head and one worker
per core with ``MPI_Comm_spawn`` and merges them into one communicator.
"""
from __future__ import annotations

import atexit
import json
import numbers
import os
import socket
import sys
import threading
import time
import warnings

from . import current, fault, log_forward, replacement, signals, slurm, task_slots
from ._debug import dump_state
from ._mpi_env import ENABLE_HINT, mpi, quiet_barrier
from .protocol import DRIVER_RANK, HEAD_RANK
from .runtime import Runtime
from .runtime_env import resolve as resolve_runtime_env
from .scheduler.gpus import detect_node_gpus, restrict_visible_gpus, share_gpus
from .scheduler.resources import make_shape
from .store.arena import node_communicator
from .store.capacity import requested_bytes

_runtime_lock = threading.Lock()
_session_counter = 0
_atexit_registered = False
_mpirun_session_ended = False  # under mpirun the other ranks exit at shutdown: no second init

_NONE = type(None)
# init()'s keywords, Ray's, with the types each takes. Those mpirt acts on: address ("auto",
# "local" or None), num_cpus, num_gpus, resources, object_store_memory, ignore_reinit_error,
# log_to_driver, namespace, runtime_env (and job_config's runtime_env), local_mode=True (refused,
# as in Ray). The others are accepted: INIT_ACCEPTED_ONLY says why they do nothing here.
INIT_OPTIONS = {
    "address": (str, _NONE),
    "num_cpus": (int, _NONE),
    "num_gpus": (int, _NONE),
    "resources": (dict, _NONE),
    "labels": (dict, _NONE),
    "object_store_memory": (int, _NONE),
    "local_mode": bool,
    "ignore_reinit_error": bool,
    "include_dashboard": (bool, _NONE),
    "dashboard_host": str,
    "dashboard_port": (int, _NONE),
    "job_config": object,
    "configure_logging": bool,
    "logging_level": (int, str),
    "logging_format": (str, _NONE),
    "logging_config": object,
    "log_to_driver": (bool, _NONE),
    "namespace": (str, _NONE),
    "runtime_env": (dict, _NONE),
    "enable_resource_isolation": bool,
    "cgroup_path": (str, _NONE),
    "system_reserved_cpu": (float, int, _NONE),
    "system_reserved_memory": (int, _NONE),
    "proxy_server_url": (str, _NONE),
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


class _Launch:
    """How this session was started, for shutdown."""

    def __init__(self, mode, comm, parent=None):
        self.mode = mode        # "mpirun" or "spawn"
        self.comm = comm
        self.parent = parent    # spawn mode: the intercommunicator to the children
        self.watchdog = None    # spawn mode without ULFM: fault.SpawnedRankWatchdog


@signals.holds_signals
def init(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
         resources: dict[str, float] | None = None, labels: dict[str, str] | None = None,
         object_store_memory: int | None = None, local_mode: bool = False, ignore_reinit_error: bool = False,
         include_dashboard=None, dashboard_host="127.0.0.1", dashboard_port=None, job_config=None,
         configure_logging=True, logging_level="info", logging_format=None, logging_config=None, log_to_driver=None,
         namespace: str | None = None, runtime_env: dict | None = None, enable_resource_isolation=False,
         cgroup_path=None, system_reserved_cpu=None, system_reserved_memory=None, proxy_server_url=None, **kwargs):
    """Start mpirt. Returns on the driver only; other ranks serve, then exit.

    Ray's keywords, checked as Ray checks them (``INIT_OPTIONS``; those without effect here
    are in ``INIT_ACCEPTED_ONLY``). ``num_cpus``: workers to spawn in plain-python mode
    (default: one per CPU this process may use, in a Slurm job the CPUs of the allocation);
    under mpirun, CPUs each worker rank offers (default 1). ``num_gpus`` and ``resources``:
    offered by each worker rank under mpirun, shared out over the spawned workers otherwise.
    ``runtime_env``: the job's (``env_vars``, ``working_dir``: see ``mpirt.runtime_env``), in
    place on every worker rank, and what tasks' and actors' own are merged onto. ``address``:
    None, "auto" or "local" (mpirt starts or joins its own ranks; it cannot connect to a Ray
    cluster).
    """
    global _session_counter, _atexit_registered
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
    object_store_memory = _store_bytes(object_store_memory)
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
        MPI = mpi()
        world = MPI.COMM_WORLD
        _session_counter += 1
        if world.Get_size() == 1:
            rt = _start_spawned(MPI, num_cpus, num_gpus, resources, log_to_driver, namespace, object_store_memory,
                                job_env)
        else:
            rt = _start_under_mpirun(MPI, world, num_cpus, num_gpus, resources, log_to_driver, namespace,
                                     object_store_memory, job_env)
        current.set_runtime(rt)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True


def _check_init_keywords(arguments, hidden):
    """Types (TypeError naming the keyword and value), then Ray's refusals, in Ray's words."""
    for key, value in arguments.items():
        types = INIT_OPTIONS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
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


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


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


def _store_bytes(object_store_memory):
    """Store bytes per node asked for (argument, else MPIRT_OBJECT_STORE_MEMORY), or None: each node
    then takes Ray's default for its own memory (``store/capacity.py``)."""
    return requested_bytes(object_store_memory)


def _session_id():
    return ((os.getpid() & 0x3FF) << 10 | (_session_counter & 0x3FF)) or 1


def _driver_config(log_to_driver, namespace, object_store_memory, runtime_env):
    return {
        "runtime_env": runtime_env,   # the job's, as runtime_env.resolve gives it
        "session": _session_id(),
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
        "driver_pid": os.getpid(),
        "log_to_driver": log_to_driver,
        "namespace": namespace,
        "object_store_memory": object_store_memory,
        # Node grouping for tests that make one machine play several nodes (store/arena.py).
        "ranks_per_node": int(os.environ.get("MPIRT_RANKS_PER_NODE", 0)) or None,
        # How multi-CPU worker ranks run tasks: slot processes or threads (task_slots.py).
        "task_slots": task_slots.mode_from_environment(),
    }


# -- plain python: spawn ---------------------------------------------------
def _start_spawned(MPI, num_cpus, num_gpus, resources, log_to_driver, namespace, object_store_memory, job_env):
    workers = slurm.spawn_worker_count() if num_cpus is None else max(num_cpus, 1)  # num_cpus=0: one, offering 0
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {package_parent!r}); from mpirt._spawned import main; main()"
    parent = MPI.COMM_SELF.Spawn(sys.executable, args=["-c", code], maxprocs=workers + 1)
    comm = parent.Merge(high=False)
    node_gpus = [str(i) for i in range(num_gpus)] if num_gpus is not None else detect_node_gpus()
    resources_by_rank = {DRIVER_RANK: {}, HEAD_RANK: {}}
    rank_info = {DRIVER_RANK: _rank_info([], []), HEAD_RANK: _rank_info([], node_gpus)}
    for i in range(workers):
        gpu_ids = share_gpus(node_gpus, i, workers)
        resources_by_rank[2 + i] = _rank_resources(0 if num_cpus == 0 else 1, len(gpu_ids), {})
        rank_info[2 + i] = _rank_info(gpu_ids, node_gpus)
    for name, amount in (resources or {}).items():
        _share_out(resources_by_rank, name, amount)
    config = _driver_config(log_to_driver, namespace, object_store_memory, job_env)
    config["rank_info"] = rank_info
    # The driver and the ranks it spawns are two MPI jobs, which Open MPI links over TCP even on
    # one host: their batches travel through host sockets instead (``MPIRT_SOCKET_MAIL=0``: MPI).
    config["driver_mail"] = os.environ.get("MPIRT_SOCKET_MAIL", "1") != "0"
    comm.bcast((config, resources_by_rank), root=0)
    pids = comm.gather(os.getpid(), root=0)
    rt = Runtime(comm, config["session"], resources_by_rank, config)
    rt.launch = _Launch("spawn", comm, parent)
    if not rt.failures.enabled:
        rt.launch.watchdog = fault.SpawnedRankWatchdog({r: p for r, p in enumerate(pids) if r != DRIVER_RANK}).start()
    _start_driver(rt)
    return rt


def _rank_info(gpu_ids, node_gpus):
    return {"hostname": socket.gethostname(), "gpu_ids": gpu_ids, "node_gpus": node_gpus}


def _share_out(resources_by_rank, name, amount):
    """Deal whole units of a node-wide resource round-robin over the worker ranks.

    The head pools them again per node (scheduler/head.py), so a task may ask for all of
    them; the per-rank table only says what each rank brings to its node's pool."""
    workers = sorted(r for r in resources_by_rank if r >= 2)
    if not amount or not workers:
        return
    whole = int(amount)
    for i in range(whole):
        rank = workers[i % len(workers)]
        resources_by_rank[rank][name] = resources_by_rank[rank].get(name, 0.0) + 1.0
    if amount - whole > 1e-9:
        rank = workers[0]
        resources_by_rank[rank][name] = resources_by_rank[rank].get(name, 0.0) + (amount - whole)


def serve_spawned():
    """Entry point of a spawned rank (see ``mpirt._spawned``)."""
    MPI = mpi()
    parent = MPI.Comm.Get_parent()
    comm = parent.Merge(high=True)
    config, resources_by_rank = comm.bcast(None, root=0)
    comm.gather(os.getpid(), root=0)
    _adopt_driver_environment(config)
    info = config["rank_info"][comm.Get_rank()]
    restrict_visible_gpus(info["gpu_ids"], info["node_gpus"])
    rt = Runtime(comm, config["session"], resources_by_rank, config)
    rt.launch = _Launch("spawn", comm, parent)
    _leave_with_driver(config["driver_pid"])
    _serve(rt)


def serve_replacement():
    """Entry point of a rank spawned to replace a dead worker (``replacement.py``)."""
    if len(sys.argv) >= 4 and sys.argv[3] == socket.gethostname():   # ['-c', 'join', driver pid, host]
        _leave_with_driver(int(sys.argv[2]))
    MPI = mpi()
    parent = MPI.Comm.Get_parent()

    def build_runtime(comm, plan, joining):
        config = plan["config"]
        _adopt_driver_environment(config)
        info = config["rank_info"][joining.rank]
        restrict_visible_gpus(info["gpu_ids"], info["node_gpus"])
        return Runtime(comm, plan["session"], plan["resources_by_rank"], config, joining=joining)

    rt, merged = replacement.join(parent, build_runtime)
    rt.launch = _Launch("spawn", merged, parent)
    _serve(rt)


def _leave_with_driver(driver_pid):
    """A spawned rank on the driver's host leaves when the driver died without shutting it down
    (a thread of its own: the rank's progress thread may be the one that hangs)."""

    def watch():
        while fault.process_exists(driver_pid):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="mpirt-driver-watch", daemon=True).start()


# -- mpirun ------------------------------------------------------------------
def _start_under_mpirun(MPI, world, num_cpus, num_gpus, resources, log_to_driver, namespace, object_store_memory,
                        job_env):
    size = world.Get_size()
    if size < 3:
        raise RuntimeError(
            f"mpirt needs at least 3 ranks under mpirun (driver, scheduler, one worker); got {size}. "
            "Run with mpirun -n 3 or more, or as a plain python process."
        )
    comm = world.Dup()
    rank = comm.Get_rank()
    quiet_barrier(comm)  # ranks reach init() at different times; wait without spinning
    config = comm.bcast(_driver_config(log_to_driver, namespace, object_store_memory, job_env)
                        if rank == DRIVER_RANK else None, root=DRIVER_RANK)
    node_comm = node_communicator(comm, config["ranks_per_node"])
    node_workers = [r for r in node_comm.allgather(rank) if r >= 2]
    node_comm.Free()
    own, gpu_ids, node_gpus = {}, [], []
    all_srun = comm.allreduce(slurm.launched_by_srun(rank, size), op=MPI.LAND)
    if rank >= 2:
        node_gpus = detect_node_gpus()
        if slurm.gpus_bound_per_task(all_srun):  # srun --gpus-per-task: each task sees only its own
            gpu_ids = node_gpus if num_gpus is None else node_gpus[:num_gpus]
        else:
            gpu_ids = share_gpus(node_gpus, node_workers.index(rank), len(node_workers), _explicit_gpus(num_gpus))
        own = _rank_resources(num_cpus, len(gpu_ids), resources)
        restrict_visible_gpus(gpu_ids, node_gpus)
    gathered = comm.allgather((own, _rank_info(gpu_ids, node_gpus)))
    resources_by_rank = {r: res for r, (res, _) in enumerate(gathered)}
    config["rank_info"] = {r: info for r, (_, info) in enumerate(gathered)}
    if rank != DRIVER_RANK:
        _adopt_driver_environment(config, chdir=False)
    rt = Runtime(comm, config["session"], resources_by_rank, config)
    rt.launch = _Launch("mpirun", comm)
    if rank == DRIVER_RANK:
        _start_driver(rt)
        return rt
    _serve(rt)


def _debug_dumps(rt):
    if os.environ.get("MPIRT_DEBUG_DUMP"):
        rt.transport.add_ticker(float(os.environ["MPIRT_DEBUG_DUMP"]), lambda: dump_state(rt))


def _start_driver(rt):
    rt.register(log=log_forward.print_forwarded)
    signals.driver_exits_cleanly_on_sigterm()
    signals.driver_holds_signals()
    if rt.launch.mode == "mpirun" and not rt.failures.enabled and not os.environ.get("MPIRT_QUIET"):
        sys.stderr.write(f"mpirt: without ULFM a worker rank that dies ends the whole job; {ENABLE_HINT}\n")
    slots_line = task_slots.describe(rt.config["task_slots"], rt.cluster.resources_by_rank, rt.cluster.worker_ranks)
    if slots_line and not os.environ.get("MPIRT_QUIET"):
        sys.stderr.write(slots_line + "\n")
    rt.start()
    _debug_dumps(rt)


def _explicit_gpus(num_gpus):
    """GPUs per worker rank if the user said: init(), MPIRT_NUM_GPUS or Slurm's --gpus-per-task."""
    if num_gpus is not None:
        return num_gpus
    for variable in ("MPIRT_NUM_GPUS", "SLURM_GPUS_PER_TASK"):
        if os.environ.get(variable):
            return int(os.environ[variable])
    return None


def _rank_resources(num_cpus, num_gpus, resources):
    """What this worker rank adds to its node's pool: init() arguments, else MPIRT_* (then Slurm)
    variables, else 1 CPU. Zero amounts are left out, as Ray leaves them out of its tables."""
    env = os.environ
    cpus = num_cpus
    if cpus is None:
        cpus = float(env.get("MPIRT_NUM_CPUS") or env.get("SLURM_CPUS_PER_TASK") or 1)
    custom = resources if resources is not None else json.loads(env.get("MPIRT_RESOURCES", "{}"))
    own = {"CPU": float(cpus)} if float(cpus) else {}
    if num_gpus:
        own["GPU"] = float(num_gpus)
    own.update({k: float(v) for k, v in custom.items() if float(v)})
    return own


def _adopt_driver_environment(config, chdir=True):
    for entry in reversed(config["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if chdir:
        try:
            os.chdir(config["cwd"])
        except OSError:
            pass


def _serve(rt):
    """Non-driver ranks: run until the driver says shutdown, then leave the process."""
    current.set_runtime(rt)  # tasks running here submit and get through it
    if rt.config.get("log_to_driver", True):
        log_forward.install(rt, "scheduler" if rt.rank == HEAD_RANK else "worker")
    signals.serve_until_driver_says(rt.stopped)
    rt.start()
    _debug_dumps(rt)
    rt.stopped.wait()
    log_forward.flush()
    rt.transport.stop()
    rt.store.close(rt.free_store_at_exit)
    try:
        if not rt.failures.dead:        # after a death MPI_Finalize could hang on the dead rank
            _release_communicators(rt)
            mpi().Finalize()
        elif rt.members is not None:
            _finalize_joined()
    finally:
        sys.__stdout__.flush()
        sys.__stderr__.flush()
        os._exit(0)


def _finalize_joined():
    """A rank that joined in place of a dead one is a launcher job of its own, which no death
    touched: leaving without finalizing, the launcher calls its exit improper and ends the whole
    job by signal. MPI_Finalize would wait on the connected jobs' dead processes, so it only tells
    the launcher it finalized (PMIx's own call, where Open MPI's PMIx library is loaded)."""
    import ctypes

    try:
        pmix = ctypes.CDLL("libpmix.so.2")
        finalize = pmix.PMIx_Finalize
    except (OSError, AttributeError):
        return
    threading.Timer(5.0, lambda: os._exit(0)).start()   # foreign calls release the GIL: this can fire
    finalize(None, ctypes.c_size_t(0))


def _release_communicators(rt):
    rt.replacement.release()
    launch = rt.launch
    if launch.mode == "spawn":
        launch.comm.Free()
        launch.parent.Disconnect()
    else:
        launch.comm.Free()


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
    if rt.launch.watchdog is not None:
        rt.launch.watchdog.stop()          # the spawned ranks now exit on purpose
    complete = rt.shutdown_cluster()
    if not complete:
        sys.stderr.write("mpirt: some ranks did not acknowledge shutdown within 10 s\n")
        return
    rt.store.close(rt.free_store_at_exit)
    if rt.failures.enabled:
        _leave_after_failures(rt)
        return
    _release_communicators(rt)


def _leave_after_failures(rt):
    """Under ULFM mpi4py does not finalize MPI at exit (see _mpi_env): after a rank died,
    MPI_Finalize can hang on the dead rank, so a rank that saw a death leaves without it.
    A spawning driver may call init() again, so it finalizes only when the process exits."""
    global _deaths_seen, _finalize_registered
    if rt.failures.dead:
        _deaths_seen = True
        return
    _release_communicators(rt)
    if rt.launch.mode == "spawn":
        if not _finalize_registered:
            atexit.register(_finalize_at_exit)
            _finalize_registered = True
        return
    mpi().Finalize()


_deaths_seen = False
_finalize_registered = False


def _finalize_at_exit():
    shutdown()        # registered after shutdown's own atexit hook, so it runs first
    MPI = mpi()
    if not _deaths_seen and not MPI.Is_finalized():
        MPI.Finalize()


current.set_default_starter(init)
