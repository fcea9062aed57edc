"""State dumps for diagnosing a hang: ``MPIRT_DEBUG_DUMP=SECONDS`` makes every rank print its
scheduling state to stderr that often (``MPIRT_DEBUG_STACKS=1``: with its threads' stacks)."""
import os
import sys
import threading
import traceback

from .actor_caller import ActorState


def dump_state(rt):
    with rt.lock:
        submitter = rt.submitter
        lines = [
            f"[mpirt rank {rt.rank}] tasks pending={len(submitter.tasks)} "
            f"queued={ {k: len(q) for k, q in submitter.queues.items() if q} } "
            f"lease requests={ {k: n for k, n in submitter.requested.items() if n} } "
            f"leases={ {k: [(x.lease_id, x.worker, x.inflight) for x in v] for k, v in submitter.leases.items() if v} }"
        ]
        if rt.executor is not None:
            slots = {k: (s.active, len(s.queue), s.blocked, s.released) for k, s in rt.executor.slots.items()}
            lines.append(f"  executor running={len(rt.executor.running)} "
                         f"slots(active, queued, blocked, released)={slots}")
        if rt.actor_host is not None:
            lines.append(f"  hosted actors={list(rt.actor_host.actors)}")
        owned = {a: (ActorState(s.state).name, s.location, len(s.queue), s.restarts_left)
                 for a, s in rt.actors.actors.items()}
        if owned:
            lines.append(f"  actor states (state, location, queued, restarts left)={owned}")
        if rt.head is not None:
            lines.append(f"  head available={rt.head.available} waiting requests={list(rt.head.requests)} "
                         f"leases={len(rt.head.leases)} actors={rt.head.actors} workers={rt.head.workers} "
                         f"coming={rt.head.coming}")
    lines.append(f"  dead={sorted(rt.failures.dead)} size={rt.size}")
    if os.environ.get("MPIRT_DEBUG_STACKS"):
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            lines.append(f"  thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame)[-4:]))
    sys.__stderr__.write("\n".join(lines) + "\n")
