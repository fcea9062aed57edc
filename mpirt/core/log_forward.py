"""Worker output reaches the driver: stdout/stderr lines travel as messages.

On non-driver ranks ``sys.stdout``/``sys.stderr`` are replaced by streams that collect text per thread and
send complete lines to the driver, which prints them prefixed with the task and the rank they came from,
e.g. ``(square rank=3 pid=4711) hello``.
"""
import io
import os
import sys
import threading

from .call_context import task_context
from .protocol import DRIVER_RANK

_streams: list = []


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
                buffer = self._buffers[ident] = [getattr(task_context, "label", None) or self._role, ""]
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
        self._rt.send(DRIVER_RANK, ("log", self._name, prefix, os.getpid(), text))


def install(runtime, role):
    """Replace this rank's stdout/stderr (non-driver ranks only)."""
    for name in ("stdout", "stderr"):
        stream = ForwardingStream(runtime, name, role)
        _streams.append(stream)
        setattr(sys, name, stream)


def flush():
    for stream in _streams:
        stream.flush()


def print_forwarded(source, stream_name, prefix, pid, text):
    """Driver side of a ``log`` message."""
    out = sys.stdout if stream_name == "stdout" else sys.stderr
    tag = f"({prefix} rank={source} pid={pid}) "
    out.write("".join(tag + line + "\n" for line in text.split("\n")))
    out.flush()
