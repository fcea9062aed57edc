"""mpirt.util.collective: Ray's collective API over MPI sub-communicators. Every operation for numpy
and torch tensors (staged dtypes and non-contiguous views included), in groups whose members have a
rank each and in groups whose members share ranks; both ways of forming a group; bad input; and a
member's rank dying under ULFM."""
import os

import numpy as np
import pytest

import mpirt
import mpirt.util.collective as col
from mpirt.util.collective import Backend, CollectiveGroupError, ReduceOp

from conftest import mpirun_has_ulfm, run_app

pytestmark = pytest.mark.timeout(120)

GET_TIMEOUT = 60          # a collective that hangs fails the test instead of the whole run
SHAPE = (5,)
SENTINEL = -7.0           # what a non-contiguous view's neighbours hold; no operation may touch them
KINDS = ["np_float32", "np_float64", "np_int64", "np_float16", "np_noncontig",
         "torch_float32", "torch_bfloat16", "torch_float16", "torch_noncontig"]


@mpirt.remote
class Member:
    """A group member: runs module functions of this file (imported by reference on its rank)."""

    def pid(self):
        return os.getpid()

    def do(self, fn, *args):
        return fn(*args)


def run_all(actors, fn, *args):
    """``fn(i, *args)`` in each of ``actors`` (i: its index), concurrently; their results."""
    return mpirt.get([a.do.remote(fn, i, *args) for i, a in enumerate(actors)], timeout=GET_TIMEOUT)


# -- tensors, made and read inside the members --------------------------------------------------------

_bases = []     # the arrays behind this call's non-contiguous views (their other columns stay SENTINEL)


def make(values, kind):
    """A tensor of ``kind`` holding ``values`` (a 1-d float64 numpy array of small integers). Kinds:
    ``np_<dtype>``, ``torch_<dtype>``, and on a GPU ``cupy_<dtype>`` and ``torch_cuda_<dtype>``, each
    also ``..._noncontig`` (a strided view whose neighbours hold SENTINEL)."""
    values = np.asarray(values, dtype=np.float64)
    if kind.startswith("np_") or kind.startswith("cupy_"):
        xp = np
        if kind.startswith("cupy_"):
            import cupy as xp
        if kind.endswith("_noncontig"):
            base = xp.full((values.size, 3), SENTINEL, dtype=xp.float32)
            view = base[:, 1]
            assert not view.flags.c_contiguous
            view[...] = xp.asarray(values)
            _bases.append(base)
            return view
        return xp.asarray(values.astype(kind.split("_", 1)[1]))
    import torch

    device = "cuda" if kind.startswith("torch_cuda_") else "cpu"
    name = kind[len("torch_cuda_"):] if device == "cuda" else kind[len("torch_"):]
    if name == "noncontig":
        base = torch.full((values.size, 3), SENTINEL, dtype=torch.float64, device=device)
        view = base[:, 1]
        assert not view.is_contiguous()
        view.copy_(torch.from_numpy(values))
        _bases.append(base)
        return view
    return torch.from_numpy(values).to(device=device, dtype=getattr(torch, name))


def to_numpy(tensor):
    if isinstance(tensor, np.ndarray):
        return tensor
    if type(tensor).__module__.startswith("cupy"):
        return tensor.get()
    return tensor.detach().cpu().float().numpy()


def read(tensor):
    return np.asarray(to_numpy(tensor), dtype=np.float64).tolist()


def bases_untouched():
    """Whether every non-contiguous view's neighbours still hold SENTINEL."""
    ok = True
    for base in _bases:
        base = to_numpy(base)
        ok = ok and bool((base[:, 0] == SENTINEL).all() and (base[:, 2] == SENTINEL).all())
    _bases.clear()
    return ok


# What member r starts with, so that the driver can compute what each operation gives (small integers:
# exact in bfloat16 and float16, and their products too).
def x_of(r):
    return (np.arange(SHAPE[0]) + r) % 3 + 1


def bcast_of(r):
    return np.full(SHAPE, 10.0 * (r + 1))


def gather_of(r):
    return np.arange(SHAPE[0]) + 10.0 * r


def scatter_input(r, i):
    return np.full(SHAPE, 10.0 * i + r)


def message(src, dst):
    return np.arange(SHAPE[0]) + 10.0 * src + dst


