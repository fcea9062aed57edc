"""``ray.tune.search.zoopt``: the name exists; mpirt does not wrap it yet (see docs/tune.md)."""
from .._unwrapped import unwrapped_searcher

ZOOptSearch = unwrapped_searcher("ZOOptSearch", "zoopt", "ZOOpt not found - please install zoopt by `pip install -U zoopt`.")

__all__ = ["ZOOptSearch"]
