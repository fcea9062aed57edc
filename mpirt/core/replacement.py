"""Bringing lost capacity back: a new worker rank for each worker rank that died.

Under ULFM a dead worker's tasks and actors are recovered on the other ranks (``fault.py``); this module
makes the job whole again. The driver decides: ``REPLACE_DELAY`` after a worker's death (deaths close
together are replaced together) it starts a *round*; the ranks that take part run it on a thread of their
own, so their progress threads keep serving meanwhile. A newcomer gets a *new* rank number: a dead rank's
number is never reused, so no message, object id or store key meant for the dead process can reach its
replacement.

One-host rounds (every rank on one host, host sockets on: ``python app.py``, ``mpirun`` on one node). Only
the driver and the head take part in MPI: over a communicator of the two, made at start-up, they spawn one
process per dead worker and ``Merge`` with them; the newcomers' batches to and from every rank go through
the host sockets, and the driver tells the other workers to add them (messages, no collective) and relays
every death to every rank (a worker and a newcomer share no communicator to notice each other's). So a
worker that dies meanwhile cannot stall the round (in a spawn over all survivors one did: the spawn's root
waited for ever). Cross-node reads of a newcomer's objects (emulated nodes) are messages.

Rounds over all survivors (ranks on several hosts, where MPI carries everything): every rank ``Shrink``s the
newest communicator of all live ranks (ULFM's agreement on who died), agrees that no one died since, spawns
collectively (each newcomer on its dead rank's host) and merges; a new world RMA window follows. A survivor
dying *during* that spawn can leave its root waiting for ever (measured: Open MPI's connect step is not
fault tolerant); the coordinator then gives up after ``ROUND_SECONDS``.

In both kinds the newcomer maps its node's pool through a survivor's descriptor (``Arena.pool_handle``),
builds its runtime and says in an ``allreduce`` whether it could; the round's ranks agree on the outcome
(``Agree``, ULFM), add the newcomers (routes, host-socket peers, failure detection, cluster tables) and give
a go-ahead (a barrier with the newcomers), after which the head grants work there. Until then work only the
dead ranks could hold waits for them. A round that fails (a death during it, a newcomer that cannot join) is
retried; after ``MAX_FAILED_ROUNDS`` in a row, or one that hung, replacement ends for the job: capacity then
stays lost and work only lost ranks could hold is refused (``scheduler/head.py``). ``MPIRT_REPLACE_RANKS=0``
turns replacement off.
"""
import os
import socket
import sys
import threading
import time
import traceback

from ..store.arena import Arena
from ..store.spill import RankSpill
from ._mpi_env import mpi, quiet_barrier
from .fault import members_of
from .host_socket import HostSocket
from .protocol import DRIVER_RANK, HEAD_RANK

