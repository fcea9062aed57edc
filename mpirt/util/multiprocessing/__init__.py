"""Ray's ``ray.util.multiprocessing``: the standard library's ``multiprocessing.Pool`` on mpirt
actors spread over the job's ranks, so existing code moves over by changing one import::

    from mpirt.util.multiprocessing import Pool      # was: from multiprocessing import Pool

``TimeoutError`` and ``JoinableQueue`` are the standard library's, as in Ray's module.
"""
from multiprocessing import JoinableQueue, TimeoutError

from .pool import AsyncResult, IMapIterator, Pool  # noqa: F401 - the result types, for annotations

__all__ = ["Pool", "TimeoutError", "JoinableQueue"]
