"""``mpirun -n N python app.py``: every rank runs the script up to ``init()``; rank 0 (the driver)
returns from it, the head and the workers serve until the driver shuts the job down."""
from .. import slurm
from ..core._mpi_env import quiet_barrier
from ..core.protocol import DRIVER_RANK
from ..core.runtime import Runtime
from ..scheduler.gpus import detect_node_gpus, restrict_visible_gpus, share_gpus
from ..store.arena import node_communicator
from .discovery import driver_config, explicit_gpus, rank_info, rank_resources
from .serve import Launch, adopt_driver_environment, serve, start_driver


def start_under_mpirun(MPI, num_cpus, num_gpus, resources, log_to_driver, namespace, object_store_memory, job_env):
    size = MPI.COMM_WORLD.Get_size()
    if size < 3:
        raise RuntimeError(f"mpirt needs at least 3 ranks under mpirun (driver, scheduler, one worker); got {size}. "
                           "Run with mpirun -n 3 or more, or as a plain python process.")
    comm = MPI.COMM_WORLD.Dup()
    rank = comm.Get_rank()
    quiet_barrier(comm)  # ranks reach init() at different times; wait without spinning
    config = comm.bcast(driver_config(log_to_driver, namespace, object_store_memory, job_env)
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
            gpu_ids = share_gpus(node_gpus, node_workers.index(rank), len(node_workers), explicit_gpus(num_gpus))
        own = rank_resources(num_cpus, len(gpu_ids), resources)
        restrict_visible_gpus(gpu_ids, node_gpus)
    gathered = comm.allgather((own, rank_info(gpu_ids, node_gpus)))
    resources_by_rank = {r: res for r, (res, _) in enumerate(gathered)}
    config["rank_info"] = {r: info for r, (_, info) in enumerate(gathered)}
    if rank != DRIVER_RANK:
        adopt_driver_environment(config, chdir=False)
    rt = Runtime(comm, config["session"], resources_by_rank, config)
    rt.launch = Launch("mpirun", comm)
    if rank == DRIVER_RANK:
        start_driver(rt)
        return rt
    serve(rt)

