"""Soak and chaos test: mixed load on an mpirt job under ULFM while a killer SIGKILLs worker ranks.

``python benchmarks/soak.py`` starts ``mpirun --with-ft ulfm --oversubscribe -n RANKS`` on this very script
and watches it from outside (the *supervisor*: overall deadline, processes left behind, the report). Inside,
rank 0 (the driver) runs rounds of load until ``--minutes`` have passed, each result checked against its
known value:

- tasks (``square``), nested tasks (``tree_sum``: a binary tree of tasks that submit and wait on tasks),
- actor calls on actors with ``max_restarts=-1, max_task_retries=-1`` (they survive their rank's death),
- large objects (``--big-mb`` numpy arrays) made by tasks and kept alive for ``--keep`` rounds, then read
  back and passed to a dependent task: with ``--ranks-per-node 2`` (default) most of them live in another
  emulated node's store, so a killed maker loses the only copy and lineage must rebuild it,
- ``put`` arrays read by tasks on other nodes, and an object store small enough (``--object-store-mb``
  per node) that the kept objects spill to disk and are restored,
- a small Tune run (grid of 4 trials, ``FailureConfig(max_failures=3)``) every ``--tune-every`` seconds,

while a killer thread on the driver SIGKILLs a random worker rank (never the driver, rank 0, nor the
head, rank 1) every ``--kill-every`` seconds. mpirt replaces each dead worker with a new rank.

Failures are counted, never retried by the soak (a retry would hide what it is here to find):
``wrong`` (a value differs from its known one), ``lost`` (``ObjectLostError`` and subclasses for objects
lineage should rebuild), ``hangs`` (a ``get`` past ``--deadline`` seconds, or any step past it plus a
minute, which the driver's watchdog reports with every thread's stack before it ends the job), ``errors``
(any other exception). Resources: every rank process's peak RSS (VmHWM), its anonymous memory (RssAnon,
the process's own heap; the store's shared pages are bounded by the store and left out) in the first
third of the run against the last third, and file descriptors and threads at the start and the end of
the load on the driver, the head and the workers that lived through it.

The exit status is 1 when a must-be-zero count is not zero, a resource grew past its bound, no kill
happened although one was due, or the job ended without a result; 0 otherwise.

Run:  python benchmarks/soak.py                          (30 minutes, 8 ranks, a kill every 60 s)
      python benchmarks/soak.py --minutes 5 --report soak.json
Needs Open MPI 5 (``mpirun --with-ft ulfm``). The last stdout lines are the table; ``--report`` gets JSON.
"""
import argparse
import collections
import faulthandler
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import mpirt  # noqa: E402
from mpirt.exceptions import GetTimeoutError, ObjectLostError  # noqa: E402
from mpirt.libs import tune  # noqa: E402

MARKER = "soak_result"
TOKEN_ENV = "MPIRT_SOAK_TOKEN"
MUST_BE_ZERO = ("wrong", "lost", "hangs", "errors", "processes_left", "spill_files_left")
# Anonymous memory may rise by this much above the first third's highest sample before it counts as growth:
# a worker holds several --big-mb arrays at once (results being stored, copies read from other nodes, on ~20
# task threads) and its allocator keeps arenas of them; in 5-minute runs workers were still settling in the
# first third (100 s) and rose 19-85 MiB above its peak, then stayed flat over 30 minutes (+19 MiB). 10 %
# covers allocator slack on the larger processes.
GROWTH_FLOOR_MB = 128
GROWTH_FRACTION = 0.10
# Descriptors and threads are judged from a third of the way in to the end: task and actor thread pools grow
# to the highest concurrency the load reaches and keep their threads, which the first minutes settle. Per kill
# since then a process may keep a few descriptors more (MPI's connections to the newcomer's job, which is a
# job of its own); beyond that plus the fixed slack it is leaking.
FD_SLACK, FD_PER_KILL, THREAD_SLACK = 16, 4, 4
EXAMPLES_KEPT = 20


# ---------------------------------------------------------------- load: what the workers run

def rank_pid():
    """The pid of the rank running this code (a slot process's parent, in the multi-CPU layout)."""
    return os.getppid() if "mpirt.core.slot_process" in sys.modules else os.getpid()


