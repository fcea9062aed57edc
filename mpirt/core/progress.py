"""The driver's terminal: progress bars (``mpirt.experimental.tqdm_ray``) and the lines printed around them.

The bars of every rank are drawn by the driver alone, one line each, in a region at the bottom of its stdout.
Every line the driver prints while bars are shown (forwarded worker output, ``safe_print``) goes through
``Display.write``: the region is cleared, the text written whole, the region drawn again, so a bar never
cuts a line in two. A bar that closes leaves its final line above the region. When stdout is not a terminal
(a log file, a pipe, Slurm's ``.out``) no control codes are written: a bar prints a plain line at most every
``PLAIN_INTERVAL_S`` seconds (``MPIRT_PROGRESS_INTERVAL_S``) and a final line when it closes.

A bar's state is a dict: ``id``, ``desc``, ``n``, ``total``, ``unit``, ``elapsed`` (seconds since it was made,
measured where it runs, so clocks of other nodes do not matter), ``position``, and ``closed`` once done.
"""
import builtins
import collections
import io
import itertools
import math
import os
import shutil
import sys
import threading
import time
from typing import Any, Dict, Hashable, Optional

PLAIN_INTERVAL_S = float(os.environ.get("MPIRT_PROGRESS_INTERVAL_S", "10"))
# Ray's RAY_TQDM_PATCH_PRINT: "0" leaves the builtin print alone while bars are drawn.
PATCH_PRINT = os.environ.get("MPIRT_TQDM_PATCH_PRINT", os.environ.get("RAY_TQDM_PATCH_PRINT", "1")) != "0"
_builtin_print = builtins.print
_REMEMBERED_CLOSED = 4096     # closed bars whose late updates are ignored
_CLEAR_REGION = "\x1b[{}A\r\x1b[J"   # cursor up over the region, to column 0, erase to the end of the screen


class _Bar:
    __slots__ = ("label", "state", "order", "printed_at")

    def __init__(self, label, order):
        self.label = label
        self.state: Dict[str, Any] = {}
        self.order = order
        self.printed_at = time.monotonic()    # plain mode: the first line waits one interval

    def sort_key(self, key):
        position = self.state.get("position")
        return (key[0] if isinstance(key, tuple) else 0, math.inf if position is None else position, self.order)


def _number(value):
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    return str(int(value))


def _speed(rate):
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.2f}" if rate >= 1 else f"{rate:.3g}"


def _duration(seconds):
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def format_bar(label: str, state: Dict[str, Any], width: Optional[int] = None) -> str:
    """One bar as a line. With ``width`` (a terminal's columns) it has a graphic bar and fits the width;
    without, it is the plain line written to logs."""
    n, total, unit = state.get("n", 0), state.get("total"), state.get("unit") or "it"
    elapsed = state.get("elapsed", 0.0)
    desc = state.get("desc")
    head = f"{label}{desc}: " if desc else label
    rate = f"{_speed(n / elapsed)}{unit}/s" if elapsed > 0 else f"?{unit}/s"
    if not total:
        return _fit(f"{head}{_number(n)}{unit} [{_duration(elapsed)}, {rate}]", width)
    fraction = min(max(n / total, 0.0), 1.0)
    if n >= total:
        left = "00:00"
    elif n and elapsed > 0:
        left = _duration(elapsed * (total - n) / n)
    else:
        left = "?"
    tail = f" {_number(n)}/{_number(total)} [{_duration(elapsed)}<{left}, {rate}]"
    if width is None:
        return f"{head}{fraction:4.0%}{tail}"
    cells = min(40, width - len(head) - len(tail) - 7)
    if cells < 5:
        return _fit(f"{head}{fraction:4.0%}{tail}", width)
    filled = int(fraction * cells)
    return _fit(f"{head}{fraction:4.0%}|{'#' * filled}{' ' * (cells - filled)}|{tail}", width)


def _fit(line, width):
    return line if width is None or len(line) < width else line[:max(width - 1, 1)]


