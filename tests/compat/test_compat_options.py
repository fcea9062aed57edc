"""Options as Ray's API reference and guides give them (``import ray`` is mpirt).

From the ``ray.remote``, ``.options()`` and ``ray.init`` references: every keyword Ray takes
is taken, an unknown one raises ValueError naming it, a wrong type TypeError, a wrong value
ValueError in Ray's words. From the "Environment variables" and "Runtime environments"
guides: ``env_vars`` and ``working_dir`` of the job (``init``), of a task or actor, merged
as Ray merges them, inherited by child tasks, in effect only while the task runs.
"""
import os
import sys
import textwrap
import warnings

import pytest

import ray
from conftest import REPO, run_app
from ray.runtime_env import RuntimeEnv

SHIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ray_shim")

# One valid value for each of Ray's task options (ray.remote reference; Ray 2.x's task_options).
TASK_OPTION_VALUES = {
    "label_selector": {"region": "in(us-east, us-west)", "gpu": "!A100"},
    "fallback_strategy": [{"label_selector": {"zone": "a"}}],
    "accelerator_type": "A100",
    "memory": 2 * 1024 ** 3,
    "name": "custom_name",
    "num_cpus": 0.5,
    "num_gpus": 0,
    "object_store_memory": None,
    "placement_group": None,
    "placement_group_bundle_index": -1,
    "placement_group_capture_child_tasks": False,
    "resources": {},
    "runtime_env": {"env_vars": {"OPTION_CHECK": "1"}},
    "scheduling_strategy": "SPREAD",
    "enable_task_events": False,
    "_labels": {"team": "a"},
    "max_calls": 1,
    "max_retries": 2,
    "num_returns": 1,
    "retry_exceptions": [ValueError],
    "_generator_backpressure_num_objects": None,
    "_num_objects_per_yield": 1,
}