def my_rank():
    return int(mpirt.get_runtime_context().get_worker_id(), 16) & 0xFFFFFFFF


def big_array(seed, mb):
    """A deterministic int64 array of ``mb`` MiB: every element is checked, not a sample."""
    return (np.arange(mb << 17, dtype=np.int64) * (2 * seed + 1)) % 1_000_003


@mpirt.remote
def square(i):
    time.sleep(0.002)
    return i * i, my_rank(), rank_pid()


@mpirt.remote
def tree_sum(lo, hi):
    if hi - lo <= 8:
        return sum(range(lo, hi))
    mid = (lo + hi) // 2
    return sum(mpirt.get([tree_sum.remote(lo, mid), tree_sum.remote(mid, hi)]))


@mpirt.remote
def make_big(seed, mb):
    return big_array(seed, mb)


@mpirt.remote
def checksum(array):
    return int(array.sum()), int(array.size)


@mpirt.remote(max_restarts=-1, max_task_retries=-1)
class Adder:
    def __init__(self, offset):
        self.offset = offset

    def add(self, i):
        return i + self.offset


def tune_trainable(config):
    for step in range(1, 4):
        time.sleep(0.05)
        tune.report({"score": config["x"] * step})


# ---------------------------------------------------------------- processes of the job, read from /proc

def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def job_processes(token):
    """{pid: environment} of the job's rank processes: Python processes carrying the soak's token (mpirun
    and prte carry it too but are not Python; slot processes are part of their rank)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = _read(f"/proc/{name}/environ", "rb")
            argv = _read(f"/proc/{name}/cmdline", "rb").split(b"\0")
        except OSError:
            continue
        if needle in environ and os.path.basename(argv[0]).startswith(b"python") \
                and b"slot_process" not in b" ".join(argv):
            found[int(name)] = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
    return found


def process_figures(pid):
    """RSS figures (bytes), threads and open descriptors of one process; None once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in _read(f"/proc/{pid}/status").splitlines() if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    kb = {key: int(fields[key].split()[0]) * 1024 for key in ("VmHWM", "VmRSS", "RssAnon") if key in fields}
    return {**kb, "threads": int(fields["Threads"]), "fds": fds}


class RankProcesses:
    """Which pid is the driver, the head and each worker, sampled every few seconds: peak RSS, anonymous
    memory over time, and the descriptors and threads of every rank at a chosen moment."""

    def __init__(self, token):
        self.token = token
        self.driver = os.getpid()
        self.namespace = job_processes(token).get(self.driver, {}).get(b"PMIX_NAMESPACE")
        self.head = None
        self.seen = {}   # pid -> {"role", "first", "last", "peak_rss", "samples": [(t, rss_anon)]}
        self.ranks = {}  # pid -> rank, learned from task results
        self.lock = threading.Lock()

    def role(self, pid, env):
        if pid == self.driver:
            return "driver"
        if env.get(b"PMIX_NAMESPACE") == self.namespace and env.get(b"PMIX_RANK") == b"1":
            return "head"
        return "worker"

    def scan(self):
        """{pid: role} now, and one sample of each."""
        now, roles = time.monotonic(), {}
        for pid, env in job_processes(self.token).items():
            roles[pid] = self.role(pid, env)
            figures = process_figures(pid)
            if figures is None:
                continue
            with self.lock:
                entry = self.seen.setdefault(pid, {"role": roles[pid], "first": now, "peak_rss": 0, "samples": []})
                entry["last"] = now
                entry["peak_rss"] = max(entry["peak_rss"], figures.get("VmHWM", 0))
                entry["samples"].append((now, figures.get("RssAnon", 0)))
        return roles

    def workers(self):
        return sorted(pid for pid, role in self.scan().items() if role == "worker")

    def snapshot(self):
        """Descriptors and threads of every rank process now: {pid: {"role", "fds", "threads"}}."""
        out = {}
        for pid, role in self.scan().items():
            figures = process_figures(pid)
            if figures is not None:
                out[pid] = {"role": role, "fds": figures["fds"], "threads": figures["threads"]}
        return out

    def memory_report(self, start, end):
        """Per process: peak RSS, and its anonymous memory in the first third of [start, end] (median and
        highest; for processes there at ``start``) and in the last third (median)."""
        third = (end - start) / 3
        rows = []
        with self.lock:
            for pid, entry in sorted(self.seen.items(), key=lambda kv: (role_order(kv[1]["role"]), kv[1]["first"])):
                # A rank that joined later (a replacement) spends its first minutes warming up: its first
                # samples would make that warm-up look like growth, so only ranks there from the start are judged.
                there = entry["first"] <= start
                first = [v for t, v in entry["samples"] if there and start <= t < start + third]
                middle = [v for t, v in entry["samples"] if start + third <= t < end - third]
                last = [v for t, v in entry["samples"] if end - third <= t <= end]
                rows.append({"pid": pid, "role": entry["role"], "rank": self.ranks.get(pid),
                             "lived_s": round(entry["last"] - entry["first"], 1), "peak_rss": entry["peak_rss"],
                             "anon_first_third": int(statistics.median(first)) if first else None,
                             "anon_first_third_peak": max(first) if first else None,
                             "anon_middle_third_peak": max(middle) if middle else None,
                             "anon_last_third": int(statistics.median(last)) if last else None})
        for row in rows:
            row["grew"] = grew(row["anon_first_third_peak"], row["anon_middle_third_peak"], row["anon_last_third"])
        return rows


