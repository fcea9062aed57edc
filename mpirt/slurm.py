"""What mpirt takes from a Slurm allocation, so a jobscript needs no mpirt flags. It reads only the environment
variables Slurm sets in a job (no Slurm command is run), for:

- resources: CPUs per rank (``--cpus-per-task``, read in ``launch/discovery.py``), GPUs per rank
  (``--gpus-per-task``; under ``srun`` each task already sees only its own GPUs, see ``gpus_bound_per_task``),
  and how many workers a plain ``python app.py`` spawns (``spawn_worker_count``: the CPUs of the allocation,
  not of the whole machine);
- default paths: results under ``$SLURM_SUBMIT_DIR/mpirt_results`` and an experiment name from the job name
  and id, which stays the same when the job is requeued, so a requeued job finds what it wrote before;
- ``job()``: the job id, array ids, node list (expanded), tasks, restarts;
- ``job_results_dir()``: this job's own directory of operations files (the status snapshot ``status.json``, the
  report ``report.html``).
"""
import functools
import os
import re
import time

_BRACKET = re.compile(r"\[([^\]]*)\]")


def in_job(environ=os.environ):
    """True inside a Slurm job (batch script, srun step, or a process they started)."""
    return bool(environ.get("SLURM_JOB_ID"))


def expand_hostlist(hostlist):
    """Slurm's compressed host list as names: ``"n[01-03,07],gpu1"`` -> n01 n02 n03 n07 gpu1. Zero padding
    is kept; several bracket groups in one name expand as a product."""
    names = []
    for item in _split_outside_brackets(hostlist or ""):
        expanded = [""]
        position = 0
        for match in _BRACKET.finditer(item):
            prefix = item[position:match.start()]
            choices = _expand_range_list(match.group(1))
            expanded = [head + prefix + choice for head in expanded for choice in choices]
            position = match.end()
        names.extend(head + item[position:] for head in expanded)
    return names


def _split_outside_brackets(text):
    items, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += (char == "[") - (char == "]")
        current += char
    items.append(current)
    return [item.strip() for item in items if item.strip()]


def _expand_range_list(ranges):
    values = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if not high:
            values.append(low)
            continue
        width = len(low) if low.startswith("0") else 0
        values.extend(str(i).zfill(width) for i in range(int(low), int(high) + 1))
    return values


def _int(environ, name):
    # SLURM_CPUS_PER_TASK and friends are plain integers; *_TASKS_PER_NODE may read "2(x3)".
    match = re.match(r"\d+", environ.get(name, ""))
    return int(match.group()) if match else None


def job(environ=os.environ):
    """The current job as a dict (None outside Slurm). Keys: ``job_id``, ``name``, ``array_job_id``,
    ``array_task_id``, ``nodes`` (host names), ``num_nodes``, ``ntasks``, ``cpus_per_task``, ``gpus_per_task``,
    ``partition``, ``submit_dir``, ``restart_count`` (times the job was requeued)."""
    if not in_job(environ):
        return None
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST", "")
    return {
        "job_id": environ["SLURM_JOB_ID"],
        "name": environ.get("SLURM_JOB_NAME"),
        "array_job_id": environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": _int(environ, "SLURM_ARRAY_TASK_ID"),
        "nodes": expand_hostlist(nodelist),
        "num_nodes": _int(environ, "SLURM_JOB_NUM_NODES") or _int(environ, "SLURM_NNODES"),
        "ntasks": _int(environ, "SLURM_NTASKS"),
        "cpus_per_task": _int(environ, "SLURM_CPUS_PER_TASK"),
        "gpus_per_task": _int(environ, "SLURM_GPUS_PER_TASK"),
        "partition": environ.get("SLURM_JOB_PARTITION"),
        "submit_dir": environ.get("SLURM_SUBMIT_DIR"),
        "restart_count": _int(environ, "SLURM_RESTART_COUNT") or 0,
    }


def default_results_dir(environ=os.environ):
    """Where results go unless told: ``$MPIRT_RESULTS_DIR``, else ``$SLURM_SUBMIT_DIR/mpirt_results`` in a job
    (compute nodes' home may be slow or read-only, the submit dir is where users look), else ``~/mpirt_results``."""
    if environ.get("MPIRT_RESULTS_DIR"):
        return environ["MPIRT_RESULTS_DIR"]
    if in_job(environ) and environ.get("SLURM_SUBMIT_DIR"):
        return os.path.join(environ["SLURM_SUBMIT_DIR"], "mpirt_results")
    return os.path.join(os.path.expanduser("~"), "mpirt_results")


def job_results_dir(environ=os.environ) -> str:
    """This job's directory for its operations files (``status.json``, ``report.html``): under
    ``default_results_dir()``, ``job-<SLURM_JOB_ID>`` in a Slurm job (a requeued job keeps it), else
    ``job-<YYYYmmdd-HHMMSS>-<pid>`` from the driver's process start, the same for the whole process. Not created
    here: whoever writes first creates it (``os.makedirs(exist_ok=True)``)."""
    if in_job(environ):
        return os.path.join(default_results_dir(environ), f"job-{environ['SLURM_JOB_ID']}")
    name = time.strftime("job-%Y%m%d-%H%M%S", time.localtime(_process_start())) + f"-{os.getpid()}"
    return os.path.join(default_results_dir(environ), name)


@functools.cache
def _process_start():
    """When this process started (seconds since the epoch): from /proc on Linux, else the first call's time."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])   # field 22, starttime, after the command name
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def default_run_name(environ=os.environ):
    """A name that survives requeueing: ``<job name>-<job id>``, for array tasks ``<job name>-<array job
    id>_<task id>``; None outside Slurm."""
    if not in_job(environ):
        return None
    name = environ.get("SLURM_JOB_NAME") or "job"
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{name}-{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return f"{name}-{environ['SLURM_JOB_ID']}"


def spawn_worker_count(environ=os.environ):
    """Workers a plain ``python app.py`` spawns by default: the CPUs this process may use (``--cpus-per-task``,
    else the job's CPUs on this node, else the CPU affinity mask), not the whole node's when Slurm gave less."""
    if in_job(environ):
        for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
            count = _int(environ, name)
            if count:
                return count
    return affinity_cpus()


def affinity_cpus():
    """The cores this process may run on (its CPU affinity mask: a launcher's binding narrows it), or the
    machine's count where there is no mask (not Linux)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def launched_by_srun(rank, size, environ=os.environ):
    """True when this process is task ``rank`` of an srun step of ``size`` tasks (under mpirun the ranks only
    inherit the batch script's SLURM_* values)."""
    return (environ.get("SLURM_STEP_ID") not in (None, "", "batch", "extern")
            and _int(environ, "SLURM_PROCID") == rank
            and _int(environ, "SLURM_STEP_NUM_TASKS") == size)


def gpus_bound_per_task(all_srun, environ=os.environ):
    """Whether Slurm already gave each task its own GPUs (``srun --gpus-per-task``; ``all_srun``: every rank was
    launched by srun): then every rank keeps the GPUs it sees instead of dealing the node's GPUs out again."""
    return bool(all_srun and _int(environ, "SLURM_GPUS_PER_TASK"))