def all_ops(_, name, kind):
    """Every operation once in group ``name`` with tensors of ``kind``; what each gave."""
    r, n = col.get_rank(name), col.get_collective_group_size(name)
    out = {"rank": r, "size": n}
    for op in ReduceOp:
        t = make(x_of(r), kind)
        col.allreduce(t, name, op)
        out[f"allreduce_{op.name}"] = read(t)
    t = make(bcast_of(r), kind)
    col.broadcast(t, n - 1, name)
    out["broadcast"] = read(t)
    outputs = [make(np.zeros(SHAPE), kind) for _ in range(n)]
    col.allgather(outputs, make(gather_of(r), kind), name)
    out["allgather"] = [read(o) for o in outputs]
    t = make(x_of(r), kind)
    col.reduce(t, 1, name, ReduceOp.SUM)
    out["reduce"] = read(t)
    t = make(x_of(r), kind)
    col.reduce(t, n - 1, name, ReduceOp.MAX)
    out["reduce_max"] = read(t)
    t = make(np.zeros(SHAPE), kind)
    col.reducescatter(t, [make(scatter_input(r, i), kind) for i in range(n)], name)
    out["reducescatter"] = read(t)
    col.barrier(name)
    # every ordered pair once, in the same order on every member: src sends, dst receives
    received = {}
    for src in range(n):
        for dst in range(n):
            if src == dst:
                continue
            if r == src:
                col.send(make(message(src, dst), kind), dst, name)
            elif r == dst:
                t = make(np.zeros(SHAPE), kind)
                col.recv(t, src, name)
                received[src] = read(t)
    out["received"] = received
    out["untouched"] = bases_untouched()
    return out


def check_all_ops(results, n):
    xs = np.array([x_of(r) for r in range(n)], dtype=np.float64)
    assert sorted(res["rank"] for res in results) == list(range(n))
    for res in results:
        r = res["rank"]
        assert res["size"] == n
        assert res["allreduce_SUM"] == xs.sum(0).tolist()
        assert res["allreduce_PRODUCT"] == xs.prod(0).tolist()
        assert res["allreduce_MIN"] == xs.min(0).tolist()
        assert res["allreduce_MAX"] == xs.max(0).tolist()
        assert res["broadcast"] == bcast_of(n - 1).tolist()
        assert res["allgather"] == [gather_of(i).tolist() for i in range(n)]
        assert res["reduce"] == (xs.sum(0) if r == 1 else xs[r]).tolist()            # the others' unchanged
        assert res["reduce_max"] == (xs.max(0) if r == n - 1 else xs[r]).tolist()
        assert res["reducescatter"] == sum(scatter_input(m, r) for m in range(n)).tolist()
        assert res["received"] == {src: message(src, r).tolist() for src in range(n) if src != r}
        assert res["untouched"]


# -- groups -----------------------------------------------------------------------------------------

def init(rank, world_size, name, backend=Backend.MPI):
    """Member ``rank`` (its index in run_all) joins ``name`` from inside the actor."""
    col.init_collective_group(world_size, rank, backend, name)
    return col.get_rank(name), col.get_collective_group_size(name), col.is_group_initialized(name)


@pytest.fixture(scope="module")
def solo(rt):
    """Two actors holding a CPU each, so one per worker rank; group "solo" formed by init_collective_group."""
    actors = [Member.options(num_cpus=1).remote() for _ in range(2)]
    pids = mpirt.get([a.pid.remote() for a in actors])
    assert len(set(pids)) == 2, pids
    assert run_all(actors, init, 2, "solo") == [(0, 2, True), (1, 2, True)]
    return actors


@pytest.fixture(scope="module")
def shared(rt):
    """Four actors of no CPUs on the two worker ranks (two on each), declared group "shared" by the
    driver with ranks that interleave the ranks (group ranks on one MPI rank are not consecutive)."""
    actors = [Member.options(num_cpus=0).remote() for _ in range(4)]
    pids = mpirt.get([a.pid.remote() for a in actors])
    assert sorted(pids.count(p) for p in set(pids)) == [2, 2], f"members do not share ranks as meant: {pids}"
    # group rank of each actor: the two actors of each process get group ranks of different parity
    by_pid = {}
    for i, p in enumerate(pids):
        by_pid.setdefault(p, []).append(i)
    order = [i for pair in zip(*by_pid.values()) for i in pair]     # alternate the processes
    ranks = [0] * 4
    for group_rank, i in enumerate(order):
        ranks[i] = group_rank
    col.create_collective_group(actors, 4, ranks, backend="nccl", group_name="shared")
    # a declared member joins at its first operation (as in Ray, get_rank is -1 until then)
    assert run_all(actors, join_by_barrier, "shared") == [(-1, r) for r in ranks]
    return [actors[i] for i in order]          # in group-rank order


def join_by_barrier(_, name):
    before = col.get_rank(name)
    col.barrier(name)
    return before, col.get_rank(name)


@pytest.mark.parametrize("kind", KINDS)
def test_every_op_with_a_rank_per_member(solo, kind):
    check_all_ops(run_all(solo, all_ops, "solo", kind), 2)


@pytest.mark.parametrize("kind", KINDS)
def test_every_op_with_members_sharing_ranks(shared, kind):
    check_all_ops(run_all(shared, all_ops, "shared", kind), 4)


def pid_and_rank(_, name):
    return os.getpid(), col.get_rank(name)


def test_shared_group_layout(shared):
    """Ranks 0 and 2 share one process, 1 and 3 the other; so the send/recv pairs of all_ops run both
    within a rank (0 -> 2) and between ranks (0 -> 1)."""
    found = run_all(shared, pid_and_rank, "shared")
    assert [r for _, r in found] == [0, 1, 2, 3]
    pids = [p for p, _ in found]
    assert pids[0] == pids[2] and pids[1] == pids[3] and pids[0] != pids[1]