def role_order(role):
    return {"driver": 0, "head": 1}.get(role, 2)


def grew(first_peak, middle_peak, last):
    """Whether anonymous memory grew past the bound: the last third's median above the first third's highest
    sample by more than the allowance, and above the middle third's highest too (None when the process did
    not live through the first and last thirds). A leak keeps growing, so its late typical level passes
    anything seen before it. Memory the allocator keeps after the first large arrays (glibc raises its mmap
    threshold to the largest block freed, up to 32 MiB, so later 16 MiB arrays come from per-thread arenas
    it holds on to) is reached early and stays; so is the one step a survivor takes when a kill hands it a
    dead rank's share of the load and threads (seen: a worker at 536 MB peak in the first third of a 5-minute
    run, 676 MB in the last, after adopting a dead neighbour's store at the second minute)."""
    if first_peak is None or last is None:
        return None
    return last - first_peak > max(GROWTH_FLOOR_MB << 20, GROWTH_FRACTION * first_peak) and \
        (middle_peak is None or last > middle_peak)


# ---------------------------------------------------------------- the driver: rounds of checked load

class Tally:
    """What the load did and every way it failed, with a few examples of each failure."""

    def __init__(self):
        self.counts = collections.Counter()
        self.examples = collections.defaultdict(list)
        self.lock = threading.Lock()

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def fail(self, key, what):
        with self.lock:
            self.counts[key] += 1
            if len(self.examples[key]) < EXAMPLES_KEPT:
                self.examples[key].append(f"{time.strftime('%H:%M:%S')} {what}"[:600])


