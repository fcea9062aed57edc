"""One rank's part of the object store.

Values up to ``INLINE_THRESHOLD`` bytes stay pickles inside messages (``codec.py`` decides).
Larger ones are written once, by the rank that produced them (the *holder*), into chunks it
takes from the node's shared pool (``arena.py``, ``chunks.py``), or to a spill file on local
disk when neither the pool nor spilling older objects makes room; from then on only a
``StoreLocation`` travels. Readers on the holder's node map the bytes in place (numpy arrays
come back as read-only views), readers elsewhere copy them with an RMA ``Get``.

When the pool is full the holder spills its oldest objects that no reader is viewing
(``blocks.py`` counts same-node views in each block's header) and restores a spilled object
into memory on its next read. A location is fixed when the object is made, so a reader whose
block no longer holds the object asks the holder where it is now.

The owner frees the bytes once nothing can reach the object (``reachability.py``) and no reader
holds a view ("pins", reported to it with the reference notices).

A rank that dies (ULFM) leaves its chunks in its node's pool, and objects in them that same-node
owners still refer to. The node's lowest live rank *adopts* them (``_reroute``, ``_adopt``): each
live rank of the node reports the keys of the objects it owns there (``store_adopt_report``) and
from then on sends frees and locate queries for the dead holder to the adopter, which, once every
report is in, takes the chunks over, keeps the blocks reported live (and those a view still reads)
as its own records, and gives the rest back to the node at once. Without this every death would
shrink the node's store for the rest of the job.
"""
import collections
import itertools
import mmap
import os
import threading
import traceback
import weakref

from ..core import object_value, tracing
from ..core.object_ref import owner_of
from ..core.object_value import ObjectValue
from ..core.queries import QueryRankDied
from ..exceptions import ObjectLostError, ObjectStoreFullError
from . import blocks, device
from .arena import Arena, RmaTargetDied
from .blocks import HEADER_BYTES
from .chunks import RankSpace, consecutive_runs
from .layout import read_from
from .spill import RankSpill, make_node_directory, process_identity, spill_base

MESSAGE_CHUNK = 256 << 20   # bytes per reply when cross-node reads are messages (no RMA window)
_KEY_BITS = 40              # object keys: (holder rank + 1) << 40 | a counter of the holder
_LOCATE_TRIES = 4           # a reader asks the holder again if the object moved once more meanwhile
_KNOWN_MOVES = 4096         # relocations a reader remembers (spilled or restored objects it read)
ASSISTED_READ_SECONDS = 30.0   # most a holder drives MPI for one cross-node read whose reader never says done
USE_SAMPLE_SECONDS = 1.0       # how often a rank looks at its store use for the trace (a counter)
USE_SAMPLE_HEARTBEAT = 60.0    # an unchanged use is traced again after this, so a late window of the trace has it
ORPHAN_CHECK_SECONDS = 0.5     # how often an adopter looks whether the views of adopted orphan blocks went


class StoreLocation(ObjectValue):
    """A stored value (``object_value.py``): its block in the node pool (``offset``, its header)
    written by ``holder``, or its spill file. ``key`` names the object at its holder, ``stamp``
    this write of it into the block (``blocks.py``): the key for its put, a new one per restore."""

    __slots__ = ("holder", "offset", "size", "spill_path", "key", "stamp")

    def __init__(self, holder, offset, size, spill_path=None, key=0, stamp=None):
        self.holder = holder
        self.offset = offset
        self.size = size
        self.spill_path = spill_path
        self.key = key
        self.stamp = key if stamp is None else stamp

    def __reduce__(self):
        return (StoreLocation, (self.holder, self.offset, self.size, self.spill_path, self.key, self.stamp))

    def __repr__(self):
        where = self.spill_path or f"rank {self.holder} offset {self.offset}"
        return f"StoreLocation({self.size} bytes at {where})"

    def total_size(self):
        return self.size

    def decode(self, store, object_id):
        return store.read(object_id, self)

    def release(self, store, object_id):
        store.release(object_id, self)

    def discard(self, store):
        if self.holder == store.rank:
            store.free_unpublished(self)

    def lost_with(self, rank, same_node):
        return self.holder == rank and not same_node(rank)

    def placement(self):
        """A spilled value is read from disk wherever the reader is: no rank is better placed."""
        return (self.holder, self.size) if self.spill_path is None else None


