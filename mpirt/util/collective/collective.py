"""Ray's ``ray.util.collective`` API over MPI: collective groups of actors and their operations.

A group's members are actors (or tasks running on their rank). ``create_collective_group`` declares
them from the driver; ``init_collective_group`` in each member forms the group as well. The members
meet at the head, which hands each the group's table of MPI ranks (no address, no port), and each rank
builds an MPI sub-communicator of the members' ranks (``group.RankGroup``). Operations work in place
on numpy arrays and torch tensors, and on CuPy arrays and CUDA tensors in GPU memory (moved between
ranks by CUDA-aware MPI, NCCL, or pinned host memory: ``transports.py``).

Where mpirt differs from Ray, on purpose (docs/ray_compat.md, "Collective communication"): the default
backend is ``"mpi"``, and "gloo" and "nccl" run over MPI too; members may share a rank; the members must
agree on each operation (dtype, shape, op, root), else every member gets a ``CollectiveGroupError``; a
member's rank dying fails the others' operation instead of hanging them; ``create_collective_group``
checks that ``world_size`` equals the number of actors.
"""
import logging
import threading
from typing import Any, Dict, List, Tuple

from ...actor import ActorHandle
from ...core import current
from ...core.call_context import running_actor_call
from ...core.protocol import DRIVER_RANK, HEAD_RANK
from ...core.runtime import Runtime
from .group import CollectiveGroupError, RankGroup
from .tensors import as_bytes, buffer_for, buffers_for, check_tensor, check_tensor_list, signature
from .transports import nccl_usable_here
from .types import Backend, ReduceOp

logger = logging.getLogger(__name__)

__all__ = ["Backend", "ReduceOp", "CollectiveGroupError", "nccl_available", "gloo_available", "mpi_available",
           "is_group_initialized", "init_collective_group", "create_collective_group", "destroy_collective_group",
           "get_rank", "get_collective_group_size", "get_group_handle", "GroupHandle", "allreduce", "barrier", "reduce",
           "broadcast", "allgather", "reducescatter", "send", "recv"]

_lock = threading.Lock()
_groups: Dict[Tuple[str, int], RankGroup] = {}              # (name, serial) -> the rank's group state
_members: Dict[Tuple[Any, str], "GroupHandle"] = {}       # (member, name) -> its handle
_DECLARED_JOIN_TIMEOUT_S = 30.0


def nccl_available() -> bool:
    """Whether CuPy's NCCL bindings load here: groups whose ranks each hold one member and a GPU of
    their own then move GPU tensors with NCCL (``transports.py``)."""
    return nccl_usable_here()


def gloo_available() -> bool:
    """True: backend "gloo" is accepted, and runs over MPI."""
    return True


def mpi_available() -> bool:
    return True


def _member() -> Tuple[Runtime, Any]:
    """The runtime, and who is calling: the actor's id, or None for a task (its rank holds its groups)."""
    rt = current.runtime()
    if rt is None or (isinstance(rt, Runtime) and rt.rank == DRIVER_RANK):
        raise RuntimeError("The collective APIs shall be only used inside a Ray actor or task.")
    if not isinstance(rt, Runtime):
        raise RuntimeError("the collective APIs need MPI, and this task runs in a task-slot process without it: "
                           "call them from an actor, or run the task with MPIRT_TASK_SLOTS=0 or num_gpus")
    actor, _ = running_actor_call()
    return rt, None if actor is None else actor.actor_id


def is_group_initialized(group_name: str) -> bool:
    """Whether the caller is a member of ``group_name`` here (Ray's: in this process)."""
    _, key = _member()
    return (key, group_name) in _members


