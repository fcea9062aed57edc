"""Launch modes: mpirun role split, spawning, shutdown and exit, idle CPU, environment defaults."""
import os
import sys

import pytest

from conftest import run_app
from mpirt.core._mpi_env import apply_defaults

APP = """
import os, sys
import mpirt as ray

print("before init", flush=True)  # every rank runs this

@ray.remote
def square(x):
    print(f"squaring {x}")
    return x * x

ray.init()
print(f"after init on pid {os.getpid()}", flush=True)  # the driver only
print("result", ray.get([square.remote(i) for i in range(10)]))
print("resources", ray.cluster_resources())
"""


def test_mpirun_roles_and_clean_exit(tmp_path):
    proc = run_app(tmp_path, APP, ranks=4)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("before init") == 4
    assert out.count("after init") == 1
    assert "result [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in out
    assert "resources {'CPU': 2.0}" in out  # ranks 2 and 3 are the workers
    assert "(square rank=" in out and "squaring 3" in out


def test_mpirun_driver_exception_ends_job_nonzero(tmp_path):
    source = APP + "\nraise RuntimeError('driver failed on purpose')\n"
    proc = run_app(tmp_path, source, ranks=3)
    assert proc.returncode != 0
    assert "driver failed on purpose" in proc.stderr


def test_mpirun_too_few_ranks(tmp_path):
    proc = run_app(tmp_path, APP, ranks=2, timeout=60)
    assert proc.returncode != 0
    assert "at least 3 ranks" in proc.stderr


def test_mpirun_explicit_shutdown_then_more_driver_code(tmp_path):
    source = APP + """
ray.shutdown()
print('driver still running', flush=True)
try:
    ray.init()
except RuntimeError as exc:
    print('no second init:', exc)
"""
    proc = run_app(tmp_path, source, ranks=3)
    assert proc.returncode == 0, proc.stderr
    assert "driver still running" in proc.stdout
    assert "no second init: under mpirun" in proc.stdout


def test_plain_python_spawns_and_reinit(tmp_path):
    source = """
import mpirt as ray

@ray.remote
def inc(x):
    return x + 1

# no init(): the first call starts a default instance (one worker per core)
print("auto", ray.get(inc.remote(1)), ray.cluster_resources())
ray.shutdown()
ray.init(num_cpus=3)
print("again", ray.get([inc.remote(i) for i in range(5)]), ray.cluster_resources())
ray.shutdown()
ray.init(num_cpus=1, resources={"special": 2})
print("third", ray.get(inc.options(resources={"special": 1}).remote(10)), ray.cluster_resources())
"""
    proc = run_app(tmp_path, source)
    assert proc.returncode == 0, proc.stderr
    cores = os.cpu_count()
    assert f"auto 2 {{'CPU': {float(cores)}}}" in proc.stdout
    assert "again [1, 2, 3, 4, 5] {'CPU': 3.0}" in proc.stdout
    assert "third 11 {'CPU': 1.0, 'special': 2.0}" in proc.stdout


def test_plain_python_driver_exception(tmp_path):
    source = APP.replace("ray.init()", "ray.init(num_cpus=2)") + "\nraise KeyError('oops')\n"
    proc = run_app(tmp_path, source)
    assert proc.returncode == 1
    assert "KeyError: 'oops'" in proc.stderr
    assert "result [0, 1, 4" in proc.stdout


def test_killed_driver_leaves_no_workers(tmp_path):
    """A driver killed with SIGKILL cannot shut down; its spawned ranks notice and exit."""
    source = """
import os, time, mpirt as ray
ray.init(num_cpus=2)
print("ready", flush=True)
os.kill(os.getpid(), 9)
"""
    proc = run_app(tmp_path, source, timeout=60)  # run_app fails the test on leftovers
    assert proc.returncode == -9
    assert "ready" in proc.stdout