# One valid value for each of Ray's actor options.
ACTOR_OPTION_VALUES = {
    "label_selector": {"region": "us-east"},
    "fallback_strategy": [{"label_selector": {"zone": "b"}}],
    "accelerator_type": "H100",
    "memory": 10 ** 9,
    "name": None,
    "num_cpus": 0,
    "num_gpus": 0,
    "object_store_memory": 10 ** 6,
    "placement_group": None,
    "placement_group_bundle_index": -1,
    "placement_group_capture_child_tasks": None,
    "resources": None,
    "runtime_env": {"env_vars": {"OPTION_CHECK": "actor"}},
    "scheduling_strategy": "DEFAULT",
    "enable_task_events": True,
    "_labels": None,
    "concurrency_groups": {"io": 2},
    "enable_tensor_transport": False,
    "lifetime": None,
    "max_concurrency": 2,
    "max_restarts": 1,
    "max_task_retries": -1,
    "max_pending_calls": 100,
    "namespace": None,
    "get_if_exists": False,
    "allow_out_of_order_execution": False,
    "_actor_generator_backpressure_num_objects": -1,
}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A job with a runtime_env, as the guide starts one: env_vars and a working_dir holding a module."""
    job_dir = tmp_path_factory.mktemp("job_dir")
    (job_dir / "job_helper.py").write_text("GREETING = 'hello from the working_dir'\n")
    (job_dir / "data.txt").write_text("job data")
    ray.init(num_cpus=2, runtime_env={"working_dir": str(job_dir),
                                      "env_vars": {"JOB_VAR": "job", "SHARED_VAR": "job"}})
    yield job_dir
    ray.shutdown()


def environment_of(names):
    return {name: os.environ.get(name) for name in names}


read_env = ray.remote(environment_of)


@ray.remote
def where_am_i():
    return os.getcwd(), sys.path[0]


def add(a, b):
    return a + b


# -- options of remote functions -------------------------------------------------------------

def test_every_task_option_ray_takes_is_taken(job):
    f = ray.remote(**TASK_OPTION_VALUES)(add)
    assert ray.get(f.remote(1, 2)) == 3
    in_options = {key: value for key, value in TASK_OPTION_VALUES.items() if key != "max_calls"}
    assert ray.get(ray.remote(add).options(**in_options).remote(2, 3)) == 5


def test_unknown_task_option_names_it_and_the_valid_ones():
    with pytest.raises(ValueError, match="Invalid option keyword num_cpu for remote functions. Valid ones are") as info:
        ray.remote(add).options(num_cpu=1)
    assert "'num_cpus'" in str(info.value) and "'runtime_env'" in str(info.value)
    with pytest.raises(ValueError, match="Invalid option keyword bogus for remote functions"):
        ray.remote(bogus=1)(add)


def test_wrong_option_type_is_a_type_error_naming_option_and_value():
    f = ray.remote(add)
    with pytest.raises(TypeError, match=r"The type of keyword 'num_cpus' must be .* received type <class 'str'>: "
                                        r"num_cpus='1'"):
        f.options(num_cpus="1")
    with pytest.raises(TypeError, match="placement_group_bundle_index"):
        f.options(placement_group_bundle_index="0")
    with pytest.raises(TypeError, match="enable_task_events"):
        f.options(enable_task_events="yes")
    with pytest.raises(TypeError, match="retry_exceptions"):
        f.options(retry_exceptions="ValueError")


def test_wrong_option_value_is_a_value_error_in_rays_words():
    f = ray.remote(add)
    with pytest.raises(ValueError, match="The keyword 'max_retries' only accepts None, 0, -1 or a positive integer"):
        f.options(max_retries=-2)
    with pytest.raises(ValueError, match="The quantity of resource memory cannot be negative"):
        f.options(memory=-1)
    with pytest.raises(ValueError, match="Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU'"):
        f.options(resources={"CPU": 1})
    with pytest.raises(ValueError, match="Setting 'object_store_memory' is not implemented for tasks"):
        f.options(object_store_memory=1024)
    with pytest.raises(ValueError, match="retry_exceptions must be either a boolean or a list of exceptions"):
        f.options(retry_exceptions=["ValueError"])
    with pytest.raises(ValueError, match="Invalid label key name `-zone`"):
        f.options(label_selector={"-zone": "a"})
    with pytest.raises(ValueError, match="Placement groups should be specified via the scheduling_strategy"):
        f.options(placement_group="pg", scheduling_strategy="SPREAD")


def test_max_calls_is_taken_by_the_decorator_only():
    f = ray.remote(max_calls=1)(add)
    with pytest.raises(ValueError, match="Setting 'max_calls' is not supported in '.options\\(\\)'."):
        f.options(max_calls=2)
    with pytest.raises(ValueError, match="The keyword 'max_calls' only accepts None, 0 or a positive integer"):
        ray.remote(max_calls=-1)(add)


def test_invalid_scheduling_strategy_string_raises_at_remote(job):
    with pytest.raises(ValueError, match="Invalid scheduling_strategy value FASTEST"):
        ray.remote(add).options(scheduling_strategy="FASTEST").remote(1, 2)


def test_streaming_num_returns_needs_a_generator_and_is_the_default_for_one(job):
    with pytest.raises(ValueError, match="num_returns='streaming' can only be used with generator functions"):
        ray.remote(num_returns="streaming")(add)

    def numbers():
        yield 1

    assert isinstance(ray.remote(numbers).remote(), ray.ObjectRefGenerator)
    assert [ray.get(ref) for ref in ray.get(ray.remote(numbers).options(num_returns="dynamic").remote())] == [1]


def test_generator_with_a_whole_number_of_returns_runs(job):
    @ray.remote(num_returns=3)
    def numbers():
        yield from (1, 2, 3)

    assert ray.get(numbers.remote()) == [1, 2, 3]


def test_async_def_remote_function_is_refused():
    async def coroutine():
        return 1

    with pytest.raises(ValueError, match="'async def' should not be used for remote tasks"):
        ray.remote(coroutine)


# -- options of actors and actor methods ------------------------------------------------------

def test_every_actor_option_ray_takes_is_taken(job):
    @ray.remote(**ACTOR_OPTION_VALUES)
    class Echo:
        def echo(self, value):
            return value

    assert ray.get(Echo.remote().echo.remote(7)) == 7
    in_options = {key: value for key, value in ACTOR_OPTION_VALUES.items() if key != "concurrency_groups"}
    assert ray.get(Echo.options(**in_options).remote().echo.remote(8)) == 8


def test_unknown_actor_option_and_task_only_option_are_refused():
    class Plain:
        pass

    with pytest.raises(ValueError, match="Invalid option keyword max_calls for actors. Valid ones are"):
        ray.remote(max_calls=1)(Plain)
    with pytest.raises(ValueError, match="Invalid option keyword num_returns for actors"):
        ray.remote(Plain).options(num_returns=2)
    with pytest.raises(ValueError, match="Setting 'concurrency_groups' is not supported in '.options\\(\\)'."):
        ray.remote(Plain).options(concurrency_groups={"io": 1})


def test_actor_method_options(job):
    @ray.remote
    class Pair:
        def pair(self):
            return 1, 2

    pair = Pair.remote()
    first, second = pair.pair.options(num_returns=2, name="pair_call", enable_task_events=False,
                                      _metadata={"k": "v"}).remote()
    assert ray.get([first, second]) == [1, 2]
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_cpus'"):
        pair.pair.options(num_cpus=1)
    with pytest.raises(ValueError, match="_num_objects_per_yield cannot be overridden per actor method call"):
        pair.pair.options(_num_objects_per_yield=2)


# -- signatures travel with remote functions and handles ----------------------------------------

@ray.remote
def call_wrongly(remote_function, handle):
    errors = []
    for call in (lambda: remote_function.remote(1, 2, 3), lambda: handle.scale.remote()):
        try:
            call()
            errors.append(None)
        except TypeError as exc:
            errors.append(str(exc))
    return errors


def test_remote_functions_and_handles_passed_to_tasks_keep_their_signatures(job):
    @ray.remote
    class Scaler:
        def scale(self, x):
            return 2 * x

    errors = ray.get(call_wrongly.remote(ray.remote(add), Scaler.remote()))
    assert "add.remote()" in errors[0] and "too many positional arguments" in errors[0]
    assert "Scaler.scale.remote()" in errors[1] and "missing a required argument: 'x'" in errors[1]


# -- runtime_env: the job's, a task's, an actor's --------------------------------------------------

def test_tasks_run_in_the_jobs_runtime_env(job):
    @ray.remote
    def use_job_env():
        import job_helper   # importable: the working_dir is on sys.path

        with open("data.txt") as f:   # relative to the working_dir
            data = f.read()
        return os.environ.get("JOB_VAR"), job_helper.GREETING, data, os.getcwd()

    assert ray.get(use_job_env.remote()) == ("job", "hello from the working_dir", "job data", str(job))


def test_the_driver_keeps_its_own_environment(job):
    assert "JOB_VAR" not in os.environ
    assert os.getcwd() != str(job)


def test_task_env_vars_merge_over_the_jobs_and_last_only_while_it_runs(job):
    names = ["JOB_VAR", "SHARED_VAR", "TASK_VAR"]
    own = read_env.options(runtime_env={"env_vars": {"SHARED_VAR": "task", "TASK_VAR": "task"}})
    assert ray.get(own.remote(names)) == {"JOB_VAR": "job", "SHARED_VAR": "task", "TASK_VAR": "task"}
    # The worker that ran it is back to the job's environment: run enough tasks to cover every worker.
    after = ray.get([read_env.remote(names) for _ in range(8)])
    assert all(env == {"JOB_VAR": "job", "SHARED_VAR": "job", "TASK_VAR": None} for env in after)


def test_env_vars_may_refer_to_existing_variables(job):
    env = {"env_vars": {"EXTENDED": "${JOB_VAR}:extra", "MISSING": "${NOT_SET_ANYWHERE}"}}
    assert ray.get(read_env.options(runtime_env=env).remote(["EXTENDED", "MISSING"])) == \
        {"EXTENDED": "job:extra", "MISSING": ""}


def test_options_runtime_env_replaces_the_decorators(job):
    decorated = ray.remote(runtime_env={"env_vars": {"FROM_DECORATOR": "1"}})(environment_of)
    names = ["FROM_DECORATOR", "FROM_OPTIONS"]
    assert ray.get(decorated.remote(names)) == {"FROM_DECORATOR": "1", "FROM_OPTIONS": None}
    replaced = decorated.options(runtime_env={"env_vars": {"FROM_OPTIONS": "1"}})
    assert ray.get(replaced.remote(names)) == {"FROM_DECORATOR": None, "FROM_OPTIONS": "1"}
    assert ray.get(decorated.options(runtime_env=None).remote(names)) == {"FROM_DECORATOR": "1",
                                                                           "FROM_OPTIONS": None}


def test_child_tasks_inherit_their_parents_runtime_env(job):
    @ray.remote
    def parent():
        inherited = ray.get(read_env.remote(["PARENT_VAR", "CHILD_VAR"]))
        merged = ray.get(read_env.options(runtime_env={"env_vars": {"CHILD_VAR": "child"}}).remote(
            ["PARENT_VAR", "CHILD_VAR", "JOB_VAR"]))
        return inherited, merged

    inherited, merged = ray.get(parent.options(runtime_env={"env_vars": {"PARENT_VAR": "parent"}}).remote())
    assert inherited == {"PARENT_VAR": "parent", "CHILD_VAR": None}
    assert merged == {"PARENT_VAR": "parent", "CHILD_VAR": "child", "JOB_VAR": "job"}


def test_task_working_dir_as_local_uri_or_path(job, tmp_path):
    (tmp_path / "task_helper.py").write_text("NAME = 'task helper'\n")

    @ray.remote
    def use_dir():
        import task_helper

        return os.getcwd(), sys.path[0], task_helper.NAME

    expected = (str(tmp_path), str(tmp_path), "task helper")
    assert ray.get(use_dir.options(runtime_env={"working_dir": f"local://{tmp_path}"}).remote()) == expected
    assert ray.get(use_dir.options(runtime_env={"working_dir": str(tmp_path)}).remote()) == expected
    cwd, first_on_path = ray.get(where_am_i.remote())
    assert cwd == str(job) and first_on_path == str(job)


def test_concurrent_tasks_with_different_env_vars_each_see_their_own(job):
    @ray.remote(num_cpus=0)   # no CPU: many run at once on one worker
    def hold_and_check(expected):
        import time

        seen = set()
        for _ in range(20):
            seen.add(os.environ.get("PER_TASK"))
            time.sleep(0.002)
        return seen == {expected}

    refs = [hold_and_check.options(runtime_env={"env_vars": {"PER_TASK": str(i % 3)}}).remote(str(i % 3))
            if i % 3 else hold_and_check.remote(None) for i in range(30)]
    assert all(ray.get(refs))


def test_actor_runs_with_the_jobs_and_its_own_env_vars(job):
    @ray.remote
    class Reader:
        def read(self, names):
            return {name: os.environ.get(name) for name in names}

    reader = Reader.options(runtime_env={"env_vars": {"ACTOR_VAR": "actor"}}).remote()
    assert ray.get(reader.read.remote(["JOB_VAR", "ACTOR_VAR"])) == {"JOB_VAR": "job", "ACTOR_VAR": "actor"}
    # Only while its calls run: a plain task on the same ranks does not see it.
    assert ray.get([read_env.remote(["ACTOR_VAR"]) for _ in range(4)]) == [{"ACTOR_VAR": None}] * 4


def test_actor_working_dir(job, tmp_path):
    (tmp_path / "actor_helper.py").write_text("WHERE = 'the actor working_dir'\n")

    @ray.remote
    class InDir:
        def __init__(self):
            import actor_helper   # importable: the working_dir is on sys.path while it runs
            self.where = actor_helper.WHERE

        def describe(self):
            return self.where, os.getcwd()

    actor = InDir.options(runtime_env={"working_dir": str(tmp_path)}).remote()
    assert ray.get(actor.describe.remote()) == ("the actor working_dir", str(tmp_path))


def test_runtime_env_class_is_accepted(job):
    env = RuntimeEnv(env_vars={"TYPED": "yes"})
    assert ray.get(read_env.options(runtime_env=env).remote(["TYPED"])) == {"TYPED": "yes"}


def test_bad_runtime_env_raises_naming_the_problem(tmp_path):
    f = ray.remote(add)
    with pytest.raises(TypeError, match=r"runtime_env\['env_vars'\] must be of type Dict\[str, str\], but the "
                                        r"value 1 is of type <class 'int'>"):
        f.options(runtime_env={"env_vars": {"A": 1}})
    with pytest.raises(TypeError, match="The type of keyword 'runtime_env' must be"):
        f.options(runtime_env="env_vars=A")
    with pytest.raises(TypeError, match="`working_dir` must be a string"):
        f.options(runtime_env={"working_dir": 3})
    with pytest.raises(ValueError, match="must be an existing directory"):
        f.options(runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match='Invalid "local://" runtime_env URI'):
        f.options(runtime_env={"working_dir": "local://relative/dir"})
    with pytest.raises(ValueError, match="unknown key 'env_var'"):
        f.options(runtime_env={"env_var": {"A": "1"}})


def test_runtime_env_keys_that_install_software_are_not_supported():
    f = ray.remote(add)
    for env in ({"pip": ["emoji"]}, {"conda": "my-env"}, {"py_modules": ["local_module"]},
                {"container": {"image": "x"}}):
        with pytest.raises(NotImplementedError, match=f"runtime_env\\['{next(iter(env))}'\\]"):
            f.options(runtime_env=env)
    with pytest.raises(NotImplementedError, match="does not download"):
        f.options(runtime_env={"working_dir": "s3://bucket/code.zip"})


def test_a_task_waiting_for_a_child_with_another_env_on_its_only_worker(tmp_path):
    source = textwrap.dedent("""
        import os
        import ray

        ray.init(num_cpus=1)   # one worker: parent and child share it

        @ray.remote
        def child():
            return os.environ.get("LEVEL")

        @ray.remote
        def parent(depth):
            child_saw = ray.get(child.options(runtime_env={"env_vars": {"LEVEL": "child"}}).remote())
            deeper = ray.get(parent.options(runtime_env={"env_vars": {"LEVEL": f"p{depth - 1}"}}).remote(depth - 1)) \\
                if depth else None
            return os.environ.get("LEVEL"), child_saw, deeper

        print(ray.get(parent.options(runtime_env={"env_vars": {"LEVEL": "p2"}}).remote(2)))
    """)
    proc = run_app(tmp_path, source, env={"PYTHONPATH": SHIM + os.pathsep + REPO})
    assert proc.returncode == 0, proc.stderr
    assert "('p2', 'child', ('p1', 'child', ('p0', 'child', None)))" in proc.stdout


def test_jobs_runtime_env_under_mpirun(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "mpirun_helper.py").write_text("VALUE = 42\n")
    source = textwrap.dedent("""
        import os
        import ray

        ray.init(runtime_env={"working_dir": "code", "env_vars": {"JOB_VAR": "job"}})

        @ray.remote
        def task():
            import mpirun_helper

            return os.environ.get("JOB_VAR"), os.path.basename(os.getcwd()), mpirun_helper.VALUE

        print(ray.get(task.remote()))
    """)
    proc = run_app(tmp_path, source, ranks=3, env={"PYTHONPATH": SHIM + os.pathsep + REPO})
    assert proc.returncode == 0, proc.stderr
    assert "('job', 'code', 42)" in proc.stdout


# -- init() --------------------------------------------------------------------------------------

def test_init_twice_raises_unless_reinit_errors_are_ignored(job):
    with pytest.raises(RuntimeError, match="Maybe you called ray.init twice by accident"):
        ray.init()
    ray.init(ignore_reinit_error=True)


def test_init_takes_rays_keywords(job):
    ray.init(address="auto", num_cpus=2, num_gpus=0, resources={"custom": 1}, labels={"zone": "a"},
             object_store_memory=2 ** 30, local_mode=False, ignore_reinit_error=True, include_dashboard=False,
             dashboard_host="0.0.0.0", dashboard_port=8265, job_config=None, configure_logging=True,
             logging_level="info", logging_format="%(message)s", logging_config=None, log_to_driver=True,
             namespace="ns", runtime_env={"env_vars": {"A": "1"}}, enable_resource_isolation=False,
             _system_config={"memory_usage_threshold": 0.4}, _temp_dir="/tmp/ray", _node_ip_address="127.0.0.1")


def test_init_keyword_errors_are_rays(job):
    with pytest.raises(RuntimeError, match="Unknown keyword argument\\(s\\): bogus"):
        ray.init(bogus=1, ignore_reinit_error=True)
    with pytest.raises(TypeError, match="num_cpus"):
        ray.init(num_cpus="2", ignore_reinit_error=True)
    with pytest.raises(TypeError, match="The _system_config must be a dict."):
        ray.init(_system_config=[("a", 1)], ignore_reinit_error=True)
    with pytest.raises(RuntimeError, match="`local_mode` is no longer supported"):
        ray.init(local_mode=True, ignore_reinit_error=True)
    with pytest.raises(RuntimeError, match="Cluster-wide storage configuration has been removed"):
        ray.init(storage="/tmp/storage", ignore_reinit_error=True)
    with pytest.raises(NotImplementedError, match="runtime_env\\['pip'\\]"):
        ray.init(runtime_env={"pip": ["emoji"]}, ignore_reinit_error=True)


def test_init_with_a_ray_cluster_address_or_dashboard_says_so(job):
    with pytest.raises(ValueError, match="mpirt cannot connect to a Ray cluster"):
        ray.init(address="ray://123.45.67.89:10001", ignore_reinit_error=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ray.init(include_dashboard=True, ignore_reinit_error=True)
    assert any("mpirt has no dashboard" in str(w.message) for w in caught)