def init_collective_group(world_size: int, rank: int, backend: str = Backend.MPI, group_name: str = "default",
                          gloo_timeout: int = 30000) -> None:
    """Make the calling actor member ``rank`` of ``group_name``; returns when all ``world_size`` members
    have called it (TimeoutError after ``gloo_timeout`` milliseconds)."""
    rt, key = _member()
    backend = str(Backend(backend))
    if not group_name or not isinstance(group_name, str):
        raise ValueError(f"group_name '{group_name}' needs to be a string.")
    if (key, group_name) in _members:
        raise RuntimeError("Trying to initialize a group twice.")
    if not isinstance(world_size, int) or world_size <= 0:
        raise ValueError(f"init_collective_group(world_size={world_size!r}): the world size must be a positive int")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"init_collective_group(rank={rank!r}): the rank must be an int in 0..{world_size - 1} "
                         f"(world_size={world_size})")
    _join(rt, key, group_name, world_size, rank, backend, gloo_timeout / 1000.0)


def _join(rt, key, name, world_size, rank, backend, timeout_s):
    try:
        answer = rt.queries.ask(HEAD_RANK, "collective_join_query", name, world_size, rank, key, backend,
                                timeout=timeout_s)
    except TimeoutError:
        if rank is not None:
            rt.send(HEAD_RANK, ("collective_leave", name, rank))
        raise TimeoutError(f"the collective group '{name}' did not form within {timeout_s:g} s: not all of its "
                           f"{world_size or ''} members joined. Each must call init_collective_group with its "
                           f"rank once (or give create_collective_group every actor)") from None
    if isinstance(answer, str):
        raise RuntimeError(answer)
    table, rank, world_size, backend, serial = answer
    with _lock:
        group = _groups.get((name, serial))
        if group is None:
            group = _groups[(name, serial)] = RankGroup(rt, name, table, backend, serial)
    try:
        group.build()
    except BaseException:
        with _lock:
            _groups.pop((name, serial), None)
        rt.send(HEAD_RANK, ("collective_leave", name, rank))    # the name is free for the next try
        raise
    with _lock:
        handle = _members[(key, name)] = GroupHandle(group, rank)
    return handle


def create_collective_group(actors: List[ActorHandle], world_size: int, ranks: List[int],
                            backend: str = Backend.MPI, group_name: str = "default", gloo_timeout: int = 30000) -> None:
    """Declare ``actors`` a collective group, ``ranks[i]`` being the rank of ``actors[i]`` (called by the
    driver). Each member joins at its first collective call."""
    backend = str(Backend(backend))
    if not isinstance(actors, (list, tuple)) or not all(isinstance(a, ActorHandle) for a in actors):
        raise TypeError(f"create_collective_group(actors={actors!r}): pass a list of actor handles")
    if len(ranks) != len(actors):
        raise RuntimeError(f"Each actor should correspond to one rank. Got '{len(ranks)}' ranks but "
                           f"'{len(actors)}' actors")
    if set(ranks) != set(range(len(ranks))):
        raise RuntimeError(f"Ranks must be a permutation from 0 to '{len(ranks)}'. Got "
                           f"'{''.join(str(r) for r in ranks)}'.")
    if not isinstance(world_size, int) or world_size <= 0:
        raise RuntimeError(f"World size must be greater than zero. Got '{world_size}'.")
    if world_size != len(actors):
        raise RuntimeError(f"create_collective_group(world_size={world_size}) with {len(actors)} actors: the group "
                           f"would never form; give world_size=len(actors)")
    rt = current.runtime_for_call()
    answer = rt.queries.ask(HEAD_RANK, "collective_declare_query", group_name, world_size,
                            {a._actor_id: r for a, r in zip(actors, ranks)}, backend)
    if answer is not None:
        raise RuntimeError(answer)


def get_group_handle(group_name: str = "default") -> "GroupHandle":
    """The caller's handle of group ``group_name``; a declared group is joined on first use."""
    rt, key = _member()
    handle = _members.get((key, group_name))
    if handle is None:
        handle = _join(rt, key, group_name, None, None, None, _DECLARED_JOIN_TIMEOUT_S)
    return handle


def destroy_collective_group(group_name: str = "default") -> None:
    """Leave ``group_name``: the caller's membership ends, and the name is free again."""
    rt, key = _member()
    with _lock:
        handle = _members.pop((key, group_name), None)
        if handle is None:
            logger.warning("The group '%s' does not exist.", group_name)
            return
        group, rank = handle.group, handle.rank
        group.users.discard(rank)
        last = not group.users
        if last:
            _groups.pop((group.name, group.serial), None)
    rt.send(HEAD_RANK, ("collective_leave", group_name, rank))
    if last:
        group.free()