IDLE = """
import os, resource, time, mpirt as ray
if os.environ.get("MPIRT_TEST_HIGH_FDS"):
    # An application with many files open: the driver's host socket gets a descriptor above
    # FD_SETSIZE (1024), which select() cannot take.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1200, hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
ray.init(num_cpus=2)

def rank_pids():
    marker = os.environ["MPIRT_TEST_MARKER"].encode()
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if marker in environ and b"mpirt.launch._spawned" in cmd:
            pids.append(int(pid))
    return pids

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def wakeups(pid):
    # times the threads of pid went to sleep (voluntary context switches)
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            status = open(f"/proc/{pid}/task/{task}/status").read()
        except OSError:
            continue
        total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total

@ray.remote
def noop():
    return 0

ray.get([noop.remote() for _ in range(100)])
time.sleep(0.5)
workers = rank_pids()
before = {p: (cpu_seconds(p), wakeups(p)) for p in workers + [os.getpid()]}
start = time.monotonic(); time.sleep(3); wall = time.monotonic() - start
usage = {p: (cpu_seconds(p) - cpu) / wall for p, (cpu, _) in before.items()}
print("ranks", len(before))
print("max_idle_cpu", max(usage.values()))
print("max_worker_wakeups_per_s", max((wakeups(p) - before[p][1]) / wall for p in workers))
# after the idle spell, sleeping ranks still hear new work (their doorbells wake them)
print("after_idle", len(ray.get([noop.remote() for _ in range(100)])))
"""


@pytest.mark.parametrize("doorbells,high_fds", [("1", ""), ("0", ""), ("1", "1")])
def test_idle_ranks_do_not_spin(tmp_path, doorbells, high_fds):
    proc = run_app(tmp_path, IDLE, env={"MPIRT_HOST_SOCKETS": doorbells, "MPIRT_TEST_HIGH_FDS": high_fds})
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert int(lines["ranks"]) == 4  # head, two workers, driver
    assert lines["after_idle"] == "100"
    # a spinning rank would show ~1.0 (a full core)
    assert float(lines["max_idle_cpu"]) < 0.3, proc.stdout
    if doorbells == "1":
        # idle ranks sleep on their doorbells (one wake-up per DEEP_SLEEP, 50/s) instead of
        # polling MPI every millisecond (1,000/s and more, what MPIRT_HOST_SOCKETS=0 shows)
        assert float(lines["max_worker_wakeups_per_s"]) < 250, proc.stdout


CTRL_C = """
import os, random, signal, threading, time, mpirt as ray
ray.init(num_cpus=2)

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def inc(self):
        self.n += 1
        return self.n

@ray.remote
def square(x):
    return x * x

@ray.remote
def slow():
    time.sleep(60)

counter = Counter.remote()
refs, stop = [], False

def press_ctrl_c_again_and_again():
    pressing.wait()
    while not stop:
        time.sleep(random.uniform(0.0005, 0.003))
        os.kill(os.getpid(), signal.SIGINT)

# Ctrl-C may land on any line between the first press and SIG_IGN: all of them are in the try.
pressing = threading.Event()
presser = threading.Thread(target=press_ctrl_c_again_and_again, daemon=True)
presser.start()
interrupts, deadline = 0, time.monotonic() + 2
while True:
    try:
        pressing.set()
        if time.monotonic() >= deadline:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            break
        batch = [counter.inc.remote() for _ in range(20)] + [square.remote(i) for i in range(5)]
        refs.extend(batch)
        ray.get(batch)
    except KeyboardInterrupt:
        interrupts += 1
stop = True
presser.join()
signal.signal(signal.SIGINT, signal.default_int_handler)
print("interrupts", interrupts)
lost = 0
for ref in refs:
    try:
        ray.get(ref, timeout=10)
    except ray.exceptions.GetTimeoutError:
        lost += 1
print("refs", len(refs), "lost", lost)
print("after", ray.get(square.remote(7), timeout=10), ray.get(counter.inc.remote(), timeout=10) > len(refs) * 0.8 - 1)

# Ctrl-C still ends a get that blocks on a long task
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
long_task = slow.remote()
try:
    ray.get(long_task)
    print("long get returned")
except KeyboardInterrupt:
    print("long get interrupted")
ray.cancel(long_task, force=True)
print("after cancel", ray.get(square.remote(8), timeout=10))
"""


