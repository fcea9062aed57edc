"""Worker output reaches the driver: stdout/stderr lines travel as messages.

On non-driver ranks ``sys.stdout``/``sys.stderr`` are replaced by streams that collect text per thread and
send complete lines to the driver, which prints them prefixed with the task and the rank they came from,
e.g. ``(square rank=3 pid=4711) hello``.

Progress bars (``mpirt.experimental.tqdm_ray``) made anywhere but on the driver travel the same way: a bar
writes its state as one line, ``PROGRESS_MARK`` and JSON, to ``sys.stdout``, so it takes every path output
takes (a task slot's output reaches its rank as text). The rank's forwarding stream sends such lines as
``log`` messages of the stream ``"progress"``. A bar left open is closed when the task that made it ends or
its actor dies (``call_ended``): the process that holds the bar closes it itself (``bar_opened``: its last
counts go out), and the rank closes what it saw of bars whose process is gone (a task slot that died). On
the driver, ``print_forwarded`` hands states to ``progress.display`` and prints every other line through it,
so forwarded lines and bars never cut through each other.
"""
import io
import json
import os
import sys
import threading

from . import progress
from .call_context import running_actor_call, task_context
from .protocol import DRIVER_RANK

PROGRESS_MARK = "\x1f__mpirt_progress__"
_streams: list = []
_runtime = None
# Bars opened and not closed, by what opened them: ("task", thread id) or ("actor", actor id) -> {bar id: its
# close() where the bar lives in this process, else the prefix its lines came with from a task slot}.
open_bars: dict = {}


