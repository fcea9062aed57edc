"""Who can still reach an object or an actor: distributed reference counting.

The owner of an id keeps a ``Reachability``: its own live references, the
ranks that borrow some, and references pickled but not yet unpickled
("in flight"). A borrower counts its own references and tells the owner when
one arrives, when it pickles one, and when its last one is gone; its
"pickled" notice travels before its "released" one on the same channel, so the
count cannot reach zero while a reference is still travelling. A reference
pickled into a stored value (``put``, a task result) may be unpickled any
number of times: it pins the id, which then lives until the session ends.
"""

CREATED, ARRIVED, DELETED, PICKLED, PINNED, RELEASED = "created", "arrived", "deleted", "pickled", "pinned", "released"


class Reachability:
    __slots__ = ("local", "borrowers", "in_flight", "pinned")

    def __init__(self):
        self.local = 0
        self.borrowers = set()
        self.in_flight = 0
        self.pinned = False

    def apply(self, event, source, owner_rank):
        if event == PICKLED:
            self.in_flight += 1
        elif event == PINNED:
            self.pinned = True
        elif source == owner_rank:
            if event in (CREATED, ARRIVED):
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


class BorrowedCounts:
    """A borrower's references per id; returns what the owner must be told (or None)."""

    def __init__(self):
        self.counts = {}

    def apply(self, key, event):
        held = self.counts.get(key, 0)
        if event in (PICKLED, PINNED):
            return event
        if event == DELETED:
            if held <= 1:
                self.counts.pop(key, None)
                return RELEASED
            self.counts[key] = held - 1
            return None
        self.counts[key] = held + 1
        return ARRIVED if event == ARRIVED else None