class _Held:
    """The holder's record of one object it stored: in memory (``offset``), on disk
    (``spill_path``), or both (restored objects keep their file, so spilling them again is free)."""

    __slots__ = ("key", "size", "offset", "spill_path", "stamp", "busy", "freed")

    def __init__(self, key, size, offset=None, spill_path=None):
        self.key, self.size, self.offset, self.spill_path = key, size, offset, spill_path
        self.stamp = key      # names the write of the bytes at ``offset`` (a restore makes a new one)
        self.busy = False     # being spilled or restored (outside the runtime lock)
        self.freed = False    # the owner freed it while busy: drop it when done

    def location(self, rank):
        if self.offset is not None:
            return StoreLocation(rank, self.offset, self.size, None, self.key, self.stamp)
        return StoreLocation(rank, -1, self.size, self.spill_path, self.key)


class StoreManager:
    def __init__(self, runtime, comm, bytes_per_node=None, ranks_per_node=None, joining=None):
        """Collective over ``comm``. ``bytes_per_node``: the node pool's size, or None for the default.
        A rank joining a running job passes ``joining`` (``replacement.py``): its arena and spill directory."""
        self.rt = runtime
        self.rank = runtime.rank
        self.arena = Arena(comm, bytes_per_node, ranks_per_node) if joining is None else joining.arena
        self.view = memoryview(self.arena.memory)
        self.space = RankSpace(self.arena.chunks, self.rank)
        self.device = device.DeviceStore(runtime, self.arena.same_node)
        if joining is None:
            self.spill, self.spill_problem = self._open_spill(runtime.config.get("object_spilling_directory"))
        else:
            self.spill, self.spill_problem = joining.spill()
        self._keys = itertools.count(1)
        self._held = collections.OrderedDict()   # holder: key -> _Held, oldest first
        self._known = collections.OrderedDict()  # reader: key -> where the holder last said it is
        self._pins = {}          # owner: object id -> live views/reads on any rank
        self.live_views = 0      # views of store memory handed out here and still alive
        self._gone_views = collections.deque()   # (owner, object id, block, key) of views gone since the last unpin
        self._to_free = {}       # owner: object id -> location, freed once unpinned
        self.stats = {"stored_objects": 0, "spilled_objects": 0, "spilled_bytes": 0, "restored_objects": 0,
                      "restored_bytes": 0, "restored_from_disk": 0, "remote_gets": 0, "remote_get_bytes": 0,
                      "local_reads": 0}
        runtime.register(store_pin=self._on_pin, store_unpin=self._on_unpin, store_free=self._on_free,
                         store_stats_query=self._on_stats_query, store_locate_query=self._on_locate_query,
                         store_make_room_query=self._on_make_room_query, store_wake=self._on_wake,
                         store_read_done=self._on_read_done, store_read_query=self._on_read_query,
                         store_read_spilled_query=self._on_read_spilled_query)
        self._assisting = collections.Counter()   # reader rank -> its assisted reads under way here
        # Dead ranks' stores (same node): see the module docstring and ``_reroute``.
        self._route = {}          # same-node dead rank -> the live rank adopting its store, as this rank sees it
        self._awaiting = {}       # adopter: dead rank -> ranks of the node whose report on it has not come
        self._covered = collections.defaultdict(set)   # adopter: rank -> dead ranks it reported on
        self._live_keys = set()   # adopter: keys reported live in the stores it is about to adopt
        self._orphans = []        # adopter: (offset, key) of adopted blocks no owner frees, kept while read
        self._joined_dead = joining is not None   # a newcomer reports on the deaths before it joined
        runtime.register(store_adopt_report=self._on_adopt_report)
        runtime.failures.handlers.append(self._on_rank_dead)
        runtime.transport.add_ticker(ORPHAN_CHECK_SECONDS, self._tend_adopted)
        self._sampled = (None, 0.0)   # the store use last traced, and when
        runtime.transport.add_ticker(USE_SAMPLE_SECONDS, self._sample_use)

    def _open_spill(self, configured):
        """Collective over the node, whose leader makes the spill directory (removing dead jobs'):
        (this rank's RankSpill or None, why there is none)."""
        node_comm = self.arena.node_comm
        identities = node_comm.gather(process_identity(), root=0)
        base = spill_base(configured)
        made = None
        if node_comm.Get_rank() == 0:
            try:
                made = ("ok", make_node_directory(base, identities))
            except OSError as exc:
                made = ("error", f"cannot use the spill directory {base}: {exc}")
        status, value = node_comm.bcast(made, root=0)
        return (RankSpill(value, self.rank), None) if status == "ok" else (None, value)

    # -- writing (the producing rank) ------------------------------------------
    def _new_key(self):
        return (self.rank + 1) << _KEY_BITS | next(self._keys)

    def put(self, serialized):
        size = serialized.size
        key = self._new_key()
        offset = self._allocate(HEADER_BYTES + size) if HEADER_BYTES + size <= self.arena.capacity else None
        if offset is None:
            return self._put_on_disk(key, serialized)
        data = offset + HEADER_BYTES
        serialized.write_into(self.view[data:data + size])
        with self.arena.lock:
            blocks.write(self.view, offset, key, key, size)
        with self.rt.lock:
            self._held[key] = _Held(key, size, offset)
        self.stats["stored_objects"] += 1
        return StoreLocation(self.rank, offset, size, None, key)

    def _allocate(self, size):
        """A block of ``size`` bytes in the pool, spilling this rank's oldest unviewed objects to
        make room, then asking the node's other ranks to spill theirs; None when even that cannot."""
        asked_others = False
        while True:
            with self.rt.lock:
                # Apply references dropped a moment ago first: a loop of put and drop then reuses
                # the same (cache- and page-warm) memory.
                self.rt.objects.references.apply_events()
                offset = self.space.allocate(size)
                if offset is not None:
                    return offset
                victim = self._claim_victim()
            if victim is not None and self._spill_out(victim):
                continue
            if asked_others or not self._ask_node_to_make_room(size):
                return None
            asked_others = True

    def _ask_node_to_make_room(self, size):
        """Ask the node's other ranks, those holding most chunks first, to spill until ``size``
        bytes of chunks went back to the node; whether any did."""
        held = self.arena.chunks.counts()
        others = sorted((count, rank) for rank, count in held.items()
                        if rank != self.rank and rank not in self.rt.failures.dead and self.arena.same_node(rank))
        for _, rank in reversed(others):
            try:
                if self.rt.queries.ask(rank, "store_make_room_query", size, timeout=600.0):
                    return True
            except QueryRankDied:
                continue
        return False

    def _make_room(self, size):
        """Spill this rank's oldest unviewed objects until ``size`` bytes of chunks went back to
        the node (or nothing is left to spill); the bytes given back."""
        with self.rt.lock:
            before = self.space.reserved_bytes
            self.space.release_spare()
        while before - self.space.reserved_bytes < size:
            with self.rt.lock:
                victim = self._claim_victim()
            if victim is None or not self._spill_out(victim):
                break
        return before - self.space.reserved_bytes

    def _on_make_room_query(self, source, request_id, size):
        self._answer_in_thread(source, request_id, self._make_room, size, failed=0)

    def _answer_in_thread(self, source, request_id, work, *args, failed):
        """Reply with ``work(*args)`` from a helper thread (spilling and restoring take long: not on the
        progress thread, under the runtime lock), or ``failed`` if it raised: the asker never hangs."""
        def answer():
            try:
                result = work(*args)
            except Exception:
                traceback.print_exc()
                result = failed
            self.rt.queries.answer(source, request_id, result)

        threading.Thread(target=answer, name="mpirt-store-helper", daemon=True).start()

    def _claim_victim(self):
        """Under the runtime lock: the oldest object in memory that no view reads, its block's key
        cleared so no reader maps it from now on; None if there is none."""
        if self.spill is None:
            return None
        with self.arena.lock:
            for record in self._held.values():
                if record.offset is not None and not record.busy and \
                        blocks.clear_if_unread(self.view, record.offset, record.key):
                    record.busy = True
                    return record
        return None

    def _spill_out(self, record):
        """Write a claimed object to its file (unless it has one) and free its block; False, and
        the object stays in memory, when the disk cannot take it."""
        data = record.offset + HEADER_BYTES
        path = record.spill_path
        started = tracing.now()
        try:
            if path is None and self.spill.room_for(record.size)[0]:
                path = self.spill.write(record.key, record.size,
                                        lambda out: out.__setitem__(slice(None), self.view[data:data + record.size]))
        except OSError:
            pass
        with self.rt.lock:
            record.busy = False
            if path is None:
                with self.arena.lock:   # its bytes never changed: still the same write (stamp)
                    blocks.write(self.view, record.offset, record.key, record.stamp, record.size)
                self.rt.cond.notify_all()
                return False
            if record.spill_path is None:
                self.stats["spilled_objects"] += 1
                self.stats["spilled_bytes"] += record.size
                tracing.record("spill", "spill", started, tracing.now(), bytes=record.size, key=f"{record.key:x}")
            record.spill_path = path
            self.space.free(record.offset)
            record.offset = None
            if record.freed:
                self._drop(record)
            self.rt.cond.notify_all()
        return True

    def _put_on_disk(self, key, serialized):
        size = serialized.size
        started = tracing.now()
        room, free = self.spill.room_for(size) if self.spill is not None else (False, 0)
        try:
            path = self.spill.write(key, size, serialized.write_into) if room else None
        except OSError:
            path = None
        if path is None:
            raise ObjectStoreFullError(self._full_message(size, free))
        with self.rt.lock:
            self._held[key] = _Held(key, size, None, path)
        self.stats["spilled_objects"] += 1
        self.stats["spilled_bytes"] += size
        tracing.record("spill", "spill", started, tracing.now(), bytes=size, key=f"{key:x}", larger_than_memory=True)
        return StoreLocation(self.rank, -1, size, path, key)

    def _full_message(self, size, disk_free):
        if self.spill is None:
            disk = f"spilling is off ({self.spill_problem})"
        else:
            disk = (f"the spill directory {self.spill.node_directory} has {disk_free:,} bytes free and spilling "
                    f"stops at {self.spill.threshold:.0%} of its disk (MPIRT_SPILL_DISK_THRESHOLD)")
        return (f"an object of {size:,} bytes cannot be stored: the node's object store holds "
                f"{self.arena.capacity:,} bytes (objects that readers are viewing cannot be spilled) and {disk}. "
                f"Raise init(object_store_memory=...) or point MPIRT_SPILL_DIR at a disk with more room.")

    # -- reading (any rank) -------------------------------------------------
    def read(self, object_id, location):
        """The stored value; same-node numpy data comes back as views of the store memory."""
        owner = owner_of(object_id)
        self._pin(owner, object_id)
        viewing = False
        try:
            where = self._known.get(location.key, location) if location.key else location
            for _ in range(_LOCATE_TRIES):
                if where is None:
                    break
                if where.spill_path is None and self.arena.same_node(where.holder):
                    view = self._map(where)
                    if view is not None:
                        viewing = True
                        # The view's lifetime is the pin's: when the last array made from it is gone, unpin.
                        self.live_views += 1
                        weakref.finalize(view, self._view_gone, owner, object_id, where.offset, where.key)
                        self.stats["local_reads"] += 1
                        return read_from(memoryview(view))
                elif where.spill_path is None:
                    data = self._fetch_remote(where)
                    if data is not None:
                        return read_from(memoryview(data))
                elif where is not location or where.size + HEADER_BYTES > self.arena.capacity:
                    data = self._read_spilled(where)   # the holder could not bring it into memory
                    if data is not None:
                        return read_from(memoryview(data))
                where = self._locate(where)
            raise ObjectLostError(f"object {object_id:028x} is lost: its holder (rank {location.holder}) no longer "
                                  f"has it")
        finally:
            if not viewing:
                self._unpin(owner, object_id)

    def _map(self, where):
        """A view of a same-node block if it still holds the object (counted as a reader), else None."""
        with self.arena.lock:
            if not blocks.add_reader(self.view, where.offset, where.key):
                return None
        data = where.offset + HEADER_BYTES
        return self.arena.memory[data:data + where.size]   # a new array each call: the finalizer's object

    def _window_of(self, holder):
        """The rank whose window a read of ``holder``'s block goes through: the holder, or once it is dead
        the lowest live rank of its node, which adopts its blocks (``_reroute``); the node's pool is one
        mapping that each of its ranks exposes, and the block's header tells whether it still holds the
        object. None when no rank of that node lives. An RMA epoch on a dead rank would never end."""
        dead = self.rt.failures.dead
        if holder not in dead:
            return holder
        node_of = self.arena.node_of
        live = [rank for rank, node in enumerate(node_of) if node == node_of[holder] and rank not in dead]
        return min(live) if live else None

    def _fetch_remote(self, where):
        """A copy of a block on another node, or None if the block no longer holds the object."""
        started = tracing.now()
        holder = self._window_of(where.holder)
        if holder is None or not self.arena.reaches(holder):
            data = self._fetch_by_message(where)
        else:
            # A passive-target epoch needs the target's help on some transports (Open MPI over TCP
            # or its shared-memory BTL): a message wakes a holder that sleeps while idle (else up
            # to 20 ms per round trip) and keeps it driving MPI until the read is done. Both go
            # from this thread (``send_now``), not at the progress thread's next turn.
            transport = self.rt.transport
            dead = self.rt.failures.dead
            transport.send_now(holder, ("store_wake",))
            try:
                # sequence lock: the header, read after the bytes, must still name this write of them
                data, header = self.arena.fetch(holder, where.offset + HEADER_BYTES, where.size,
                                                (where.offset, blocks.CHECKED_BYTES), lambda: holder in dead)
            except RmaTargetDied:
                return None       # read gone with its rank: the object is located again (lineage, a copy)
            finally:
                transport.send_now(holder, ("store_read_done",))
            if not blocks.holds(header, where.key, where.stamp):
                return None
        if data is not None:
            self.stats["remote_gets"] += 1
            self.stats["remote_get_bytes"] += where.size
            tracing.record("transfer", "store read" if self.arena.reaches(where.holder) else "store read by messages",
                           started, tracing.now(), bytes=where.size, peer=where.holder, key=f"{where.key:x}")
        return data

    def _on_wake(self, source):
        """A rank on another node starts an RMA read here: drive MPI without pause until the
        reader says it is done (``store_read_done``), for at most ``ASSISTED_READ_SECONDS``.
        Every read is served so, whatever its size: a 1 MB read is ~30 fragments; a 1 MB get took
        0.2-0.4 ms so served, 0.4-0.6 ms from a holder that only polls (a Python step and a yield
        per poll, naps when idle), 0.1-0.3 ms from a target blocked in MPI (2-core VM)."""
        self._assisting[source] += 1
        self.rt.transport.stay_hot(ASSISTED_READ_SECONDS)

    def _on_read_done(self, source):
        if self._assisting[source] > 0:
            self._assisting[source] -= 1
            self.rt.transport.cool_down()

    def _on_rank_dead(self, rank):
        """A reader that died mid-read will not say it is done: stop polling for it. A rank of this
        node: its store passes to the node's lowest live rank (``_reroute``)."""
        for _ in range(self._assisting.pop(rank, 0)):
            self.rt.transport.cool_down()
        for waiting in self._awaiting.values():
            waiting.discard(rank)      # a dead rank owns nothing any more: no report is awaited from it
        if self.arena.same_node(rank):
            self._reroute()
        self._adopt_when_reported()

    # -- a dead rank's store (same node): adoption ------------------------------
    def _node_ranks(self):
        node = self.arena.node_of[self.rank]
        return [rank for rank, where in enumerate(self.arena.node_of) if where == node]

    def _reroute(self):
        """(runtime lock held) Route the node's dead ranks to the adopter: the lowest live rank of the node,
        the same on every rank once all know the same deaths. For the dead ranks newly routed to it
        (its death, or the death of the adopter they had), send it the keys of the objects this rank
        owns in their stores: the adopter keeps those and frees the rest. Frees sent after the report
        follow it on the same channel, so none is missed; a free sent to the dead rank before (lost)
        is of an object no longer in this rank's table, hence not reported, hence freed."""
        ranks = self._node_ranks()
        dead = self.rt.failures.dead
        adopter = min(rank for rank in ranks if rank not in dead)
        moved = [rank for rank in ranks if rank in dead and self._route.get(rank) != adopter]
        if not moved:
            return
        for rank in moved:
            self._route[rank] = adopter
        keys = self._owned_keys_held_by(set(moved))
        if adopter != self.rank:
            self.rt.send(adopter, ("store_adopt_report", moved, keys))
            return
        self._live_keys.update(keys)
        live = [rank for rank in ranks if rank not in dead and rank != self.rank]
        for rank in moved:
            self._awaiting[rank] = {other for other in live if rank not in self._covered[other]}

    def _owned_keys_held_by(self, holders):
        """Keys of the stored objects this rank owns (or freed but readers still view) held by ``holders``."""
        keys = [location.key for location in self._to_free.values()
                if isinstance(location, StoreLocation) and location.holder in holders]
        for object_id, entry in self.rt.objects.entries.items():
            blob = entry.blob
            if isinstance(blob, StoreLocation) and blob.holder in holders and owner_of(object_id) == self.rank:
                keys.append(blob.key)
        return keys

    def _on_adopt_report(self, source, dead, keys):
        self._covered[source].update(dead)
        self._live_keys.update(keys)
        for rank in dead:
            self._awaiting.get(rank, set()).discard(source)
        self._adopt_when_reported()

    def _adopt_when_reported(self):
        """Adopt the stores routed here once every live rank of the node reported on all of them (together:
        a dead adopter's chunks may hold objects of the rank it adopted)."""
        if not self._awaiting or any(self._awaiting.values()):
            return
        dead, live = set(self._awaiting), self._live_keys
        self._awaiting, self._live_keys = {}, set()
        self._adopt(dead, live)

    def _adopt(self, dead, live):
        """(runtime lock held) Take over the chunks the ``dead`` ranks hold in the node's table: the objects
        in ``live`` (in memory or spilled) become this rank's records, blocks a view still reads stay
        until it goes (``_tend_adopted``), the rest of the memory and the other spill files go now."""
        started = tracing.now()
        table = self.arena.chunks
        writers = [rank + 1 for rank in dead]
        found = []
        with self.arena.lock:
            indices = table.held_by(dead)
            for first, last in consecutive_runs(indices):
                start = table.chunk_range(first)[0]
                end = sum(table.chunk_range(last))
                found += blocks.survivors(self.arena.memory, start, end, sorted(live), writers, _KEY_BITS)
            table.reassign(indices, self.rank)
        self.space.adopt(indices.tolist(), [(offset, blocks.block_bytes(size)) for offset, _, _, size, _ in found])
        adopted = []
        for offset, key, stamp, size, _ in found:
            if key not in live:
                self._orphans.append((offset, key))
                continue
            record = _Held(key, size, offset, self._dead_spill_file(key, dead))
            record.stamp = stamp
            adopted.append(record)
        in_memory = {record.key for record in adopted}
        for key in live - in_memory:
            path = self._dead_spill_file(key, dead)
            if path is not None:
                adopted.append(_Held(key, os.path.getsize(path), None, path))
        for record in reversed(adopted):        # made before this rank's own: the oldest, spilled first
            self._held[record.key] = record
            self._held.move_to_end(record.key, last=False)
        if self.spill is not None:
            self.spill.remove_all_but(dead, {record.spill_path for record in adopted})
        tracing.record("spill", "adopt a dead rank's store", started, tracing.now(), dead=sorted(dead),
                       chunks=len(indices), objects=len(adopted), orphans=len(found) - len(in_memory))

    def _dead_spill_file(self, key, dead):
        """The spill file of object ``key`` left by one of the ``dead`` ranks, or None."""
        if self.spill is None:
            return None
        for rank in dead:
            path = self.spill.path_of(key, rank)
            if os.path.exists(path):
                return path
        return None

    def _adopter_of(self, holder):
        """The live rank that has (or is adopting) the store of dead ``holder``; None off this node."""
        return self._route.get(holder)

    def _tend_adopted(self):
        """Progress thread's ticker: a newcomer's reports on the deaths before it joined (it owns nothing
        there, but the adopter may be waiting for it); adopted orphan blocks freed once no view reads them."""
        if self._joined_dead:
            self._joined_dead = False
            with self.rt.lock:
                if any(self.arena.same_node(rank) for rank in self.rt.failures.dead):
                    self._reroute()
                    self._adopt_when_reported()
        if not self._orphans:
            return
        with self.rt.lock:
            with self.arena.lock:
                gone = [orphan for orphan in self._orphans if blocks.clear_if_unread(self.view, *orphan)]
            for orphan in gone:
                self._orphans.remove(orphan)
                self.space.free(orphan[0])

    def _fetch_by_message(self, where):
        """Cross-node read without an RMA window: the holder sends the bytes, in chunks."""
        parts = []
        for start in range(0, where.size, MESSAGE_CHUNK):
            try:
                part = self.rt.queries.ask(where.holder, "store_read_query", where.key, start,
                                           min(MESSAGE_CHUNK, where.size - start), timeout=600.0)
            except QueryRankDied:   # the holder died: the caller locates the object again
                return None
            if part is None:
                return None
            parts.append(part)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def _read_spilled(self, where):
        """The bytes of a spilled object its holder could not bring back into memory: its file mapped on
        the holder's node, else sent by the holder."""
        self.stats["restored_from_disk"] += 1
        started = tracing.now()
        if self.arena.same_node(where.holder):
            data = _map_file(where.spill_path)
            tracing.record("restore", "read from disk", started, tracing.now(), bytes=where.size, peer=where.holder,
                           key=f"{where.key:x}")
            return data
        try:
            data = self.rt.queries.ask(where.holder, "store_read_spilled_query", where.key, timeout=600.0)
        except QueryRankDied:       # the holder died: the caller locates the object again
            return None
        tracing.record("transfer", "spilled read", started, tracing.now(), bytes=where.size, peer=where.holder,
                       key=f"{where.key:x}")
        return data

    def _locate(self, where):
        """Ask the holder where the object is now (it restores a spilled object into memory if it
        can); None if it no longer has it. A dead holder's files on this node are still read."""
        holder = where.holder
        if holder == self.rank:
            found = self._locate_here(where.key)
        elif holder in self.rt.failures.dead:
            found = self._locate_adopted(where)
        else:
            try:
                found = self.rt.queries.ask(holder, "store_locate_query", where.key, timeout=600.0)
            except QueryRankDied:   # gone with its holder (on another node): lost, or being rebuilt
                found = None
        if found is not None:
            self._known[where.key] = found
            if len(self._known) > _KNOWN_MOVES:
                self._known.popitem(last=False)
        return found

    def _locate_adopted(self, where):
        """Where an object of a dead holder is: asked of the rank that adopted its store, or, while the
        adoption is under way, its spill file (on this node)."""
        adopter = self._adopter_of(where.holder)
        found = None
        if adopter == self.rank:
            found = self._locate_here(where.key)
        elif adopter is not None:
            try:
                found = self.rt.queries.ask(adopter, "store_locate_query", where.key, timeout=600.0)
            except QueryRankDied:   # the adopter died too: the next one has it, or will
                found = None
        if found is None and adopter is not None and self.spill is not None:
            path = self.spill.path_of(where.key, where.holder)
            if os.path.exists(path):
                found = StoreLocation(where.holder, -1, where.size, path, where.key)
        return found

    def _locate_here(self, key):
        """Holder: where object ``key`` is, restoring it into memory first when it is on disk."""
        with self.rt.lock:
            record = self._held.get(key)
            while record is not None and record.busy:
                self.rt.cond.wait(0.05)
                record = self._held.get(key)
            if record is None:
                return None
            if record.offset is not None:
                return record.location(self.rank)
            record.busy = True
        offset = None
        stamp = self._new_key()
        started = tracing.now()
        try:
            if HEADER_BYTES + record.size <= self.arena.capacity:
                offset = self._allocate(HEADER_BYTES + record.size)
            if offset is not None:
                data = offset + HEADER_BYTES
                with open(record.spill_path, "rb") as f:
                    f.readinto(self.view[data:data + record.size])
                with self.arena.lock:
                    blocks.write(self.view, offset, key, stamp, record.size)
        except OSError:
            if offset is not None:
                with self.rt.lock:
                    self.space.free(offset)
                offset = None
        with self.rt.lock:
            record.busy = False
            self.rt.cond.notify_all()
            if offset is not None:
                record.offset, record.stamp = offset, stamp
                self._held.move_to_end(key)
                self.stats["restored_objects"] += 1
                self.stats["restored_bytes"] += record.size
                tracing.record("restore", "restore", started, tracing.now(), bytes=record.size, key=f"{key:x}")
            if record.freed:
                self._drop(record)
                return None
            return record.location(self.rank)

    def _view_gone(self, owner, object_id, block, key):
        """Finalizer: runs wherever the last array made from a view went (any thread, inside any
        code, perhaps cut short by a Ctrl-C), so it only notes it: ``unpin_gone_views`` unpins."""
        self.live_views -= 1
        self._gone_views.append((owner, object_id, block, key))

    def unpin_gone_views(self):
        """On the progress thread's ticker: unpin the objects whose last view went."""
        gone = self._gone_views
        if not gone:
            return
        done = []
        with self.arena.lock:
            while gone:
                owner, object_id, block, key = gone.popleft()
                blocks.drop_reader(self.view, block, key)
                done.append((owner, object_id))
        for owner, object_id in done:
            self._unpin(owner, object_id)

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
        holder = location.holder
        if holder in self.rt.failures.dead:
            holder = self._adopter_of(holder)
            if holder is None:      # held on another node: it died with its holder
                return
        if holder == self.rank:
            self._on_free(self.rank, location)
        else:
            self.rt.send(holder, ("store_free", location))

    def discard(self, blobs):
        """Free the blocks, spill files and sealed GPU arrays ``encode`` made here for values never
        published (a later return value failed to serialize, say): no one else knows to free them."""
        for blob in blobs:
            object_value.discard(blob, self)

    def free_unpublished(self, location):
        """Holder: free a block or spill file of this rank's that no owner knows of."""
        with self.rt.lock:
            self._on_free(self.rank, location)

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
        """Holder (under the runtime lock): the owner freed the object (also an adopted one)."""
        record = self._held.get(location.key)
        if record is None:
            self._live_keys.discard(location.key)    # reported live to an adoption not done yet
        elif record.busy:
            record.freed = True   # the spill or restore in progress drops it when done
        else:
            self._drop(record)

    def _drop(self, record):
        del self._held[record.key]
        if record.offset is not None:
            with self.arena.lock:
                blocks.clear(self.view, record.offset)
            self.space.free(record.offset)
        if record.spill_path is not None:
            try:
                os.remove(record.spill_path)
            except OSError:
                pass

    def _on_locate_query(self, source, request_id, key):
        record = self._held.get(key)
        if record is not None and record.offset is not None and not record.busy:
            self.rt.queries.answer(source, request_id, record.location(self.rank))
            return
        self._answer_in_thread(source, request_id, self._locate_here, key, failed=None)

    def _on_read_query(self, source, request_id, key, start, size):
        record = self._held.get(key)
        data = None
        if record is not None and record.offset is not None:
            begin = record.offset + HEADER_BYTES + start
            data = self.view[begin:begin + size].tobytes()
        elif record is not None and record.spill_path is not None:
            with open(record.spill_path, "rb") as f:
                f.seek(start)
                data = f.read(size)
        self.rt.queries.answer(source, request_id, data)

    def _on_read_spilled_query(self, source, request_id, key):
        record = self._held.get(key)
        data = None
        if record is not None and record.spill_path is not None:
            with open(record.spill_path, "rb") as f:
                data = f.read()
        self.rt.queries.answer(source, request_id, data)

    def _on_stats_query(self, source, request_id):
        self.rt.queries.answer(source, request_id, self.local_stats())

    def local_stats(self):
        """This rank's figures; ``node_store`` holds those of its whole node (the same on each rank)."""
        in_memory = sum(1 for r in self._held.values() if r.offset is not None)
        on_disk = [r.size for r in self._held.values() if r.spill_path is not None]
        return {"rank": self.rank, "node": self.arena.node_of[self.rank], "used_bytes": self.space.used_bytes,
                "reserved_bytes": self.space.reserved_bytes, "objects_in_memory": in_memory,
                "objects_on_disk": len(on_disk), "disk_bytes": sum(on_disk), **self.stats, **self.device.stats,
                "node_store": self.node_stats()}

    def _sample_use(self):
        """Trace this rank's store bytes (a counter, "object store"), on the progress thread. Only a change, or
        the same value once a minute: an idle rank adds nothing to its bounded trace buffer."""
        used = self.space.used_bytes
        last, when = self._sampled
        now = tracing.now()
        if used != last or now - when >= USE_SAMPLE_HEARTBEAT:
            tracing.count("object store", used_bytes=used)
            self._sampled = (used, now)

    def node_stats(self):
        table = self.arena.chunks
        return {"capacity_bytes": self.arena.capacity, "capacity_reason": self.arena.capacity_reason,
                "memory_directory": self.arena.directory,
                "spill_directory": self.spill.node_directory if self.spill is not None else None,
                "chunk_bytes": table.chunk_bytes, "chunks": table.count, "chunks_in_use": sum(table.counts().values()),
                "reserved_bytes": table.reserved_bytes(),
                "largest_free_run_bytes": table.largest_free_run() * table.chunk_bytes}

    def close(self, free_windows):
        """Remove spill files; with ``free_windows`` also free the windows (collective:
        every rank passes the same value). Views handed out must not be used after."""
        if self.spill is not None:
            self.spill.close(sorted(self.rt.failures.dead))
        # Freeing windows is collective, so with a dead rank (ULFM) the memory goes at process exit.
        if free_windows and not self.rt.failures.dead:
            try:
                self.view.release()
            except BufferError:
                pass
            self.arena.free()


def _map_file(path):
    """A read-only mapping of a spill file (no copy; it stays valid if the file is removed), or None."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if not size:
                return b""
            return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    except OSError:
        return None