def three_of_shared(i, name):
    """A group of three whose members are two on one rank and one on the other (unequal counts)."""
    col.init_collective_group(3, i, "torch_gloo", name)
    return col.get_rank(name)


def test_every_op_with_unequal_members_per_rank(shared):
    three = [shared[0], shared[2], shared[1]]     # two in one process, one in the other
    assert run_all(three, three_of_shared, "three") == [0, 1, 2]
    check_all_ops(run_all(three, all_ops, "three", "np_float64"), 3)
    check_all_ops(run_all(three, all_ops, "three", "torch_bfloat16"), 3)
    run_all(three, destroy, "three")


def unusual_tensors(_, name):
    """Tensors outside the matrix above, in a group of two; what each operation gave."""
    import torch

    r = col.get_rank(name)
    out = {}

    def allreduce(tensor, op=ReduceOp.SUM):
        col.allreduce(tensor, name, op)
        return tensor.tolist()
    out["0-d"] = allreduce(np.array(r + 1.0))
    out["empty"] = allreduce(np.zeros(0))
    out["torch bool MAX"] = allreduce(torch.tensor([bool(r), False]), ReduceOp.MAX)
    out["numpy bool MAX"] = allreduce(np.array([bool(r), False]), ReduceOp.MAX)
    out["uint8 wraps"] = allreduce(np.array([r + 1, 200], dtype=np.uint8))
    out["complex"] = allreduce(np.array([1j * (r + 1)]))
    out["torch int32 PRODUCT"] = allreduce(torch.tensor([r + 2, 5], dtype=torch.int32), ReduceOp.PRODUCT)
    out["Fortran order"] = allreduce(np.asfortranarray(np.arange(6.0).reshape(2, 3) + r))
    out["torch transposed"] = allreduce(torch.arange(6.0).reshape(2, 3).t() + r)
    out["requires_grad"] = allreduce(torch.ones(3, requires_grad=True))
    outputs = [np.zeros((2, 2)) for _ in range(2)]
    col.allgather(outputs, np.full((2, 2), float(r)), name)
    out["allgather 2-d"] = [o.tolist() for o in outputs]
    t = torch.full((3,), float(r), dtype=torch.float16)
    col.broadcast(t, 1, name)
    out["broadcast float16"] = t.tolist()
    base = np.full((3, 2), SENTINEL)
    col.reducescatter(base[:, 0], [np.full(3, 1.0 + k) for k in range(2)], name)
    out["reducescatter into a column"] = base.tolist()
    return out


def alone(_):
    """A group of one member: every operation, no communicator."""
    col.init_collective_group(1, 0, group_name="alone")
    a = np.ones(3)
    col.allreduce(a, "alone")
    gathered = [np.zeros(3)]
    col.allgather(gathered, np.full(3, 2.0), "alone")
    o = np.zeros(3)
    col.reducescatter(o, [np.full(3, 4.0)], "alone")
    b = np.full(3, 5.0)
    col.broadcast(b, 0, "alone")
    col.barrier("alone")
    r = np.full(3, 6.0)
    col.reduce(r, 0, "alone", ReduceOp.MIN)
    col.destroy_collective_group("alone")
    col.destroy_collective_group("alone")      # gone: a warning, as in Ray
    return a.tolist(), gathered[0].tolist(), o.tolist(), b.tolist(), r.tolist(), col.get_rank("alone")


def test_unusual_tensors_and_a_group_of_one(solo):
    found = run_all(solo, unusual_tensors, "solo")
    expected = {
        "0-d": 3.0, "empty": [], "torch bool MAX": [True, False], "numpy bool MAX": [True, False],
        "uint8 wraps": [3, 144], "complex": [3j], "torch int32 PRODUCT": [6, 25],
        "Fortran order": [[1.0, 3.0, 5.0], [7.0, 9.0, 11.0]],
        "torch transposed": [[1.0, 7.0], [3.0, 9.0], [5.0, 11.0]], "requires_grad": [2.0] * 3,
        "allgather 2-d": [[[0.0] * 2] * 2, [[1.0] * 2] * 2], "broadcast float16": [1.0] * 3,
    }
    for f in found:
        assert {k: v for k, v in f.items() if k in expected} == expected
    # member i's column holds element i of the sums: 1+1 and 2+2
    assert [f["reducescatter into a column"] for f in found] == [[[2.0, SENTINEL]] * 3, [[4.0, SENTINEL]] * 3]
    assert mpirt.get(solo[0].do.remote(alone, 0), timeout=GET_TIMEOUT) == \
        ([1.0] * 3, [2.0] * 3, [4.0] * 3, [5.0] * 3, [6.0] * 3, -1)


# -- forming and ending groups ----------------------------------------------------------------------

def destroy(_, name):
    col.destroy_collective_group(name)
    return col.is_group_initialized(name), col.get_rank(name), col.get_collective_group_size(name)


