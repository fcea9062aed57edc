"""Bringing lost capacity back: a new worker rank for each worker rank that died.

Under ULFM a dead worker's tasks and actors are recovered on the other ranks (``fault.py``);
this module makes the job whole again. The driver decides: ``REPLACE_DELAY`` after a worker's
death (deaths close together are replaced together) it starts a *round* and tells every live
rank; each rank runs the round on a thread of its own, so its progress thread keeps serving
messages meanwhile:

1. ``Shrink`` the newest communicator that holds every live rank (ULFM: the survivors agree on
   who died; a rank that had not noticed a death yet declares it now, so every death handler has
   run everywhere before a newcomer exists).
2. The shrunk communicator spawns one process per dead worker (on a job of several hosts each on
   its dead rank's host), and ``Merge`` gives a communicator of the survivors, numbered among
   themselves as before, and the newcomers, last.
3. Every rank tells the others its host and its node pool's descriptor (``Arena.pool_handle``);
   the driver sends the plan: the newcomers' rank numbers, what each offers (what its dead rank
   offered), the job's configuration, the host sockets' token. A newcomer gets a *new* number:
   a dead rank's number is never reused, so no message, object id or store key meant for the
   dead process can reach its replacement.
4. Collectively a new world RMA window where the job reads across nodes, then an ``allreduce`` in
   which each newcomer says whether it could join (map its node's pool, build its runtime). Only
   then does every survivor add the newcomers: routes (each pair of ranks keeps the communicator
   of the later one's round, ``transport.py``), host-socket peers, failure detection on the new
   communicator, the cluster tables and, on the head, the node pools, which grant work there at
   once. Work that only the dead ranks could hold waits for their replacements meanwhile.

A round that fails (a death during it, a newcomer that cannot join) is reported on the driver and
ends replacement for the job: capacity then stays lost, and work only the lost ranks could hold is
refused (``scheduler/head.py``). ``MPIRT_REPLACE_RANKS=0`` turns replacement off.
"""
import os
import socket
import sys
import threading
import time
import traceback

from ._mpi_env import mpi
from .runtime import DRIVER_RANK, HEAD_RANK

REPLACE_DELAY = 0.2    # seconds from a death to its round: deaths within it are replaced together


def wanted(environ=os.environ):
    return environ.get("MPIRT_REPLACE_RANKS", "1").lower() not in ("0", "false", "no")


