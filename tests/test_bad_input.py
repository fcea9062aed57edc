"""Bad input and faults as a new user meets them (docs/bad_input.md has the whole table): each gets a clear
error, or documented behaviour, and the job goes on (or ends with a message) leaving no process behind.

Cases that belong to an area are in that area's tests (spill: tests/test_store_spill.py); these are the
ones that do not fit one, and the faults that end a job."""
import threading

import pytest

from conftest import mpirun_has_ulfm, run_app
from mpirt.util import ActorPool
from mpirt.util.placement_group import placement_group_table


@pytest.fixture(scope="module")
def ray(rt):
    return rt


def test_timeline_filename_that_is_not_a_path(ray, tmp_path):
    # open(5, "w") would write to the process's descriptor 5 and close it (one of the runtime's sockets).
    with pytest.raises(TypeError, match=r"timeline\(filename=5\).*path"):
        ray.timeline(5)
    assert isinstance(ray.timeline(), list)
    ray.timeline(tmp_path / "trace.json")               # os.PathLike is a path
    assert (tmp_path / "trace.json").stat().st_size > 0


def test_placement_group_table_of_something_else(ray):
    with pytest.raises(TypeError, match=r"placement_group_table\(placement_group=5\)"):
        placement_group_table(5)
    assert isinstance(placement_group_table(), dict)


def test_bundle_index_without_a_group_raises_as_in_ray(ray):
    @ray.remote
    def one():
        return 1

    with pytest.raises(ValueError, match="If placement group is not set, the value of bundle index must be -1"):
        one.options(placement_group_bundle_index=3).remote()
    assert ray.get(one.options(placement_group_bundle_index=-1).remote()) == 1


def test_actor_pool_keeps_its_actor_when_fn_fails(ray):
    @ray.remote
    class Doubler:
        def double(self, value):
            return 2 * value

    pool = ActorPool([Doubler.remote()])
    with pytest.raises(TypeError, match=r"ActorPool.submit\(fn=5\)"):
        pool.submit(5, 1)
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda actor, value: 1 / 0, 1)
    with pytest.raises(ValueError, match=r"must return the ObjectRef of an actor call.*returned 5 for value=1"):
        pool.submit(lambda actor, value: 5, 1)
    assert not pool.has_next() and pool.has_free()       # nothing half-submitted, the actor still in the pool
    assert list(pool.map(lambda actor, value: actor.double.remote(value), [1, 2, 3])) == [2, 4, 6]


def test_actor_pool_queued_call_whose_fn_fails_raises_at_its_turn(ray):
    @ray.remote
    class Doubler:
        def double(self, value):
            return 2 * value

    pool = ActorPool([Doubler.remote()])

    def start(actor, value):
        if value == 2:
            raise KeyError(value)
        return actor.double.remote(value)

    for value in (1, 2, 3):        # 2 and 3 wait for the one actor; 2's fn fails when the actor frees up
        pool.submit(start, value)
    assert pool.get_next() == 2
    with pytest.raises(KeyError):
        pool.get_next()
    assert pool.get_next() == 6 and not pool.has_next()


def test_unpicklable_and_too_deep_arguments_name_the_argument(ray):
    @ray.remote
    def echo(value):
        return value

    with pytest.raises(TypeError, match=r"argument 'value' of echo \(type lock\)"):
        echo.remote(threading.Lock())
    with pytest.raises(TypeError, match=r"argument 'value' of echo \(type list\).*deep recursion"):
        echo.remote(_nested(100_000))
    with pytest.raises(TypeError, match=r"value given to put\(\) \(type generator\)"):
        ray.put(i for i in range(3))
    assert ray.get(echo.remote(_nested(50))) == _nested(50)


def test_a_task_past_the_recursion_limit_fails_alone(ray):
    @ray.remote
    def endless(n):
        return _down(n)

    with pytest.raises(RecursionError):
        ray.get(endless.remote(0))
    assert ray.get(endless.remote(10**9 + 1)) is None     # the rank that ran it lives on


def _nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def _down(n):
    if n > 10**9:
        return None
    return _down(n + 1)


KILL_HEAD = """
import os, sys, time
import mpirt
mpirt.init(INIT_ARGS)
marker = os.environ["MPIRT_TEST_MARKER"].encode()

@mpirt.remote
def pid():
    time.sleep(0.05)
    return os.getpid()

def python_ranks():
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = open(f"/proc/{p}/cmdline", "rb").read()
            if marker in open(f"/proc/{p}/environ", "rb").read() and b"python" in command \
                    and b"mpirun" not in command and b"prte" not in command:
                found.append(int(p))
        except OSError:
            pass
    return set(found)

workers = set(mpirt.get([pid.remote() for _ in range(8)]))
head = python_ranks() - workers - {os.getpid()}
print("head found", len(head), flush=True)
os.kill(head.pop(), 9)
time.sleep(30)
print("still running after the head died", flush=True)
"""


