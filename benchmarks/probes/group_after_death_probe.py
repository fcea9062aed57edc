"""Can live ranks build a communicator of themselves once they know a rank died (ULFM)?

    mpirun --with-ft ulfm --oversubscribe -n 5 python benchmarks/probes/group_after_death_probe.py METHOD

Rank 4 exits; ranks 1-3 notice it (a failed barrier, then ``Ack_failed``) and build a communicator of
themselves with METHOD: ``create_group`` (MPI_Comm_create_group), ``from_group``
(MPI_Comm_create_from_group, MPI 4), ``intercomm`` (MPI_Intercomm_create + Merge, pair by pair) or
``messages`` (no communicator: a point-to-point allreduce). Each rank prints what it got, or HUNG after
15 s. Measured with Open MPI 5.0.11: create_group fails (MPI_ERR_PROC_FAILED), intercomm fails
(MPI_ERR_INTERN) or hangs, from_group works here (16 of 16) but hung in about 1 of 10 formations inside
mpirt, messages work: ``mpirt/util/collective/peer_comm.py``.
"""
import os
import sys
import threading
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD.Dup()
comm.Set_errhandler(MPI.ERRORS_RETURN)
rank = comm.Get_rank()
method = sys.argv[1] if len(sys.argv) > 1 else "create_group"
members = [1, 2, 3]
comm.Barrier()
if rank == 4:
    os._exit(3)
time.sleep(1.0)


def by_pairs(ranks):
    local = MPI.COMM_SELF.Dup()
    me, size = ranks.index(rank), 1
    while size < len(ranks):
        low = (me // (2 * size)) * 2 * size
        middle = low + size
        if middle < len(ranks):
            inter = local.Create_intercomm(0, comm, ranks[middle] if me < middle else ranks[low], 77 + size)
            merged = inter.Merge(high=me >= middle)
            inter.Free()
            local.Free()
            local = merged
        size *= 2
    return local


def build_and_sum():
    try:
        comm.Barrier()
    except MPI.Exception:
        pass                     # MPI_ERR_PROC_FAILED: now this rank knows
    comm.Ack_failed()
    if method == "messages":
        total = 1
        for other in members:
            if other != rank:
                comm.send(1, dest=other, tag=5)
        for other in members:
            if other != rank:
                total += comm.recv(source=other, tag=5)
        return len(members), total
    group = comm.Get_group().Incl(members)
    if method == "create_group":
        built = comm.Create_group(group, 1001)
    elif method == "from_group":
        built = MPI.Intracomm.Create_from_group(group, "probe", errhandler=MPI.ERRORS_RETURN)
    elif method == "intercomm":
        built = by_pairs(members)
    else:
        raise SystemExit(f"unknown method {method!r}")
    return built.Get_size(), built.allreduce(1)


outcome = {}


def run():
    try:
        outcome["ok"] = build_and_sum()
    except Exception as error:  # noqa: BLE001 - printed
        outcome["error"] = repr(error)


if rank in members:
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(15)
    print(rank, method, outcome or "HUNG", flush=True)
os._exit(0)
