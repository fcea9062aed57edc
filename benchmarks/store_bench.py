"""Object-store benchmarks: mpirt vs Ray, same code for both runtimes (numpy uint8 arrays).

Measures, on ``init(num_cpus=2, object_store_memory=6 GiB)``:
  1. ``rt.put`` of 1 MB, 100 MB, 1 GiB and 4 GiB arrays (GB/s, median of several puts, each ref
     dropped before the next put), and beside it a plain ``numpy.copyto`` of the same bytes into
     warm memory: the bound for any put that copies its value once. Steady state: the driver's store memory is touched once
     beforehand and each size gets an untimed pass of the same puts, since the first write
     to fresh shared memory page-faults (for both runtimes) and first-fit placement with
     asynchronous frees would otherwise mix fresh and reused space in the timed puts,
  2. ``rt.get`` from the driver of a 1 MB, 100 MB, 1 GiB and 4 GiB object the driver put (same
     node): median time per get (us) and effective GB/s (size / time). The returned array
     is dropped before the next get. mpirt's same-node get maps the store segment in
     place (zero-copy, read-only view), so its time should not grow with the size,
  3. a task taking a 100 MB argument (put beforehand, passed as an ObjectRef) and returning
     its first byte (ms per call, median),
  4. mpirt only: a cross-node get. A second mpirt child runs under ``mpirun -n 4`` with MPIRT_RANKS_PER_NODE=2
     (ranks 0-1, driver and scheduler, are "node 0"; ranks 2-3, the workers, "node 2"); a
     task there returns a 1 MB / 100 MB / 1 GiB array made there and the driver gets it, which
     copies it over MPI RMA Get (GB/s). ``object_store_stats()["nodes"]`` must show
     remote_gets > 0 on the driver's node. Ray has no equivalent on one machine (it would
     need a real multi-node cluster), so its column reads "n/a". The "plain MPI Get" line
     is the same bytes moved by a bare mpi4py ``Win.Create`` + ``Lock``/``Get``/``Unlock``
     from rank 0 to rank 2 of ``mpirun -n 4``, as in the mpirt child (the goal: mpirt within
     2x of it). Like for like: the same ranks of a job of the same size (Open MPI makes the
     waits of an oversubscribed job yield the core: 4 ranks on 2 cores are, 2 are not; the
     line under the table gives the Get between the 2 ranks of ``mpirun -n 2`` too), both Get
     into a fresh array each time (into a reused warm one the plain Get of 1 MB took the same,
     114 vs 117 us), both time the get as the caller sees it (mpirt's includes its wake and
     done messages, the sequence-lock re-read of the header, pinning and unpickling). Not
     alike: the plain Get's target waits in ``Barrier``, which drives MPI without pause, and on
     transports that emulate Get with messages the target serves (Open MPI's shared-memory
     BTL here, TCP) that is the best case; mpirt's holder drives MPI without pause only while
     a reader says it reads, and mpirt's job also has its task-slot processes. The children
     alternate ``--xnode-rounds`` times (the 2-core development VM varies 2x from minute to
     minute); the table shows the median of the rounds' medians. 4 GiB is
     left out of the cross-node rows: maker, store and copy would need 12 GB at once,
  5. spill and restore, in a child with ``object_store_memory=1 GiB`` for both runtimes: ten
     200 MB puts held at once (2 GB into 1 GiB: the later puts spill older objects; GB/s =
     bytes put / time of all puts), then a get of each (the spilled ones are restored from
     disk; GB/s = bytes / time of all gets, each array dropped before the next get),
  6. store memory in use: ``peak machine-wide memory`` under the table (MemAvailable drop
     while a child runs, store included), and mpirt's own figures (bytes in use by objects,
     reserved in chunks) after the spill phase.

mpirt's object_store_memory is the size of the one pool of each node, which all its ranks
share. Sizes: 1 MB = 10**6 bytes, 1 GiB = 2**30 bytes, GB/s = 10**9 bytes/s.

Each runtime runs in its own fresh subprocess (the script re-invokes itself with
``--runtime NAME``; the child prints its results as JSON on its last stdout line).
Ray is optional: without it the Ray column reads "n/a".

Run:  python benchmarks/store_bench.py            (full run, a few minutes)
      python benchmarks/store_bench.py --quick    (1 MB / 10 MB / 100 MB, well under a minute)
      python benchmarks/store_bench.py --runtimes mpirt
      RAY_PYTHON=/path/to/ray-venv/bin/python python benchmarks/store_bench.py   (Ray in its own venv)

Results go to benchmarks/results/store_bench.json and, if matplotlib is installed,
store_bench.png (horizontal bars of the mpirt/ray ratio per workload, log scale).
"""
import argparse
import functools
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (child runner, process-tree cleanup, tables, result files)

