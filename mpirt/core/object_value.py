"""An object's value as one rank's object table holds it, and what callers ask of it.

A value is one of three kinds:

- **inline**: the value's pickle, a bytes-like object that travels inside messages (small values,
  errors: most task results);
- **stored**: a ``StoreLocation`` (``store/manager.py``), where the holder wrote the pickle into its
  node's shared pool or a spill file;
- **on a device**: a ``DeviceObject`` (``store/device.py``), the GPU arrays sealed on their holder
  plus an inline or stored pickle that names them.

Which kind a value becomes is the codec's choice (``codec.encode``). Callers ask through the
functions below (size, decode, release, lost with a rank, where a reader is best placed), never by
testing the kind themselves; the two out-of-band kinds implement ``ObjectValue``.

Inline values stay bare bytes, tagged by *not* being an ``ObjectValue``: they are the hot path, and
a wrapper would cost each one an allocation where it is made or received, or, if it travelled, a
pickled class reference in every message (measured on the 2-core VM: pickling a ``done`` message
with a ``__slots__`` wrapper took ~4.0 us against ~0.7 us with bare bytes, unpickling ~3.1 us
against ~0.5 us, 72 bytes against 46; the dispatch below costs ~0.06 us over a bare ``loads``).
"""
from pickle import loads
from typing import Any, Callable, Optional, Tuple, Union


class ObjectValue:
    """The out-of-band kinds of a value (stored, on a device). ``store`` below is the rank's
    ``StoreManager``; nothing here imports it, so the store's modules can implement this."""

    __slots__ = ()

    def total_size(self) -> int:
        """Bytes the value takes where it is held (store bytes, device bytes)."""
        raise NotImplementedError

    def decode(self, store: Any, object_id: int) -> Any:
        """The Python value (reads the store or the device as needed)."""
        raise NotImplementedError

    def release(self, store: Any, object_id: int) -> None:
        """Owner: nothing can reach the object any more; free what holds its value."""
        raise NotImplementedError

    def discard(self, store: Any) -> None:
        """Free what ``codec.encode`` stored on this rank for a value never published."""
        raise NotImplementedError

    def lost_with(self, rank: int, same_node: Callable[[int], bool]) -> bool:
        """Whether the value died with ``rank`` (``same_node(rank)``: that rank shared this node)."""
        raise NotImplementedError

    def placement(self) -> Optional[Tuple[int, int]]:
        """(rank, bytes) where a task reading the value saves the most copying, or None."""
        raise NotImplementedError


# What the table holds: an inline pickle (bytes, or a bytes-like slice of a received buffer) or an
# out-of-band kind.
Value = Union[bytes, memoryview, ObjectValue]


def is_inline(value: Value) -> bool:
    """Whether ``value`` is an inline pickle (it cannot be lost with a rank, and needs no freeing)."""
    return not isinstance(value, ObjectValue)


def size(value: Value) -> int:
    return value.total_size() if isinstance(value, ObjectValue) else len(value)


def decode(value: Value, store: Any, object_id: int) -> Any:
    return value.decode(store, object_id) if isinstance(value, ObjectValue) else loads(value)


def release(value: Value, store: Any, object_id: int) -> None:
    if isinstance(value, ObjectValue):
        value.release(store, object_id)


def discard(value: Value, store: Any) -> None:
    if isinstance(value, ObjectValue):
        value.discard(store)


def lost_with(value: Value, rank: int, same_node: Callable[[int], bool]) -> bool:
    """Whether ``value`` lived only on ``rank``, which died: sealed GPU arrays die with their
    process, store bytes only with their node (the segment is shared)."""
    return isinstance(value, ObjectValue) and value.lost_with(rank, same_node)


def placement(value: Optional[Value]) -> Optional[Tuple[int, int]]:
    return value.placement() if isinstance(value, ObjectValue) else None
