"""The job report (``mpirt/util/report.py``): a real job writes it at shutdown and on demand, and headless
Chromium (the system's package: ``.ci/chromium-up.sh``) loads it from the file with no server: it renders,
every plot has its data, nothing is fetched and the console has no error. The arithmetic behind the plots
is checked on events made up here."""
import json
import os
import select
import shutil
import signal
import subprocess
import time

import pytest

from conftest import run_app
from mpirt import slurm
from mpirt.core import tracing
from mpirt.util import report as job_report

JOB = r"""
import json, os, sys, time
import numpy as np
import mpirt as ray
from mpirt.slurm import job_results_dir
from mpirt.util.report import report

ray.init(num_cpus=2)

@ray.remote
def square(x):
    time.sleep(0.005)
    return x * x

@ray.remote
def boom(x):
    raise ValueError(f"bad value {x}")

@ray.remote
def report_from_a_task(path):
    return report(path)

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

big = ray.put(np.ones(2_500_000))             # 20 MB in the driver's node store
assert sum(ray.get([square.remote(i) for i in range(300)])) == sum(i * i for i in range(300))
for i in range(3):
    try:
        ray.get(boom.remote(i))
    except ValueError:
        pass
counter = Counter.remote()
assert ray.get([counter.add.remote(1) for _ in range(40)])[-1] == 40
time.sleep(2.2)                               # the store's 1 s sample sees the 20 MB
del big
time.sleep(1.5)                               # ... and sees them go
on_demand = report(os.path.join(os.environ["OUT"], "on-demand.html"))
from_task = ray.get(report_from_a_task.remote(os.environ["OUT"]))   # a directory: report.html in it
counters = [e for e in ray.timeline() if e["ph"] == "C"]
ray.shutdown()
print(json.dumps({"on_demand": on_demand, "from_task": from_task, "job_dir": job_results_dir(),
                  "peak": max(e["args"]["used_bytes"] for e in counters)}))

# A report that cannot be written is a warning; the shutdown goes on.
os.environ["MPIRT_RESULTS_DIR"] = "/dev/null/cannot-be-a-directory"
ray.init(num_cpus=1)
ray.get(square.remote(2))
ray.shutdown()
# MPIRT_REPORT=0: none at all.
os.environ["MPIRT_RESULTS_DIR"] = os.path.join(os.environ["OUT"], "off")
os.environ["MPIRT_REPORT"] = "0"
ray.init(num_cpus=1)
ray.get(square.remote(3))
ray.shutdown()
print("second and third sessions done", file=sys.stderr)
"""