class Replacement:
    """One rank's part in replacing dead worker ranks; the driver's also decides when."""

    def __init__(self, runtime):
        self.rt = runtime
        self.enabled = runtime.failures.enabled and wanted()
        self.latest = (runtime.comm, runtime.members)   # the newest communicator of every live rank
        self.failed = False
        self.stopped = False
        self.replaced_by = {}      # dead rank -> the rank that replaced it
        self._waiting = []         # driver: dead worker ranks not replaced yet
        self._coordinator = None   # driver: the thread that runs rounds while deaths wait
        self._round_lock = threading.Lock()   # one round at a time on this rank
        runtime.handlers["replace_round"] = self._on_round
        if runtime.rank == DRIVER_RANK:
            runtime.failures.handlers.append(self._on_rank_dead)

    def expected(self):
        """Whether a worker rank that dies now gets a replacement."""
        return self.enabled and not self.failed and not self.stopped and not self.rt.shutting_down

    def stop(self, timeout=10.0):
        """The job ends: no more rounds, and the round under way (if any) ends first, so that no
        newcomer is left waiting for ranks that exited."""
        with self.rt.lock:
            self.stopped = True
        if self._round_lock.acquire(timeout=timeout):
            self._round_lock.release()

    # -- the driver decides ------------------------------------------------------------
    def _on_rank_dead(self, rank):
        """(driver, runtime lock held, after the cluster dropped ``rank``)"""
        if rank in (DRIVER_RANK, HEAD_RANK) or rank not in self.rt.cluster.lost or not self.expected():
            return
        self._waiting.append(rank)
        if self._coordinator is None:
            self._coordinator = threading.Thread(target=self._coordinate, name="mpirt-replace", daemon=True)
            self._coordinator.start()

    def _coordinate(self):
        time.sleep(REPLACE_DELAY)
        while True:
            with self.rt.lock:
                if not self._waiting or not self.expected():
                    self._coordinator = None
                    return
                dead, self._waiting = sorted(self._waiting), []
                first = self.rt.size
                for rank in self.rt.live_ranks():
                    if rank != DRIVER_RANK:
                        self.rt.send(rank, ("replace_round", dead, first))
                self._round_lock.acquire()   # before the lock goes: stop() then waits for this round
            try:
                self._run_round(dead, first)
            finally:
                self._round_lock.release()

    def _on_round(self, source, dead, first):
        def run():
            with self._round_lock:   # the previous round's commit comes first
                self._run_round(dead, first)

        threading.Thread(target=run, name="mpirt-replace", daemon=True).start()

    # -- every live rank -----------------------------------------------------------------
    def _run_round(self, dead, first):
        MPI = mpi()
        rt = self.rt
        comm, members = self.latest
        started = time.monotonic()
        try:
            shrunk = comm.Shrink()
            survivors = _members_of(shrunk, comm, members)
            with rt.lock:
                for rank in _members_of(comm, comm, members):
                    if rank not in survivors:
                        rt.failures.declare_dead(rank)
            replace = [rank for rank in dead if rank not in survivors]
            if not replace:
                return
            inter = _spawn(shrunk, [rt.config["rank_info"][rank]["hostname"] for rank in replace],
                           len({info["hostname"] for info in rt.config["rank_info"].values()}) > 1)
            merged = inter.Merge(high=False)
            new_ranks = list(range(first, first + len(replace)))
            entries = merged.allgather(self._entry())
            plan = merged.bcast(self._plan(replace, new_ranks, survivors, entries)
                                if rt.rank == DRIVER_RANK else None, root=0)
            window = rt.store.arena.make_window(merged) if plan["rma"] else None
            joined = merged.allreduce(True, op=MPI.LAND)
        except MPI.Exception as error:
            self._fail(f"MPI failed during it: {error}")
            return
        if not joined:
            self._fail("a new rank could not join (its message is above)")
            return
        self._commit(plan, merged, window)
        if rt.rank == DRIVER_RANK:
            pairs = ", ".join(f"rank {new} for rank {old}" for new, old in plan["replaces"].items())
            sys.__stderr__.write(f"mpirt: replaced dead worker ranks ({pairs}) in {time.monotonic() - started:.1f} s; "
                                 "the cluster's resources are whole again\n")
            sys.__stderr__.flush()

    def _entry(self):
        """What this rank tells the round: a newcomer of its node maps the pool through it."""
        rt = self.rt
        spill = rt.store.spill
        return {"rank": rt.rank, "host": socket.gethostname(), "pool": rt.store.arena.pool_handle(),
                "spill": spill.node_directory if spill is not None else None}

    def _plan(self, replace, new_ranks, survivors, entries):
        """(driver) Everything a newcomer needs and every survivor adds."""
        rt = self.rt
        arena = rt.store.arena
        config = dict(rt.config)
        rank_info = dict(config["rank_info"])
        joined_nodes = dict(config.get("joined_nodes") or {})
        node_of = list(arena.node_of)
        of_survivor = entries[:len(survivors)]
        plan = {"replaces": {}, "resources": {}, "nodes": {}, "pools": {}, "spills": {}, "problems": {}}
        for old, new, entry in zip(replace, new_ranks, entries[len(survivors):]):
            node = arena.node_of[old]
            rank_info[new] = dict(rank_info[old])
            if entry["host"] != rank_info[old]["hostname"]:
                plan["problems"][new] = (f"MPI started it on host {entry['host']}, not on {rank_info[old]['hostname']} "
                                         f"where rank {old} ran")
            holder = next((e for e in of_survivor if arena.node_of[e["rank"]] == node), None)
            if holder is None:
                plan["problems"][new] = f"no rank of its node (the node of rank {old}) is left to share the store with"
            plan["replaces"][new] = old
            plan["resources"][new] = rt.cluster.lost.get(old, {})
            plan["nodes"][new] = joined_nodes[new] = node
            plan["pools"][new] = holder["pool"] if holder else None
            plan["spills"][new] = holder["spill"] if holder else None
            while len(node_of) <= new:
                node_of.append(None)
            node_of[new] = node
        config["rank_info"] = rank_info
        config["joined_nodes"] = joined_nodes
        host = rt.transport.host
        live = [r for r in survivors if r not in (DRIVER_RANK, HEAD_RANK)]
        plan.update(
            config=config, members=list(survivors) + new_ranks, size=new_ranks[-1] + 1,
            dead=sorted(set(rt.failures.dead) | set(replace)), node_of=node_of, rma=arena.world is not None,
            host=(host.token, host._cookie) if host is not None else None, session=rt.session,
            mode=rt.launch.mode if getattr(rt, "launch", None) else "spawn",
            resources_by_rank={**{r: rt.cluster.resources_by_rank[r] for r in live}, **plan["resources"],
                               DRIVER_RANK: {}, HEAD_RANK: {}},
        )
        return plan

    def _commit(self, plan, merged, window):
        """(survivors) Add the newcomers everywhere this rank keeps ranks."""
        rt = self.rt
        new_ranks = list(plan["replaces"])
        with rt.lock:
            rt.size = plan["size"]
            rt.config["rank_info"] = plan["config"]["rank_info"]
            rt.config["joined_nodes"] = plan["config"]["joined_nodes"]
            rt.transport.add_communicator(merged, plan["members"], new_ranks)
            rt.transport.add_mail_peers(new_ranks)
            rt.failures.add_communicator(merged, plan["members"])
            if window is not None:
                rt.store.arena.use_window(window, plan["members"])
            for new, old in plan["replaces"].items():
                node = plan["nodes"][new]
                rt.store.arena.add_rank(new, node)
                rt.cluster.add_rank(new, plan["resources"][new], node)
                rt.cluster.lost.pop(old, None)
                self.replaced_by[old] = new
                if rt.head is not None:
                    rt.head.add_rank(new, plan["resources"][new], node, old)
            self.latest = (merged, plan["members"])
            rt.cond.notify_all()

    def _fail(self, why):
        rt = self.rt
        with rt.lock:
            self.failed = True
            if rt.head is not None:
                rt.head.replacements_failed()
        if rt.rank == DRIVER_RANK and not rt.shutting_down:
            sys.__stderr__.write(f"mpirt: replacing dead worker ranks failed ({why}); their capacity stays lost "
                                 "for the rest of the job\n")
            sys.__stderr__.flush()