REPLACE_DELAY = 0.2    # seconds from a death to its round: deaths within it are replaced together
MAX_FAILED_ROUNDS = 3  # rounds in a row that fail (deaths during them) before replacement stops
ROUND_SECONDS = 60.0   # a round still under way after this has hung: replacement stops for the job


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
        self._waiting = []         # driver: dead worker ranks not replaced yet
        self._coordinator = None   # driver: the thread that runs rounds while deaths wait
        self._round_lock = threading.Lock()   # one round at a time on this rank
        self._hung = False                    # driver: a round never ended (stop() does not wait for it)
        self.one_host = False     # set at start: rounds then need only the driver and the head (below)
        self._stable = None       # driver and head: their own communicator, for one-host rounds
        self._committed = set()   # driver: ranks that added the newcomers of the round under way
        runtime.register(replace_round=self._on_round, replace_abandoned=self._on_abandoned,
                                replace_commit=self._on_commit, replace_committed=self._on_committed,
                                replace_pool_query=self._on_pool_query, rank_died=self._on_rank_died)
        if runtime.rank == DRIVER_RANK:
            runtime.failures.handlers.append(self._on_rank_dead)

    def expected(self):
        """Whether a worker rank that dies now gets a replacement."""
        return self.enabled and not self.failed and not self.stopped and not self.rt.shutdown.begun

    def stop(self, timeout=10.0):
        """The job ends: no more rounds, and the round under way (if any) ends first, so that no
        newcomer is left waiting for ranks that exited."""
        with self.rt.lock:
            self.stopped = True
        if not self._hung and self._round_lock.acquire(timeout=timeout):
            self._round_lock.release()

    # -- the driver decides ------------------------------------------------------------
    def _on_rank_dead(self, rank):
        """(driver, runtime lock held, after the cluster dropped ``rank``)"""
        if self.one_host:
            # Ranks of one-host rounds share no communicator with the other workers: they hear of
            # each other's deaths from the driver.
            for other in self.rt.live_ranks():
                if other != DRIVER_RANK:
                    self.rt.send(other, ("rank_died", rank))
        if rank in (DRIVER_RANK, HEAD_RANK) or rank not in self.rt.cluster.lost or not self.expected():
            return
        self._waiting.append(rank)
        if self._coordinator is None:
            self._coordinator = threading.Thread(target=self._coordinate, name="mpirt-replace", daemon=True)
            self._coordinator.start()

    def _coordinate(self):
        time.sleep(REPLACE_DELAY)
        failures = 0
        while True:
            with self.rt.lock:
                if not self._waiting or not self.expected():
                    self._coordinator = None
                    return
                dead, self._waiting = sorted(self._waiting), []
                first = self.rt.size
                for rank in ((HEAD_RANK,) if self.one_host else self.rt.live_ranks()):
                    if rank != DRIVER_RANK:
                        self.rt.send(rank, ("replace_round", dead, first))
                self._round_lock.acquire()   # before the lock goes: stop() then waits for this round
            outcome = []

            def run():
                try:
                    outcome.append(self._run_round(dead, first))
                except Exception as error:  # noqa: BLE001 - reported as the round's failure
                    outcome.append(f"{type(error).__name__}: {error}")
                    traceback.print_exc()
                finally:
                    self._round_lock.release()

            runner = threading.Thread(target=run, name="mpirt-replace-round", daemon=True)
            runner.start()
            runner.join(ROUND_SECONDS)
            if runner.is_alive():       # hung inside MPI (see _run_round): it will not come back
                self._hung = True
                failures = MAX_FAILED_ROUNDS - 1
                why = f"a round did not end within {ROUND_SECONDS:g} s"
            else:
                why = outcome[0]
            if why is None:
                failures = 0
                continue
            failures += 1
            with self.rt.lock:
                # Dead ranks of a failed round wait for the next one (with any that died meanwhile).
                self._waiting = sorted(set(self._waiting) | {r for r in dead if r in self.rt.cluster.lost})
            if failures < MAX_FAILED_ROUNDS:
                time.sleep(REPLACE_DELAY)
                continue
            with self.rt.lock:
                for rank in self.rt.live_ranks():
                    if rank != DRIVER_RANK:
                        self.rt.send(rank, ("replace_abandoned", why))
                self._abandon(why)
                self._coordinator = None
                return

    def _on_round(self, source, dead, first):
        def run():
            with self._round_lock:   # the previous round's commit comes first
                self._run_round(dead, first)

        threading.Thread(target=run, name="mpirt-replace", daemon=True).start()

    def _on_rank_died(self, source, rank):
        self.rt.failures.declare_dead(rank)

    def _on_abandoned(self, source, why):
        self._abandon(why)

    def _abandon(self, why):
        """(runtime lock held) No more rounds: work only dead ranks could hold is refused now."""
        self.failed = True
        if self.rt.head is not None:
            self.rt.head.replacements_failed()
        if self.rt.rank == DRIVER_RANK and not self.rt.shutdown.begun:
            sys.__stderr__.write(f"mpirt: replacing dead worker ranks failed {MAX_FAILED_ROUNDS} times (last: {why}); "
                                 "their capacity stays lost for the rest of the job\n")
            sys.__stderr__.flush()

    # -- every live rank -----------------------------------------------------------------
    def _run_round(self, dead, first):
        """This rank's part of a round; None if it succeeded, else why not. Every step that may meet a death
        is guarded the ULFM way: a rank that fails revokes the round's communicators (so no other rank waits
        in a step it skipped) and the survivors agree on the outcome (``Agree``), so they all commit or none
        does."""
        MPI = mpi()
        rt = self.rt
        started = time.monotonic()
        if self.one_host:
            comm, replace, survivors = self._stable, dead, [DRIVER_RANK, HEAD_RANK]
            with rt.lock:
                for rank in dead:                # the head may hear of a death after the driver
                    rt.failures.declare_dead(rank)
        else:
            latest, members = self.latest
            try:
                comm = latest.Shrink()
            except MPI.Exception as error:
                return f"MPI_Comm_shrink failed: {error}"
            survivors = members_of(comm.Get_group(), latest, members)
            with rt.lock:
                for rank in members_of(latest.Get_group(), latest, members):
                    if rank not in survivors:
                        rt.failures.declare_dead(rank)
            replace = [rank for rank in dead if rank not in survivors]
            if not replace:
                return None
            if not _agree(comm, True, unless_failures=True):
                # A survivor died since the shrink: spawning now could hang (below); the next round
                # shrinks again.
                return "a rank died as it began"
        inter = merged = plan = window = None
        why = None
        try:
            # Collective over the survivors, so the newcomers are connected to each of them. A survivor that
            # dies during it can leave the root (the driver) waiting for ever: see ROUND_SECONDS.
            rank_info = rt.config["rank_info"]
            inter = _spawn(comm, rt.config["spawned_rank_code"], [rank_info[rank]["hostname"] for rank in replace],
                           not self.one_host and len({info["hostname"] for info in rank_info.values()}) > 1)
            merged = inter.Merge(high=False)
            new_ranks = list(range(first, first + len(replace)))
            entries = merged.allgather(self._entry())
            plan = merged.bcast(self._plan(replace, new_ranks, survivors, entries)
                                if rt.rank == DRIVER_RANK else None, root=0)
            window = rt.store.arena.make_window(merged) if plan["rma"] else None
            if not merged.allreduce(True, op=MPI.LAND):
                why = "a new rank could not join (its message is above)"
        except MPI.Exception as error:
            why = f"MPI failed during it ({error})" if self.one_host else f"a rank died during it ({error})"
            # No rank (newcomers included) waits in a step it skips; the one-host communicator stays.
            _revoke(None if self.one_host else comm, inter, merged)
        if not _agree(comm, why is None):
            _revoke(inter, merged)           # newcomers waiting for the go-ahead leave
            return why or ("the other rank's part failed" if self.one_host else "another rank's part failed")
        self._commit(plan, merged, window, latest=not self.one_host)
        if self.one_host and rt.rank == DRIVER_RANK:
            self._workers_commit(plan)
        self._go_ahead(plan, merged, started)
        return None

    def release(self):
        """(before MPI_Finalize, no rank having died) Free the driver's and the head's communicator:
        left alive it kept the two jobs connected and MPI_Finalize waited for ever."""
        if self._stable is not None:
            self._stable.Free()
            self._stable = None

    def prepare(self):
        """At start-up, before any rank can have died: the driver and the head make a communicator
        of the two for one-host rounds (neither can die without ending the job, so collectives
        over it never wait for a dead rank; made later, MPI refused it for the dead rank's sake)."""
        rt = self.rt
        self.one_host = rt.transport.host is not None
        if self.enabled and self.one_host and rt.rank in (DRIVER_RANK, HEAD_RANK) and rt.members is None:
            self._stable = rt.comm.Create_group(rt.comm.Get_group().Incl([DRIVER_RANK, HEAD_RANK]))

    def _workers_commit(self, plan, timeout=10.0):
        """(driver) Have every other live rank add the newcomers, and wait until each has (or died)."""
        rt = self.rt
        with rt.lock:
            self._committed = set()
            told = {r for r in rt.live_ranks() if r not in (DRIVER_RANK, HEAD_RANK)} - set(plan["replaces"])
            for rank in told:
                rt.send(rank, ("replace_commit", _commit_part(plan)))
            deadline = time.monotonic() + timeout
            while not self._committed >= told - rt.failures.dead and time.monotonic() < deadline:
                rt.cond.wait(0.05)

    def _on_commit(self, source, plan):
        self._commit(plan, None, None)
        self.rt.send(source, ("replace_committed",))

    def _on_committed(self, source):
        self._committed.add(source)
        self.rt.cond.notify_all()

    def _on_pool_query(self, source, request_id):
        self.rt.queries.answer(source, request_id, self._entry())

    def _go_ahead(self, plan, merged, started):
        """Every rank reaches the newcomers now (and hears them): tell them to start, and only then
        let the head grant work there. A death from here on is handled as any death."""
        rt = self.rt
        try:
            quiet_barrier(merged)
        except mpi().Exception:
            pass
        if rt.head is not None:
            with rt.lock:
                for new, old in plan["replaces"].items():
                    if new not in rt.failures.dead:
                        rt.head.add_rank(new, plan["resources"][new], plan["nodes"][new], old)
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
        rank_info = dict(rt.config["rank_info"])
        joined_nodes = dict(rt.config.get("joined_nodes") or {})
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
            if holder is None:   # a one-host round: ask a live rank of that node
                other = next((r for r in rt.live_ranks() if arena.node_of[r] == node), None)
                holder = rt.queries.ask(other, "replace_pool_query", timeout=10.0) if other is not None else None
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
        host = rt.transport.host
        live = [r for r in survivors if r not in (DRIVER_RANK, HEAD_RANK)]
        plan.update(
            config={**rt.config, "rank_info": rank_info, "joined_nodes": joined_nodes},
            members=list(survivors) + new_ranks, size=new_ranks[-1] + 1,
            dead=sorted(set(rt.failures.dead) | set(replace)), node_of=node_of,
            rma=arena.world is not None and not self.one_host,
            live=sorted(set(rt.live_ranks()) - set(replace)) + new_ranks,
            host=(host.token, host._cookie) if host is not None else None, session=rt.session,
            mode=rt.launch.mode if getattr(rt, "launch", None) else "spawn",
            resources_by_rank={**{r: rt.cluster.resources_by_rank[r] for r in live}, **plan["resources"],
                               DRIVER_RANK: {}, HEAD_RANK: {}},
        )
        return plan

    def _commit(self, plan, merged, window, latest=False):
        """(survivors) Add the newcomers everywhere this rank keeps ranks (the head's pools come
        after every rank has done this: ``_go_ahead``). ``merged``: the round's communicator, if
        this rank is in it; ``latest``: it holds every live rank (rounds over all survivors)."""
        rt = self.rt
        new_ranks = list(plan["replaces"])
        with rt.lock:
            rt.size = plan["size"]
            rt.config["rank_info"] = plan["config"]["rank_info"]
            rt.config["joined_nodes"] = plan["config"]["joined_nodes"]
            if merged is not None:
                rt.transport.add_communicator(merged, plan["members"], new_ranks)
                rt.failures.add_communicator(merged, plan["members"])
            rt.transport.add_mail_peers(new_ranks)
            if window is not None:
                rt.store.arena.use_window(window, plan["members"])
            for new, old in plan["replaces"].items():
                node = plan["nodes"][new]
                rt.store.arena.add_rank(new, node)
                rt.cluster.add_rank(new, plan["resources"][new], node)
                rt.cluster.lost.pop(old, None)
            if latest:
                self.latest = (merged, plan["members"])
            rt.cond.notify_all()