def get_rank(group_name: str = "default") -> int:
    """The caller's rank in ``group_name``, or -1 if it is not a member."""
    _, key = _member()
    handle = _members.get((key, group_name))
    return -1 if handle is None else handle.rank


def get_collective_group_size(group_name: str = "default") -> int:
    """The size of ``group_name``, or -1 if the caller is not a member."""
    _, key = _member()
    handle = _members.get((key, group_name))
    return -1 if handle is None else handle.world_size


def _op_name(op):
    if not isinstance(op, ReduceOp):
        raise ValueError(f"op={op!r}: pass ReduceOp.SUM, ReduceOp.PRODUCT, ReduceOp.MIN or ReduceOp.MAX")
    return op.name


def _check_rank_valid(group, rank):
    if not isinstance(rank, int):
        raise ValueError(f"rank '{rank}' must be an int.")
    if rank < 0:
        raise ValueError(f"rank '{rank}' is negative.")
    if rank >= group.world_size:
        raise ValueError(f"rank '{rank}' must be less than world size '{group.world_size}'")


def _run(write_backs):
    for write_back in write_backs:
        write_back()


class GroupHandle:
    """One member's view of its group (``get_group_handle``): its ``rank``, the ``world_size``, and the
    operations. The module functions call these; a caller that keeps the handle (the torch process group
    of ``mpirt.libs.train``) calls them from any thread."""

    def __init__(self, group: RankGroup, rank: int):
        self.group = group
        self.rank = rank
        self.world_size = group.world_size
        self.group_name = group.name

    def allreduce(self, tensor: Any, op: ReduceOp = ReduceOp.SUM) -> None:
        check_tensor(tensor)
        op_name = _op_name(op)
        group = self.group
        buffer, write_back = buffer_for(tensor, reducing=True)
        group.meet(self.rank, "allreduce", ("allreduce", *signature(tensor), op_name), buffer,
                   lambda payloads: group.allreduce(payloads, op_name))
        _run([write_back] if write_back else [])

    def barrier(self) -> None:
        self.group.meet(self.rank, "barrier", ("barrier",), None, lambda payloads: None)

    def reduce(self, tensor: Any, dst_rank: int = 0, op: ReduceOp = ReduceOp.SUM) -> None:
        check_tensor(tensor)
        op_name = _op_name(op)
        group = self.group
        _check_rank_valid(group, dst_rank)
        buffer, write_back = buffer_for(tensor, reducing=True)
        group.meet(self.rank, "reduce", ("reduce", *signature(tensor), dst_rank, op_name), buffer,
                   lambda payloads: group.reduce(payloads, dst_rank, op_name))
        _run([write_back] if write_back and self.rank == dst_rank else [])

    def broadcast(self, tensor: Any, src_rank: int = 0) -> None:
        check_tensor(tensor)
        group = self.group
        _check_rank_valid(group, src_rank)
        buffer, write_back = buffer_for(tensor, reducing=False, writing=self.rank != src_rank)
        group.meet(self.rank, "broadcast", ("broadcast", *signature(tensor), src_rank), as_bytes(buffer),
                   lambda payloads: group.broadcast(payloads, src_rank))
        _run([write_back] if write_back and self.rank != src_rank else [])

    def allgather(self, tensor_list: list, tensor: Any) -> None:
        check_tensor(tensor)
        check_tensor_list(tensor_list)
        if len(tensor_list) != self.world_size:
            raise RuntimeError("The length of the tensor list operands to allgather must be equal to world_size.")
        _check_like(tensor, tensor_list, "allgather")
        buffer, _ = buffer_for(tensor, reducing=False, writing=False)
        outputs, write_backs = buffers_for(tensor_list, reducing=False)
        self.group.meet(self.rank, "allgather", ("allgather", *signature(tensor)),
                        (as_bytes(buffer), [as_bytes(o) for o in outputs]), self.group.allgather)
        _run(write_backs)

    def reducescatter(self, tensor: Any, tensor_list: list, op: ReduceOp = ReduceOp.SUM) -> None:
        check_tensor(tensor)
        check_tensor_list(tensor_list)
        op_name = _op_name(op)
        group = self.group
        if len(tensor_list) != self.world_size:
            raise RuntimeError("The length of the tensor list operands to reducescatter must be equal to world_size.")
        _check_like(tensor, tensor_list, "reducescatter")
        buffer, write_back = buffer_for(tensor, reducing=True)
        inputs, _ = buffers_for(tensor_list, reducing=True, writing=False)
        group.meet(self.rank, "reducescatter", ("reducescatter", *signature(tensor), op_name), (buffer, inputs),
                   lambda payloads: group.reducescatter(payloads, op_name))
        _run([write_back] if write_back else [])

    def send(self, tensor: Any, dst_rank: int) -> None:
        check_tensor(tensor)
        _check_rank_valid(self.group, dst_rank)
        if dst_rank == self.rank:
            raise RuntimeError(f"The destination rank '{dst_rank}' is self.")
        buffer, _ = buffer_for(tensor, reducing=False, writing=False)
        self.group.send(self.rank, as_bytes(buffer), dst_rank)

    def recv(self, tensor: Any, src_rank: int) -> None:
        check_tensor(tensor)
        _check_rank_valid(self.group, src_rank)
        if src_rank == self.rank:
            raise RuntimeError(f"The destination rank '{src_rank}' is self.")
        buffer, write_back = buffer_for(tensor, reducing=False)
        self.group.recv(self.rank, as_bytes(buffer), src_rank)
        _run([write_back] if write_back else [])