class Display:
    """The driver's bars and their region of the terminal. Keys: ``(rank, bar id)``; every method may be
    called from any thread (the progress thread forwards worker output, the user's thread prints)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._bars: Dict[Hashable, _Bar] = {}
        self._closed: collections.OrderedDict = collections.OrderedDict()
        self._order = itertools.count()
        self._drawn = 0          # bar lines on the terminal now, the cursor just below them
        self._drawn_on = None    # the stream they are on

    @property
    def drawn(self) -> bool:
        """Whether bars are on the terminal now (what a print would cut through)."""
        return self._drawn > 0

    def apply(self, key: Hashable, label: str, state: Dict[str, Any]) -> None:
        """A bar's new state (a close when ``state["closed"]``); updates of a closed bar are ignored."""
        with self._lock:
            if key in self._closed:
                return
            bar = self._bars.get(key)
            if bar is None:
                if state.get("closed") and set(state) <= {"id", "closed"}:
                    return     # closed before any state of it arrived: nothing to show
                bar = self._bars[key] = _Bar(label, next(self._order))
            bar.state.update(state)
            if state.get("closed"):
                self._close(key, bar)
            else:
                self._show(bar)

    def close_where(self, predicate, note: str = "") -> None:
        """Close every open bar whose key matches (a rank died: its bars stop where they were)."""
        with self._lock:
            for key in [key for key in self._bars if predicate(key)]:
                bar = self._bars[key]
                bar.label += note
                self._close(key, bar)

    def finish(self) -> None:
        """Close every open bar (the job ends): their final lines stay, the region goes."""
        self.close_where(lambda key: True)

    def write(self, stream, text: str) -> None:
        """Write whole lines to ``stream`` (stdout or stderr) without cutting through the bars."""
        with self._lock:
            self._clear()
            stream.write(text)
            stream.flush()
            self._draw()

    # -- drawing ----------------------------------------------------------------------------------
    def _close(self, key, bar):
        del self._bars[key]
        self._closed[key] = None
        if len(self._closed) > _REMEMBERED_CLOSED:
            self._closed.popitem(last=False)
        out = sys.stdout
        terminal = _is_terminal(out)
        self._clear()
        out.write(format_bar(bar.label, bar.state, _columns() if terminal else None) + "\n")
        out.flush()
        self._draw()

    def _show(self, bar):
        out = sys.stdout
        if _is_terminal(out):
            self._clear()
            self._draw()
        elif time.monotonic() - bar.printed_at >= PLAIN_INTERVAL_S:
            bar.printed_at = time.monotonic()
            out.write(format_bar(bar.label, bar.state) + "\n")
            out.flush()

    def _clear(self):
        if self._drawn:
            try:
                self._drawn_on.write(_CLEAR_REGION.format(self._drawn))
                self._drawn_on.flush()
            except (OSError, ValueError):   # the stream was closed or replaced meanwhile
                pass
            self._drawn = 0

    def _draw(self):
        out = sys.stdout
        if not self._bars or not _is_terminal(out):
            return
        columns, rows = shutil.get_terminal_size()
        bars = sorted(self._bars.items(), key=lambda item: item[1].sort_key(item[0]))
        lines = [format_bar(bar.label, bar.state, columns) for _, bar in bars]
        if len(lines) > rows - 1 > 0:
            lines = lines[:rows - 2] + [f"... and {len(lines) - rows + 2} more bars"]
        out.write("\n".join(lines) + "\n")
        out.flush()
        self._drawn, self._drawn_on = len(lines), out
        if PATCH_PRINT and builtins.print is _builtin_print:
            builtins.print = safe_print     # Ray's tqdm_ray does so too: the driver's own prints keep clear


def safe_print(*args: Any, **kwargs: Any) -> None:
    """``print`` that does not cut through the bars on the driver's terminal: they are cleared, the text
    printed, the bars drawn again. Anywhere else (no bars drawn, another file) it is ``print``."""
    file = kwargs.get("file")
    if not display.drawn or (file is not None and file is not sys.stdout and file is not sys.stderr):
        _builtin_print(*args, **kwargs)
        return
    text = io.StringIO()
    _builtin_print(*args, **{**kwargs, "file": text, "flush": False})
    display.write(file or sys.stdout, text.getvalue())


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns() -> int:
    return shutil.get_terminal_size().columns


display = Display()
