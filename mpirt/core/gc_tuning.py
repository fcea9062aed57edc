"""The garbage collector's first threshold, raised for the many short-lived objects of each call."""
import gc
import os

GC_THRESHOLD = 20_000


def tune_gc():
    """Every task or actor call allocates a dozen small container objects (records, table entries, refs,
    messages) that live until its result is read. With CPython's first-generation threshold of 700 a
    collection runs every ~50 calls and moves them all into the older generations, whose scans then cost
    5-9 us per call (a third of the caller's time on async actor calls). A threshold of 20,000 lets most of
    them die unscanned. Set ``MPIRT_GC_THRESHOLD`` (0: leave the interpreter's setting alone); a threshold
    already above it is kept."""
    wanted = int(os.environ.get("MPIRT_GC_THRESHOLD", GC_THRESHOLD))
    threshold, *older = gc.get_threshold()
    if wanted and threshold and threshold < wanted:
        gc.set_threshold(wanted, *older)