def _commit_part(plan):
    """What the workers outside a one-host round need of its plan."""
    return {key: plan[key] for key in ("replaces", "resources", "nodes", "size")} | {
        "config": {key: plan["config"][key] for key in ("rank_info", "joined_nodes")}}

class Joining:
    """What a newcomer takes from the round's plan instead of building it collectively."""

    def __init__(self, plan, rank, arena):
        self.plan = plan
        self.rank = rank
        self.members = plan["members"]
        self.size = plan["size"]
        self.dead = plan["dead"]
        self.arena = arena

    def spill(self):
        """(this rank's RankSpill or None, why there is none), in its node's spill directory."""
        directory = self.plan["spills"].get(self.rank)
        if directory is None:
            return None, "its node's ranks have no spill directory"
        return RankSpill(directory, self.rank), None

    def host_socket(self):
        return None if self.plan["host"] is None else HostSocket.join(*self.plan["host"], self.rank, self.size)

    def mail_peers(self):
        """Every other rank: a spawned newcomer is an MPI job of its own, which Open MPI links to
        the others over TCP even on one host, so its batches go through the host sockets."""
        return [r for r in self.plan["live"] if r != self.rank] if self.plan["host"] is not None else ()


def join(parent, build_runtime):
    """A newcomer's part of the round that spawned it (``parent``: the intercommunicator to the survivors,
    which spawned it). ``build_runtime(comm, plan, joining)`` sets the process up as the driver's
    environment says and builds its Runtime over ``comm`` (the launcher's job: this module sits below the
    runtime). Returns the runtime and the round's communicator, or ends the process if it could not join."""
    MPI = mpi()
    try:
        merged = parent.Merge(high=True)
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
                runtime = build_runtime(merged, plan, Joining(plan, rank, arena))
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
        quiet_barrier(merged)   # the go-ahead: every survivor has added this rank
    except MPI.Exception:   # the survivors called the round off (a death during it): leave quietly
        os._exit(1)
    return runtime, merged