def two_groups(i, first, second):
    """Operations interleaved over two groups of the same members."""
    a = np.full(3, i + 1.0)
    col.allreduce(a, first)
    b = np.full(3, 10.0 * (i + 1))
    col.broadcast(b, 0, second)         # group rank 0 of ``second``
    c = np.full(3, float(i))
    col.allreduce(c, second, ReduceOp.MAX)
    return col.get_rank(first), col.get_rank(second), a.tolist(), b.tolist(), c.tolist()


def init_reversed(i, name, backend):
    col.init_collective_group(2, 1 - i, backend, name)
    return col.get_rank(name)


def test_two_groups_formed_in_the_actors_and_formed_again_after_destroy(rt, solo):
    assert run_all(solo, init_reversed, "backwards", "gloo") == [1, 0]
    found = run_all(solo, two_groups, "solo", "backwards")
    assert [f[:2] for f in found] == [(0, 1), (1, 0)]
    for f in found:
        assert f[2] == [3.0] * 3                  # allreduce of 1 and 2 over "solo"
        assert f[3] == [20.0] * 3                 # broadcast from solo[1], rank 0 of "backwards"
        assert f[4] == [1.0] * 3
    assert run_all(solo, destroy, "backwards") == [(False, -1, -1)] * 2
    assert run_all(solo, init, 2, "backwards") == [(0, 2, True), (1, 2, True)]
    found = run_all(solo, two_groups, "solo", "backwards")
    assert [f[:2] for f in found] == [(0, 0), (1, 1)]
    assert all(f[3] == [10.0] * 3 for f in found)
    run_all(solo, destroy, "backwards")


def test_declared_group_joins_at_first_use_and_is_recreated_after_destroy(rt, solo):
    assert run_all(solo, lambda _, name: col.is_group_initialized(name), "declared") == [False, False]
    col.create_collective_group(solo, 2, [1, 0], group_name="declared")
    # declared, not joined yet: Ray's is_group_initialized is also False until the first operation
    assert run_all(solo, lambda _, name: col.is_group_initialized(name), "declared") == [False, False]
    found = run_all(solo, two_groups, "solo", "declared")
    assert [f[:2] for f in found] == [(0, 1), (1, 0)]
    for f in found:
        assert f[2] == [3.0] * 3                  # allreduce of 1 and 2 over "solo"
        assert f[3] == [20.0] * 3                 # broadcast from solo[1], rank 0 of "declared"
        assert f[4] == [1.0] * 3
    assert run_all(solo, destroy, "declared") == [(False, -1, -1)] * 2
    with pytest.raises(RuntimeError, match="not initialized"):
        run_all(solo[:1], lambda _, name: col.allreduce(np.ones(2), name), "declared")
    # the name is free again: declared anew, the ranks the other way
    col.create_collective_group(solo, 2, [0, 1], group_name="declared")
    found = run_all(solo, two_groups, "solo", "declared")
    assert [f[:2] for f in found] == [(0, 0), (1, 1)]
    assert all(f[3] == [10.0] * 3 for f in found)
    # and declaring it while it exists is refused
    with pytest.raises(RuntimeError, match="twice"):
        col.create_collective_group(solo, 2, [0, 1], group_name="declared")
    run_all(solo, destroy, "declared")


# -- bad input --------------------------------------------------------------------------------------

def mismatched(_, name, mistake, who):
    """Member(s) ``who`` picks ("last": the last rank, "odd": the odd ranks, all in one process of the
    shared group) call the operation unlike the others; then all make a correct allreduce."""
    r, n = col.get_rank(name), col.get_collective_group_size(name)
    odd = r == n - 1 if who == "last" else r % 2 == 1
    try:
        if mistake == "shape":
            col.allreduce(np.ones(5 if odd else 4, np.float32), name)
        elif mistake == "dtype":
            col.allreduce(np.ones(4, np.float64 if odd else np.float32), name)
        elif mistake == "torch dtype":
            import torch
            col.allreduce(torch.ones(4, dtype=torch.bfloat16 if odd else torch.float32), name)
        elif mistake == "op":
            col.allreduce(np.ones(4), name, ReduceOp.MAX if odd else ReduceOp.SUM)
        elif mistake == "root":
            col.broadcast(np.ones(4), 1 if odd else 0, name)
        elif mistake == "kind":
            if odd:
                col.barrier(name)
            else:
                col.allreduce(np.ones(4), name)
        first = None
    except CollectiveGroupError as error:
        first = str(error)
    a = np.full(3, r + 1.0)
    col.allreduce(a, name)
    return first, a.tolist()


@pytest.mark.parametrize("mistake", ["shape", "dtype", "torch dtype", "op", "root", "kind"])
def test_members_that_disagree_all_get_an_error_and_the_group_still_works(solo, shared, mistake):
    for actors, name, who in ((solo, "solo", "last"), (shared, "shared", "last"), (shared, "shared", "odd")):
        n = len(actors)
        for first, after in run_all(actors, mismatched, name, mistake, who):
            assert first is not None and "called it with different arguments" in first, (name, who, first)
            assert after == [n * (n + 1) / 2] * 3


