"""Progress bars (``mpirt.experimental.tqdm_ray``): made in tasks, actors, task slots and on the driver, drawn
by the driver one line each, never cut by forwarded prints or the driver's own; plain lines when stdout is no
terminal, a bar region redrawn in place when it is one (checked on a real pseudo-terminal)."""
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid

import pytest

from conftest import BASE_ENVIRON, MPIRUN_ENV, REPO, _wait_for_no_leftovers, run_app
from mpirt.core import progress
from mpirt.experimental import tqdm_ray
from mpirt.experimental.tqdm_ray import tqdm

# -- without MPI -------------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def screen(raw):
    """The lines a terminal shows after ``raw``: the control codes the display writes (cursor up, erase
    below, carriage return); any other code fails the test."""
    lines, row, col = [""], 0, 0
    i = 0
    while i < len(raw):
        code = re.match(r"\x1b\[(\d*)([A-Za-z])", raw[i:])
        if code:
            count = int(code.group(1) or 1)
            if code.group(2) == "A":
                row = max(row - count, 0)
            elif code.group(2) == "J":
                lines[row] = lines[row][:col]
                del lines[row + 1:]
            else:
                raise AssertionError(f"unexpected control code {code.group(0)!r}")
            i += code.end()
            continue
        char = raw[i]
        i += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
            lines.extend([""] * (row + 1 - len(lines)))
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + char + line[col + 1:]
            col += 1
    return [line for line in lines if line]


def test_format_bar_with_and_without_total():
    state = {"id": "a", "desc": "load", "n": 30, "total": 120, "unit": "it", "elapsed": 3.0}
    assert progress.format_bar("(f rank=2 pid=9) ", state) == \
        "(f rank=2 pid=9) load:  25% 30/120 [00:03<00:09, 10.00it/s]"
    line = progress.format_bar("", state, width=60)
    assert len(line) < 60 and "|" in line and line.startswith("load:  25%|")
    assert progress.format_bar("", {"n": 5, "unit": "B", "elapsed": 0.5}) == "5B [00:00, 10.00B/s]"


def test_bad_arguments_name_the_argument_and_value():
    with pytest.raises(ValueError, match=r"total=-3 .*>= 0"):
        tqdm(total=-3)
    with pytest.raises(ValueError, match=r"position='top'"):
        tqdm(position="top")
    with pytest.raises(ValueError, match=r"flush_interval_s=nan"):
        tqdm(flush_interval_s=float("nan"))
    with pytest.raises(TypeError, match=r"desc=3 is not a str"):
        tqdm(desc=3)
    bar = tqdm(total=2, desc="bad")
    with pytest.raises(TypeError, match=r"n='x'"):
        bar.update("x")
    with pytest.raises(TypeError, match=r"without an iterable"):
        iter(bar).__next__()
    bar.close()


def test_ray_api_names():
    bar = tqdm(range(4), desc="api", unit="step", position=0, flush_interval_s=0.5)
    assert (bar.total, bar.n, bar.desc, bar.unit) == (4, 0, "api", "step")
    assert list(bar) == [0, 1, 2, 3] and bar.n == 4
    bar.set_description("renamed")
    bar.refresh()
    bar.close()
    bar.close()                    # a second close does nothing
    assert tqdm.DEFAULT_FLUSH_INTERVAL_SECONDS == 1.0
    assert callable(tqdm_ray.safe_print)


def test_plain_output_one_final_line_per_bar(monkeypatch, capsys):
    """Not a terminal: no control codes, and a short bar prints its final line only."""
    with tqdm(total=3, desc="plain") as bar:
        for _ in range(3):
            bar.update(1)
        tqdm_ray.safe_print("between")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0] == "between"
    assert re.match(r"^plain: 100% 3/3 \[00:00<00:00, \S+it/s\]$", lines[1]), lines


