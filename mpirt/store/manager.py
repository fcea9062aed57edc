"""One rank's part of the object store.

Values up to ``INLINE_THRESHOLD`` bytes stay ordinary pickles that travel inside
messages. Larger ones are written once, by the rank that produced them (the
*holder*), into its segment of the node's shared window, or to a spill file on
local disk when the segment is full; from then on only a ``StoreLocation``
travels. Readers on the holder's node map the bytes in place (numpy arrays come
back as read-only views), readers elsewhere copy them with an RMA ``Get``.

The object's owner decides when its bytes are freed: when nothing can reach the
object (``reachability.py``) and no reader still holds a view ("pins", which
readers report to the owner, on the same channel as their reference notices).
"""
import collections
import itertools
import pickle
import os
import shutil
import tempfile
import weakref

from ..exceptions import MpirtError
from ..object_ref import owner_of, pickling_context
from . import device
from ..serialization import dumps_with_devices
from .allocator import SegmentAllocator
from .arena import Arena
from .layout import Serialized, read_from

INLINE_THRESHOLD = device.INLINE_THRESHOLD
DEFAULT_STORE_BYTES_PER_NODE = 2 << 30
MESSAGE_CHUNK = 256 << 20   # bytes per reply when cross-node reads are messages (no RMA window)


class ObjectStoreFullError(MpirtError, MemoryError):
    """An object larger than a whole store segment: it can never be stored."""


class StoreLocation:
    """Where a stored object's bytes are: a segment of ``holder`` or a spill file."""

    __slots__ = ("holder", "offset", "size", "spill_path")

    def __init__(self, holder, offset, size, spill_path=None):
        self.holder = holder
        self.offset = offset
        self.size = size
        self.spill_path = spill_path

    def __reduce__(self):
        return (StoreLocation, (self.holder, self.offset, self.size, self.spill_path))

    def __repr__(self):
        where = self.spill_path or f"rank {self.holder} offset {self.offset}"
        return f"StoreLocation({self.size} bytes at {where})"


_PLAIN_TYPES = (type(None), bool, int, float, str, bytes)


def encode(value, store):
    """Serialize ``value`` for the object table: bytes if small, else a StoreLocation;
    wrapped in a DeviceObject when it holds GPU arrays sealed on this rank (``device.py``).

    References pickled here pin what they point to (the value may be read many times).
    """
    if type(value) in _PLAIN_TYPES and (not isinstance(value, (str, bytes)) or len(value) <= INLINE_THRESHOLD):
        return pickle.dumps(value, protocol=5)  # the common small results, without cloudpickle's set-up
    sealing = _Sealing(store)
    pickling_context.stored = True
    try:
        buffers = []
        pickled = dumps_with_devices(value, sealing.reduce, buffers.append)
        size = len(pickled) + sum(b.raw().nbytes for b in buffers)
        if size <= INLINE_THRESHOLD or store is None:
            if buffers:  # small: one in-band pickle is cheaper (sealed arrays are not sealed twice)
                pickled = dumps_with_devices(value, sealing.reduce)
            blob = pickled
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
            if self.store is None or device.array_bytes(array, kind) <= device.INLINE_THRESHOLD:
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