def readonly(values):
    """An array as ``mpirt.get`` returns a large one: read-only, in the object store."""
    array = mpirt.get(mpirt.put(np.broadcast_to(np.asarray(values, dtype=np.float64), (100_000,)).copy()))
    assert not array.flags.writeable
    return array


def readonly_allreduce():
    col.allreduce(readonly(1.0), "solo")


def readonly_inputs(rank, name):
    """Read-only arrays where the operation only reads them: the root's broadcast tensor, an allgather's
    input, a sent tensor."""
    r, n = col.get_rank(name), col.get_collective_group_size(name)
    b = readonly(5.0) if r == 0 else np.zeros(100_000)
    col.broadcast(b, 0, name)
    outputs = [np.zeros(100_000) for _ in range(n)]
    col.allgather(outputs, readonly(float(r)), name)
    if r == 0:
        col.send(readonly(7.0), 1, name)
        got = None
    else:
        got = np.zeros(100_000)
        col.recv(got, 0, name)
        got = float(got.mean())
    return float(b.mean()), [float(o.mean()) for o in outputs], got


def test_read_only_arrays_that_an_op_only_reads(solo):
    assert run_all(solo, readonly_inputs, "solo") == [(5.0, [0.0, 1.0], None), (5.0, [0.0, 1.0], 7.0)]


# (call made by member 0 of "solo", error it raises, message match); each fails before the member
# meets the others, so the others are not involved
BAD_CALLS = {
    "unknown group": (lambda: col.allreduce(np.ones(2), "no-such-group"), RuntimeError, "not initialized"),
    "broadcast root out of range": (lambda: col.broadcast(np.ones(2), 2, "solo"), ValueError,
                                    "must be less than world size"),
    "reduce root negative": (lambda: col.reduce(np.ones(2), -1, "solo"), ValueError, "negative"),
    "send to out of range": (lambda: col.send(np.ones(2), 5, "solo"), ValueError, "must be less than world size"),
    "recv rank not an int": (lambda: col.recv(np.ones(2), 1.0, "solo"), ValueError, "must be an int"),
    "send to self": (lambda: col.send(np.ones(2), 0, "solo"), RuntimeError, "is self"),
    "recv from self": (lambda: col.recv(np.ones(2), 0, "solo"), RuntimeError, "is self"),
    "op not a ReduceOp": (lambda: col.allreduce(np.ones(2), "solo", "SUM"), ValueError, "ReduceOp.SUM"),
    "list as tensor": (lambda: col.allreduce([1.0, 2.0], "solo"), RuntimeError, "Unrecognized tensor type"),
    "string as tensor": (lambda: col.broadcast("abc", 0, "solo"), RuntimeError, "Unrecognized tensor type"),
    "tensor_list not a list": (lambda: col.allgather((np.zeros(2), np.zeros(2)), np.ones(2), "solo"),
                               RuntimeError, "must be a list"),
    "allgather list too short": (lambda: col.allgather([np.zeros(2)], np.ones(2), "solo"), RuntimeError,
                                 "must be equal to world_size"),
    "allgather list too long": (lambda: col.allgather([np.zeros(2)] * 3, np.ones(2), "solo"), RuntimeError,
                                "must be equal to world_size"),
    "allgather list unlike tensor": (lambda: col.allgather([np.zeros(2), np.zeros(3)], np.ones(2), "solo"),
                                     RuntimeError, "like the tensor"),
    "reducescatter list too short": (lambda: col.reducescatter(np.zeros(2), [np.ones(2)], "solo"), RuntimeError,
                                     "must be equal to world_size"),
    "read-only allreduce target": (readonly_allreduce, RuntimeError, "read-only"),
    "init twice": (lambda: col.init_collective_group(2, 0, group_name="solo"), RuntimeError, "twice"),
    "init rank out of range": (lambda: col.init_collective_group(2, 2, group_name="x"), ValueError, "0..1"),
    "init world size 0": (lambda: col.init_collective_group(0, 0, group_name="x"), ValueError, "positive"),
    "init unknown backend": (lambda: col.init_collective_group(2, 0, "foo", "x"), ValueError,
                             "Unrecognized backend"),
}


def allreduce_sum(rank, name):
    a = np.full(3, rank + 1.0)
    col.allreduce(a, name)
    return a.tolist()


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_call_raises_in_the_caller_alone(solo, case):
    call, error, match = BAD_CALLS[case]
    with pytest.raises(error, match=match):
        mpirt.get(solo[0].do.remote(call), timeout=GET_TIMEOUT)
    assert run_all(solo, allreduce_sum, "solo") == [[3.0] * 3] * 2      # the group is as it was


def not_a_member(name):
    col.barrier(name)


