"""What ran where and when: events every rank records, gathered as a Chrome trace (``mpirt.timeline``).

Each rank keeps its most recent events (tasks, actor calls, time blocked in get/wait) in a bounded buffer;
``mpirt.timeline(path)`` collects them from all ranks into the Chrome trace-event format, which Perfetto
(ui.perfetto.dev) and chrome://tracing open. One process per rank, one track per thread.

Counters (``count``) are samples of a quantity over time, such as the store bytes a rank holds; they become
Chrome counter events ("ph": "C"), one counter track per name in the rank's process.
"""
import collections
import json
import threading
import time

MAX_EVENTS_PER_RANK = 200_000
events: collections.deque = collections.deque(maxlen=MAX_EVENTS_PER_RANK)
COUNTER = "counter"   # the category of ``count``'s samples


def record(category, name, start, end, **args):
    """Note that ``name`` ran from ``start`` to ``end`` (time.time() seconds) on this thread."""
    events.append((category, name, start, end, threading.get_ident(), args))


def count(name, **values):
    """Note the current value of counters ``values`` (numbers) under ``name`` on this rank."""
    moment = time.time()
    events.append((COUNTER, name, moment, moment, 0, values))


def now():
    return time.time()


def chrome_trace(events_by_rank, roles):
    """Trace events (a list of dicts) from ``{rank: [event tuples]}``."""
    trace = []
    for rank, rank_events in sorted(events_by_rank.items()):
        trace.append({"name": "process_name", "ph": "M", "pid": rank, "tid": 0,
                      "args": {"name": f"rank {rank} ({roles.get(rank, 'worker')})"}})
        for category, name, start, end, thread, args in rank_events:
            if category == COUNTER:
                trace.append({"name": name, "cat": category, "ph": "C", "pid": rank, "ts": start * 1e6, "args": args})
                continue
            trace.append({"name": name, "cat": category, "ph": "X", "pid": rank, "tid": thread,
                          "ts": start * 1e6, "dur": max(end - start, 0.0) * 1e6, "args": args})
    return trace


def write(path, trace):
    with open(path, "w") as f:
        json.dump(trace, f)
