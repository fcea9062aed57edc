"""The encode policy: how a Python value becomes an object value (``object_value.py``).

- Up to ``INLINE_THRESHOLD`` bytes a value stays **inline**: its pickle travels inside messages. Plain small
  values (``PLAIN_TYPES``) skip cloudpickle's set-up: they are most task results.
- Larger values are **stored**: written once into the node's shared pool, out of band (numpy buffers are
  copied straight in, not through a pickle), and only a ``StoreLocation`` travels.
- GPU arrays (CuPy, torch CUDA tensors) larger than ``INLINE_THRESHOLD`` stay **on their device**, sealed by
  the rank that encodes them (``store/device.py``); smaller ones travel as host bytes. The value then is a
  ``DeviceObject`` around the inline or stored pickle that names them.

Pickling is cloudpickle, protocol 5; ``dumps``/``loads`` are the plain form for messages and errors.
"""
import io
import pickle
from typing import Any, Optional

import cloudpickle
import numpy as np

from ..store import device
from ..store.layout import Serialized
from .object_ref import pickling_context
from .object_value import Value

INLINE_THRESHOLD = 100 * 1024     # bytes: larger values (and GPU arrays) go to the store
PLAIN_TYPES = (type(None), bool, int, float, str, bytes)


def dumps(value):
    return cloudpickle.dumps(value, protocol=5)


loads = pickle.loads


def encode_plain(value: Any) -> Optional[bytes]:
    """The inline pickle of a small value of a plain type, the common task result, without
    cloudpickle's set-up; None for any other value."""
    if type(value) in PLAIN_TYPES and (not isinstance(value, (str, bytes)) or len(value) <= INLINE_THRESHOLD):
        return pickle.dumps(value, protocol=5)
    return None


def encode(value: Any, store: Any) -> Value:
    """``value`` as an object value: inline bytes if small, else stored in ``store`` (the rank's
    ``StoreManager``; None keeps every value inline); a ``DeviceObject`` when it holds GPU arrays
    sealed on this rank.

    References pickled here pin what they point to (the value may be read many times).
    """
    plain = encode_plain(value)
    if plain is not None:
        return plain
    sealing = _Sealing(store)
    pickling_context.stored = True
    try:
        buffers: list = []   # pickle 5 out-of-band buffers (numpy data), written straight into the store
        pickled = dumps_with_devices(value, sealing.reduce, buffers.append)
        size = len(pickled) + sum(b.raw().nbytes for b in buffers)
        if size <= INLINE_THRESHOLD or store is None:
            # small: one in-band pickle is cheaper (sealed arrays are not sealed twice)
            blob = dumps_with_devices(value, sealing.reduce) if buffers else pickled
        else:
            blob = store.put(Serialized.from_parts(pickled, buffers))
    except BaseException:
        sealing.undo()
        raise
    finally:
        pickling_context.stored = False
    return sealing.wrap(blob)


class _Sealing:
    """How one ``encode`` pickles GPU arrays: large ones sealed in ``store`` (once each), small
    ones (or all, without a store) as host bytes."""

    def __init__(self, store):
        self.store = store
        self.handles = {}  # id(array) -> (array, its DeviceArrayHandle)

    def reduce(self, array, kind):
        known = self.handles.get(id(array))
        if known is None:
            if self.store is None or device.array_bytes(array, kind) <= INLINE_THRESHOLD:
                return device.reduce_small(array, kind)
            # the array stays referenced here, so its id stays its own until encode ends
            known = self.handles[id(array)] = (array, self.store.device.seal(array, kind))
        return device.reduce_sealed(known[1])

    def _keys(self):
        return [handle.key for _, handle in self.handles.values()]

    def undo(self):
        if self.handles:
            self.store.device.free(self._keys())

    def wrap(self, blob):
        if not self.handles:
            return blob
        nbytes = sum(handle.nbytes for _, handle in self.handles.values())
        return device.DeviceObject(blob, self.store.rank, self._keys(), nbytes)


# -- pickling: numpy arrays read-only, GPU arrays as the caller says ------------------------
class _Pickler(cloudpickle.Pickler):
    """cloudpickle, protocol 5, that pickles numpy arrays as read-only and asks ``on_device_array(array,
    kind)`` how to pickle each GPU array (``types``: the loaded GPU libraries' array types).

    Read-only because Ray hands out every numpy array of an argument or a result read-only, small ones too
    (Ray 2.60: ``ray.get(ray.put(np.zeros(3))).flags.writeable`` is False), and code written for Ray may rely
    on it. Large values are stored out of band and read back as views of the store, read-only anyway; a
    small value's arrays travel inside its pickle, where a read-only buffer is pickled as ``bytes`` (and
    comes back read-only, without a copy) and a writable one as ``bytearray``. Measured: no difference in
    pickling time (3-7 us for small argument tuples either way)."""

    def __init__(self, file, types, on_device_array, buffer_callback=None):
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self._types = types
        self._on_device_array = on_device_array

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            if obj.flags.writeable and not obj.dtype.hasobject:
                # numpy pickles a non-contiguous array by a copy that comes back writable: copy it here
                view = obj.view() if obj.flags.c_contiguous or obj.flags.f_contiguous else np.ascontiguousarray(obj)
                view.flags.writeable = False
                return view.__reduce_ex__(5)
        elif self._types != (None, None):
            kind = device.device_kind(obj, self._types)
            if kind is not None:
                return self._on_device_array(obj, kind)
        return super().reducer_override(obj)


def dumps_with_devices(value, on_device_array, buffer_callback=None):
    """Like ``dumps`` (with out-of-band buffers to ``buffer_callback``), but numpy arrays are pickled
    read-only and GPU arrays as ``on_device_array`` says."""
    file = io.BytesIO()
    _Pickler(file, device.device_types(), on_device_array, buffer_callback).dump(value)
    return file.getvalue()


class LargeDeviceArray(Exception):
    """Raised by ``refuse_large_device_arrays``: the value holds a GPU array that must stay on its device."""


def refuse_large_device_arrays(array, kind):
    """An ``on_device_array`` for inline pickles: small GPU arrays as host bytes, large ones refused."""
    if device.array_bytes(array, kind) > INLINE_THRESHOLD:
        raise LargeDeviceArray()
    return device.reduce_small(array, kind)


def holds_large_device_array(value):
    try:
        dumps_with_devices(value, refuse_large_device_arrays)
    except LargeDeviceArray:
        return True
    return False
