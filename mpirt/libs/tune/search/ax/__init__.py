"""``ray.tune.search.ax``: the name exists; mpirt does not wrap it yet (see docs/tune.md)."""
from .._unwrapped import unwrapped_searcher

AxSearch = unwrapped_searcher("AxSearch", "ax", "Ax must be installed! You can install AxSearch with the command: `pip install ax-platform`.")

__all__ = ["AxSearch"]