@pytest.mark.parametrize("ranks", [None, 4])
def test_ctrl_c_in_the_driver_loses_nothing(tmp_path, ranks):
    """KeyboardInterrupt raised by Ctrl-C while the driver submits and gets (every 0.5-3 ms for
    2 s) comes only where mpirt's state is whole: every ref already returned still resolves, the
    job goes on, and a get blocked on a long task is still interrupted."""
    proc = run_app(tmp_path, CTRL_C, ranks=ranks, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert int(out.split("interrupts ")[1].split()[0]) > 0, out
    assert " lost 0" in out, out
    assert "after 49 True" in out, out
    assert "long get interrupted" in out and "after cancel 64" in out, out


BUSY_RECEIVER = """
import time, mpirt as ray
ray.init(num_cpus=2)

@ray.remote
class Busy:
    def hog(self):
        return sum(range(150_000_000))   # C code holding the GIL: this rank reads nothing meanwhile
    def ping(self, i):
        return i

actor = Busy.remote()
ray.get(actor.ping.remote(0))
hog = actor.hog.remote()
time.sleep(0.3)
pings = []
for i in range(40):                      # separate small batches: they fill its socket's queue
    pings.append(actor.ping.remote(i))
    time.sleep(0.003)
cpu, wall = time.process_time(), time.monotonic()
time.sleep(1.0)
print("driver_cpu", (time.process_time() - cpu) / (time.monotonic() - wall))
print("results", ray.get(hog) > 0, sum(ray.get(pings)))
"""


def test_a_busy_receiver_does_not_make_its_sender_spin(tmp_path):
    """Batches a rank's full socket queue refused wait in the sender, which retries with growing
    sleeps (they came back every 50 us at first: ~45 % of a core while the receiver was busy)."""
    proc = run_app(tmp_path, BUSY_RECEIVER, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "results True 780" in proc.stdout, proc.stdout
    assert float(proc.stdout.split("driver_cpu ")[1].split()[0]) < 0.2, proc.stdout


def test_environment_defaults_never_override_the_user():
    env = {"OMPI_MCA_btl": "self,tcp", "PATH": "/usr/bin"}
    apply_defaults(env)
    assert env["OMPI_MCA_btl"] == "self,tcp"
    assert env["PRTE_MCA_rmaps_default_mapping_policy"] == ":oversubscribe"
    assert env["PATH"].startswith(os.path.dirname(sys.executable))


def test_init_argument_errors(tmp_path):
    source = """
import mpirt as ray
for kwargs in ({"num_cpus": -1}, {"num_cpus": "2"}, {"resources": {"CPU": 2}}, {"bogus": 1}):
    try:
        ray.init(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        print("rejected", type(exc).__name__, exc)
ray.init(num_cpus=1)
try:
    ray.init(num_cpus=1)
except RuntimeError as exc:
    print("twice", exc)
ray.init(ignore_reinit_error=True)
print("ok")
"""
    proc = run_app(tmp_path, source)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("rejected") == 4
    assert "rejected RuntimeError Unknown keyword argument(s): bogus" in proc.stdout   # Ray's words
    assert "twice" in proc.stdout and "ok" in proc.stdout


LARGE_BATCHES = """
import os, mpirt
from mpirt.core.current import runtime_for_call

mpirt.init(num_cpus=2)

@mpirt.remote
def reverse(blob, i):
    return blob[::-1], i

# 90 KB each way stays inline (below the store's 100 KB), so pipelined tasks make batches of
# megabytes between the driver and the workers: many fragments, receivers' queues full at times.
blobs = [os.urandom(90_000) for _ in range(8)]
results = mpirt.get([reverse.remote(blobs[i % 8], i) for i in range(300)])
assert all(blob == blobs[i % 8][::-1] and j == i for i, (blob, j) in enumerate(results))
host = runtime_for_call().transport.host
print("mail_peers", len(host.mail_peers))
print("fragments", host.fragments_sent, "refusals", host.refusals)
print("all back")
"""


@pytest.mark.parametrize("mail", ["1", "0"])
def test_driver_batches_through_host_sockets_or_mpi(tmp_path, mail):
    """A spawning driver's batches travel through host sockets (MPIRT_SOCKET_MAIL=0: over MPI's
    TCP link); large ones arrive whole and in order either way."""
    proc = run_app(tmp_path, LARGE_BATCHES, env={"MPIRT_SOCKET_MAIL": mail}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "all back" in proc.stdout
    assert f"mail_peers {3 if mail == '1' else 0}" in proc.stdout   # head and two workers
    fragments = int(proc.stdout.split("fragments ")[1].split()[0])
    assert (fragments > 0) == (mail == "1"), proc.stdout