def test_actor_outside_a_declared_group_cannot_use_it(solo, shared):
    with pytest.raises(RuntimeError, match="not a member of the collective group 'shared'"):
        mpirt.get(solo[0].do.remote(not_a_member, "shared"), timeout=GET_TIMEOUT)
    with pytest.raises(RuntimeError, match="not initialized"):      # formed by init: not declared
        mpirt.get(shared[0].do.remote(not_a_member, "solo"), timeout=GET_TIMEOUT)
    assert mpirt.get(solo[0].do.remote(lambda: (col.get_rank("shared"), col.get_collective_group_size("shared"),
                                                col.is_group_initialized("shared"))), timeout=GET_TIMEOUT) \
        == (-1, -1, False)


def exchange(rank, name, peer, sent, receiving):
    """Member ``rank`` 0 sends ``sent`` floats to ``peer``; the peer receives into ``receiving`` floats."""
    me = col.get_rank(name)
    if me == 0:
        col.send(np.arange(float(sent)), peer, name)
        return "sent"
    if me == peer:
        try:
            col.recv(np.zeros(receiving), 0, name)
        except CollectiveGroupError as error:
            return str(error)
        return "received"
    return None


@pytest.mark.parametrize("receiving", [2, 4])
def test_recv_into_a_tensor_of_another_size(solo, shared, receiving):
    """3 float64 sent, received into 2 (MPI truncates between ranks) or 4: the receiver gets an error,
    the sender none, and the group still works."""
    shorter = {"MPI": "the message sent is larger than the receiving tensor",
               "local": "rank 0 sent 24 bytes, the receiving tensor holds 16"}
    # between ranks (solo 0 -> 1, shared 0 -> 1) and within a rank (shared 0 -> 2)
    for actors, name, peer, path in ((solo, "solo", 1, "MPI"), (shared, "shared", 2, "local"),
                                     (shared, "shared", 1, "MPI")):
        found = run_all(actors, exchange, name, peer, 3, receiving)
        assert found[0] == "sent"
        expected = shorter[path] if receiving == 2 else "rank 0 sent 24 bytes, the receiving tensor holds 32"
        assert expected in found[peer], (name, peer, found[peer])
        n = len(actors)
        assert run_all(actors, allreduce_sum, name) == [[n * (n + 1) / 2] * 3] * n


def test_driver_is_not_a_member(rt, solo):
    with pytest.raises(RuntimeError, match="only used inside a Ray actor or task"):
        col.allreduce(np.ones(2), "solo")
    with pytest.raises(RuntimeError, match="only used inside a Ray actor or task"):
        col.init_collective_group(1, 0, group_name="driver")
    with pytest.raises(RuntimeError, match="only used inside a Ray actor or task"):
        col.get_rank("solo")


def test_create_collective_group_checks_its_arguments(rt, solo):
    with pytest.raises(RuntimeError, match="Each actor should correspond to one rank"):
        col.create_collective_group(solo, 2, [0], group_name="bad")
    with pytest.raises(RuntimeError, match="permutation"):
        col.create_collective_group(solo, 2, [0, 2], group_name="bad")
    with pytest.raises(RuntimeError, match="permutation"):
        col.create_collective_group(solo, 2, [1, 1], group_name="bad")
    with pytest.raises(RuntimeError, match="world_size=3"):
        col.create_collective_group(solo, 3, [0, 1], group_name="bad")
    with pytest.raises(RuntimeError, match="greater than zero"):
        col.create_collective_group(solo, 0, [0, 1], group_name="bad")
    with pytest.raises(ValueError, match="Unrecognized backend"):
        col.create_collective_group(solo, 2, [0, 1], backend="mpich", group_name="bad")
    with pytest.raises(TypeError, match="list of actor handles"):
        col.create_collective_group(["a", "b"], 2, [0, 1], group_name="bad")
    with pytest.raises(RuntimeError, match="twice"):                 # formed by init_collective_group
        col.create_collective_group(solo, 2, [0, 1], group_name="solo")
    # none of them declared anything
    with pytest.raises(RuntimeError, match="not initialized"):
        mpirt.get(solo[0].do.remote(not_a_member, "bad"), timeout=GET_TIMEOUT)


def test_backend_names():
    assert [Backend(b) for b in ("mpi", "gloo", "torch_gloo", "nccl", "NCCL")] == \
        ["mpi", "gloo", "torch_gloo", "nccl", "nccl"]
    for bad in ("unrecognized", "mpich", None, 3):
        with pytest.raises(ValueError, match="Unrecognized backend"):
            Backend(bad)
    assert col.mpi_available() and col.gloo_available()
    try:
        from cupy.cuda import nccl  # noqa: F401
        has_nccl = True
    except ImportError:
        has_nccl = False
    assert col.nccl_available() is has_nccl


def init_and_report(rank, world_size, name, timeout_ms):
    import time

    started = time.monotonic()
    try:
        col.init_collective_group(world_size, rank, group_name=name, gloo_timeout=timeout_ms)
        return "joined", round(time.monotonic() - started, 1)
    except Exception as error:  # noqa: BLE001 - the test looks at it
        return f"{type(error).__name__}: {error}", round(time.monotonic() - started, 1)