RESULT_MARKER = "store_bench_result"
CHILD_TIMEOUT_S = 300
XNODE_ROUNDS = 3
NUM_CPUS = 2
STORE_BYTES = 6 * 2**30
SPILL_STORE_BYTES = 2**30
GiB = 2**30
XNODE_RANKS_PER_NODE = 2
MB = 10**6
GB = 10**9

FULL = dict(sizes=[1 * MB, 100 * MB, 1 * GiB, 4 * GiB], put_reps=[30, 10, 5, 2], get_reps=[50, 30, 20, 10],
            task_arg_size=100 * MB, task_reps=20, xnode_sizes=[1 * MB, 100 * MB, 1 * GiB], xnode_reps=[200, 20, 5],
            spill_objects=10, spill_size=200 * MB)
QUICK = dict(sizes=[1 * MB, 10 * MB, 100 * MB], put_reps=[10, 5, 3], get_reps=[20, 10, 10],
             task_arg_size=10 * MB, task_reps=5, xnode_sizes=[1 * MB, 10 * MB, 100 * MB], xnode_reps=[100, 10, 3],
             spill_objects=10, spill_size=200 * MB)

# child name -> table column; "mpi-get" runs under mpirun -n 4 as the cross-node child does,
# "mpi-get-2" under mpirun -n 2, both without any runtime
CHILDREN = {"mpirt": "mpirt", "ray": "ray", "mpirt-xnode": "mpirt", "mpirt-spill": "mpirt", "ray-spill": "ray",
            "mpi-get": "mpi", "mpi-get-2": "mpi"}


def _size_label(n):
    if n >= GiB and n % GiB == 0:
        return f"{n // GiB} GiB"
    return f"{n // GB} GB" if n >= GB and n % GB == 0 else f"{n / MB:g} MB"


def workloads(cfg):
    """(key, label, unit, higher_is_better, child that measures it) for the table."""
    rows = []
    for n in cfg["sizes"]:
        rows.append((f"put_{n}", f"put {_size_label(n)}", "GB/s", True, None))
    for n in cfg["sizes"]:
        rows.append((f"copy_{n}", f"plain memory copy {_size_label(n)} (bound)", "GB/s", True, None))
    for n in cfg["sizes"]:
        rows.append((f"get_us_{n}", f"get {_size_label(n)} (same node)*", "us/get", False, None))
    for n in cfg["sizes"]:
        rows.append((f"get_gbs_{n}", f"get {_size_label(n)} (same node)*", "GB/s eff.", True, None))
    rows.append(("task_arg", f"task(ref to {_size_label(cfg['task_arg_size'])}) -> 1st byte", "ms/call", False, None))
    for n in cfg["xnode_sizes"]:
        rows.append((f"xnode_{n}", f"cross-node get {_size_label(n)} (RMA)**", "GB/s", True, "mpirt-xnode"))
    rows.append(("spill_gbs", f"spill: {cfg['spill_objects']} x {_size_label(cfg['spill_size'])} puts into 1 GiB",
                 "GB/s", True, "spill"))
    rows.append(("restore_gbs", "restore: get of each of them", "GB/s", True, "spill"))
    return rows


# --------------------------------------------------------------------------
# child: run the workloads on one runtime
# --------------------------------------------------------------------------
def _import_runtime(name, store_bytes=STORE_BYTES):
    return harness.init_runtime(name, num_cpus=NUM_CPUS, object_store_memory=store_bytes)


def _array(n, fill=1):
    import numpy as np

    return np.full(n, fill, dtype=np.uint8)


def _record(out, key, values, runs=None):
    out[key] = {"value": statistics.median(values), "runs": values if runs is None else runs}


