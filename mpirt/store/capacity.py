"""How big a node's store is and where its memory lives, decided once per node at start-up.

Like Ray: the store may use 30% of the node's memory (at most 200 GB), where the node's memory
is the least of the machine's RAM, what the job may use (Slurm's ``SLURM_MEM_PER_NODE`` /
``SLURM_MEM_PER_CPU``, the cgroup memory limit), and ``init(object_store_memory=...)`` or
``MPIRT_OBJECT_STORE_MEMORY`` overrides it. The memory is a file in ``/dev/shm`` when that file
system can hold the whole store; containers often give ``/dev/shm`` only 64 MB, and then the
file goes to node-local temporary space instead (page cache backed, slower under memory
pressure), which is said once at start-up, as Ray does.
"""
import os
import tempfile

STORE_MEMORY_FRACTION = 0.3          # Ray's DEFAULT_OBJECT_STORE_MEMORY_PROPORTION
MAX_DEFAULT_STORE_BYTES = 200 * 10**9  # Ray's DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES
MIN_STORE_BYTES = 1 << 20
SHM_DIR = "/dev/shm"
_NO_LIMIT = 1 << 60                  # cgroup v1 reports "no limit" as a huge number


def requested_bytes(object_store_memory):
    """The store size asked for: the argument, else ``MPIRT_OBJECT_STORE_MEMORY``; None means the
    per-node default. Raises ValueError naming the bad value."""
    value, source = object_store_memory, "object_store_memory"
    if value is None and os.environ.get("MPIRT_OBJECT_STORE_MEMORY"):
        source, raw = "MPIRT_OBJECT_STORE_MEMORY", os.environ["MPIRT_OBJECT_STORE_MEMORY"]
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"MPIRT_OBJECT_STORE_MEMORY must be an integer number of bytes >= 1 MiB, "
                             f"got {raw!r}") from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_STORE_BYTES:
        raise ValueError(f"{source} must be an integer number of bytes >= 1 MiB (e.g. 4 * 2**30), got {value!r}")
    return value


def node_memory():
    """(bytes this job may use on this node, where that figure comes from)."""
    total = meminfo_bytes("MemTotal")
    if total is None:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limits = [(total, "the node's RAM (MemTotal)")]
    mem_per_node = os.environ.get("SLURM_MEM_PER_NODE")
    mem_per_cpu = os.environ.get("SLURM_MEM_PER_CPU")
    if mem_per_node and mem_per_node.isdigit() and int(mem_per_node) > 0:
        limits.append((int(mem_per_node) << 20, "SLURM_MEM_PER_NODE"))
    elif mem_per_cpu and mem_per_cpu.isdigit():
        cpus = os.environ.get("SLURM_CPUS_ON_NODE", "1")
        limits.append((int(mem_per_cpu) * (int(cpus) if cpus.isdigit() else 1) << 20,
                       "SLURM_MEM_PER_CPU x SLURM_CPUS_ON_NODE"))
    cgroup = _cgroup_limit()
    if cgroup:
        limits.append((cgroup, "the cgroup memory limit"))
    return min(limits)


def default_bytes():
    """(Ray-like default store size for this node, why)."""
    memory, source = node_memory()
    size = int(memory * STORE_MEMORY_FRACTION)
    if size > MAX_DEFAULT_STORE_BYTES:
        return MAX_DEFAULT_STORE_BYTES, f"200 GB cap (30% of {_gib(memory)} from {source} is more)"
    return max(size, MIN_STORE_BYTES), f"30% of {_gib(memory)}, {source}"


def choose(requested):
    """(store bytes, why, directory for its file, a warning to show or None) for this node."""
    if requested is None:
        size, why = default_bytes()
    else:
        size, why = requested, "object_store_memory / MPIRT_OBJECT_STORE_MEMORY"
    shm_dir = os.environ.get("MPIRT_SHM_DIR", SHM_DIR)
    shm_free = _free_bytes(shm_dir)
    if shm_free >= size:
        return size, why, shm_dir, None
    local = node_local_temp_dir()
    warning = (f"mpirt: the object store ({size:,} bytes) does not fit in {shm_dir} ({shm_free:,} bytes free); "
               f"it is a file in {local} instead, which may be slower. Give the container a larger {shm_dir} "
               f"(docker run --shm-size=...) or pass a smaller init(object_store_memory=...).")
    disk_free = _free_bytes(local)
    if disk_free < size:
        size = max(int(disk_free * 0.9), MIN_STORE_BYTES)
        why += f"; cut to 90% of the {_gib(disk_free)} free in {local}"
    return size, why, local, warning


def node_local_temp_dir():
    """The job's node-local temporary directory: Slurm's, else $TMPDIR, else /tmp."""
    for name in ("SLURM_TMPDIR", "TMPDIR"):
        path = os.environ.get(name)
        if path and os.path.isdir(path):
            return path
    return tempfile.gettempdir()


def _free_bytes(path):
    forced = os.environ.get("MPIRT_SHM_AVAILABLE_BYTES") if path == os.environ.get("MPIRT_SHM_DIR", SHM_DIR) else None
    if forced:   # tests: play a small /dev/shm (containers' 64 MB) without mounting one
        return int(forced)
    try:
        stat = os.statvfs(path)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def meminfo_bytes(field):
    """``field`` of /proc/meminfo (``"MemTotal"``, ``"MemAvailable"``) in bytes, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_limit():
    """The memory limit of this process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), or None."""
    candidates = []
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":
                    candidates.append(f"/sys/fs/cgroup{path}/memory.max")
                elif "memory" in controllers.split(","):
                    candidates.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    except OSError:
        pass
    candidates += ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    for path in candidates:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < _NO_LIMIT:
            return int(text)
    return None


def _gib(n):
    return f"{n / 2**30:.1f} GiB"
