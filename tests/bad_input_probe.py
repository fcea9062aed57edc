"""Try bad inputs on the public API and print what each gets: ``python tests/bad_input_probe.py mpirt|ray [group]``.

Runs the same cases against mpirt and (with Ray's venv) against Ray, one line per case, so the two runs can be
put side by side for docs/bad_input.md. Not a test (pytest does not collect it); the regression tests are in
tests/test_bad_input.py and the test files by area.
"""
import importlib
import os
import socket
import sys
import threading
import time

WHICH = sys.argv[1] if len(sys.argv) > 1 else "mpirt"
GROUPS = sys.argv[2].split(",") if len(sys.argv) > 2 else None
ray = importlib.import_module(WHICH)
util = importlib.import_module(f"{WHICH}.util")
pg_mod = importlib.import_module(f"{WHICH}.util.placement_group")
strategies = importlib.import_module(f"{WHICH}.util.scheduling_strategies")
queue_mod = importlib.import_module(f"{WHICH}.util.queue")
mp = importlib.import_module(f"{WHICH}.util.multiprocessing")
CASE_SECONDS = float(os.environ.get("PROBE_CASE_SECONDS", "40"))


def outcome(thunk):
    """``ok: value`` or ``ExceptionType: message`` (first line, shortened); a case over CASE_SECONDS ends the run."""
    done = threading.Event()

    def watchdog():
        if not done.wait(CASE_SECONDS):
            print(f"    HANG (> {CASE_SECONDS:.0f} s)", flush=True)
            os._exit(3)
    threading.Thread(target=watchdog, daemon=True).start()
    start = time.monotonic()
    try:
        value = thunk()
        text = "ok: " + repr(value)
    except BaseException as exc:   # noqa: B902 - the probe reports every outcome, KeyboardInterrupt included
        text = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    finally:
        done.set()
    text = " ".join(text.split())
    return (text[:400] + "...") if len(text) > 400 else text, time.monotonic() - start


CASES = []


def case(group, label):
    def register(thunk):
        CASES.append((group, label, thunk))
        return thunk
    return register


@ray.remote
def f(x):
    return x


@ray.remote
def nothing():
    return 1


@ray.remote
def recurse(n):
    return recurse_local(n)


def recurse_local(n):
    return recurse_local(n + 1)


@ray.remote
def returns_lock():
    return threading.Lock()