def _timed_gets(rt, ref, n, fill, reps):
    """Check one untimed get of ``ref`` (an n-byte array of ``fill``), then time ``reps`` gets (s each).

    Each returned array is dropped before the next get.
    """
    import numpy as np

    value = rt.get(ref)  # warm-up
    assert isinstance(value, np.ndarray) and value.nbytes == n and value[0] == fill and value[-1] == fill
    del value
    return harness.timed(lambda: rt.get(ref), reps)


def run_workloads(rt, cfg, driver_store_bytes):
    @rt.remote
    def first_byte(a):
        return int(a[0])

    @rt.remote
    def noop():
        return None

    # warm-up: workers started, task path hot, store path hot
    rt.get([noop.remote() for _ in range(20)])
    for _ in range(5):
        value = rt.get(rt.put(_array(MB)))
        del value

    # Touch the driver's store memory once (~75% of it, in 100 MB objects held at the same
    # time; Ray starts spilling above 80%): fresh shared memory costs a page fault per page on first write, which would
    # otherwise land in whichever timed puts happen to get fresh offsets.
    chunk = min(100 * MB, max(cfg["sizes"]))
    warm = [rt.put(_array(chunk)) for _ in range(int(0.75 * driver_store_bytes) // chunk)]
    del warm
    time.sleep(0.5)  # let the runtimes free them

    out = {}

    # 1. put: GB/s per size (the ref is dropped before the next put)
    for n, reps in zip(cfg["sizes"], cfg["put_reps"]):
        src = _array(n)
        for _ in range(reps):  # untimed pass: the same puts, so the timed ones reuse warm space
            ref = rt.put(src)
            del ref
        times = harness.timed(functools.partial(rt.put, src), reps)  # each ref dropped before the next put
        _record(out, f"put_{n}", [n / t / GB for t in times])
        # What any put must do at least once: copy the bytes into other memory (warm, like the
        # puts' reused store memory). A put cannot beat this by much, whatever the runtime.
        import numpy as np

        target = np.empty_like(src)
        np.copyto(target, src)
        times = harness.timed(functools.partial(np.copyto, target, src), reps)
        del src, target
        _record(out, f"copy_{n}", [n / t / GB for t in times])

    # 2. get of an object the driver put (same node): us per get and effective GB/s
    for n, reps in zip(cfg["sizes"], cfg["get_reps"]):
        ref = rt.put(_array(n, 7))
        times = _timed_gets(rt, ref, n, 7, reps)
        del ref
        _record(out, f"get_us_{n}", [t * 1e6 for t in times])
        _record(out, f"get_gbs_{n}", [n / t / GB for t in times])

    # 3. task with a large ObjectRef argument, returning its first byte
    n = cfg["task_arg_size"]
    ref = rt.put(_array(n, 5))
    for _ in range(3):  # warm-up
        assert rt.get(first_byte.remote(ref)) == 5
    times = []
    for _ in range(cfg["task_reps"]):
        t0 = time.perf_counter()
        rt.get(first_byte.remote(ref))
        times.append(time.perf_counter() - t0)
    del ref
    _record(out, "task_arg", [t * 1e3 for t in times])
    return out


def run_xnode(rt, cfg):
    """mpirt only, under MPIRT_RANKS_PER_NODE=2: the driver gets arrays made on the other node."""
    @rt.remote
    def make(n):
        return _array(n, 3)

    out = {}
    nodes_before = rt.object_store_stats()["nodes"]
    for n, reps in zip(cfg["xnode_sizes"], cfg["xnode_reps"]):
        ref = make.remote(n)
        rt.wait([ref], num_returns=1)
        times = _timed_gets(rt, ref, n, 3, reps)
        del ref
        _record(out, f"xnode_{n}", [n / t / GB for t in times])
    stats = rt.object_store_stats()
    driver_node = next(node for node, s in stats["nodes"].items() if 0 in s["ranks"])
    remote = stats["nodes"][driver_node].get("remote_gets", 0)
    expected = sum(reps + 1 for reps in cfg["xnode_reps"])
    if remote <= 0:
        raise AssertionError(f"no cross-node RMA get recorded on the driver's node: {stats['nodes']}")
    return out, {"nodes_before": nodes_before, "nodes": stats["nodes"], "driver_node": driver_node,
                 "driver_node_remote_gets": remote, "expected_remote_gets": expected}


def run_spill(rt, cfg, name):
    """Puts that overflow a 1 GiB store (held at once), then a get of each: spill and restore GB/s."""
    n, count = cfg["spill_size"], cfg["spill_objects"]
    src = _array(n, 1)
    t0 = time.perf_counter()
    refs = [rt.put(src) for _ in range(count)]
    put_s = time.perf_counter() - t0
    del src
    t0 = time.perf_counter()
    for ref in refs:
        value = rt.get(ref)
        assert value.nbytes == n and value[0] == 1 and value[-1] == 1
        del value
    get_s = time.perf_counter() - t0
    out = {}
    _record(out, "spill_gbs", [n * count / put_s / GB])
    _record(out, "restore_gbs", [n * count / get_s / GB])
    memory = None
    if name == "mpirt":
        node = rt.object_store_stats()["nodes"][0]
        memory = {k: node[k] for k in ("capacity_bytes", "used_bytes", "reserved_bytes", "fragmentation",
                                       "spilled_objects", "spilled_bytes", "restored_objects", "restored_bytes")}
    del refs
    return out, memory


def mpi_get_child(name, cfg):
    """Under ``mpirun``, no runtime: rank 0 Gets bytes of a target rank's window into a fresh array
    each time (as mpirt's cross-node get does); GB/s per size, keyed like mpirt's cross-node rows.
    The target waits in ``Barrier`` meanwhile (which drives MPI without pause). Under ``-n 4``
    the target is rank 2, as mpirt's holder in the cross-node child, and ranks 1 and 3 idle as
    mpirt's idle ranks do (a probe every 1 ms): the same job size, so Open MPI treats both jobs
    alike (on 2 cores both are oversubscribed, and waits in MPI yield the core)."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    target = XNODE_RANKS_PER_NODE if comm.size > XNODE_RANKS_PER_NODE else 1
    largest = max(cfg["xnode_sizes"])
    exposed = np.ones(largest if comm.rank == target else 1, dtype=np.uint8)
    window = MPI.Win.Create(exposed, 1, comm=comm)
    out = {}
    if comm.rank == 0:
        for n, reps in zip(cfg["xnode_sizes"], cfg["xnode_reps"]):
            def get():
                buffer = np.empty(n, dtype=np.uint8)
                window.Lock(target, MPI.LOCK_SHARED)
                for start in range(0, n, 1 << 30):
                    count = min(1 << 30, n - start)
                    window.Get([buffer[start:start + count], count, MPI.BYTE], target,
                               target=(start, count, MPI.BYTE))
                window.Unlock(target)
                return buffer
            get()
            _record(out, f"xnode_{n}", [n / t / GB for t in harness.timed(get, reps)])
        for rank in range(1, comm.size):
            if rank != target:
                comm.send(None, dest=rank)
    elif comm.rank != target:
        while not comm.Iprobe(source=0):
            time.sleep(1e-3)
        comm.recv(source=0)
    comm.Barrier()
    window.Free()
    if comm.rank == 0:
        harness.emit({RESULT_MARKER: True, "runtime": name, "status": "ok", "ranks": comm.size, "target": target,
                      "version": "mpi4py " + __import__("mpi4py").__version__, "results": out})
    return 0


def _driver_store_bytes(rt, name):
    """Store memory the driver's puts go to: the node's pool (mpirt), the node's store (Ray)."""
    if name == "mpirt":
        return next(iter(rt.object_store_stats()["nodes"].values()))["capacity_bytes"]
    return STORE_BYTES


def _store_report(rt, name):
    """Spill figures at the end of a run (so spilling during the timed puts shows up)."""
    try:
        if name == "mpirt":
            nodes = rt.object_store_stats()["nodes"]
            return {"nodes": nodes, "spilled_objects": sum(s.get("spilled_objects", 0) for s in nodes.values())}
        import glob

        from ray._private import worker

        session_dir = worker.global_worker.node.get_session_dir_path()
        lines = []
        for path in sorted(glob.glob(os.path.join(session_dir, "logs", "raylet*.out"))):
            with open(path, errors="replace") as f:
                lines += [line.strip() for line in f
                          if "Triggering object spilling" in line or ("Spilled " in line and "Spilled 0 MiB" not in line)]
        return {"session_dir": session_dir, "spilled": lines[-5:], "spill_log_lines": len(lines)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def child_main(name, quick):
    cfg = QUICK if quick else FULL
    if name.startswith("mpi-get"):
        return mpi_get_child(name, cfg)
    runtime = CHILDREN[name]
    result = {RESULT_MARKER: True, "runtime": name, "config": cfg}
    if name == "mpirt-xnode":
        result["ranks_per_node"] = os.environ.get("MPIRT_RANKS_PER_NODE")

    def work(rt, result):
        if name == "mpirt-xnode":
            result["results"], result["xnode"] = run_xnode(rt, cfg)
        elif name.endswith("-spill"):
            result["results"], result["store_memory"] = run_spill(rt, cfg, runtime)
        else:
            result["results"] = run_workloads(rt, cfg, _driver_store_bytes(rt, runtime))
        result["store"] = _store_report(rt, runtime)

    def before_shutdown(result):
        import resource

        result["driver_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    init = functools.partial(_import_runtime, store_bytes=SPILL_STORE_BYTES) if name.endswith("-spill") \
        else _import_runtime
    return harness.run_in_child(result, runtime, init, work, before_shutdown)


# --------------------------------------------------------------------------
# parent: run each runtime in a fresh subprocess, print the table
# --------------------------------------------------------------------------
def _mem_available():
    from mpirt.store.capacity import meminfo_bytes  # reads /proc only: no MPI start

    return meminfo_bytes("MemAvailable")


class _MemWatch:
    """Peak drop of the machine's MemAvailable while a child runs (store shm included)."""

    def __init__(self):
        self.base = _mem_available()
        self.low = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.1):
            now = _mem_available()
            if now is not None and self.low is not None:
                self.low = min(self.low, now)

    def stop(self):
        self._stop.set()
        self._thread.join()
        if self.base is None or self.low is None:
            return None
        return (self.base - self.low) / GB


def run_child(name, quick, timeout):
    env = harness.child_env()
    if name == "mpirt-xnode":
        env["MPIRT_RANKS_PER_NODE"] = str(XNODE_RANKS_PER_NODE)
    else:
        env.pop("MPIRT_RANKS_PER_NODE", None)
    command = harness.child_command(__file__, name, quick)
    if name in ("mpi-get", "mpi-get-2", "mpirt-xnode"):
        # Both under mpirun, so mpirt's cross-node get and the plain Get it is compared with move
        # bytes between ranks of one MPI job (a spawning driver reaches its ranks over TCP).
        import shutil

        mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
        if mpirun is None:
            return {"runtime": name, "status": "not installed", "error": "mpirun not found"}
        ranks = "2" if name == "mpi-get-2" else str(2 * XNODE_RANKS_PER_NODE)
        command = [mpirun, "-n", ranks, "--oversubscribe"] + command
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    watch = _MemWatch()
    run = harness.run_process(command, env, timeout, RESULT_MARKER)
    return harness.runtime_result(run, name, timeout, RESULT_MARKER, peak_mem_gb=watch.stop())


def _merge_rounds(rounds):
    """One result for a child run several times: per workload the median of the rounds'
    medians (``runs``: those medians), the other fields from the last round that worked, and
    the rounds that failed under ``failed_rounds``."""
    ok = [r for r in rounds if r.get("status") == "ok"]
    if not ok:
        return rounds[-1]
    merged = dict(ok[-1])
    keys = {key for r in ok for key in r.get("results", {})}
    merged["results"] = {}
    for key in sorted(keys):
        medians = [r["results"][key]["value"] for r in ok if key in r.get("results", {})]
        merged["results"][key] = {"value": statistics.median(medians), "runs": medians}
    merged["rounds"] = len(rounds)
    failed = [{k: r.get(k) for k in ("status", "error", "stderr_tail")} for r in rounds if r.get("status") != "ok"]
    if failed:
        merged["failed_rounds"] = failed
    return merged


def _cell(all_results, column, child, key):
    if column == "ray" and child == "mpirt-xnode":
        return None
    if child == "spill":
        child = f"{column}-spill"
    return harness.value(all_results.get(child or column), key)


def _ratio_of(all_results, child, key, higher_is_better):
    return harness.ratio(_cell(all_results, "mpirt", child, key), _cell(all_results, "ray", child, key),
                         higher_is_better)


def _round_medians(all_results, child, n):
    res = all_results.get(child) or {}
    entry = (res.get("results") or {}).get(f"xnode_{n}") if res.get("status") == "ok" else None
    return entry["runs"] if entry and "rounds" in res else ([entry["value"]] if entry else [])


def print_table(all_results, cfg):
    sizes = ", ".join(_size_label(n) for n in cfg["sizes"])
    print(f"mpirt vs Ray object store benchmark (num_cpus={NUM_CPUS}, object_store_memory=6 GiB, numpy uint8; "
          f"sizes {sizes}; medians; 1 GB = 10**9 bytes)")
    harness.print_comparison([(label, unit, _cell(all_results, "mpirt", child, key),
                               _cell(all_results, "ray", child, key), hib)
                              for key, label, unit, hib, child in workloads(cfg)])
    print("*  same-node get from the driver of an object it put; the returned array is dropped before the next get. "
          "mpirt's same-node get is zero-copy (a read-only view of the store segment), so its time per get should "
          "not grow with the size; 'GB/s eff.' = size / time, not a memory bandwidth.")
    print("Puts are timed in steady state: after one untimed pass that touches ~75% of the driver's store memory "
          "and an untimed pass of the same puts (first writes to fresh shared memory page-fault, for both runtimes).")
    print(f"** mpirt only: separate child with MPIRT_RANKS_PER_NODE={XNODE_RANKS_PER_NODE} (driver + scheduler = "
          "node 0, the 2 workers = node 2); a worker task makes the array, the driver's get copies it with MPI RMA "
          "Get. Ray: n/a (cross-node needs a real multi-node cluster).")
    for n in cfg["xnode_sizes"]:
        mine, plain = _cell(all_results, "mpirt", "mpirt-xnode", f"xnode_{n}"), \
            harness.value(all_results.get("mpi-get"), f"xnode_{n}")
        if mine is not None and plain is not None:
            rounds = [(m, p) for m, p in zip(_round_medians(all_results, "mpirt-xnode", n),
                                             _round_medians(all_results, "mpi-get", n))]
            each = ", ".join(f"{m:.2f}/{p:.2f}" for m, p in rounds)
            print(f"cross-node get {_size_label(n)}: mpirt {mine:.2f} GB/s, plain MPI Get of the same bytes "
                  f"{plain:.2f} GB/s (mpirt at {mine / plain:.0%} of it; goal >= 50%); medians of {len(rounds)} "
                  f"alternating rounds, mpirt/plain per round: {each}")
    for n in cfg["xnode_sizes"]:
        plain, two = (harness.value(all_results.get(c), f"xnode_{n}") for c in ("mpi-get", "mpi-get-2"))
        if plain is not None and two is not None:
            print(f"plain MPI Get {_size_label(n)}: {plain:.2f} GB/s between ranks 0 and 2 of mpirun -n 4 (as "
                  f"above), {two:.2f} GB/s between the two ranks of mpirun -n 2 (not oversubscribed: MPI waits "
                  f"spin without yielding)")
    for name in ("mpirt-xnode", "mpi-get", "mpi-get-2"):
        for failure in (all_results.get(name) or {}).get("failed_rounds", []):
            print(f"{name}: WARNING: a round failed ({failure.get('status')}): {failure.get('error')}")
    for name in ("mpirt", "ray", "mpirt-spill", "ray-spill"):
        mem = (all_results.get(name) or {}).get("peak_mem_gb")
        if mem is not None:
            print(f"store memory: {name}: peak machine-wide memory in use +{mem:.1f} GB")
    spill_memory = (all_results.get("mpirt-spill") or {}).get("store_memory")
    if spill_memory:
        print(f"store memory: mpirt-spill after the gets: {json.dumps(spill_memory)}")
    for name in ("mpirt", "mpirt-xnode", "ray", "mpirt-spill", "ray-spill", "mpi-get", "mpi-get-2"):
        res = all_results.get(name)
        if res is None:
            continue
        mem = res.get("peak_mem_gb")
        harness.print_status(name, res, f", peak machine-wide memory in use +{mem:.1f} GB" if mem is not None else "")
        store = res.get("store") or {}
        if name == "mpirt" and store.get("spilled_objects"):
            print(f"{name}: WARNING: {store['spilled_objects']} object(s) spilled to disk during the run")
        if name == "ray":
            if store.get("spill_log_lines"):
                print(f"{name}: WARNING: {store['spill_log_lines']} raylet log line(s) about spilling, e.g.:")
            for line in store.get("spilled", []):
                print(f"{name}:   {line[:200]}")
            if store.get("error"):
                print(f"{name}: could not read the raylet log for spilling: {store['error']}")
        xnode = res.get("xnode")
        if xnode:
            node = xnode["nodes"][str(xnode["driver_node"])]  # JSON turned the node ids into strings
            print(f"{name}: object_store_stats()['nodes'] on the driver's node {xnode['driver_node']} "
                  f"(ranks {node['ranks']}): remote_gets={node.get('remote_gets')} "
                  f"(expected {xnode['expected_remote_gets']}), remote_get_bytes={node.get('remote_get_bytes'):,}")
            print(f"{name}: nodes = {json.dumps(xnode['nodes'])}")
        harness.print_leftovers(name, res)


def save_plot(all_results, cfg, path):
    """mpirt/ray ratio per workload; the mpirt-only cross-node rows have no ratio and are left out."""
    rows = [(f"{label.rstrip('*')} ({unit})", _ratio_of(all_results, child, key, hib))
            for key, label, unit, hib, child in workloads(cfg)]
    title = (f"object store: {harness.versions(all_results)}, object_store_memory=6 GiB"
             + (" (quick run)" if cfg is QUICK else "") + "\ncross-node rows: mpirt only, not plotted")
    return harness.save_ratio_plot(rows, path, title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (1 MB / 10 MB / 100 MB), for smoke runs")
    parser.add_argument("--runtimes", default="mpirt,ray", help="comma-separated: mpirt,ray "
                        "(mpirt includes the cross-node child)")
    parser.add_argument("--runtime", help=argparse.SUPPRESS)  # internal: child mode
    parser.add_argument("--timeout", type=int, default=CHILD_TIMEOUT_S, help="per-child timeout in seconds")
    parser.add_argument("--xnode-rounds", type=int, default=XNODE_ROUNDS,
                        help="times the cross-node child and the plain MPI Get child run, alternating")
    parser.add_argument("--xnode-only", action="store_true",
                        help="only the cross-node rows: mpirt's cross-node get against the plain MPI Get")
    args = parser.parse_args(argv)

    if args.runtime:
        if args.runtime not in CHILDREN:
            parser.error(f"unknown child runtime {args.runtime!r}")
        return child_main(args.runtime, args.quick)

    names = ["mpirt"] if args.xnode_only else harness.runtime_names(parser, args.runtimes)
    children = []
    for n in names:
        if n != "mpirt":
            children += [n, f"{n}-spill"]
        elif not args.xnode_only:
            children += ["mpirt", "mpirt-spill"]
    all_results = {}
    for n in children:
        print(f"running {n} ...", file=sys.stderr, flush=True)
        all_results[n] = run_child(n, args.quick, args.timeout)
    if "mpirt" in names:
        rounds = {"mpirt-xnode": [], "mpi-get": [], "mpi-get-2": []}
        for i in range(max(1, args.xnode_rounds)):
            for n in rounds:
                print(f"running {n} (round {i + 1}) ...", file=sys.stderr, flush=True)
                rounds[n].append(run_child(n, args.quick, args.timeout))
        all_results.update({n: _merge_rounds(results) for n, results in rounds.items()})

    cfg = QUICK if args.quick else FULL
    print_table(all_results, cfg)

    rows = workloads(cfg)
    doc = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": args.quick,
        "num_cpus": NUM_CPUS,
        "object_store_memory": STORE_BYTES,
        "config": cfg,
        "python": sys.version.split()[0],
        "workloads": [{"key": k, "label": l, "unit": u, "higher_is_better": h, "child": c or "mpirt/ray"}
                      for k, l, u, h, c in rows],
        "runtimes": all_results,
        "ratio_mpirt_over_ray": {k: _ratio_of(all_results, c, k, h) for k, _, _, h, c in rows},
    }
    if args.xnode_only:   # no Ray column, so no ratio to plot
        harness.write_results("store_bench_xnode", doc, lambda path: False)
    else:
        harness.write_results("store_bench", doc, lambda path: save_plot(all_results, cfg, path))
    return 0 if all(r.get("status") in ("ok", "not installed") and not r.get("failed_rounds")
                    for r in all_results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