@pytest.mark.parametrize("mode", ["spawn", "mpirun"])
def test_killing_the_head_ends_the_job_with_a_message(tmp_path, mode):
    if not mpirun_has_ulfm():
        pytest.skip("without ULFM any death ends the job (tests/test_fault_tolerance.py)")
    if mode == "spawn":
        proc = run_app(tmp_path, KILL_HEAD.replace("INIT_ARGS", "num_cpus=2"), timeout=90)
    else:
        proc = run_app(tmp_path, KILL_HEAD.replace("INIT_ARGS", ""), ranks=4, mpirun_args=("--with-ft", "ulfm"),
                       timeout=90)
    assert "head found 1" in proc.stdout, proc.stderr
    assert "still running" not in proc.stdout
    assert proc.returncode != 0
    assert "the scheduler (rank 1) died; the job cannot go on without it" in proc.stderr


KILL_DRIVER = """
import os, time
import mpirt
mpirt.init()

@mpirt.remote
def busy():
    time.sleep(60)

refs = [busy.remote() for _ in range(4)]
time.sleep(1)
print("driver dies", flush=True)
os.kill(os.getpid(), 9)
"""


def test_killing_the_driver_under_mpirun_ends_every_rank(tmp_path):
    if not mpirun_has_ulfm():
        pytest.skip("needs Open MPI 5's --with-ft ulfm")
    # run_app fails the test if any rank is left behind
    proc = run_app(tmp_path, KILL_DRIVER, ranks=4, mpirun_args=("--with-ft", "ulfm"), timeout=90)
    assert "driver dies" in proc.stdout
    assert proc.returncode != 0


def test_a_full_results_disk_names_the_file_and_the_way_out(ray, small_disk):
    """Ray and mpirt alike raise the bare ENOSPC of whichever write failed; mpirt's names the file."""
    from mpirt import tune

    def trainable(config):
        for i in range(60):
            tune.report({"score": i, "pad": "x" * 100_000})
    tuner = tune.Tuner(trainable, param_space={"a": tune.grid_search(list(range(6)))},
                       run_config=tune.RunConfig(storage_path=str(small_disk), name="full"))
    with pytest.raises(OSError, match=r"Tune could not write .*/full/.*: No space left on device\. Free space there"):
        tuner.fit()


PENDING_ACTOR_APP = """
import mpirt
from mpirt.util.placement_group import placement_group, remove_placement_group
mpirt.init(num_cpus=2)
group = placement_group([{"CPU": 2}])
assert group.wait(10)

@mpirt.remote
class A:
    def m(self):
        return "placed"

a = A.remote()
ready, _ = mpirt.wait([a.m.remote()], timeout=16)
print("placed while the group held every CPU:", bool(ready))
remove_placement_group(group)
print(mpirt.get(a.m.remote(), timeout=30))
mpirt.shutdown()
"""


def test_an_actor_that_waits_long_to_be_placed_is_reported(tmp_path):
    """Placement groups hold every CPU: the actor waits (mpirt's actors hold a CPU), and after 10 s its owner
    prints why instead of waiting in silence; it is placed once the group is removed."""
    proc = run_app(tmp_path, PENDING_ACTOR_APP, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "placed while the group held every CPU: False" in proc.stdout and "placed\n" in proc.stdout
    assert "has waited" in proc.stderr and "placement groups reserve CPU=2" in proc.stderr, proc.stderr


STALE_REF_APP = """
import mpirt
mpirt.init(num_cpus=1)
kept = mpirt.put("from the first session")
fresh_then = mpirt.put("ready")
mpirt.shutdown()
mpirt.init(num_cpus=1)
fresh = mpirt.put("ready")
for call in (lambda: mpirt.get(kept), lambda: mpirt.get([fresh, kept]), lambda: mpirt.wait([kept, fresh], num_returns=2)):
    try:
        call()
        print("no error")
    except ValueError as error:
        print("ValueError:", error)
mpirt.shutdown()
"""


def test_a_ref_kept_across_shutdown_and_init_is_refused_by_name(tmp_path):
    """The second init() of a process: get and wait check every ref's session (the first skips the check, as
    no ref of another session can exist there)."""
    proc = run_app(tmp_path, STALE_REF_APP, timeout=90)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all("belongs to an earlier mpirt session" in line for line in lines), proc.stdout
