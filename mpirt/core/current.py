"""The Runtime this process runs: set by ``launch`` when mpirt starts, cleared at shutdown.

A leaf, so every layer can reach the running Runtime without importing the layers above it.
``runtime_for_call`` starts a default session on the first API call made without ``init()`` (as Ray does);
the starter is ``launch.init``, which registers itself here when imported, so this never imports ``launch``.
"""
from typing import Any, Callable, Optional

_runtime: Any = None      # a core.runtime.Runtime: typed Any so this leaf imports nothing
_start_default: Optional[Callable[[], Any]] = None


def runtime() -> Any:
    """The running Runtime, or None before ``init()`` and after ``shutdown()``."""
    return _runtime


def is_initialized() -> bool:
    """Whether mpirt runs in this process (Ray's ``is_initialized``)."""
    return _runtime is not None


def runtime_for_call() -> Any:
    """The running Runtime; the first API call without ``init()`` starts a default one."""
    rt = _runtime
    if rt is None:
        assert _start_default is not None, "mpirt.launch registers the default starter when imported"
        _start_default()
        rt = _runtime
    return rt


def set_runtime(rt: Any) -> None:
    global _runtime
    _runtime = rt


def set_default_starter(start: Callable[[], Any]) -> None:
    """``start()`` is what ``runtime_for_call`` runs when no Runtime runs yet."""
    global _start_default
    _start_default = start
