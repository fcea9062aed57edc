"""Ray's ``ray.experimental.tqdm_ray``: progress bars made in tasks and actors, drawn by the driver.

A bar made anywhere (a task, an actor, a task slot process, the driver itself) is drawn on the driver's
stdout, one line each, and lines printed meanwhile never cut through it (``core/progress.py``). Outside the
driver a bar sends its state as one line of output (``core/log_forward.py``), so it reaches the driver the
way prints do, at most once per ``flush_interval_s`` (Ray's default, 1 s) plus once when it closes: a tight
loop of ``update(1)`` costs a clock reading and a comparison per call (~0.2 us). A bar whose task ends, or
whose actor or rank dies, is closed on the driver with its last state.

Ray's subset of tqdm's arguments: ``iterable``, ``desc``, ``total``, ``unit``, ``position``, and
``flush_interval_s``; methods ``update``, ``close``, ``refresh``, ``set_description``; iteration. Beyond
Ray's, a bar is also a context manager (closed on exit), as tqdm's are.
"""
import math
import numbers
import sys
import time
import uuid
from typing import Any, Dict, Iterable, Iterator, Optional

from ..core import log_forward, progress
from ..core.progress import safe_print
from ..core.protocol import DRIVER_RANK

__all__ = ["tqdm", "safe_print"]


def _check_count(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"tqdm(): {name}={value!r} is not a number of items: pass a finite number >= 0"
                         + (" or None" if allow_none else ""))


class tqdm:
    """A progress bar shown on the driver, whichever rank or process makes it (Ray's ``tqdm_ray.tqdm``)."""

    DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

    def __init__(self, iterable: Optional[Iterable] = None, desc: Optional[str] = None, total: Optional[int] = None,
                 unit: Optional[str] = None, position: Optional[int] = None,
                 flush_interval_s: Optional[float] = None):
        _check_count("total", total)
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise ValueError(f"tqdm(): position={position!r} is not a line number: pass an int >= 0 or None")
        if flush_interval_s is not None:
            _check_count("flush_interval_s", flush_interval_s)
        for name, value in (("desc", desc), ("unit", unit)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"tqdm(): {name}={value!r} is not a str: pass a str or None")
        if total is None and iterable is not None:
            try:
                total = len(iterable)   # type: ignore[arg-type]
            except TypeError:
                pass
        self.iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.unit = unit or "it"
        self.position = position
        self.flush_interval_s = self.DEFAULT_FLUSH_INTERVAL_SECONDS if flush_interval_s is None else flush_interval_s
        self.n: float = 0
        self._id = uuid.uuid4().hex
        self._started = time.monotonic()
        self._flushed_at = self._started
        self._closed = False
        # Outside the driver the bar closes with its task or actor if it is left open.
        self._owner = log_forward.bar_opened(self._id, self.close) if log_forward.forwards_output() else None
        self._flush()

    # -- Ray's methods ------------------------------------------------------------------------
    def update(self, n: float = 1) -> None:
        """Count ``n`` more items; the driver hears of it at most once per ``flush_interval_s``."""
        try:
            self.n += n
        except TypeError:
            raise TypeError(f"tqdm.update(): n={n!r} is not a number of items: pass an int or a float") from None
        now = time.monotonic()
        if now - self._flushed_at >= self.flush_interval_s:
            self._flush(now)

    def set_description(self, desc: str) -> None:
        """Change the text before the bar (sent with the next update, or at once if one is due)."""
        if not isinstance(desc, str):
            raise TypeError(f"tqdm.set_description(): desc={desc!r} is not a str: pass a str")
        self.desc = desc
        self.update(0)

    def refresh(self) -> None:
        """Send the bar's state to the driver now."""
        if not self._closed:
            self._flush()

    def close(self) -> None:
        """Finish the bar: the driver prints its final line (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        if self._owner is not None:
            log_forward.bar_closed(self._owner, self._id)
        self._flush(closed=True)

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("tqdm() was made without an iterable: pass iterable= to iterate over it, "
                            "or count with update()")
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "tqdm":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"tqdm(desc={self.desc!r}, n={self.n}, total={self.total})"

    # -- to the driver ------------------------------------------------------------------------
    def _state(self, now: float, closed: bool) -> Dict[str, Any]:
        state = {"id": self._id, "desc": self.desc, "n": self.n, "total": self.total, "unit": self.unit,
                 "position": self.position, "elapsed": now - self._started}
        if closed:
            state["closed"] = True
        return state

    def _flush(self, now: Optional[float] = None, closed: bool = False) -> None:
        now = time.monotonic() if now is None else now
        self._flushed_at = now
        state = self._state(now, closed)
        if log_forward.forwards_output():
            sys.stdout.write(log_forward.progress_line(state))
        else:
            progress.display.apply((DRIVER_RANK, self._id), "", state)
