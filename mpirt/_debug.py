import os, sys, threading, time
def dump_state(rt):
    with rt.lock:
        s = rt.submitter
        out = [f"RANK {rt.rank}: tasks={len(s.tasks)} states={[r.state for r in list(s.tasks.values())[:10]]} queues={ {k:len(q) for k,q in s.queues.items()} } requested={dict(s.requested)} leases={ {k:[(l.lease_id,l.worker,l.inflight,l.steal_pending) for l in v] for k,v in s.leases.items()} }"]
        if rt.executor:
            e = rt.executor
            out.append(f"  exec slots={ {k:(v.active,len(v.queue),v.blocked,v.released) for k,v in e.slots.items()} } running={len(e.running)}")
        if rt.head:
            h = rt.head
            out.append(f"  head avail={h.available} requests={list(h.requests)} leases={h.leases}")
    sys.__stderr__.write("\n".join(out) + "\n")