def test_init_times_out_when_a_member_never_joins(rt, solo):
    import time

    # member 0 waits for a second member that never comes; meanwhile the other actor joins the same
    # name with another world size, and is refused at once
    waiting = solo[0].do.remote(init_and_report, 0, 2, "lonely", 2000)
    time.sleep(0.5)
    refused = mpirt.get(solo[1].do.remote(init_and_report, 1, 3, "lonely", 2000), timeout=GET_TIMEOUT)
    assert refused[0].startswith("RuntimeError") and "does not match" in refused[0], refused
    assert refused[1] < 1.5
    what, took = mpirt.get(waiting, timeout=GET_TIMEOUT)
    assert what.startswith("TimeoutError") and "did not form within 2 s" in what, what
    assert 1.5 < took < 10
    # the name is free again: both join it now
    assert run_all(solo, init_and_report, 2, "lonely", 10000) == [("joined", pytest.approx(0, abs=5))] * 2
    assert run_all(solo, allreduce_sum, "lonely") == [[3.0] * 3] * 2
    run_all(solo, destroy, "lonely")


def test_same_rank_joined_twice_is_refused(rt, solo):
    import time

    waiting = solo[0].do.remote(init_and_report, 0, 2, "dup", 2000)
    time.sleep(0.5)
    refused = mpirt.get(solo[1].do.remote(init_and_report, 0, 2, "dup", 2000), timeout=GET_TIMEOUT)
    assert refused[0].startswith("RuntimeError") and "already joined" in refused[0], refused
    assert mpirt.get(waiting, timeout=GET_TIMEOUT)[0].startswith("TimeoutError")


# -- a member's rank dying (ULFM) -------------------------------------------------------------------

ULFM = ("--with-ft", "ulfm")

DEATH_PRELUDE = """
import os, threading, time
import numpy as np
import mpirt
import mpirt.util.collective as col
from mpirt.util.collective import CollectiveGroupError

mpirt.init(INIT_ARGS)

@mpirt.remote(num_cpus=1, max_concurrency=2)
class M:
    def pid(self):
        return os.getpid()

    def join(self, world_size, rank, name, timeout_ms=30000):
        started = time.monotonic()
        try:
            col.init_collective_group(world_size, rank, group_name=name, gloo_timeout=timeout_ms)
            return "joined"
        except Exception as error:
            return f"{type(error).__name__} after {time.monotonic() - started:.1f} s: {error}"

    def allreduce(self, name):
        a = np.full(4, col.get_rank(name) + 1.0)
        started = time.monotonic()
        try:
            col.allreduce(a, name)
            return a.tolist()
        except Exception as error:
            return f"{type(error).__name__} after {time.monotonic() - started:.1f} s: {error}"

    def every_op(self, name):
        # each operation once on a group of two: what each member got
        me = col.get_rank(name)
        out = {}
        a = np.full(3, me + 1.0)
        col.allreduce(a, name, op=col.ReduceOp.MAX)
        out["allreduce_max"] = a.tolist()
        b = np.full(2, float(me))
        col.broadcast(b, 1, name)
        out["broadcast"] = b.tolist()
        gathered = [np.zeros(2, dtype=np.int64) for _ in range(2)]
        col.allgather(gathered, np.full(2, me + 10, dtype=np.int64), name)
        out["allgather"] = [g.tolist() for g in gathered]
        r = np.full(2, me + 2.0)
        col.reduce(r, 0, name, op=col.ReduceOp.PRODUCT)
        out["reduce"] = r.tolist()
        received = np.zeros(2, dtype=np.float32)
        col.reducescatter(received, [np.full(2, me + 1.0, dtype=np.float32) for _ in range(2)], name)
        out["reducescatter"] = received.tolist()
        col.barrier(name)
        if me == 0:
            col.send(np.arange(4.0), 1, name)
        else:
            got = np.zeros(4)
            col.recv(got, 0, name)
            out["recv"] = got.tolist()
        big = np.full(1 << 20, me + 1.0)      # 8 MB each way: rendezvous messages
        col.allreduce(big, name)
        out["big"] = bool((big == 3.0).all())
        return out

    def destroy(self, name):
        col.destroy_collective_group(name)

    def exit_in(self, seconds):
        threading.Timer(seconds, os._exit, (3,)).start()

def show(key, value):
    print(key, repr(value), flush=True)

members = [M.remote() for _ in range(3)]
pids = mpirt.get([m.pid.remote() for m in members])
show("DISTINCT", len(set(pids)) == 3)
"""


def _run_death(tmp_path, mode, body):
    if not mpirun_has_ulfm():
        pytest.skip("this Open MPI has no ULFM (Open MPI 5 has it): a member's death ends the job")
    if mode == "mpirun":     # driver, head and 3 worker ranks
        proc = run_app(tmp_path, DEATH_PRELUDE.replace("INIT_ARGS", "") + body, ranks=5, mpirun_args=ULFM,
                       timeout=90)
    else:                    # plain python: it spawns the head and 3 worker ranks, ULFM on
        proc = run_app(tmp_path, DEATH_PRELUDE.replace("INIT_ARGS", "num_cpus=3") + body, timeout=90)
    # mpirun exits with the status of a rank that exited (os._exit(3)), as tests/test_fault_tolerance.py notes
    if mode == "spawn":
        assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    found = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key.isupper():
            found[key] = eval(value)   # what show() printed: the repr of plain values
    assert found.get("DISTINCT") is True and found.get("DONE") is True, \
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return found