def test_terminal_region_is_redrawn_around_printed_lines(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(progress, "PATCH_PRINT", False)
    display = progress.Display()
    display.apply((2, "a"), "(f rank=2 pid=1) ", {"id": "a", "desc": "one", "n": 1, "total": 4, "elapsed": 1.0})
    display.apply((3, "b"), "(g rank=3 pid=2) ", {"id": "b", "desc": "two", "n": 0, "total": 2, "elapsed": 1.0})
    display.write(terminal, "(h rank=2 pid=1) a printed line\n")
    display.apply((2, "a"), "", {"id": "a", "n": 4, "elapsed": 2.0, "closed": True})
    display.apply((2, "a"), "", {"id": "a", "n": 1, "elapsed": 3.0})      # late: ignored
    shown = screen(terminal.getvalue())
    assert shown[0] == "(h rank=2 pid=1) a printed line"
    assert shown[1].startswith("(f rank=2 pid=1) one: 100%|") and shown[1].endswith(" 4/4 [00:02<00:00, 2.00it/s]")
    assert len(shown) == 3 and shown[2].startswith("(g rank=3 pid=2) two:   0%|")
    display.finish()
    assert screen(terminal.getvalue())[2].startswith("(g rank=3 pid=2) two:")
    assert not display.drawn


# -- real jobs ---------------------------------------------------------------------------------

APP = """
import time
import mpirt as ray
from mpirt.experimental.tqdm_ray import tqdm
ray.init(num_cpus=2)

@ray.remote
def work(i):
    bar = tqdm(total=40, desc=f"task{i}", flush_interval_s=0.02)
    for k in range(40):
        bar.update(1)
        if k % 8 == 0:
            print(f"print from task {i} step {k}")
        time.sleep(0.01)
    bar.close()
    return i

@ray.remote(max_retries=0)
def forgets(i):
    bar = tqdm(range(20), desc=f"forgotten{i}")
    for _ in range(7):
        bar.update(1)
    globals().setdefault("kept", []).append(bar)      # never closed: it closes when the task ends
    return i

@ray.remote
class Counter:
    def __init__(self):
        self.bar = tqdm(total=5, desc="actor")
    def step(self):
        self.bar.update(1)
        print("actor step")
        return self.bar.n

print("driver start")
assert ray.get([work.remote(i) for i in range(3)]) == [0, 1, 2]
assert ray.get([forgets.remote(i) for i in range(2)]) == [0, 1]
counter = Counter.remote()
assert ray.get([counter.step.remote() for _ in range(5)]) == [1, 2, 3, 4, 5]
ray.kill(counter)
with tqdm(total=3, desc="driverbar", flush_interval_s=0) as bar:
    for _ in range(3):
        bar.update(1)
        print("driver print")
        time.sleep(0.05)
time.sleep(0.5)
ray.shutdown()
"""

PRINT_LINE = re.compile(r"^\((work rank=\d+ pid=\d+\) print from task \d step \d+|Counter.step rank=\d+ pid=\d+\) "
                        r"actor step)$")


def _check_bars(lines):
    """Every bar has exactly one final line with its counts; printed lines are whole."""
    def final(desc):
        found = [line for line in lines if re.search(rf"\b{desc}: ", line)]
        assert len(found) == 1, (desc, found)
        return found[0]

    for i in range(3):
        assert re.match(rf"^\(work rank=\d+ pid=\d+\) task{i}: 100%.* 40/40 \[", final(f"task{i}"))
    for i in range(2):
        assert re.match(rf"^\(forgets rank=\d+ pid=\d+\) forgotten{i}:  35%.* 7/20 \[", final(f"forgotten{i}"))
    assert re.match(r"^\(Counter.__init__ rank=\d+ pid=\d+\) actor: 100%.* 5/5 \[", final("actor"))
    assert re.match(r"^driverbar: 100%.* 3/3 \[", final("driverbar"))
    printed = [line for line in lines if "print from" in line or "actor step" in line]
    assert len(printed) == 3 * 5 + 5
    assert all(PRINT_LINE.match(line) for line in printed), printed
    assert lines.count("driver print") == 3


@pytest.mark.timeout(200)
@pytest.mark.parametrize("slots", ["thread", "process"])
def test_bars_from_tasks_and_actors_in_a_log(tmp_path, slots):
    proc = run_app(tmp_path, APP, timeout=150, env={"MPIRT_TASK_SLOTS": slots})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    _check_bars(proc.stdout.splitlines())


def _run_on_terminal(tmp_path, source, timeout, rows=40, columns=160):
    """Run ``source`` with its stdout and stderr on a new pseudo-terminal; everything it wrote there."""
    script = tmp_path / "app_tty.py"
    script.write_text(source)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    marker = uuid.uuid4().hex
    env = {**BASE_ENVIRON, **MPIRUN_ENV, "PYTHONPATH": REPO, "MPIRT_TEST_MARKER": marker}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    proc = subprocess.Popen([sys.executable, str(script)], stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=str(tmp_path), start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:       # the terminal's last writer is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            os.killpg(proc.pid, 9)
            pytest.fail(f"timed out after {timeout} s:\n{b''.join(chunks).decode(errors='replace')}")
        returncode = proc.wait(timeout=30)
    finally:
        os.close(master)
        assert not _wait_for_no_leftovers(marker), "processes left behind"
    return returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.timeout(200)
def test_bars_on_a_terminal_are_redrawn_in_place(tmp_path):
    returncode, raw = _run_on_terminal(tmp_path, APP, timeout=150)
    assert returncode == 0, raw
    assert "\x1b[J" in raw                   # the bars were drawn as a region and redrawn
    shown = screen(raw.replace("\r\n", "\n"))
    _check_bars([line for line in shown if not line.startswith("mpirt:")])


DYING_APP = """
import os, time
import mpirt as ray
from mpirt.experimental.tqdm_ray import tqdm
ray.init(num_cpus=2)

@ray.remote(max_retries=0)
def dies():
    bar = tqdm(total=10, desc="doomed")
    bar.update(4)
    bar.refresh()
    time.sleep(0.5)
    os._exit(1)

try:
    ray.get(dies.remote())
except ray.exceptions.WorkerCrashedError:
    print("crashed")
time.sleep(0.5)
ray.shutdown()
"""


@pytest.mark.timeout(200)
def test_bars_of_a_dead_rank_close_where_they_were(tmp_path):
    proc = run_app(tmp_path, DYING_APP, timeout=150, env={"MPIRT_TASK_SLOTS": "thread"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "crashed" in lines
    doomed = [line for line in lines if "doomed" in line]
    assert len(doomed) == 1, doomed
    assert re.match(r"^\(dies rank=\d+ pid=\d+\) \[rank \d+ died\] doomed:  40% 4/10 \[", doomed[0]), doomed


QUIET_APP = """
import mpirt as ray
from mpirt.experimental.tqdm_ray import tqdm
ray.init(num_cpus=2, log_to_driver=False)

@ray.remote
def work(i):
    bar = tqdm(total=10, desc=f"quiet{i}", flush_interval_s=0)
    for _ in range(10):
        bar.update(1)
    bar.close()
    return i

assert ray.get([work.remote(i) for i in range(2)]) == [0, 1]
print("done")
ray.shutdown()
"""


@pytest.mark.timeout(200)
@pytest.mark.parametrize("slots", ["thread", "process"])
def test_bars_without_log_to_driver_never_print_their_raw_state(tmp_path, slots):
    """log_to_driver=False: nothing reaches the driver; a bar is drawn where it runs, as a plain final line,
    never as the marked line that carries its state."""
    proc = run_app(tmp_path, QUIET_APP, timeout=150, env={"MPIRT_TASK_SLOTS": slots})
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "__mpirt_progress__" not in output, output
    assert "done" in proc.stdout
    assert all(re.search(rf"quiet{i}: 100%.* 10/10", output) for i in range(2)), output
