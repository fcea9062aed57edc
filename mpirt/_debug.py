"""State dumps for diagnosing a hang: ``MPIRT_DEBUG_DUMP=SECONDS`` makes every
non-driver rank print its scheduling state to stderr that often."""
import sys


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
            lines.append(f"  executor running={len(rt.executor.running)} slots(active, queued, blocked, released)={slots}")
        if rt.head is not None:
            lines.append(f"  head available={rt.head.available} waiting requests={len(rt.head.requests)} "
                         f"leases={len(rt.head.leases)}")
    sys.__stderr__.write("\n".join(lines) + "\n")