def allreduce(tensor: Any, group_name: str = "default", op: ReduceOp = ReduceOp.SUM) -> None:
    """Reduce ``tensor`` over the group with ``op``; every member's tensor holds the result."""
    get_group_handle(group_name).allreduce(tensor, op)


def barrier(group_name: str = "default") -> None:
    """Return when every member has called it."""
    get_group_handle(group_name).barrier()


def reduce(tensor: Any, dst_rank: int = 0, group_name: str = "default", op: ReduceOp = ReduceOp.SUM) -> None:
    """Reduce ``tensor`` over the group into member ``dst_rank``'s tensor (the others' are unchanged)."""
    get_group_handle(group_name).reduce(tensor, dst_rank, op)


def broadcast(tensor: Any, src_rank: int = 0, group_name: str = "default") -> None:
    """Copy member ``src_rank``'s tensor into every member's."""
    get_group_handle(group_name).broadcast(tensor, src_rank)


def allgather(tensor_list: list, tensor: Any, group_name: str = "default") -> None:
    """Gather every member's ``tensor`` into each member's ``tensor_list`` (``world_size`` tensors of its shape)."""
    get_group_handle(group_name).allgather(tensor_list, tensor)


def reducescatter(tensor: Any, tensor_list: list, group_name: str = "default", op: ReduceOp = ReduceOp.SUM) -> None:
    """Reduce each member's ``tensor_list`` element-wise over the group; member i's ``tensor`` gets the
    reduced i-th tensor."""
    get_group_handle(group_name).reducescatter(tensor, tensor_list, op)


def send(tensor: Any, dst_rank: int, group_name: str = "default") -> None:
    """Send ``tensor`` to member ``dst_rank`` (returns once it is sent)."""
    get_group_handle(group_name).send(tensor, dst_rank)


def recv(tensor: Any, src_rank: int, group_name: str = "default") -> None:
    """Receive into ``tensor`` what member ``src_rank`` sends."""
    get_group_handle(group_name).recv(tensor, src_rank)


def _check_like(tensor, tensors, what):
    for i, other in enumerate(tensors):
        if signature(other) != signature(tensor):
            raise RuntimeError(f"{what}: tensor_list[{i}] is {signature(other)} (dtype, shape), the tensor is "
                               f"{signature(tensor)}; every tensor of the list must be like the tensor")