class TextSink(io.TextIOBase):
    """A text stream that is not a terminal and takes only str: what stands in for
    ``sys.stdout``/``sys.stderr`` where output goes elsewhere."""

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    @staticmethod
    def check(text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")


class ForwardingStream(TextSink):
    def __init__(self, runtime, name, role):
        self._rt = runtime
        self._name = name
        self._role = role
        self._buffers = {}  # thread id -> [prefix, text]
        self._lock = threading.Lock()

    def write(self, text):
        self.check(text)
        ident = threading.get_ident()
        with self._lock:
            buffer = self._buffers.get(ident)
            if buffer is None:
                buffer = self._buffers[ident] = [task_context.label or self._role, ""]
            buffer[1] += text
            if "\n" in text:
                complete, _, rest = buffer[1].rpartition("\n")
                buffer[1] = rest
                self._send(buffer[0], complete)
                if not rest:
                    del self._buffers[ident]
        return len(text)

    def flush(self):
        with self._lock:
            buffers, self._buffers = self._buffers, {}
        for prefix, text in buffers.values():
            if text:
                self._send(prefix, text)

    def _send(self, prefix, text):
        if PROGRESS_MARK in text:
            text = _send_progress(self._rt, prefix, text)
            if text is None:
                return
        self._rt.send(DRIVER_RANK, ("log", self._name, prefix, os.getpid(), text))


def _split_progress(text, on_state):
    """``on_state(state)`` for each bar state among the lines of ``text``; the other lines, or None."""
    lines = []
    for line in text.split("\n"):
        before, mark, state = line.partition(PROGRESS_MARK)
        if not mark:
            lines.append(line)
            continue
        if before:          # a line printed without its newline before the state came
            lines.append(before)
        on_state(state)
    return "\n".join(lines) if lines else None


def _send_progress(rt, prefix, text):
    """Send the bar states among the lines of ``text`` as ``progress`` messages; the other lines, or None."""
    def send(state):
        _note_owner(prefix, state)
        rt.send(DRIVER_RANK, ("log", "progress", prefix, os.getpid(), state))
    return _split_progress(text, send)


def _owner():
    """What runs on this thread: ``("actor", actor id)`` or ``("task", thread id)``."""
    actor, _ = running_actor_call()
    return ("actor", actor.actor_id) if actor is not None else ("task", threading.get_ident())


def _note_owner(prefix, text):
    """Rank: remember which task or actor keeps a bar open, to close it when that ends."""
    try:
        state = json.loads(text)
        bar_id = state["id"]
    except (ValueError, TypeError, KeyError):
        return
    if task_context.task is None and running_actor_call()[0] is None:
        return
    owner = _owner()
    if state.get("closed"):
        bar_closed(owner, bar_id)
    else:
        open_bars.setdefault(owner, {}).setdefault(bar_id, prefix)


def bar_opened(bar_id, close):
    """A bar made here, outside the driver: ``close()`` ends it when its task or actor ends. Its owner."""
    owner = _owner()
    open_bars.setdefault(owner, {})[bar_id] = close
    return owner


def bar_closed(owner, bar_id):
    bars = open_bars.get(owner)
    if bars is not None:
        bars.pop(bar_id, None)
        if not bars:
            open_bars.pop(owner, None)


def call_ended(owner=None):
    """A task ended on this thread (``owner`` None), or the actor ``("actor", actor id)`` died: the bars it left
    open are closed on the driver. Callers check ``open_bars`` first: this costs nothing when no bar is open."""
    bars = open_bars.pop(("task", threading.get_ident()) if owner is None else owner, None)
    for bar_id, close in (bars or {}).items():
        if callable(close):
            close()
        elif _runtime is not None:
            closed = json.dumps({"id": bar_id, "closed": True})
            _runtime.send(DRIVER_RANK, ("log", "progress", close, os.getpid(), closed))


def forwards_output() -> bool:
    """Whether this process's output goes to the driver (a worker rank, a task slot), where bars go too."""
    return isinstance(sys.stdout, TextSink)


def write_slot_output(stream_name: str, text: str) -> None:
    """A task slot's output, on its rank: written to the rank's stream, which forwards it to the driver.
    Where nothing forwards (``init(log_to_driver=False)``) a bar's state line is drawn on this rank's
    terminal as a bar made here would be, instead of being printed as its raw marked line."""
    stream = sys.stdout if stream_name == "stdout" else sys.stderr
    if PROGRESS_MARK in text and not forwards_output():
        text = _split_progress(text, _draw_here)
        if text is None or not text.strip("\n"):
            return
    stream.write(text)


def _draw_here(state):
    try:
        bar = json.loads(state)
        progress.display.apply((os.getpid(), bar["id"]), "", bar)
    except (ValueError, TypeError, KeyError):
        pass


def progress_line(state) -> str:
    """A bar's state as the line a forwarding stream recognises."""
    return PROGRESS_MARK + json.dumps(state) + "\n"


def install(runtime, role):
    """Replace this rank's stdout/stderr (non-driver ranks only)."""
    global _runtime
    _runtime = runtime
    for name in ("stdout", "stderr"):
        stream = ForwardingStream(runtime, name, role)
        _streams.append(stream)
        setattr(sys, name, stream)


def flush():
    for stream in _streams:
        stream.flush()


def print_forwarded(source, stream_name, prefix, pid, text):
    """Driver side of a ``log`` message: lines printed around the bars, or a bar's state."""
    tag = f"({prefix} rank={source} pid={pid}) "
    if stream_name == "progress":
        try:
            state = json.loads(text)
            progress.display.apply((source, state["id"]), tag, state)
            return
        except (ValueError, TypeError, KeyError):
            stream_name = "stdout"     # not a state after all: show it as it came
    out = sys.stdout if stream_name == "stdout" else sys.stderr
    progress.display.write(out, "".join(tag + line + "\n" for line in text.split("\n")))


def rank_died(rank):
    """Driver: the bars of a dead rank stop where they were."""
    progress.display.close_where(lambda key: key[0] == rank, f"[rank {rank} died] ")


def finish():
    """Driver, at shutdown: every bar still open closes with its last state."""
    progress.display.finish()