@pytest.mark.parametrize("mode", ["mpirun", "spawn"])
def test_a_member_rank_dying_fails_the_others_instead_of_hanging(tmp_path, mode):
    found = _run_death(tmp_path, mode, """
show("JOIN_G", mpirt.get([m.join.remote(3, i, "g") for i, m in enumerate(members)], timeout=30))
show("JOIN_H", mpirt.get([m.join.remote(2, i, "h") for i, m in enumerate(members[:2])], timeout=30))
# members 0 and 1 wait in an allreduce of "g" that member 2 never makes: its rank is killed
waiting = [m.allreduce.remote("g") for m in members[:2]]
time.sleep(1.0)
killed_at = time.monotonic()
os.kill(pids[2], 9)
show("KILLED", mpirt.get(waiting, timeout=60))
show("KILLED_TOOK", time.monotonic() - killed_at)
show("BROKEN", mpirt.get([m.allreduce.remote("g") for m in members[:2]], timeout=30))
# "h" (members 0 and 1) does not span the dead rank: it still works
show("H_WORKS", mpirt.get([m.allreduce.remote("h") for m in members[:2]], timeout=30))
# member 0 waits in an allreduce of "h", and for a group "late" that member 1 has joined, when member 1's
# rank exits by itself (os._exit: noticed by ULFM's heartbeats)
late_1 = members[1].join.remote(3, 1, "late")
time.sleep(0.5)
late_0 = members[0].join.remote(3, 0, "late")
waiting = members[0].allreduce.remote("h")
time.sleep(0.5)
members[1].exit_in.remote(0.0)
exited_at = time.monotonic()
show("EXITED", mpirt.get(waiting, timeout=60))
show("LATE", mpirt.get(late_0, timeout=60))
show("EXITED_TOOK", time.monotonic() - exited_at)
mpirt.shutdown()
show("DONE", True)
""")
    assert found["JOIN_G"] == ["joined"] * 3 and found["JOIN_H"] == ["joined"] * 2
    for what in found["KILLED"]:
        assert what.startswith("CollectiveGroupError") and "in the collective group 'g' failed" in what, what
    assert found["KILLED_TOOK"] < 20
    for what in found["BROKEN"]:
        assert what.startswith("CollectiveGroupError") and "cannot run" in what and "destroy the group" in what
    assert found["H_WORKS"] == [[3.0] * 4] * 2
    assert found["EXITED"].startswith("CollectiveGroupError"), found["EXITED"]
    assert found["LATE"].startswith("RuntimeError") and "cannot form" in found["LATE"], found["LATE"]
    assert found["EXITED_TOOK"] < 20
    assert found["DONE"] is True


@pytest.mark.parametrize("mode", ["mpirun", "spawn"])
def test_the_live_members_form_a_new_group_after_a_death(tmp_path, mode):
    found = _run_death(tmp_path, mode, """
show("JOIN_G", mpirt.get([m.join.remote(3, i, "g") for i, m in enumerate(members)], timeout=30))
waiting = [m.allreduce.remote("g") for m in members[:2]]
time.sleep(0.5)
os.kill(pids[2], 9)
show("KILLED", mpirt.get(waiting, timeout=60))
mpirt.get([m.destroy.remote("g") for m in members[:2]], timeout=30)
show("REFORMED", mpirt.get([m.join.remote(2, i, "g") for i, m in enumerate(members[:2])], timeout=60))
show("AFTER", mpirt.get([m.allreduce.remote("g") for m in members[:2]], timeout=30))
show("EVERY_OP", mpirt.get([m.every_op.remote("g") for m in members[:2]], timeout=60))
mpirt.shutdown()
show("DONE", True)
""")
    assert all(what.startswith("CollectiveGroupError") for what in found["KILLED"]), found["KILLED"]
    # a process that knows of a dead rank cannot build a communicator under ULFM: the re-formed group is
    # made of messages (peer_comm.py), and every operation works on it
    assert found["REFORMED"] == ["joined"] * 2
    assert found["AFTER"] == [[3.0] * 4] * 2
    first, second = found["EVERY_OP"]
    for got in (first, second):
        assert got["allreduce_max"] == [2.0] * 3 and got["broadcast"] == [1.0] * 2
        assert got["allgather"] == [[10, 10], [11, 11]] and got["big"] is True
    assert first["reduce"] == [6.0, 6.0] and second["reduce"] == [3.0, 3.0]    # only the root's changes
    assert first["reducescatter"] == [3.0, 3.0] and second["reducescatter"] == [3.0, 3.0]
    assert second["recv"] == [0.0, 1.0, 2.0, 3.0]
