"""Collective groups at the head: where their members meet before they build a communicator.

Members of a collective group (``mpirt.util.collective``) must learn each other's MPI ranks before
they can build the group's sub-communicator. Ray meets them through a named actor and a key-value
store, and NCCL or Gloo then open sockets; here the head keeps each group until every member has
joined and then tells them all at once, over MPI. No address, no port.

A group is declared by its driver (``create_collective_group``: which actor holds which group rank)
or formed by its members (``init_collective_group`` in each). Either way each member joins with
``collective_join_query``; the answer, sent to every member when the last one joins, is the group's
table ``{group rank: MPI rank}`` and a serial number that keeps concurrent communicator builds apart.
A group ends when every member has left it (``collective_leave``); a member's rank dying fails the
members still waiting for the group to form.
"""
import itertools


class Forming:
    """One group the head knows: who joined, and who waits for the rest."""

    __slots__ = ("name", "world_size", "backend", "declared", "joined", "waiting", "serial", "formed")

    def __init__(self, name, world_size, backend, declared=None):
        self.name = name
        self.world_size = world_size
        self.backend = backend
        self.declared = declared     # {actor id: group rank} from create_collective_group, or None
        self.joined = {}             # group rank -> MPI rank
        self.waiting = []            # (asking rank, request id, group rank) of members waiting for the rest
        self.serial = 0
        self.formed = False


class HeadCollectives:
    def __init__(self, runtime):
        self.rt = runtime
        self.groups = {}                       # name -> Forming
        self._serials = itertools.count(1)
        runtime.register(collective_declare_query=self._on_declare, collective_join_query=self._on_join,
                         collective_leave=self._on_leave)

    def _answer(self, dest, request_id, value):
        self.rt.queries.answer(dest, request_id, value)

    def _on_declare(self, source, request_id, name, world_size, rank_of_actor, backend):
        if name in self.groups:
            self._answer(source, request_id, "Trying to initialize a group twice.")
            return
        self.groups[name] = Forming(name, world_size, backend, rank_of_actor)
        self._answer(source, request_id, None)

    def _on_join(self, source, request_id, name, world_size, rank, actor_id, backend):
        """A member joins ``name`` as ``rank`` (None: the rank its declaration gives ``actor_id``).
        Answers an error string, or, once every member joined, ``(table, rank, world size, backend,
        serial)`` to each."""
        group = self.groups.get(name)
        if rank is None:
            if group is None or group.declared is None:
                self._answer(source, request_id, f"The collective group '{name}' is not initialized in the process.")
                return
            rank = group.declared.get(actor_id)
            if rank is None:
                self._answer(source, request_id, f"this actor is not a member of the collective group '{name}' "
                                                 f"that create_collective_group declared")
                return
        elif group is None:
            group = self.groups[name] = Forming(name, world_size, backend)
        elif group.declared is not None and group.declared.get(actor_id) != rank:
            self._answer(source, request_id, "Trying to initialize a group twice.")
            return
        elif group.world_size != world_size or group.backend != backend:
            self._answer(source, request_id, f"init_collective_group(world_size={world_size}, backend={backend!r}, "
                                             f"group_name={name!r}) does not match the group's other members "
                                             f"(world_size={group.world_size}, backend={group.backend!r})")
            return
        if rank in group.joined:
            self._answer(source, request_id, f"rank {rank} of the collective group '{name}' has already joined: "
                                             f"Trying to initialize a group twice.")
            return
        group.joined[rank] = source
        group.waiting.append((source, request_id, rank))
        if len(group.joined) == group.world_size:
            group.formed = True
            group.serial = next(self._serials)
            table = dict(group.joined)
            for dest, waiting_id, member_rank in group.waiting:
                self._answer(dest, waiting_id, (table, member_rank, group.world_size, group.backend, group.serial))
            group.waiting = []

    def _on_leave(self, source, name, rank):
        group = self.groups.get(name)
        if group is None or group.joined.get(rank) != source:
            return
        del group.joined[rank]
        group.waiting = [w for w in group.waiting if w[2] != rank]
        if not group.joined or group.formed:
            # A formed group that lost a member is over for the others too: the name is free again,
            # as Ray's destroy_collective_group frees it.
            self._end(group, None)

    def _end(self, group, why):
        self.groups.pop(group.name, None)
        for dest, request_id, _ in group.waiting:
            self._answer(dest, request_id, why or f"the collective group '{group.name}' ended before it formed")

    def rank_dead(self, rank):
        """Members on ``rank`` are gone: groups still forming with one of them can never form."""
        for group in list(self.groups.values()):
            lost = sorted(r for r, mpi_rank in group.joined.items() if mpi_rank == rank)
            if lost:
                for r in lost:
                    del group.joined[r]
                group.waiting = [w for w in group.waiting if w[0] != rank]
                self._end(group, f"the collective group '{group.name}' cannot form: the rank of its member(s) "
                                 f"{lost} (MPI rank {rank}) died")