def _agree(comm, flag, unless_failures=False):
    """ULFM's agreement on ``flag`` (True only if every live rank of ``comm`` says True): the
    same answer on every survivor, even when ranks die meanwhile. ``unless_failures``: a rank
    that knows of a failure in ``comm`` says False."""
    MPI = mpi()
    for _ in range(16):
        try:
            local = flag
            if unless_failures:
                failed = comm.Get_failed()
                local = local and failed.Get_size() == 0
                failed.Free()
            return bool(comm.Agree(1 if local else 0))
        except MPI.Exception:
            try:
                comm.Ack_failed()   # a failure not yet acknowledged: acknowledge it and agree again
            except MPI.Exception:
                return False
    return False


def _revoke(*comms):
    MPI = mpi()
    for comm in comms:
        if comm is not None:
            try:
                comm.Revoke()
            except MPI.Exception:
                pass


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


def _spawn(shrunk, code, hostnames, several_hosts):
    """Collective over ``shrunk``: one new process per entry of ``hostnames`` (each on that host
    if the job has several), running the ``python -c`` program ``code``; the intercommunicator to
    them. Each gets the driver's pid and host, to leave if the driver dies before it has joined."""
    MPI = mpi()
    args = ["-c", code, "join", str(os.getpid()), socket.gethostname()]
    infos = []
    for hostname in hostnames:
        info = MPI.Info.Create()
        if several_hosts:
            info.Set("host", hostname)
        infos.append(info)
    count = len(hostnames)
    try:
        return shrunk.Spawn_multiple([sys.executable] * count, [args] * count, [1] * count, infos, root=0)
    finally:
        for info in infos:
            info.Free()
