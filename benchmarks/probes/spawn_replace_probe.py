"""Probe: after a spawned rank dies under ULFM, can the survivors spawn a replacement and merge it in?

Run as a plain process (mpirt's spawn-mode defaults are set by hand here):
    OMPI_MCA_mpi_ft_enable=1 PRTE_MCA_state_base_recoverable=1 OPAL_PREFIX=$VIRTUAL_ENV \
    OMPI_MCA_mpi_ft_detector=true OMPI_MCA_mpi_ft_detector_period=0.5 OMPI_MCA_mpi_ft_detector_timeout=4.0 \
        python benchmarks/probes/spawn_replace_probe.py
The driver spawns 3 ranks and merges (size 4); merged rank 2 SIGKILLs itself; every survivor then
calls Comm_shrink, the shrunk communicator (size 3) spawns one process, and Merge and Split (key: the
old rank, the newcomer taking the dead rank's number) give a size-4 communicator again, which the
driver checks with an allreduce of the ranks and a ping of the newcomer.

Measured (2 cores, Open MPI 5.0.11 wheel, 2026-12-03): it works, in spawn mode as under
``mpirun --with-ft ulfm -n 4``: the death is seen ~1.1 s after the kill, Shrink takes 0.04-0.09 s,
Spawn 0.2 s, the whole repair 0.3-0.8 s. Every survivor must take part (the collectives include the
driver), and a survivor that never talks to the dead rank may not notice the death on its own.
"""
import os
import signal
import sys
import time

from mpi4py import MPI

DEAD = 2


def say(rank, what):
    print(f"[{time.strftime('%H:%M:%S')}] rank {rank}: {what}", file=sys.stderr, flush=True)


def repair(merged, my_old_rank):
    """Survivors: shrink, spawn one, merge, renumber. Returns the repaired communicator."""
    while True:
        # A rank learns of a death from MPI progress: here, as in mpirt's progress thread, by
        # receiving and by sending to the rank (with no traffic the driver, a job of its own,
        # never noticed it and the others waited for it in Shrink for ever).
        try:
            merged.Iprobe()
            if my_old_rank == 0:
                request = merged.issend(b"ping", dest=DEAD, tag=5)
                time.sleep(0.05)
                request.Test()
        except MPI.Exception:
            pass
        try:
            merged.Ack_failed()
            if merged.Get_failed().Get_size() >= 1:
                break
        except MPI.Exception:
            pass
        time.sleep(0.05)
    t0 = time.perf_counter()
    say(my_old_rank, "failure seen")
    shrunk = merged.Shrink()
    say(my_old_rank, f"shrunk to {shrunk.Get_size()}")
    inter = shrunk.Spawn(sys.executable, args=[__file__, "newcomer"], maxprocs=1, root=0)
    say(my_old_rank, "spawned")
    bigger = inter.Merge(high=False)
    say(my_old_rank, "merged")
    repaired = bigger.Split(0, my_old_rank)
    return repaired, time.perf_counter() - t0


if len(sys.argv) > 1 and sys.argv[1] == "newcomer":
    parent = MPI.Comm.Get_parent()
    bigger = parent.Merge(high=True)
    repaired = bigger.Split(0, DEAD)
    repaired.Set_errhandler(MPI.ERRORS_RETURN)
    total = repaired.allreduce(repaired.Get_rank())
    msg = repaired.recv(source=0)
    repaired.send(f"newcomer is rank {repaired.Get_rank()} of {repaired.Get_size()} ({msg})", dest=0)
    os._exit(0)

parent = MPI.Comm.Get_parent()
if parent == MPI.COMM_NULL:
    inter = MPI.COMM_SELF.Spawn(sys.executable, args=[__file__], maxprocs=3)
    merged = inter.Merge(high=False)
else:
    merged = parent.Merge(high=True)
merged.Set_errhandler(MPI.ERRORS_RETURN)
rank = merged.Get_rank()
if rank == DEAD:
    time.sleep(1)
    os.kill(os.getpid(), signal.SIGKILL)
repaired, seconds = repair(merged, rank)
repaired.Set_errhandler(MPI.ERRORS_RETURN)
total = repaired.allreduce(repaired.Get_rank())
if rank == 0:
    print(f"driver: repaired size {repaired.Get_size()}, my rank {repaired.Get_rank()}, "
          f"sum of ranks {total} (expected {sum(range(4))}), repair took {seconds:.3f} s", flush=True)
    repaired.send("ping", dest=DEAD)
    print("driver:", repaired.recv(source=DEAD), flush=True)
    time.sleep(0.5)
os._exit(0)
