"""Plain ``python app.py``: the driver spawns the head and the workers with ``MPI_Comm_spawn`` and
merges them into one communicator; spawned ranks (and ranks that replace dead ones) start here."""
import os
import socket
import sys
import threading
import time

from .. import slurm
from ..core import fault, replacement
from ..core._mpi_env import mpi
from ..core.protocol import DRIVER_RANK, HEAD_RANK
from ..core.runtime import Runtime
from ..scheduler.gpus import detect_node_gpus, restrict_visible_gpus, share_gpus
from .discovery import driver_config, rank_info, rank_resources, share_out, spawned_rank_code
from .serve import Launch, adopt_driver_environment, serve, start_driver


def _offered_gpus(num_gpus):
    """The GPU ids shared out over the spawned workers: the node's, or ``init(num_gpus=N)`` of them. N
    above the node's real count wraps around its devices, so workers share one (as ranks do under
    ``mpirun`` with ``MPIRT_NUM_GPUS``) instead of being handed a device id that does not exist."""
    real = detect_node_gpus()
    if num_gpus is None:
        return real
    if real and num_gpus > len(real):
        return [real[i % len(real)] for i in range(num_gpus)]
    return [str(i) for i in range(num_gpus)]


def start_spawned(MPI, num_cpus, num_gpus, resources, log_to_driver, namespace, object_store_memory, job_env):
    workers = slurm.spawn_worker_count() if num_cpus is None else max(num_cpus, 1)  # num_cpus=0: one, offering 0
    parent = MPI.COMM_SELF.Spawn(sys.executable, args=["-c", spawned_rank_code()], maxprocs=workers + 1)
    comm = parent.Merge(high=False)
    node_gpus = _offered_gpus(num_gpus)
    resources_by_rank = {DRIVER_RANK: {}, HEAD_RANK: {}}
    info_by_rank = {DRIVER_RANK: rank_info([], []), HEAD_RANK: rank_info([], node_gpus)}
    for i in range(workers):
        gpu_ids = share_gpus(node_gpus, i, workers)
        resources_by_rank[2 + i] = rank_resources(0 if num_cpus == 0 else 1, len(gpu_ids), {})
        info_by_rank[2 + i] = rank_info(gpu_ids, node_gpus)
    for name, amount in (resources or {}).items():
        share_out(resources_by_rank, name, amount)
    config = driver_config(log_to_driver, namespace, object_store_memory, job_env)
    config["rank_info"] = info_by_rank
    # The driver and the ranks it spawns are two MPI jobs, which Open MPI links over TCP even on
    # one host: their batches travel through host sockets instead (``MPIRT_SOCKET_MAIL=0``: MPI).
    config["driver_mail"] = os.environ.get("MPIRT_SOCKET_MAIL", "1") != "0"
    comm.bcast((config, resources_by_rank), root=0)
    pids = comm.gather(os.getpid(), root=0)
    rt = Runtime(comm, config["session"], resources_by_rank, config)
    rt.launch = Launch("spawn", comm, parent)
    if not rt.failures.enabled:
        rt.launch.watchdog = fault.SpawnedRankWatchdog({r: p for r, p in enumerate(pids) if r != DRIVER_RANK}).start()
    start_driver(rt)
    return rt


def serve_spawned():
    """Entry point of a spawned rank (see ``mpirt.launch._spawned``)."""
    parent = mpi().Comm.Get_parent()
    comm = parent.Merge(high=True)
    config, resources_by_rank = comm.bcast(None, root=0)
    comm.gather(os.getpid(), root=0)
    adopt_driver_environment(config)
    info = config["rank_info"][comm.Get_rank()]
    restrict_visible_gpus(info["gpu_ids"], info["node_gpus"])
    rt = Runtime(comm, config["session"], resources_by_rank, config)
    rt.launch = Launch("spawn", comm, parent)
    leave_with_driver(config["driver_pid"])
    serve(rt)


def serve_replacement():
    """Entry point of a rank spawned to replace a dead worker (``replacement.py``)."""
    if len(sys.argv) >= 4 and sys.argv[3] == socket.gethostname():   # ['-c', 'join', driver pid, host]
        leave_with_driver(int(sys.argv[2]))
    parent = mpi().Comm.Get_parent()

    def build_runtime(comm, plan, joining):
        config = plan["config"]
        adopt_driver_environment(config)
        info = config["rank_info"][joining.rank]
        restrict_visible_gpus(info["gpu_ids"], info["node_gpus"])
        return Runtime(comm, plan["session"], plan["resources_by_rank"], config, joining=joining)

    rt, merged = replacement.join(parent, build_runtime)
    rt.launch = Launch("spawn", merged, parent)
    serve(rt)


def leave_with_driver(driver_pid):
    """A spawned rank on the driver's host leaves when the driver died without shutting it down
    (a thread of its own: the rank's progress thread may be the one that hangs)."""

    def watch():
        while fault.process_exists(driver_pid):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="mpirt-driver-watch", daemon=True).start()