@pytest.mark.parametrize("slots", ["thread", "process"])
def test_a_real_job_report_renders_in_headless_chromium(tmp_path, slots):
    """``slots``: tasks on their rank's threads, or in slot processes (``report()`` in a task is forwarded)."""
    browser = _chromium()
    out = tmp_path / "out"
    out.mkdir()
    env = {"MPIRT_RESULTS_DIR": str(tmp_path / "results"), "OUT": str(out), "MPIRT_TASK_SLOTS": slots}
    proc = run_app(tmp_path, JOB, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    at_shutdown = os.path.join(found["job_dir"], "report.html")
    assert found["job_dir"].startswith(str(tmp_path / "results" / "job-"))
    assert f"mpirt: job report: {at_shutdown}" in proc.stderr
    assert found["from_task"] == str(out / "report.html")
    assert found["peak"] >= 20_000_000            # the store counter, also in timeline()
    # The second session could not write: a warning naming the path, and it shut down all the same.
    assert "the job report could not be written to /dev/null/cannot-be-a-directory" in proc.stderr
    assert "second and third sessions done" in proc.stderr
    assert not os.path.exists(out / "off")
    for path in (at_shutdown, found["on_demand"], found["from_task"]):
        assert os.path.getsize(path) < 100_000
    page = _load(browser, at_shutdown, tmp_path / "profile")
    assert page["title"] == "mpirt job report"
    plots = {plot["id"]: plot for plot in page["plots"]}
    assert set(plots) == {"tasks-per-second", "busy-per-rank", "store-use", "slowest-functions", "failures"}
    rate = plots["tasks-per-second"]
    assert rate["width"] > 300 and rate["height"] > 50
    assert rate["labels"][:2] == ["all", "square"] and "Counter.add (actor)" in rate["labels"]
    assert all(n > 1 for n in rate["lines"]) and max(rate["spread"]) > 10     # lines with their ups and downs
    busy = plots["busy-per-rank"]
    assert len(busy["bars"]) == 2 and max(busy["bars"]) > 1
    store = plots["store-use"]
    assert store["lines"][0] > 1 and store["spread"][0] > 10 and "MB" in store["text"]
    slowest = plots["slowest-functions"]
    assert slowest["rows"] >= 4 and slowest["text"].index("square") < slowest["text"].index("Counter.add")
    failed = plots["failures"]
    assert "ValueError" in failed["text"] and "bad value 2" in failed["text"] and "boom" in failed["text"]
    assert page["errors"] == [], page["errors"]
    assert page["requests"] == [f"file://{at_shutdown}"], page["requests"]


# -- the browser ----------------------------------------------------------------------------------
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is not installed (.ci/chromium-up.sh installs the Debian package as root)")


PLOTS_JS = """JSON.stringify({title: document.title, plots: [...document.querySelectorAll('figure.plot')].map(f => {
  const svg = f.querySelector('svg'), box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const lines = [...f.querySelectorAll('polyline')];
  const ys = p => [...p.points].map(q => q.y);
  return {id: f.id, width: box.width, height: box.height, text: f.innerText,
          labels: lines.map(p => p.dataset.label), lines: lines.map(p => p.points.numberOfItems),
          spread: lines.map(p => Math.max(...ys(p)) - Math.min(...ys(p))),
          bars: [...f.querySelectorAll('rect.bar')].map(b => b.getBoundingClientRect().width),
          rows: f.querySelectorAll('tbody tr').length};
})})"""


def _load(browser, path, profile):
    """Open ``path`` in headless Chromium driven over the DevTools protocol on a pipe (no port): the plots
    as the browser laid them out, console errors and exceptions, and every URL the page asked for."""
    with _DevTools(browser, profile) as tools:
        session = tools.attach_page()
        for domain in ("Runtime", "Log", "Network", "Page"):
            tools.call(f"{domain}.enable", session=session)
        tools.call("Page.navigate", {"url": f"file://{path}"}, session=session)
        tools.wait_for("Page.loadEventFired", session)
        value = tools.call("Runtime.evaluate", {"expression": PLOTS_JS, "returnByValue": True},
                           session=session)["result"]["value"]
        page = json.loads(value)
        page["errors"] = tools.errors()
        page["requests"] = tools.requests()
        return page


class _DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe``: JSON messages ending in a NUL byte,
    commands on the browser's fd 3, answers and events from its fd 4."""

    TIMEOUT = 60.0

    def __init__(self, browser, profile):
        self.browser, self.profile = browser, profile
        self.events, self.buffer, self.next_id = [], b"", 0

    def __enter__(self):
        to_browser, self.commands = os.pipe()
        self.answers, from_browser = os.pipe()
        command = [self.browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                   "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"]
        # The protocol wants fds 3 and 4 exactly: bash puts the pipe ends there before it execs (dash takes
        # only one-digit fds).
        self.log = open(self.profile.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$@" 3<&{to_browser} 4>&{from_browser}', "bash", *command],
                                     pass_fds=(to_browser, from_browser), stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        os.close(to_browser)
        os.close(from_browser)
        return self

    def __exit__(self, *exc_info):
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=10)
        except Exception:  # noqa: B902 - whatever happened, the browser goes
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)   # its own session: the browser and its helpers
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
        os.close(self.commands)
        os.close(self.answers)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        answer = self._next(lambda m: m.get("id") == message["id"])
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def attach_page(self):
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        return self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]

    def wait_for(self, method, session):
        self._next(lambda m: m.get("method") == method and m.get("sessionId") == session)

    def _next(self, wanted):
        for message in self.events:
            if wanted(message):
                return message
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            while b"\0" not in self.buffer:
                ready, _, _ = select.select([self.answers], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise TimeoutError(f"Chromium did not answer in {self.TIMEOUT} s; its output:\n{self._output()}")
                chunk = os.read(self.answers, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"Chromium closed its DevTools pipe; its output:\n{self._output()}")
                self.buffer += chunk
            raw, _, self.buffer = self.buffer.partition(b"\0")
            message = json.loads(raw)
            if wanted(message):
                return message
            self.events.append(message)

    def _output(self):
        self.log.flush()
        return (self.profile.parent / "chromium.log").read_text(errors="replace")[-3000:]

    def errors(self):
        found = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                found.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                found.append(params["entry"].get("text"))
        return found

    def requests(self):
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]


# -- the arithmetic, on made-up events ---------------------------------------------------------------
def _call(name, start, seconds, category="task", **args):
    return (category, name, start, start + seconds, 1, {"failed": False, **args})


def test_busy_seconds_counts_overlaps_once():
    assert job_report.busy_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    assert job_report.busy_seconds([]) == 0.0


def test_throughput_keeps_the_most_frequent_functions_apart_and_sums_the_rest():
    events = [_call(f"f{k}", 100.0 + i * 0.01, 0.001) for k in range(9) for i in range(10 * (k + 1))]
    lines, width = job_report.throughput(job_report.calls_of({2: events}), 100.0, 110.0)
    labels = [label for label, _ in lines]
    assert labels == ["all", "f8", "f7", "f6", "f5", "f4", "other"]
    assert width == 0.1 and all(len(points) <= job_report.MAX_BUCKETS + 1 for _, points in lines)
    assert sum(rate * width for _, rate in lines[0][1]) == pytest.approx(450)   # every call, once


