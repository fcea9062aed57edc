"""mpirt.util.state, Ray's state API, against a running job: lists, filters, limits, detail, summaries, from
the driver, a task and an actor; Ray's argument errors."""
import inspect
import time
import warnings

import pytest

import mpirt
from conftest import run_app, wait_for
from mpirt.core import rank_state
from mpirt.util import state
from mpirt.util.state import RayStateApiException


def test_without_a_running_job_it_says_to_init_first():
    if mpirt.is_initialized():
        pytest.skip("a job runs in this process already")
    with pytest.raises(ConnectionError, match="mpirt.init"):
        state.list_tasks()


@mpirt.remote
def square(x):
    return x * x


@mpirt.remote
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


@mpirt.remote
def fails():
    raise ValueError("state-api-boom")


@mpirt.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n

    def tasks_seen(self):
        return [t.func_or_class_name for t in state.list_tasks(limit=10_000)]


def test_finished_failed_and_running_tasks_with_rays_fields(rt):
    assert rt.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    with pytest.raises(ValueError):
        rt.get(fails.remote())
    slow = sleeper.remote(3)
    assert wait_for(lambda: state.list_tasks(filters=[("func_or_class_name", "=", "sleeper"),
                                                      ("state", "=", "RUNNING")]), 10)
    tasks = state.list_tasks(limit=10_000)
    squares = [t for t in tasks if t.func_or_class_name == "square"]
    assert len(squares) >= 4 and {t.state for t in squares} == {"FINISHED"}
    assert all(t.type == "NORMAL_TASK" and len(t.task_id) == 28 and t.node_id and t.worker_pid for t in squares)
    failed = next(t for t in tasks if t.func_or_class_name == "fails")
    assert failed.state == "FAILED" and failed.error_type == "TASK_EXECUTION_EXCEPTION"
    assert failed["state"] == "FAILED" and failed.get("error_type") == failed.error_type   # Ray's key access
    assert failed.error_message is None and failed.end_time_ms is None                    # detail only
    detailed = state.list_tasks(filters=[("func_or_class_name", "=", "fails")], detail=True)[0]
    assert "state-api-boom" in detailed.error_message and detailed.end_time_ms > 0
    assert detailed.language == "PYTHON"
    rt.get(slow)


@mpirt.remote(max_retries=2, retry_exceptions=True)
def flaky(path):
    import os
    tries = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(tries + 1))
    if tries < 2:
        raise ValueError("once more")
    return tries


def test_a_retried_task_shows_its_attempt_number(rt, tmp_path):
    assert rt.get(flaky.remote(str(tmp_path / "tries"))) == 2
    rows = state.list_tasks(filters=[("func_or_class_name", "=", "flaky")])
    assert [(t.state, t.attempt_number) for t in rows] == [("FINISHED", 2)]


def test_get_by_id_as_ray_does(rt):
    ref = square.remote(7)
    assert rt.get(ref) == 49
    task = state.get_task(ref)                      # the task that makes the ref, with detail
    assert task.func_or_class_name == "square" and task.state == "FINISHED" and task.end_time_ms > 0
    assert state.get_task(task.task_id).task_id == task.task_id
    assert state.get_task("0" * 28) is None
    counter = Counter.remote()
    rt.get(counter.add.remote())
    actor = state.get_actor(counter._actor_id_hex() if hasattr(counter, "_actor_id_hex") else
                            format(counter._actor_id, "028x"))
    assert actor is not None and actor.class_name == "Counter" and actor.state == "ALIVE"
    put = rt.put(b"x" * 10)
    assert [o.object_id for o in state.get_objects(put.hex())] == [put.hex()]
    assert state.get_objects("f" * 28) == []
    node = state.list_nodes()[0]
    assert state.get_node(node.node_id).node_id == node.node_id
    with pytest.raises(TypeError, match="hex string"):
        state.get_actor(5)


def test_filters_compare_as_rays_do(rt):
    rt.get([square.remote(i) for i in range(3)])
    lower = state.list_tasks(filters=[("state", "=", "finished"), ("func_or_class_name", "=", "square")])
    assert lower and all(t.state == "FINISHED" for t in lower)                   # case-insensitive strings
    others = state.list_tasks(filters=[("func_or_class_name", "!=", "square")], limit=10_000)
    assert all(t.func_or_class_name != "square" for t in others)
    assert state.list_tasks(filters=[("FUNC_OR_CLASS_NAME", "=", "square")])     # keys too
    assert state.list_tasks(filters=[("func_or_class_name", "=", "square"), ("state", "=", "FAILED")]) == []


def test_bad_arguments_raise_as_ray_does(rt):
    with pytest.raises(RayStateApiException, match="The given filter column colour is not supported"):
        state.list_tasks(filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="Unsupported filter predicate > is given. Available predicates: =, !="):
        state.list_actors(filters=[("state", ">", "ALIVE")])
    with pytest.raises(RayStateApiException, match="not supported"):
        state.list_objects(filters=[("required_resources", "=", "x")])   # a column, but not filterable
    with pytest.raises(TypeError, match="filters="):
        state.list_tasks(filters="state=RUNNING")
    with pytest.raises(TypeError, match=r"\(key, predicate, value\)"):
        state.list_tasks(filters=[("state", "RUNNING")])
    for limit in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="limit="):
            state.list_tasks(limit=limit)
    for timeout in (0, -3, "5", None):
        with pytest.raises(ValueError, match="timeout="):
            state.summarize_tasks(timeout=timeout)
    with pytest.raises(ValueError, match="address='10.0.0.1:6379'"):
        state.list_nodes(address="10.0.0.1:6379")
    assert state.list_nodes(address="auto")