class StoreManager:
    def __init__(self, runtime, comm, bytes_per_node, ranks_per_node=None):
        """Collective over ``comm``: every rank builds its StoreManager at the same point."""
        self.rt = runtime
        self.rank = comm.Get_rank()
        self.arena = Arena(comm, bytes_per_node, ranks_per_node)
        self.allocator = SegmentAllocator(self.arena.capacity)
        self.device = device.DeviceStore(runtime, self.arena.same_node)
        self.spill_dir = None
        self._spill_ids = itertools.count()
        self._pins = {}          # owner: object id -> live views/reads on any rank
        self.live_views = 0      # views of store memory handed out here and still alive
        self._gone_views = collections.deque()   # (owner, object id) of views gone since the last unpin
        self._to_free = {}       # owner: object id -> location, freed once unpinned
        self.stats = {"stored_objects": 0, "spilled_objects": 0, "spilled_bytes": 0, "restored_from_disk": 0,
                      "remote_gets": 0, "remote_get_bytes": 0, "local_reads": 0}
        runtime.handlers.update(store_pin=self._on_pin, store_unpin=self._on_unpin, store_free=self._on_free,
                                store_stats_query=self._on_stats_query,
                                store_read_spilled_query=self._on_read_spilled_query,
                                store_read_query=self._on_read_query)

    # -- writing (the producing rank) ------------------------------------------
    def put(self, serialized):
        size = serialized.size
        capacity = self.allocator.capacity
        if size > capacity:
            raise ObjectStoreFullError(
                f"an object of {size:,} bytes cannot be stored: each rank's store segment holds {capacity:,} bytes "
                f"({self.rt.config.get('object_store_memory', 0):,} bytes per node); "
                f"raise init(object_store_memory=...)")
        with self.rt.lock:
            offset = self.allocator.allocate(size)
            if offset is None:  # references dropped a moment ago may free enough: apply them now
                self.rt.objects.apply_ref_events()
                offset = self.allocator.allocate(size)
        if offset is None:
            return self._spill(serialized)
        serialized.write_into(memoryview(self.arena.own())[offset:offset + size])
        self.stats["stored_objects"] += 1
        return StoreLocation(self.rank, offset, size)

    def _spill(self, serialized):
        if self.spill_dir is None:
            self.spill_dir = tempfile.mkdtemp(prefix=f"mpirt-spill-rank{self.rank}-")
        path = os.path.join(self.spill_dir, f"{next(self._spill_ids)}.obj")
        buffer = bytearray(serialized.size)
        serialized.write_into(memoryview(buffer))
        with open(path, "wb") as f:
            f.write(buffer)
        self.stats["spilled_objects"] += 1
        self.stats["spilled_bytes"] += serialized.size
        return StoreLocation(self.rank, -1, serialized.size, path)

    # -- reading (any rank) -------------------------------------------------
    def read(self, object_id, location):
        """The stored value; same-node numpy data comes back as views of the store memory."""
        owner = owner_of(object_id)
        self._pin(owner, object_id)
        if location.spill_path is not None or not self.arena.same_node(location.holder):
            try:
                data = self._copy_here(location)
            finally:
                self._unpin(owner, object_id)
            return read_from(memoryview(data))
        view = self.arena.local_view(location.holder, location.offset, location.size)
        # The view's lifetime is the pin's: when the last array made from it is gone, unpin.
        self.live_views += 1
        weakref.finalize(view, self._view_gone, owner, object_id)
        self.stats["local_reads"] += 1
        return read_from(memoryview(view))

    def _view_gone(self, owner, object_id):
        """Finalizer: runs wherever the last array made from a view went (any thread, inside any
        code, a Ctrl-C may interrupt it), so it only notes it: ``unpin_gone_views`` unpins."""
        self.live_views -= 1
        self._gone_views.append((owner, object_id))

    def unpin_gone_views(self):
        """On the progress thread's ticker: unpin the objects whose last view went."""
        gone = self._gone_views
        while gone:
            self._unpin(*gone.popleft())

    def _copy_here(self, location):
        if location.spill_path is not None:
            self.stats["restored_from_disk"] += 1
            if self.arena.same_node(location.holder):
                return _read_file(location.spill_path)
            return self.rt.query(location.holder, "store_read_spilled_query", location.spill_path)
        if self.arena.world is not None:
            data = self.arena.fetch(location.holder, location.offset, location.size)
        else:
            data = self._fetch_by_message(location)
        self.stats["remote_gets"] += 1
        self.stats["remote_get_bytes"] += location.size
        return data

    def _fetch_by_message(self, location):
        """Cross-node read without an RMA window: the holder sends the bytes, in chunks."""
        parts = [self.rt.query(location.holder, "store_read_query", start, min(MESSAGE_CHUNK, location.size - start),
                               location.offset, timeout=600.0)
                 for start in range(0, location.size, MESSAGE_CHUNK)]
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def _pin(self, owner, object_id):
        if owner == self.rank:
            with self.rt.lock:
                self._pins[object_id] = self._pins.get(object_id, 0) + 1
        else:
            self.rt.send(owner, ("store_pin", object_id))

    def _unpin(self, owner, object_id):
        if owner == self.rank:
            with self.rt.lock:
                self._on_unpin(self.rank, object_id)
        else:
            self.rt.send(owner, ("store_unpin", object_id))

    # -- freeing (the owner decides, the holder frees) -------------------------
    def release(self, object_id, location):
        """Owner: the object is unreachable; free its bytes once no reader holds a view."""
        if self._pins.get(object_id):
            self._to_free[object_id] = location
        else:
            self._free(location)

    def _free(self, location):
        if location.holder == self.rank:
            self._on_free(self.rank, location)
        else:
            self.rt.send(location.holder, ("store_free", location))

    def _on_pin(self, source, object_id):
        self._pins[object_id] = self._pins.get(object_id, 0) + 1

    def _on_unpin(self, source, object_id):
        left = self._pins.get(object_id, 0) - 1
        if left > 0:
            self._pins[object_id] = left
            return
        self._pins.pop(object_id, None)
        location = self._to_free.pop(object_id, None)
        if location is not None:
            self._free(location)

    def _on_free(self, source, location):
        if location.spill_path is not None:
            try:
                os.remove(location.spill_path)
            except OSError:
                pass
        else:
            self.allocator.free(location.offset)

    def _on_read_query(self, source, request_id, start, size, offset):
        begin = offset + start
        self.rt.send(source, ("query_reply", request_id, self.arena.own()[begin:begin + size].tobytes()))

    def _on_read_spilled_query(self, source, request_id, path):
        self.rt.send(source, ("query_reply", request_id, _read_file(path)))

    def _on_stats_query(self, source, request_id):
        self.rt.send(source, ("query_reply", request_id, self.local_stats()))

    def local_stats(self):
        return {
            "rank": self.rank,
            "node": self.arena.node_of[self.rank],
            "capacity_bytes": self.allocator.capacity,
            "used_bytes": self.allocator.used_bytes,
            "free_bytes": self.allocator.free_bytes,
            **self.stats,
            **self.device.stats,
        }

    def close(self, free_windows):
        """Remove spill files; with ``free_windows`` also free the windows (collective:
        every rank passes the same value). Views handed out must not be used after."""
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
        # Freeing windows is collective: with a dead rank (ULFM) it could not complete; the
        # memory goes back when the processes end.
        if free_windows and not self.rt.failures.dead:
            self.arena.free()


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()
