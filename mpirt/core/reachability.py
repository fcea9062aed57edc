"""Who can still reach an object or an actor: distributed reference counting.

The owner of an id keeps a ``Reachability``: its own live references, the ranks that borrow some, and
references pickled but not yet unpickled ("in flight"). A borrower counts its own references and tells the
owner when one arrives, when it pickles one, and when its last one is gone; its "pickled" notice travels
before its "released" one on the same channel, so the count cannot reach zero while a reference is still
travelling. A reference pickled into a stored value (``put``, a task result) may be unpickled any number of
times: it pins the id, which then lives until the session ends. Its copies unpickled from that value ("found"
references) make no events at all: nothing anyone holds can keep a pinned id alive longer. A found reference is
counted only once its rank is about to keep the id's value for it (a get, a wait, a task argument:
``object_ref.count_found``), so that the rank's copy goes with its last counted reference. A get of a value
holding 10,000 refs, dropped unread, made and applied 20,000 events before.
"""

CREATED, ARRIVED, DELETED, PICKLED, PINNED, RELEASED = ("created", "arrived", "deleted", "pickled", "pinned",
                                                       "released")


class Reachability:
    __slots__ = ("local", "borrowers", "in_flight", "pinned")

    def __init__(self, local=0):
        self.local = local
        self.borrowers = set()
        self.in_flight = 0
        self.pinned = False

    def apply(self, event, source, owner_rank):
        if event == PICKLED:
            self.in_flight += 1
        elif event == PINNED:
            self.pinned = True
        elif source == owner_rank:
            if event == CREATED or event == ARRIVED:
                self.local += 1
            elif event == DELETED:
                self.local -= 1
            if event == ARRIVED:
                self.in_flight -= 1
        elif event == ARRIVED:
            self.in_flight -= 1
            self.borrowers.add(source)
        elif event == RELEASED:
            self.borrowers.discard(source)

    def unreachable(self):
        return not self.pinned and self.local <= 0 and not self.borrowers and self.in_flight <= 0


class ReferenceCounter:
    """Applies the reference events of one kind of id (objects, actor handles) on one rank.

    The owner side keeps a ``Reachability`` per tracked id and calls ``on_unreachable(key)`` once nothing
    can reach it; the borrower side tells the owner (message ``notice_kind``) and calls
    ``on_released(key)`` when its last reference goes. ``events``: the deque of this rank's own reference
    events. Every method runs with the runtime lock held.
    """

    def __init__(self, runtime, notice_kind, events, owner_of, on_unreachable, on_released=None):
        self.rt = runtime
        self.notice_kind = notice_kind
        self.events = events
        self.owner_of = owner_of
        self.on_unreachable = on_unreachable
        self.on_released = on_released
        self.reachability = {}
        self.borrowed = BorrowedCounts()
        runtime.register(**{notice_kind: self._on_notice})

    def track(self, key, local_refs=0):
        """This rank owns ``key``: count who can reach it, from ``local_refs`` references here made without a
        "created" event."""
        self.reachability[key] = Reachability(local_refs)

    def apply_events(self):
        """Count (owner) or report (borrower) this rank's queued reference events.

        A borrower's "created" and "deleted" events are most of them and need no notice unless the last reference
        of an announced id goes: they are counted inline, the rest go through ``BorrowedCounts.apply``."""
        events, owner_of, rank = self.events, self.owner_of, self.rt.rank
        popleft = events.popleft
        borrowed = self.borrowed
        counts, announced = borrowed.counts, borrowed.announced
        on_released = self.on_released
        while events:
            try:
                key, event = popleft()
            except IndexError:
                break
            owner = owner_of(key)
            if owner == rank:
                self.count(rank, key, event)
            elif event == CREATED:
                counts[key] = counts.get(key, 0) + 1
            elif event == DELETED and key not in announced:
                held = counts.get(key, 0)
                if held > 1:
                    counts[key] = held - 1
                else:
                    counts.pop(key, None)
                    if on_released is not None:
                        on_released(key)
            else:
                notice, last = borrowed.apply(key, event)
                if notice is not None:
                    self.rt.send(owner, (self.notice_kind, key, notice))
                if last and on_released is not None:
                    on_released(key)

    def _on_notice(self, source, key, event):
        """A borrower's notice. This rank's own events go first: a reference created and passed
        on here could otherwise come back as "arrived" and "released" before a ticker counted it,
        and the key would be freed while this rank still holds it."""
        if self.events:
            self.apply_events()
        self.count(source, key, event)

    def count(self, source, key, event):
        reach = self.reachability.get(key)
        if reach is None:
            return
        reach.apply(event, source, self.rt.rank)
        if reach.unreachable():
            del self.reachability[key]
            self.on_unreachable(key)


class BorrowedCounts:
    """A borrower's references per id, and what the owner must be told of each event."""

    def __init__(self):
        self.counts = {}
        self.announced = set()   # ids whose owner was told a reference arrived here, and not yet that all went

    def apply(self, key, event):
        """(the notice for the owner or None, whether this rank's last reference to ``key`` just went)."""
        if event == PICKLED or event == PINNED:
            return event, False
        held = self.counts.get(key, 0)
        if event == DELETED:
            if held > 1:
                self.counts[key] = held - 1
                return None, False
            self.counts.pop(key, None)
            if key in self.announced:
                self.announced.discard(key)
                return RELEASED, True
            return None, True
        self.counts[key] = held + 1
        if event == ARRIVED:
            self.announced.add(key)
            return ARRIVED, False
        return None, False
