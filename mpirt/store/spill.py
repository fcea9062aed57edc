"""Spill files: where a node's ranks put objects the store has no memory for.

One directory per node and job, ``mpirt-spill-<host>-<pid>-<n>`` under the spill base
(``init(object_spilling_directory=...)`` where the launcher passes it, else
``MPIRT_SPILL_DIR``, else the job's node-local temporary directory), made by the node's leader;
each rank writes its own files in ``rank<R>/``, named by object key, so a reader on the node
finds a spilled object's file even after its holder died. An ``owners`` file lists the pid and
start time of the node's processes: at start-up the leader removes the directories earlier jobs
on this host left behind (killed before they could clean up) whose processes are all gone,
never another live job's. Each rank removes its files at shutdown.
"""
import errno
import glob
import mmap
import os
import shutil
import socket
import tempfile

from .capacity import node_local_temp_dir

# Spilling stops before it takes the disk past this fraction full (Ray's local_fs_capacity_threshold).
DEFAULT_DISK_THRESHOLD = 0.95
PREFIX = "mpirt-spill-"


def process_identity(pid=None):
    """'pid:start time' of a process (start time tells a reused pid apart), or None if it is gone."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return f"{pid}:{fields[19]}"


def spill_base(configured=None):
    return configured or os.environ.get("MPIRT_SPILL_DIR") or node_local_temp_dir()


def make_node_directory(base, identities):
    """Leader: clean up dead jobs' directories under ``base`` and make this job's; its path."""
    os.makedirs(base, exist_ok=True)
    remove_stale(base)
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{socket.gethostname()}-{os.getpid()}-", dir=base)
    with open(os.path.join(path, "owners"), "w") as f:
        f.write("\n".join(identities) + "\n")
    return path


def remove_stale(base):
    """Remove spill directories of jobs on this host whose processes have all exited."""
    host = socket.gethostname()
    for path in glob.glob(os.path.join(base, f"{PREFIX}{host}-*")):
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            with open(os.path.join(path, "owners")) as f:
                owners = f.read().split()
        except OSError:
            continue
        if owners and not any(_alive(owner) for owner in owners):
            shutil.rmtree(path, ignore_errors=True)


def _allocate(fd, size):
    """Reserve ``size`` bytes of disk for the file (OSError ENOSPC when the disk has not got them);
    a file system that cannot reserve (EOPNOTSUPP, EINVAL) gets a plain sparse file."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _alive(identity):
    pid, _, _ = identity.partition(":")
    return pid.isdigit() and process_identity(int(pid)) == identity


class RankSpill:
    """This rank's spill files in the node's spill directory."""

    def __init__(self, node_directory, rank):
        self.node_directory = node_directory
        self.directory = os.path.join(node_directory, f"rank{rank}")
        self.threshold = float(os.environ.get("MPIRT_SPILL_DISK_THRESHOLD", DEFAULT_DISK_THRESHOLD))

    def path_of(self, key, holder=None):
        directory = self.directory if holder is None else os.path.join(self.node_directory, f"rank{holder}")
        return os.path.join(directory, f"{key:x}.obj")

    def room_for(self, size):
        """Whether ``size`` more bytes keep the disk under the threshold; (ok, free bytes)."""
        os.makedirs(self.directory, exist_ok=True)
        stat = os.statvfs(self.directory)
        total, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
        return (total - free + size) <= self.threshold * total, free

    def write(self, key, size, fill):
        """Make the file of object ``key``: ``fill(memoryview)`` writes its ``size`` bytes. The
        file appears under its final name only when complete.

        The file's blocks are allocated before it is mapped: a store into a mapped page the disk
        has no room for is a SIGBUS that kills the rank (``room_for`` is checked first, but the
        disk may fill in between, from another job or the results directory), while a failed
        allocation is an OSError (ENOSPC) the caller turns into "no room". A file not completed
        is removed."""
        os.makedirs(self.directory, exist_ok=True)
        path = self.path_of(key)
        partial = path + ".part"
        try:
            with open(partial, "w+b") as f:
                if size:
                    _allocate(f.fileno(), size)
                    with mmap.mmap(f.fileno(), size) as mapped, memoryview(mapped) as view:
                        fill(view)
            os.replace(partial, path)
        except BaseException:
            _remove(partial)
            raise
        return path

    def remove_all_but(self, dead, kept):
        """Remove the files the ``dead`` ranks left (finished or not), except the paths in ``kept``: their
        store was adopted (``manager.py``), and nothing refers to the others."""
        for rank in dead:
            directory = os.path.join(self.node_directory, f"rank{rank}")
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                path = os.path.join(directory, name)
                if path not in kept:
                    _remove(path)

    def close(self, dead=()):
        """Remove this rank's files and those of the ``dead`` ranks (a dead rank's files stay while the job
        runs, for readers on its node, and no one else would remove them); the last rank out removes the
        node directory."""
        for directory in [self.directory] + [os.path.join(self.node_directory, f"rank{rank}") for rank in dead]:
            shutil.rmtree(directory, ignore_errors=True)
        try:
            if os.listdir(self.node_directory) == ["owners"]:
                shutil.rmtree(self.node_directory, ignore_errors=True)
        except OSError:
            pass
