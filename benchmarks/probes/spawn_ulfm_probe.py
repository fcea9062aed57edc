"""Probe: does a job spawned from a singleton survive the death of one of its ranks?

Run it as a plain process with the Open MPI 5 wheel's environment (see docs/design.md, "Fault tolerance"):
    OMPI_MCA_mpi_ft_enable=1 python benchmarks/probes/spawn_ulfm_probe.py
    OMPI_MCA_mpi_ft_enable=1 PRTE_MCA_state_base_recoverable=1 python benchmarks/probes/spawn_ulfm_probe.py
The driver spawns 3 ranks and merges; merged rank 2 SIGKILLs itself; the driver then pings ranks 1, 3, 2.
"""
import os, sys, time, signal
from mpi4py import MPI
comm = MPI.COMM_WORLD
parent = MPI.Comm.Get_parent()
if parent == MPI.COMM_NULL:
    inter = MPI.COMM_SELF.Spawn(sys.executable, args=[__file__], maxprocs=3)
    merged = inter.Merge(high=False)
    merged.Set_errhandler(MPI.ERRORS_RETURN)
    print("driver: merged size", merged.Get_size(), flush=True)
    time.sleep(3)
    # ping survivors
    for r in (1, 3, 2):
        try:
            merged.send("ping", dest=r)
            req = merged.irecv(source=r)
            t0=time.time()
            while time.time()-t0 < 5:
                done, msg = req.test()
                if done: break
                time.sleep(0.01)
            print("driver: rank", r, "->", msg if done else "no reply", flush=True)
        except MPI.Exception as e:
            print("driver: rank", r, "error", e.Get_error_class(), e, flush=True)
    print("driver alive at end", flush=True)
    os._exit(0)
else:
    merged = parent.Merge(high=True)
    merged.Set_errhandler(MPI.ERRORS_RETURN)
    r = merged.Get_rank()
    if r == 2:
        time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)
    t0 = time.time()
    req = merged.irecv(source=0)
    while time.time()-t0 < 12:
        try:
            done, msg = req.test()
        except MPI.Exception as e:
            print("child", r, "err", e, flush=True); break
        if done:
            merged.send(f"pong from {r}", dest=0); 
            print("child", r, "replied", flush=True)
            break
        time.sleep(0.01)
    time.sleep(1)
    print("child", r, "exits", flush=True)
    os._exit(0)