class Joining:
    """What a newcomer takes from the round's plan instead of building it collectively."""

    def __init__(self, plan, rank, arena):
        self.plan = plan
        self.rank = rank
        self.members = plan["members"]
        self.size = plan["size"]
        self.dead = plan["dead"]
        self.arena = arena

    def spill(self, rank):
        """(this rank's RankSpill or None, why there is none), in its node's spill directory."""
        from .store.spill import RankSpill

        directory = self.plan["spills"].get(self.rank)
        if directory is None:
            return None, "its node's ranks have no spill directory"
        return RankSpill(directory, rank), None

    def host_socket(self):
        from .host_socket import HostSocket

        if self.plan["host"] is None:
            return None
        token, cookie = self.plan["host"]
        return HostSocket.join(token, cookie, self.rank, self.size)

    def mail_peers(self):
        """Every other rank: a spawned newcomer is an MPI job of its own, which Open MPI links to
        the others over TCP even on one host, so its batches go through the host sockets."""
        return [r for r in self.members if r != self.rank] if self.plan["host"] is not None else ()


def join(merged, prepare):
    """A newcomer's part of the round that spawned it (``merged``: survivors and newcomers).
    ``prepare(plan, rank)`` sets the process up as the driver's environment says before its
    runtime is built. Returns the runtime, or ends the process if it could not join."""
    from .runtime import Runtime
    from .store.arena import Arena

    MPI = mpi()
    merged.allgather({"rank": None, "host": socket.gethostname(), "pool": None, "spill": None})
    plan = merged.bcast(None, root=0)
    rank = plan["members"][merged.Get_rank()]
    problem = plan["problems"].get(rank)
    arena = None
    if problem is None:
        try:
            arena = Arena.joined(rank, plan["node_of"], plan["pools"][rank])
        except OSError as error:
            problem = f"cannot map its node's store pool: {error}"
    window = _window_of(arena, merged) if plan["rma"] else None
    runtime = None
    if problem is None:
        try:
            prepare(plan, rank)
            runtime = Runtime(merged, plan["session"], plan["resources_by_rank"], plan["config"],
                              joining=Joining(plan, rank, arena))
            if window is not None:
                arena.use_window(window, plan["members"])
        except Exception:  # noqa: BLE001 - said below, and the round is called off
            problem = traceback.format_exc()
    if problem is not None:
        sys.__stderr__.write(f"mpirt: the rank spawned to replace rank {plan['replaces'][rank]} cannot join: "
                             f"{problem}\n")
        sys.__stderr__.flush()
    if not merged.allreduce(problem is None, op=MPI.LAND) or problem is not None:
        os._exit(1)
    return runtime


def _window_of(arena, comm):
    """This newcomer's part in the round's world window (an empty one if it has no arena)."""
    if arena is not None:
        return arena.make_window(comm)
    import numpy as np

    MPI = mpi()
    try:
        window = MPI.Win.Create(np.empty(0, dtype=np.uint8), 1, comm=comm)
    except MPI.Exception:
        window = None
    comm.allreduce(window is not None, op=MPI.LAND)
    return None


def _members_of(part, whole, members):
    """The mpirt ranks of ``part``'s ranks, in its order (``whole``: a communicator that contains
    it, whose ranks are ``members``, or None: numbered as mpirt's ranks)."""
    MPI = mpi()
    ranks = MPI.Group.Translate_ranks(part.Get_group(), list(range(part.Get_size())), whole.Get_group())
    return [r if members is None else members[r] for r in ranks]


def _spawn(shrunk, hostnames, several_hosts):
    """Collective over ``shrunk``: one new process per entry of ``hostnames`` (each on that host
    if the job has several); the intercommunicator to them."""
    MPI = mpi()
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {package_parent!r}); from mpirt._spawned import main; main()"
    infos = []
    for hostname in hostnames:
        info = MPI.Info.Create()
        if several_hosts:
            info.Set("host", hostname)
        infos.append(info)
    count = len(hostnames)
    try:
        return shrunk.Spawn_multiple([sys.executable] * count, [["-c", code, "join"]] * count, [1] * count, infos,
                                     root=0)
    finally:
        for info in infos:
            info.Free()