def test_limit_cuts_and_says_so_only_when_explaining(rt):
    rt.get([square.remote(i) for i in range(5)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(state.list_tasks(limit=2)) == 2                       # as in Ray: silently
    with pytest.warns(UserWarning, match=r"Limit last 2 entries \(Total "):
        assert len(state.list_tasks(limit=2, _explain=True)) == 2
    assert inspect.signature(state.list_tasks).parameters["limit"].default == 100   # Ray's default limit


def test_actors_by_their_owners_word_with_host_pid(rt):
    counter = Counter.options(name="state-counter").remote()
    assert rt.get(counter.add.remote()) == 1
    actors = state.list_actors(filters=[("name", "=", "state-counter")])
    assert len(actors) == 1
    actor = actors[0]
    assert actor.class_name == "Counter" and actor.state == "ALIVE" and actor.pid > 0 and actor.node_id
    assert actor.actor_id == format(counter._actor_id, "028x")
    calls = state.list_tasks(filters=[("actor_id", "=", actor.actor_id), ("type", "=", "ACTOR_TASK")])
    assert [c.func_or_class_name for c in calls] == ["Counter.add"] and calls[0].state == "FINISHED"
    creation = state.list_tasks(filters=[("actor_id", "=", actor.actor_id), ("type", "=", "ACTOR_CREATION_TASK")])
    assert creation and creation[0].func_or_class_name == "Counter.__init__"
    rt.kill(counter)
    assert wait_for(lambda: state.list_actors(filters=[("name", "=", "state-counter")])[0].state == "DEAD", 10)
    summary = state.summarize_actors()["cluster"]
    assert summary["summary_by"] == "class" and summary["summary"]["Counter"]["state_counts"]["DEAD"] >= 1


def test_objects_nodes_and_placement_groups(rt):
    big = rt.put(b"x" * 300_000)
    small = rt.put(7)
    objects = {o.object_id: o for o in state.list_objects(limit=10_000)}
    assert objects[big.hex()].object_size >= 300_000 and objects[small.hex()].object_size > 0
    assert objects[big.hex()].type == "DRIVER" and objects[big.hex()].reference_type == "LOCAL_REFERENCE"
    summary = state.summarize_objects()["cluster"]
    assert summary["total_objects"] >= 2 and summary["total_size_mb"] > 0.28 and summary["summary_by"] == "callsite"
    nodes = state.list_nodes()
    assert len(nodes) == 1 and nodes[0].state == "ALIVE" and nodes[0].resources_total["CPU"] == 2.0
    assert nodes[0].node_id == rt.get_runtime_context().get_node_id() and nodes[0].is_head_node
    group = rt.util.placement_group([{"CPU": 1}], name="state-pg")
    rt.get(group.ready(), timeout=30)
    groups = state.list_placement_groups(filters=[("name", "=", "state-pg")], detail=True)
    assert len(groups) == 1 and groups[0].state == "CREATED" and groups[0].bundles[0]["unit_resources"] == {"CPU": 1}
    rt.util.remove_placement_group(group)
    assert wait_for(lambda: state.list_placement_groups(filters=[("name", "=", "state-pg")])[0].state == "REMOVED")


def test_summarize_tasks_has_rays_shape(rt):
    rt.get([square.remote(i) for i in range(2)])
    summary = state.summarize_tasks()["cluster"]
    assert summary["summary_by"] == "func_name"
    assert summary["summary"]["square"]["type"] == "NORMAL_TASK"
    assert summary["summary"]["square"]["state_counts"]["FINISHED"] >= 2
    assert summary["total_tasks"] >= 2 and "total_actor_tasks" in summary and "total_actor_scheduled" in summary


@mpirt.remote
def tasks_from_a_task():
    return len(state.list_tasks(limit=10_000)), [n.node_id for n in state.list_nodes()]


def test_callable_from_a_task_and_an_actor(rt):
    rt.get(square.remote(3))
    count, node_ids = rt.get(tasks_from_a_task.remote(), timeout=60)
    assert count >= 1 and node_ids == [rt.get_runtime_context().get_node_id()]
    counter = Counter.remote()
    seen = rt.get(counter.tasks_seen.remote(), timeout=60)
    assert "square" in seen and "Counter.tasks_seen" in seen   # its own call is listed, as running


def test_finished_tasks_are_kept_in_a_bounded_buffer():
    assert rank_state.finished_tasks.maxlen == rank_state.FINISHED_TASKS_PER_RANK == 10_000


def test_ranks_that_do_not_answer_in_time_raise_or_are_left_out(rt):
    with pytest.raises(RayStateApiException, match="did not answer the state query within timeout=1e-09 s"):
        state.list_tasks(timeout=1e-9)
    with pytest.warns(UserWarning, match="did not answer"):
        partial = state.list_objects(timeout=1e-9, raise_on_missing_output=False, limit=10_000)
    assert all(o.type == "DRIVER" for o in partial)   # the driver's own part is there


SLOT_APP = """
import mpirt
from mpirt.util import state
mpirt.init(num_cpus=2)

@mpirt.remote
def look():
    import os
    return os.getpid(), [t.func_or_class_name for t in state.list_tasks(filters=[("state", "=", "RUNNING")])]

pid, running = mpirt.get(look.remote(), timeout=60)
print("SLOT", pid, running)
mpirt.shutdown()
"""


def test_callable_from_a_task_in_a_slot_process(tmp_path):
    done = run_app(tmp_path, SLOT_APP, env={"MPIRT_TASK_SLOTS": "process"}, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("SLOT"))
    assert "'look'" in line, done.stdout