class Soak:
    def __init__(self, args, procs):
        self.args, self.procs = args, procs
        self.tally = Tally()
        self.rng = random.Random(args.seed)
        self.kept = collections.deque()   # (ref, seed) of large task results kept alive for a while
        self.puts = collections.deque()   # (ref, seed) of large put values
        self.actors = [Adder.remote(100 * k) for k in range(3)]
        self.step = None                  # (name, started) of the step running now, for the watchdog
        self.spills = {}                  # rank -> the most spilled_objects it reported
        self.last_spill_look = 0.0
        self.expected_big = {}

    # -- checking

    def collect(self, kind, refs, expected, same=lambda a, b: a == b):
        """Wait for ``refs`` (at most --deadline s) and check each against ``expected``; count every failure."""
        self.step = (kind, time.monotonic())
        ready, _ = mpirt.wait(refs, num_returns=len(refs), timeout=self.args.deadline)
        ready = set(ready)
        values = []
        for ref, want in zip(refs, expected):
            if ref not in ready:
                self.tally.fail("hangs", f"{kind}: not ready after {self.args.deadline} s")
                values.append(None)
                continue
            try:
                value = mpirt.get(ref, timeout=self.args.deadline)
            except GetTimeoutError as error:
                self.tally.fail("hangs", f"{kind}: {error}")
                value = None
            except ObjectLostError as error:
                self.tally.fail("lost", f"{kind}: {type(error).__name__}: {error}")
                value = None
            except Exception as error:  # noqa: BLE001 - every other failure is counted, with its type
                self.tally.fail("errors", f"{kind}: {type(error).__name__}: {error}")
                value = None
            else:
                if not same(value, want):
                    self.tally.fail("wrong", f"{kind}: got {str(value)[:200]}, expected {str(want)[:200]}")
            values.append(value)
        self.step = None
        return values

    def expected_array(self, seed):
        if seed not in self.expected_big:
            self.expected_big = {seed: big_array(seed, self.args.big_mb)}   # one kept: they are large
        return self.expected_big[seed]

    # -- the steps of one round

    def tasks(self, n=40):
        refs = [square.remote(i) for i in range(n)]
        values = self.collect("task", refs, [i * i for i in range(n)], lambda got, want: got[0] == want)
        for value in values:
            if value is not None:
                self.procs.ranks[value[2]] = value[1]
        self.tally.add("tasks", n)

    def nested(self, leaves=16):
        hi = leaves * 8
        self.collect("nested", [tree_sum.remote(0, hi)], [sum(range(hi))])
        self.tally.add("tasks", 2 * leaves - 1)

    def actor_calls(self, per_actor=40):
        refs, expected = [], []
        for k, actor in enumerate(self.actors):
            refs += [actor.add.remote(i) for i in range(per_actor)]
            expected += [i + 100 * k for i in range(per_actor)]
        self.collect("actor call", refs, expected)
        self.tally.add("actor_calls", len(refs))

    def large_objects(self, round_no):
        """One new large task result kept for --keep rounds; the oldest is read back and checked, here and by a
        dependent task; one new put read by a task."""
        seed = round_no
        self.kept.append((make_big.remote(seed, self.args.big_mb), seed))
        self.tally.add("tasks")
        if len(self.kept) > self.args.keep:
            ref, seed = self.kept.popleft()
            want = self.expected_array(seed)
            self.collect("large get", [ref], [want], np.array_equal)
            self.collect("large dependent", [checksum.remote(ref)], [(int(want.sum()), int(want.size))])
            self.tally.add("tasks")
            self.tally.add("large_objects_checked")
        put_seed = 10**6 + round_no
        array = big_array(put_seed, self.args.big_mb // 2)
        self.puts.append((mpirt.put(array), (int(array.sum()), int(array.size))))
        if len(self.puts) > self.args.keep:
            ref, want = self.puts.popleft()
            self.collect("put read by a task", [checksum.remote(ref)], [want])
            self.tally.add("tasks")
            self.tally.add("large_objects_checked")

    def tune_run(self, round_no):
        self.step = ("tune", time.monotonic())
        xs = [1, 2, 3, 4]
        tuner = tune.Tuner(tune_trainable, param_space={"x": tune.grid_search(xs)},
                           tune_config=tune.TuneConfig(metric="score", mode="max"),
                           run_config=tune.RunConfig(name=f"soak_{round_no}", verbose=0,
                                                     failure_config=tune.FailureConfig(max_failures=3)))
        try:
            grid = tuner.fit()
        except Exception as error:  # noqa: BLE001
            self.tally.fail("errors", f"tune: {type(error).__name__}: {error}")
            return
        finally:
            self.step = None
        self.tally.add("tune_runs")
        self.tally.add("tune_trials", len(grid))
        for error in grid.errors:
            self.tally.fail("errors", f"tune trial: {type(error).__name__}: {error}")
        scores = sorted((r.config["x"], r.metrics.get("score")) for r in grid if r.error is None)
        if len(grid) != len(xs) or any(score != 3 * x for x, score in scores):
            self.tally.fail("wrong", f"tune: {len(grid)} trials, (x, last score) {scores}")

    def look_at_spills(self):
        """Spill counters per rank (a dead rank's counts die with it: the most each rank reported is kept)."""
        self.step = ("object_store_stats", time.monotonic())
        try:
            stats = mpirt.object_store_stats()
            for rank in stats["ranks"]:
                self.spills[rank["rank"]] = max(self.spills.get(rank["rank"], 0), rank.get("spilled_objects", 0))
        except Exception as error:  # noqa: BLE001
            self.tally.fail("errors", f"object_store_stats: {type(error).__name__}: {error}")
            stats = None
        self.step = None
        return stats

    def store_left(self, settle=3.0):
        """Drop every object the soak holds, then per node: bytes still in use by objects and bytes of chunks
        still reserved by ranks that are dead (no live rank frees those)."""
        self.kept.clear()
        self.puts.clear()
        time.sleep(settle)                # reference counts are applied every few milliseconds; frees follow
        stats = self.look_at_spills()
        if stats is None:
            return None
        live = collections.Counter()
        for rank in stats["ranks"]:
            live[rank["node"]] += rank["reserved_bytes"]
        return {str(node): {"used_bytes": n["used_bytes"], "capacity_bytes": n["capacity_bytes"],
                            "held_by_dead_ranks_bytes": max(0, n["reserved_bytes"] - live[node])}
                for node, n in stats["nodes"].items()}

    def round(self, round_no, tune_due):
        self.tasks()
        self.nested()
        self.actor_calls()
        self.large_objects(round_no)
        if tune_due:
            self.tune_run(round_no)
        if time.monotonic() - self.last_spill_look > 20:
            self.look_at_spills()
            self.last_spill_look = time.monotonic()
        self.tally.add("rounds")


class Killer(threading.Thread):
    """SIGKILLs a random worker rank every ``every`` seconds and times how long until the cluster's CPUs are
    whole again (the replacement rank joined)."""

    def __init__(self, procs, every, seed, cpus):
        super().__init__(name="soak-killer", daemon=True)
        self.procs, self.every, self.rng, self.cpus = procs, every, random.Random(seed), cpus
        self.stop = threading.Event()
        self.kills = []

    def run(self):
        while not self.stop.wait(self.every):
            workers = self.procs.workers()
            if not workers:
                self.kills.append({"at": time.time(), "pid": None, "note": "no worker process to kill"})
                continue
            victim = self.rng.choice(workers)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            record = {"at": time.time(), "pid": victim, "rank": self.procs.ranks.get(victim),
                      "workers_before": len(workers)}
            self.kills.append(record)
            record["whole_again_s"] = self.wait_whole(killed_at)

    def done(self):
        return sum(1 for kill in self.kills if kill.get("pid"))

    def wait_whole(self, since, limit=60.0):
        while time.monotonic() - since < limit and not self.stop.is_set():
            time.sleep(0.2)
            if mpirt.cluster_resources().get("CPU", 0) >= self.cpus and len(self.procs.workers()) >= self.cpus:
                return round(time.monotonic() - since, 2)
        return None


def watchdog(soak, limit, emit):
    """A step that runs past ``limit`` s is a hang: dump every thread's stack, emit the result so far and end
    the job (the supervisor reaps the rest). A get past --deadline is caught by its own timeout first."""
    while True:
        time.sleep(1.0)
        step = soak.step
        if step is not None and time.monotonic() - step[1] > limit:
            soak.tally.fail("hangs", f"{step[0]}: still running after {limit:.0f} s (stacks on stderr)")
            faulthandler.dump_traceback(all_threads=True)
            emit(aborted=f"hang in {step[0]}")
            os._exit(3)


def drive(args):
    """Rank 0: warm up, then rounds of load with the killer running, then the result line."""
    procs = RankProcesses(os.environ[TOKEN_ENV])
    cpus = int(mpirt.cluster_resources().get("CPU", 0))
    soak = Soak(args, procs)
    soak.round(0, tune_due=True)                       # warm-up: every code path once before the clock starts
    snapshots = {"start": procs.snapshot()}           # the ranks seen here, before the clock, are "there at start"
    load_start = time.monotonic()
    killer = Killer(procs, args.kill_every, args.seed, cpus)
    if args.kill_every > 0:
        killer.start()

    def emit(aborted=None):
        result = summary(args, soak, procs, killer, (load_start, time.monotonic()), snapshots, aborted)
        print(f"{MARKER} {json.dumps(result)}", flush=True)

    threading.Thread(target=watchdog, args=(soak, args.deadline + 60, emit), name="soak-watchdog",
                     daemon=True).start()
    sampler_stop = threading.Event()
    threading.Thread(target=sample_forever, args=(procs, args.sample, sampler_stop), daemon=True).start()
    end = load_start + args.minutes * 60 - 10
    third, last_tune, round_no = load_start + (end - load_start) / 3, load_start, 1
    while time.monotonic() < end:
        tune_due = time.monotonic() - last_tune >= args.tune_every
        soak.round(round_no, tune_due)
        last_tune = time.monotonic() if tune_due else last_tune
        round_no += 1
        if "third" not in snapshots and time.monotonic() >= third:
            snapshots["third"], snapshots["kills_by_third"] = procs.snapshot(), killer.done()
    killer.stop.set()
    if killer.is_alive():
        killer.join(timeout=70)
    sampler_stop.set()
    snapshots["store_left"] = soak.store_left()
    emit()
    mpirt.shutdown()


def sample_forever(procs, every, stop):
    while not stop.wait(every):
        procs.scan()


def summary(args, soak, procs, killer, span, snapshots, aborted):
    start, end = span
    kills = killer.done()
    return {
        "aborted": aborted,
        "minutes": round((end - start) / 60, 2), "ranks": args.ranks, "kill_every_s": args.kill_every,
        "seed": args.seed, "counts": dict(soak.tally.counts), "examples": dict(soak.tally.examples),
        "spilled_objects": sum(soak.spills.values()), "kills": killer.kills, "kills_done": kills,
        "store_left": snapshots.get("store_left"),
        "memory": procs.memory_report(start, end),
        "descriptors": descriptors(snapshots["start"], snapshots.get("third", snapshots["start"]), procs.snapshot(),
                                   kills - snapshots.get("kills_by_third", 0)),
    }


def descriptors(start, mid, end, kills_since_mid):
    """File descriptors and threads at the start, a third of the way in and the end of the load, for processes
    alive at the last two; the bound applies from the third on. A worker that replaced a dead one may have
    joined shortly before the third, its thread pools still growing: its threads are bound by what the workers
    there from the start had settled at by then (a 5-minute run: one joined at ~120 s had 14 at the third and
    23 at the end, beside 20-21 of the others), plus the same slack."""
    rows = []
    settled = max((m["threads"] for pid, m in mid.items() if pid in start and m["role"] == "worker"), default=0)
    for pid in sorted(set(mid) & set(end), key=lambda p: (role_order(mid[p]["role"]), p)):
        m, e = mid[pid], end[pid]
        fd_bound = m["fds"] + FD_SLACK + FD_PER_KILL * kills_since_mid
        thread_base = m["threads"] if pid in start or m["role"] != "worker" else max(m["threads"], settled)
        rows.append({"pid": pid, "role": m["role"], "fds_start": start.get(pid, {}).get("fds"), "fds_third": m["fds"],
                     "fds_end": e["fds"], "fds_bound": fd_bound, "threads_start": start.get(pid, {}).get("threads"),
                     "threads_third": m["threads"], "threads_end": e["threads"],
                     "threads_bound": thread_base + THREAD_SLACK,
                     "grew": e["fds"] > fd_bound or e["threads"] > thread_base + THREAD_SLACK})
    return rows


# ---------------------------------------------------------------- the supervisor: mpirun, deadline, report

def mpirun_command(args, argv):
    mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if mpirun is None:
        sys.exit("soak: mpirun not found (pip install -e '.[mpi]' brings Open MPI 5)")
    return [mpirun, "--with-ft", "ulfm", "--oversubscribe", "-n", str(args.ranks),
            sys.executable, os.path.abspath(__file__), *argv]


def job_environment(args, token, workdir):
    env = dict(os.environ)
    env.update({TOKEN_ENV: token, "PYTHONUNBUFFERED": "1",
                "MPIRT_SPILL_DIR": os.path.join(workdir, "spill"),
                "MPIRT_RESULTS_DIR": os.path.join(workdir, "results")})
    if args.ranks_per_node:
        env["MPIRT_RANKS_PER_NODE"] = str(args.ranks_per_node)
    env.setdefault("OMPI_MCA_btl", "^ofi")
    if os.geteuid() == 0:   # mpirun refuses root without these
        for name in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
                     "PRTE_ALLOW_RUN_AS_ROOT", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM"):
            env.setdefault(name, "1")
    return env


def run_job(command, env, limit):
    """Run the job, echoing its output; (result dict or None, return code or None if it ran past ``limit``,
    the output's last lines)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    found, tail = {}, collections.deque(maxlen=200)

    def read():
        for line in proc.stdout:
            if line.startswith(MARKER + " "):
                found["result"] = json.loads(line.split(" ", 1)[1])
                continue
            tail.append(line.rstrip("\n"))
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    reader.join(timeout=10)
    return found.get("result"), code, list(tail)


def reap_leftovers(token, seconds=10.0):
    """Processes of the job still there ``seconds`` after mpirun ended: listed, then killed."""
    needle = f"{TOKEN_ENV}={token}".encode()
    deadline = time.monotonic() + seconds
    while True:
        left = []
        for name in os.listdir("/proc"):
            try:
                if name.isdigit() and int(name) != os.getpid() and needle in _read(f"/proc/{name}/environ", "rb"):
                    command = _read(f"/proc/{name}/cmdline", "rb").replace(b"\0", b" ").decode(errors="replace")
                    left.append(f"{name} {command[:200]}")
            except OSError:
                continue
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for line in left:
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except OSError:
            pass
    return left


def supervise(args, argv):
    token, workdir = uuid.uuid4().hex, tempfile.mkdtemp(prefix="mpirt-soak-")
    os.makedirs(os.path.join(workdir, "spill"))
    limit = args.minutes * 60 + args.deadline + 180   # start-up, the last round, shutdown
    started = time.monotonic()
    result, code, tail = run_job(mpirun_command(args, argv), job_environment(args, token, workdir), limit)
    left = reap_leftovers(token)
    spill_left = os.listdir(os.path.join(workdir, "spill"))
    report = verdict(args, result, code, tail, left, spill_left, round(time.monotonic() - started, 1))
    print_report(report)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    if result is None or result.get("aborted"):   # what the job left is evidence
        print(f"soak: kept {workdir} for a look (spill and Tune results)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report["passed"] else 1


def verdict(args, result, code, tail, left, spill_left, wall_s):
    """The job's result plus what only the supervisor sees, and the list of reasons it failed (if any)."""
    report = dict(result or {})
    counts = dict(report.get("counts", {}))
    counts["processes_left"] = len(left)
    counts["spill_files_left"] = len(spill_left)
    report.update({"counts": counts, "mpirun_exit": code, "wall_s": wall_s, "processes_left": left,
                   "spill_files_left": spill_left[:20]})
    reasons = [f"{key} = {counts[key]}" for key in MUST_BE_ZERO if counts.get(key, 0)]
    if result is None:
        reasons.append("the job ended without a result" if code is not None else "the job ran past its limit")
        report["output_tail"] = tail[-60:]
    elif result.get("aborted"):
        reasons.append(f"aborted: {result['aborted']}")
        report["output_tail"] = tail[-60:]
    for row in report.get("memory", []):
        if row["grew"]:
            reasons.append(f"memory of {row['role']} pid {row['pid']} grew past the bound")
    for row in report.get("descriptors", []):
        if row["grew"]:
            reasons.append(f"descriptors or threads of {row['role']} pid {row['pid']} grew past the bound")
    for node, left in (report.get("store_left") or {}).items():
        if left["used_bytes"]:
            reasons.append(f"node {node}: {left['used_bytes']} store bytes still in use after every object was dropped")
        if left["held_by_dead_ranks_bytes"]:
            reasons.append(f"node {node}: {left['held_by_dead_ranks_bytes'] >> 20} MiB of store chunks still reserved "
                           "by dead ranks after every object was dropped")
    if result and args.kill_every > 0 and args.minutes * 60 > 1.5 * args.kill_every and not report.get("kills_done"):
        reasons.append("no worker was killed although kills were due")
    report["failures"], report["passed"] = reasons, not reasons
    return report


def _mb(n):
    return "-" if n is None else f"{n / 2**20:.0f}"


def print_report(report):
    counts = report["counts"]
    print(f"\nsoak: {report.get('ranks')} ranks, {report.get('minutes')} min of load, a kill every "
          f"{report.get('kill_every_s')} s, seed {report.get('seed')}, wall {report['wall_s']} s, "
          f"mpirun exit {report['mpirun_exit']}")
    print("| count | value |\n|---|---|")
    for key in ("rounds", "tasks", "actor_calls", "large_objects_checked", "tune_runs", "tune_trials"):
        print(f"| {key} | {counts.get(key, 0)} |")
    print(f"| spilled objects | {report.get('spilled_objects', 0)} |")
    left = report.get("store_left") or {}
    for key, label in (("used_bytes", "in use"), ("held_by_dead_ranks_bytes", "reserved by dead ranks")):
        by_node = ", ".join(f"{node}: {figures[key] >> 20}" for node, figures in left.items()) or "-"
        print(f"| store MiB {label} after all objects dropped, by node | {by_node} |")
    recoveries = [k["whole_again_s"] for k in report.get("kills", []) if k.get("whole_again_s") is not None]
    print(f"| kills done | {report.get('kills_done', 0)} (whole again after "
          f"{', '.join(f'{r:.1f}' for r in recoveries) or '-'} s) |")
    for key in MUST_BE_ZERO:
        print(f"| {key} (must be 0) | {counts.get(key, 0)} |")
    print("\n| process | rank | lived s | peak RSS MB | anon MB first third: median, peak | middle third peak "
          "| last third | grew |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report.get("memory", []):
        print(f"| {row['role']} {row['pid']} | {row['rank'] if row['rank'] is not None else '-'} | {row['lived_s']} "
              f"| {_mb(row['peak_rss'])} | {_mb(row['anon_first_third'])}, {_mb(row['anon_first_third_peak'])} "
              f"| {_mb(row.get('anon_middle_third_peak'))} | {_mb(row['anon_last_third'])} "
              f"| {'-' if row['grew'] is None else row['grew']} |")
    print("\n| process | fds start, third -> end (bound) | threads start, third -> end (bound) |\n|---|---|---|")
    for row in report.get("descriptors", []):
        print(f"| {row['role']} {row['pid']} | {row['fds_start']}, {row['fds_third']} -> {row['fds_end']} "
              f"({row['fds_bound']}) | {row['threads_start']}, {row['threads_third']} -> {row['threads_end']} "
              f"({row['threads_bound']}) |")
    for key, lines in report.get("examples", {}).items():
        print(f"\n{key}:")
        for line in lines:
            print(f"  {line}")
    print("\nsoak: " + ("PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failures"])))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    parser.add_argument("--ranks", type=int, default=8, help="MPI ranks: driver, head, workers (default 8)")
    parser.add_argument("--kill-every", type=float, default=60.0,
                        help="seconds between two SIGKILLs of a random worker rank; 0: no kills (default 60)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the killer's choices (default 1)")
    parser.add_argument("--report", default=None, help="write the report as JSON to this path")
    parser.add_argument("--ranks-per-node", type=int, default=2,
                        help="emulated nodes of this many ranks (MPIRT_RANKS_PER_NODE), so that killed workers "
                             "take the only copy of objects with them; 0: one node (default 2)")
    parser.add_argument("--object-store-mb", type=int, default=64, help="object store per node, MiB (default 64)")
    parser.add_argument("--big-mb", type=int, default=16, help="size of the large task results, MiB (default 16)")
    parser.add_argument("--keep", type=int, default=12, help="rounds a large object stays alive (default 12)")
    parser.add_argument("--tune-every", type=float, default=120.0, help="seconds between Tune runs (default 120)")
    parser.add_argument("--deadline", type=float, default=120.0,
                        help="seconds an operation may take before it counts as a hang (default 120)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between memory samples (default 5)")
    args = parser.parse_args(argv)
    if args.ranks < 4:
        parser.error(f"--ranks {args.ranks}: at least 4 are needed (driver, head and two workers, one to kill)")
    if args.minutes <= 0 or args.kill_every < 0 or args.big_mb < 1 or args.keep < 1:
        parser.error("--minutes, --big-mb and --keep must be positive and --kill-every not negative")
    return args


def main():
    args = parse_args(sys.argv[1:])
    if TOKEN_ENV not in os.environ:
        sys.exit(supervise(args, sys.argv[1:]))
    mpirt.init(object_store_memory=args.object_store_mb << 20)   # only the driver returns from it
    drive(args)


if __name__ == "__main__":
    main()