def test_store_use_sums_the_ranks_of_a_node_and_keeps_each_buckets_peak():
    counter = tracing.COUNTER
    by_rank = {2: [(counter, "object store", 10.0, 10.0, 0, {"used_bytes": 100}),
                   (counter, "object store", 10.25, 10.25, 0, {"used_bytes": 0})],
               3: [(counter, "object store", 10.05, 10.05, 0, {"used_bytes": 50})],
               4: [(counter, "object store", 12.05, 12.05, 0, {"used_bytes": 7})]}
    by_node, width = job_report.store_use_by_node(by_rank, [0, 0, 2, 2, 4], 10.0, 20.0)
    assert width == 0.1
    # Node 2: 100 + 50 within the first bucket, held through the third (its peak), then rank 2's 0.
    assert [value for _, value in by_node[2][:4]] == [150, 150, 150, 50] and by_node[2][-1][1] == 50
    assert by_node[4][19][1] == 0 and by_node[4][20][1] == 7


def test_function_stats_and_failures():
    events = [_call("slow", i, 1.0 + i) for i in range(10)] + [_call("fast", 0, 0.001)]
    events += [_call("bad", 50 + i, 0.1, failed=True, error="ValueError", message=f"no {i}") for i in range(12)]
    events += [_call("A.m", 70, 0.2, category="actor", failed=True, error="KeyError", message="k")]
    calls = job_report.calls_of({2: events})
    rows = job_report.function_stats(calls)
    assert [row[0] for row in rows] == ["slow", "A.m (actor)", "bad", "fast"]
    label, count, mean, p50, p95, biggest, total = rows[0]
    assert (count, mean, p50, p95, biggest, total) == (10, 5.5, 5.0, 10.0, 10.0, 55.0)
    counts, recent = job_report.failures(calls)
    assert counts == {("bad", "ValueError"): 12, ("A.m (actor)", "KeyError"): 1}
    assert len(recent) == job_report.RECENT_FAILURES and recent[0][2] == "A.m"


def test_a_long_busy_job_makes_a_small_report():
    """A day of work on 16 ranks: 400,000 calls of 40 functions, store samples every minute; the file stays
    small and is made in seconds."""
    per_rank = tracing.MAX_EVENTS_PER_RANK // 8
    by_rank = {}
    for rank in range(2, 18):
        events = [_call(f"function_{i % 40}", i * 86400 / per_rank, 0.5, failed=i % 997 == 0, error="OSError",
                        message="x" * 300) for i in range(per_rank)]
        events += [(tracing.COUNTER, "object store", t * 60.0, t * 60.0, 0, {"used_bytes": t * 1000})
                   for t in range(1440)]
        by_rank[rank] = events
    facts = job_report.JobFacts(node_of=[0, 0] + [2 + 4 * ((r - 2) // 4) for r in range(2, 18)],
                                hosts={}, workers=16, capacity=1 << 30)
    started = time.monotonic()
    html = job_report.render(facts, by_rank, [20], 86400.0)
    assert time.monotonic() - started < 30
    assert len(html) < 150_000
    assert "Rank 20 did not answer" in html and "function_0" in html and "The 20 slowest by mean of 40" in html


def test_report_path_checks():
    with pytest.raises(TypeError, match=r"report\(path=...\) must be a file or directory path .* got 3 \(int\)"):
        job_report.report(3)
    with pytest.raises(ValueError, match=r"report\(path=''\) names no file"):
        job_report.report("")


def test_report_is_on_unless_turned_off():
    assert job_report.enabled({}) and job_report.enabled({"MPIRT_REPORT": "1"})
    assert not any(job_report.enabled({"MPIRT_REPORT": value}) for value in ("0", "false", "OFF", " no "))


def test_job_results_dir():
    in_slurm = {"SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": "/scratch/me"}
    assert slurm.job_results_dir(in_slurm) == "/scratch/me/mpirt_results/job-4242"
    assert slurm.job_results_dir({"MPIRT_RESULTS_DIR": "/r", **in_slurm}) == "/r/job-4242"
    name = os.path.basename(slurm.job_results_dir({"MPIRT_RESULTS_DIR": "/r"}))
    assert name.startswith("job-") and name.endswith(f"-{os.getpid()}") and len(name) == len("job-20260101-000000-") \
        + len(str(os.getpid()))
    assert slurm.job_results_dir({"MPIRT_RESULTS_DIR": "/r"}) == slurm.job_results_dir({"MPIRT_RESULTS_DIR": "/r"})
    started = time.mktime(time.strptime(name[4:19], "%Y%m%d-%H%M%S"))
    assert started <= time.time() + 1