class BadError(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.sock = socket.socket()


@ray.remote
def raises_unpicklable():
    raise BadError(1, 2)


@ray.remote
def slow():
    time.sleep(30)
    return 1


@ray.remote
class A:
    def __init__(self, x=0):
        self.x = x

    def m(self, y):
        return y

    def slow(self):
        time.sleep(30)


@ray.remote
class FailsInit:
    def __init__(self):
        raise ValueError("init failed")

    def m(self):
        return 1


def deep(n):
    value = []
    for _ in range(n):
        value = [value]
    return value


def _with_group(use):
    """``use(group)`` on a new one-CPU placement group, removed afterwards (its CPU free for the next cases)."""
    group = pg_mod.placement_group([{"CPU": 1}])
    try:
        return use(group)
    finally:
        pg_mod.remove_placement_group(group)


def define(**options):
    return ray.remote(**options)(lambda: 1)


# ---- remote / options -----------------------------------------------------------------------------------------
for label, options in [
    ("num_cpus=-1", dict(num_cpus=-1)), ("num_cpus='1'", dict(num_cpus="1")), ("num_cpus=0.00001", dict(num_cpus=1e-5)),
    ("num_cpus=1.5", dict(num_cpus=1.5)), ("num_gpus=-1", dict(num_gpus=-1)), ("memory=-1", dict(memory=-1)),
    ("foo=1", dict(foo=1)), ("max_retries=-2", dict(max_retries=-2)), ("max_retries=1.5", dict(max_retries=1.5)),
    ("num_returns=-1", dict(num_returns=-1)), ("num_returns='x'", dict(num_returns="x")),
    ("resources={'CPU': 1}", dict(resources={"CPU": 1})), ("resources={'a': '1'}", dict(resources={"a": "1"})),
    ("resources=[1]", dict(resources=[1])), ("runtime_env={'pip': ['x']}", dict(runtime_env={"pip": ["x"]})),
    ("runtime_env='x'", dict(runtime_env="x")), ("runtime_env={'bogus': 1}", dict(runtime_env={"bogus": 1})),
    ("runtime_env={'env_vars': {'A': 1}}", dict(runtime_env={"env_vars": {"A": 1}})),
    ("runtime_env={'working_dir': '/nonexistent'}", dict(runtime_env={"working_dir": "/nonexistent"})),
    ("name=5", dict(name=5)),
    ("max_calls=-1", dict(max_calls=-1)), ("retry_exceptions=[int]", dict(retry_exceptions=[int])),
    ("retry_exceptions='yes'", dict(retry_exceptions="yes")), ("scheduling_strategy=5", dict(scheduling_strategy=5)),
    ("object_store_memory=100", dict(object_store_memory=100)),
    ("lifetime='detached' (task)", dict(lifetime="detached")),
]:
    case("remote", f"@remote({label}) on a function")(lambda options=options: define(**options))

case("remote", "@remote(5)")(lambda: ray.remote(5))
case("remote", "@remote('f')")(lambda: ray.remote("f"))
case("remote", "@remote(f, num_cpus=1)")(lambda: ray.remote(lambda: 1, num_cpus=1))
case("remote", "@remote(num_cpus=1)(5)")(lambda: ray.remote(num_cpus=1)(5))
case("remote", "@remote on async def")(lambda: ray.remote(_async_function))


async def _async_function():
    return 1


case("remote", "f(1) (called directly)")(lambda: f(1))
case("submit", "f.remote() (missing argument)")(lambda: f.remote())
case("submit", "f.remote(1, 2) (extra argument)")(lambda: f.remote(1, 2))
case("submit", "f.remote(y=1) (unknown keyword)")(lambda: f.remote(y=1))
case("submit", "f.options(num_cpus=1000).remote(1) (infeasible)")(
    lambda: ray.get(f.options(num_cpus=1000).remote(1), timeout=3))
case("submit", "f.options(num_gpus=1).remote(1) (no GPU)")(lambda: ray.get(f.options(num_gpus=1).remote(1), timeout=3))
case("submit", "f.options(resources={'x': 1}).remote(1) (no such resource)")(
    lambda: ray.get(f.options(resources={"x": 1}).remote(1), timeout=3))
case("submit", "f.options(scheduling_strategy='BAD').remote(1)")(lambda: f.options(scheduling_strategy="BAD").remote(1))
case("submit", "f.options(placement_group_bundle_index=3).remote(1)")(
    lambda: f.options(placement_group_bundle_index=3).remote(1))
case("submit", "f.options(num_returns=2).remote(1) (returns 1 value)")(
    lambda: ray.get(f.options(num_returns=2).remote(1)))
case("submit", "f.options(max_calls=1)")(lambda: f.options(max_calls=1))
case("submit", "f.options(scheduling_strategy=NodeAffinity('ff'*28, soft=False)).remote(1)")(
    lambda: ray.get(f.options(scheduling_strategy=strategies.NodeAffinitySchedulingStrategy("ff" * 28, soft=False))
                    .remote(1), timeout=3))
case("submit", "f.options(scheduling_strategy=NodeAffinity(5, soft=False))")(
    lambda: ray.get(f.options(scheduling_strategy=strategies.NodeAffinitySchedulingStrategy(5, soft=False)).remote(1),
                    timeout=3))
case("args", "f.remote(threading.Lock())")(lambda: ray.get(f.remote(threading.Lock())))
case("args", "f.remote(socket.socket())")(lambda: ray.get(f.remote(socket.socket())))
case("args", "f.remote(a generator object)")(lambda: ray.get(f.remote(i for i in range(3))))
case("args", "f.remote(lambda x: x)")(lambda: ray.get(f.remote(lambda x: x)).__class__.__name__)
case("args", "f.remote(deep list, 100000 levels)")(lambda: ray.get(f.remote(deep(100000))))
case("args", "put(deep list, 100000 levels)")(lambda: ray.put(deep(100000)))
case("args", "put(threading.Lock())")(lambda: ray.put(threading.Lock()))
case("args", "put(ref)")(lambda: ray.put(ray.put(1)))
case("args", "g.remote(*range(100000)) (100k args)")(
    lambda: len(ray.get(ray.remote(lambda *a: a).remote(*range(100000)))))
case("args", "f.remote(ray.put(lock-holding object))")(lambda: ray.get(f.remote([threading.Lock()])))
case("task", "task recursing past the recursion limit")(lambda: ray.get(recurse.remote(0)))
case("task", "task returning a threading.Lock")(lambda: ray.get(returns_lock.remote()))
case("task", "task raising an exception holding a socket")(lambda: ray.get(raises_unpicklable.remote()))
case("task", "job still works afterwards")(lambda: ray.get([nothing.remote() for _ in range(20)]) == [1] * 20)

# ---- get / put / wait / cancel ---------------------------------------------------------------------------------
case("get", "get(5)")(lambda: ray.get(5))
case("get", "get(None)")(lambda: ray.get(None))
case("get", "get([5])")(lambda: ray.get([5]))
case("get", "get((ref,))")(lambda: ray.get((ray.put(1),)))
case("get", "get({ref})")(lambda: ray.get({ray.put(1)}))
case("get", "get(ref, timeout=-1)")(lambda: ray.get(ray.put(1), timeout=-1))
case("get", "get(ref, timeout='1')")(lambda: ray.get(ray.put(1), timeout="1"))
case("get", "get(ref, timeout=float('nan'))")(lambda: ray.get(ray.put(1), timeout=float("nan")))
case("get", "get(slow ref, timeout=0.1)")(lambda: ray.get(slow.remote(), timeout=0.1))
case("get", "get(ref, 5) (timeout positional)")(lambda: ray.get(ray.put(1), 5))
case("wait", "wait(ref)")(lambda: ray.wait(ray.put(1)))
case("wait", "wait([ref, ref])")(lambda: ray.wait([ray.put(1)] * 2))
case("wait", "wait([5])")(lambda: ray.wait([5]))
case("wait", "wait((ref,))")(lambda: ray.wait((ray.put(1),)))
case("wait", "wait([ref], num_returns=0)")(lambda: ray.wait([ray.put(1)], num_returns=0))
case("wait", "wait([ref], num_returns=2)")(lambda: ray.wait([ray.put(1)], num_returns=2))
case("wait", "wait([ref], num_returns='1')")(lambda: ray.wait([ray.put(1)], num_returns="1"))
case("wait", "wait([ref], timeout=-1)")(lambda: ray.wait([ray.put(1)], timeout=-1))
case("wait", "wait([ref], timeout='x')")(lambda: ray.wait([ray.put(1)], timeout="x"))
case("wait", "wait([ref], fetch_local='x')")(lambda: len(ray.wait([ray.put(1)], fetch_local="x")[0]))
case("wait", "wait([])")(lambda: ray.wait([]))
case("cancel", "cancel(5)")(lambda: ray.cancel(5))
case("cancel", "cancel(actor handle)")(lambda: ray.cancel(A.remote()))
case("cancel", "cancel(ref, force='yes')")(lambda: ray.cancel(slow.remote(), force="yes"))
case("cancel", "cancel(actor call ref, force=True)")(lambda: ray.cancel(A.remote().slow.remote(), force=True))
case("cancel", "cancel(put ref)")(lambda: ray.cancel(ray.put(1)))
case("cancel", "cancel(ref) twice, then get")(
    lambda: (lambda r: (ray.cancel(r), ray.cancel(r), ray.get(r)))(slow.remote()))

# ---- actors ----------------------------------------------------------------------------------------------------
case("actor", "A() (called directly)")(lambda: A())
case("actor", "A.remote(1, 2) (extra argument)")(lambda: A.remote(1, 2))
case("actor", "A.remote(threading.Lock())")(lambda: ray.get(A.remote(threading.Lock()).m.remote(1)))
case("actor", "A.options(max_concurrency=0)")(lambda: A.options(max_concurrency=0))
case("actor", "A.options(lifetime='forever')")(lambda: A.options(lifetime="forever"))
case("actor", "A.options(name=5)")(lambda: A.options(name=5))
case("actor", "A.options(name='')")(lambda: A.options(name="").remote())
case("actor", "A.options(namespace='')")(lambda: A.options(name="x", namespace="").remote())
case("actor", "A.options(max_restarts=-2)")(lambda: A.options(max_restarts=-2))
case("actor", "A.options(get_if_exists=True) without name")(lambda: A.options(get_if_exists=True))
case("actor", "A.options(num_cpus=1000).remote() (infeasible)")(
    lambda: ray.get(A.options(num_cpus=1000).remote().m.remote(1), timeout=3))
case("actor", "A.options(foo=1)")(lambda: A.options(foo=1))
case("actor", "A.options(max_retries=1) (task option)")(lambda: A.options(max_retries=1))
case("actor", "two actors named 'dup'")(lambda: [A.options(name="dup").remote(), A.options(name="dup").remote()])
case("actor", "handle.nomethod.remote()")(lambda: A.remote().nomethod.remote())
case("actor", "handle.m(1) (called directly)")(lambda: A.remote().m(1))
case("actor", "handle.m.remote() (missing argument)")(lambda: A.remote().m.remote())
case("actor", "handle.m.options(num_returns=-1)")(lambda: A.remote().m.options(num_returns=-1))
case("actor", "handle.m.options(foo=1)")(lambda: A.remote().m.options(foo=1))
case("actor", "handle.m.options(num_cpus=2)")(lambda: A.remote().m.options(num_cpus=2))
case("actor", "@method(num_returns='x')")(lambda: ray.method(num_returns="x"))
case("actor", "@method(foo=1)")(lambda: ray.method(foo=1))
case("actor", "@method(5)")(lambda: ray.method(5))
case("actor", "call on an actor whose __init__ raised")(lambda: ray.get(FailsInit.remote().m.remote()))
case("actor", "get_actor('nope')")(lambda: ray.get_actor("nope"))
case("actor", "get_actor(5)")(lambda: ray.get_actor(5))
case("actor", "get_actor('')")(lambda: ray.get_actor(""))
case("actor", "get_actor('x', namespace=5)")(lambda: ray.get_actor("x", namespace=5))
case("actor", "kill(5)")(lambda: ray.kill(5))
case("actor", "kill(ref)")(lambda: ray.kill(ray.put(1)))
case("actor", "kill(handle, no_restart='x')")(lambda: ray.kill(A.remote(), no_restart="x"))
case("actor", "call after kill")(lambda: (lambda h: (ray.kill(h), ray.get(h.m.remote(1))))(A.remote()))
case("actor", "job still works afterwards")(lambda: ray.get(A.remote().m.remote(7)))

# ---- context and cluster queries -------------------------------------------------------------------------------
case("context", "get_runtime_context().get_actor_id() on the driver")(lambda: ray.get_runtime_context().get_actor_id())
case("context", "get_runtime_context().get_task_id() on the driver")(lambda: ray.get_runtime_context().get_task_id())
case("context", "get_runtime_context().current_actor on the driver")(lambda: ray.get_runtime_context().current_actor)
case("context", "get_runtime_context(5)")(lambda: ray.get_runtime_context(5))
case("context", "nodes(5)")(lambda: ray.nodes(5))
case("context", "cluster_resources(5)")(lambda: ray.cluster_resources(5))
case("context", "available_resources(5)")(lambda: ray.available_resources(5))
case("context", "timeline(5)")(lambda: ray.timeline(5))
case("context", "timeline('/nonexistent/dir/t.json')")(lambda: ray.timeline("/nonexistent/dir/t.json"))

# ---- util ------------------------------------------------------------------------------------------------------
case("util", "ActorPool([])")(lambda: util.ActorPool([]))
case("util", "ActorPool(5)")(lambda: util.ActorPool(5))
case("util", "ActorPool([5])")(lambda: util.ActorPool([5]))
case("util", "ActorPool([a]).get_next() with nothing submitted")(lambda: util.ActorPool([A.remote()]).get_next())
case("util", "ActorPool([a]).get_next_unordered() with nothing submitted")(
    lambda: util.ActorPool([A.remote()]).get_next_unordered())
case("util", "ActorPool.map(5, [1])")(lambda: list(util.ActorPool([A.remote()]).map(5, [1])))
case("util", "ActorPool.map(fn, 5)")(lambda: list(util.ActorPool([A.remote()]).map(lambda a, v: a.m.remote(v), 5)))
case("util", "ActorPool.map(fn raising, [1])")(lambda: list(util.ActorPool([A.remote()]).map(lambda a, v: 1 / 0, [1])))
case("util", "ActorPool.map(fn returning 5, [1])")(lambda: list(util.ActorPool([A.remote()]).map(lambda a, v: 5, [1])))
case("util", "ActorPool.get_next(timeout=0.1) on a slow call")(
    lambda: (lambda p: (p.submit(lambda a, v: a.slow.remote(), 1), p.get_next(timeout=0.1)))(
        util.ActorPool([A.remote()])))
case("util", "placement_group([])")(lambda: pg_mod.placement_group([]))
case("util", "placement_group([{}])")(lambda: pg_mod.placement_group([{}]))
case("util", "placement_group({'CPU': 1})")(lambda: pg_mod.placement_group({"CPU": 1}))
case("util", "placement_group([{'CPU': -1}])")(lambda: pg_mod.placement_group([{"CPU": -1}]))
case("util", "placement_group([{'CPU': '1'}])")(lambda: pg_mod.placement_group([{"CPU": "1"}]))
case("util", "placement_group([{'CPU': 0}])")(lambda: pg_mod.placement_group([{"CPU": 0}]))
case("util", "placement_group([{'CPU': 1}], strategy='BAD')")(
    lambda: pg_mod.placement_group([{"CPU": 1}], strategy="BAD"))
case("util", "placement_group([{'CPU': 1}], lifetime='x')")(lambda: pg_mod.placement_group([{"CPU": 1}], lifetime="x"))
case("util", "placement_group([{'CPU': 1}], name=5)")(lambda: pg_mod.placement_group([{"CPU": 1}], name=5))
case("util", "placement_group([{'CPU': 1000}]).wait(1) (infeasible)")(
    lambda: pg_mod.placement_group([{"CPU": 1000}]).wait(1))
case("util", "placement_group([{'CPU': 1}]).wait(-1)")(lambda: _with_group(lambda g: g.wait(-1)))
case("util", "remove_placement_group(5)")(lambda: pg_mod.remove_placement_group(5))
case("util", "remove_placement_group(pg) twice")(
    lambda: (lambda g: (pg_mod.remove_placement_group(g), pg_mod.remove_placement_group(g)))(
        pg_mod.placement_group([{"CPU": 1}])))
case("util", "get_placement_group('nope')")(lambda: pg_mod.get_placement_group("nope"))
case("util", "placement_group_table(5)")(lambda: pg_mod.placement_group_table(5))
case("util", "PlacementGroupSchedulingStrategy(5)")(
    lambda: ray.get(f.options(scheduling_strategy=strategies.PlacementGroupSchedulingStrategy(5)).remote(1), timeout=3))
case("util", "PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=5)")(
    lambda: _with_group(lambda g: f.options(scheduling_strategy=strategies.PlacementGroupSchedulingStrategy(
        g, placement_group_bundle_index=5)).remote(1)))
case("util", "task in a removed placement group")(
    lambda: (lambda g: (g.wait(5), pg_mod.remove_placement_group(g),
                        ray.get(f.options(scheduling_strategy=strategies.PlacementGroupSchedulingStrategy(g))
                                .remote(1), timeout=3)))(pg_mod.placement_group([{"CPU": 1}])))
case("util", "Queue(maxsize='x')")(lambda: queue_mod.Queue(maxsize="x"))
case("util", "Queue(maxsize=-1).put(1); size")(lambda: (lambda q: (q.put(1), q.size()))(queue_mod.Queue(maxsize=-1)))
case("util", "Queue().get(timeout=-1)")(lambda: queue_mod.Queue().get(timeout=-1))
case("util", "Queue().get(block=False) (empty)")(lambda: queue_mod.Queue().get(block=False))
case("util", "Queue().get(timeout=0.2) (empty)")(lambda: queue_mod.Queue().get(timeout=0.2))
case("util", "Queue(1).put(2nd, block=False) (full)")(
    lambda: (lambda q: (q.put(1), q.put(2, block=False)))(queue_mod.Queue(1)))
case("util", "Queue().put(threading.Lock())")(lambda: queue_mod.Queue().put(threading.Lock()))
case("util", "Queue().get_nowait_batch(2) (empty)")(lambda: queue_mod.Queue().get_nowait_batch(2))
case("util", "Queue().get_nowait_batch(-1)")(lambda: queue_mod.Queue().get_nowait_batch(-1))
case("util", "Queue(actor_options=5)")(lambda: queue_mod.Queue(actor_options=5))
case("pool", "Pool(processes=0)")(lambda: mp.Pool(processes=0))
case("pool", "Pool(processes=-1)")(lambda: mp.Pool(processes=-1))
case("pool", "Pool(processes='2')")(lambda: mp.Pool(processes="2"))
case("pool", "Pool(1).map(5, [1])")(lambda: (lambda p: p.map(5, [1]))(mp.Pool(1)))
case("pool", "Pool(1).map(abs, 5)")(lambda: (lambda p: p.map(abs, 5))(mp.Pool(1)))
case("pool", "Pool(1).map(abs, ['x'])")(lambda: (lambda p: p.map(abs, ["x"]))(mp.Pool(1)))
case("pool", "Pool(1).map(abs, [1], chunksize=0)")(lambda: (lambda p: p.map(abs, [1], chunksize=0))(mp.Pool(1)))
case("pool", "Pool(1).close(); .map(abs, [1])")(lambda: (lambda p: (p.close(), p.map(abs, [1])))(mp.Pool(1)))
case("pool", "Pool(1).apply_async(abs, ('x',)).get(timeout=5)")(
    lambda: mp.Pool(1).apply_async(abs, ("x",)).get(timeout=5))
case("pool", "Pool(1).map(lambda with a lock)")(
    lambda: (lambda lock: mp.Pool(1).map(lambda x: lock, [1]))(threading.Lock()))


def tune_cases():
    tune = getattr(ray, "tune") if WHICH == "mpirt" else importlib.import_module("ray.tune")
    train_fn = lambda config: {"score": 1}   # noqa: E731
    tuner = lambda **kw: tune.Tuner(train_fn, **kw)   # noqa: E731
    case("tune", "Tuner(5)")(lambda: tune.Tuner(5).fit())
    case("tune", "Tuner('NoSuchTrainable')")(lambda: tune.Tuner("NoSuchTrainable").fit())
    case("tune", "Tuner(fn, param_space=5)")(lambda: tuner(param_space=5).fit())
    case("tune", "Tuner(fn, tune_config=5)")(lambda: tuner(tune_config=5).fit())
    case("tune", "TuneConfig(num_samples=-1)")(lambda: tune.TuneConfig(num_samples=-1))
    case("tune", "TuneConfig(mode='x')")(lambda: tuner(tune_config=tune.TuneConfig(metric="score", mode="x")).fit())
    case("tune", "TuneConfig(metric='score') without mode")(
        lambda: tuner(tune_config=tune.TuneConfig(metric="score")).fit().get_best_result())
    case("tune", "TuneConfig(max_concurrent_trials=-1)")(
        lambda: tuner(tune_config=tune.TuneConfig(max_concurrent_trials=-1)).fit())
    case("tune", "RunConfig(name=5)")(lambda: tuner(run_config=tune.RunConfig(name=5)).fit())
    case("tune", "RunConfig(storage_path='relative/dir')")(
        lambda: tuner(run_config=tune.RunConfig(storage_path="relative/dir")).fit())
    case("tune", "RunConfig(stop=5)")(lambda: tuner(run_config=tune.RunConfig(stop=5)).fit())
    case("tune", "tune.run(5)")(lambda: tune.run(5))
    case("tune", "tune.run(fn, config=5)")(lambda: tune.run(train_fn, config=5))
    case("tune", "tune.run(fn, num_samples='x')")(lambda: tune.run(train_fn, num_samples="x"))
    case("tune", "tune.run(fn, metric='score', mode='x')")(lambda: tune.run(train_fn, metric="score", mode="x"))
    case("tune", "fn raising in every trial: fit().errors")(
        lambda: [type(e).__name__ for e in tune.Tuner(lambda c: 1 / 0).fit().errors])


def _init_once(*args, **kwargs):
    """init() that is expected to fail; when it does not, shut down again so the next case starts clean."""
    context = ray.init(*args, **kwargs)
    ray.shutdown()
    return f"started ({type(context).__name__}), shut down again"


def init_cases():
    case("init", "init(num_cpus='2')")(lambda: _init_once(num_cpus="2"))
    case("init", "init(num_cpus=-1)")(lambda: _init_once(num_cpus=-1))
    case("init", "init(num_cpus=2.5)")(lambda: _init_once(num_cpus=2.5))
    case("init", "init(num_gpus=-1)")(lambda: _init_once(num_gpus=-1))
    case("init", "init(address='ray://host:10001')")(lambda: _init_once(address="ray://host:10001"))
    case("init", "init(address='10.0.0.1:6379')")(lambda: _init_once(address="10.0.0.1:6379"))
    case("init", "init(foo=1)")(lambda: _init_once(foo=1))
    case("init", "init(object_store_memory=-5)")(lambda: _init_once(object_store_memory=-5))
    case("init", "init(object_store_memory='1G')")(lambda: _init_once(object_store_memory="1G"))
    case("init", "init(resources={'CPU': 2})")(lambda: _init_once(resources={"CPU": 2}))
    case("init", "init(resources={'a': -1})")(lambda: _init_once(resources={"a": -1}))
    case("init", "init(runtime_env='x')")(lambda: _init_once(runtime_env="x"))
    case("init", "init(runtime_env={'pip': ['x']})")(lambda: _init_once(runtime_env={"pip": ["x"]}))
    case("init", "init(namespace=5)")(lambda: _init_once(namespace=5))
    case("init", "init(local_mode=True)")(lambda: _init_once(local_mode=True))
    case("init", "init(2)")(lambda: _init_once(2))


def huge_cases():
    """Slow (2 GiB values): run only when asked for, ``python tests/bad_input_probe.py mpirt huge``."""
    big = 2**31 + 10

    @ray.remote
    def size(value):
        return len(value)

    @ray.remote
    def make(n):
        return b"x" * n

    @ray.remote(max_concurrency=0)
    class Zero:
        def m(self):
            return 1

    @ray.remote
    class Endless:
        def down(self, n):
            return self.down(n + 1)

        def ok(self):
            return 1

    case("huge", "put(2 GiB + 10 bytes), then get")(lambda: len(ray.get(ray.put(b"x" * big))))
    case("huge", "a task with a 2 GiB + 10 bytes argument")(lambda: ray.get(size.remote(b"x" * big)))
    case("huge", "a task returning 2 GiB + 10 bytes")(lambda: len(ray.get(make.remote(big))))
    case("huge", "actor with max_concurrency=0, a call")(lambda: ray.get(Zero.remote().m.remote(), timeout=10))
    endless = []
    case("huge", "actor method past the recursion limit")(
        lambda: endless.append(Endless.remote()) or ray.get(endless[0].down.remote(0)))
    case("huge", "the same actor afterwards")(lambda: ray.get(endless[0].ok.remote()))


def main():
    module_cases = CASES[:]
    del CASES[:]
    init_cases()
    before_init = len(CASES)
    CASES.extend(module_cases)
    tune_cases()
    if GROUPS and "huge" in GROUPS:
        huge_cases()
    for index, (group, label, thunk) in enumerate(CASES):
        if index == before_init:
            ray.init(num_cpus=2)
            print("init()", outcome(lambda: ray.init(num_cpus=2))[0], flush=True)
        if GROUPS and group not in GROUPS:
            continue
        text, seconds = outcome(thunk)
        slow_note = f" [{seconds:.1f} s]" if seconds > 2 else ""
        print(f"{group}\t{label}\t{text}{slow_note}", flush=True)
    print("shutdown() twice", outcome(lambda: (ray.shutdown(), ray.shutdown()))[0], flush=True)
    print("get after shutdown", outcome(lambda: ray.get(ray.put(1)))[0], flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
