"""``ray.tune.search.nevergrad``: the name exists; mpirt does not wrap it yet (see docs/tune.md)."""
from .._unwrapped import unwrapped_searcher

NevergradSearch = unwrapped_searcher("NevergradSearch", "nevergrad", "Nevergrad must be installed! You can install Nevergrad with the command: `pip install nevergrad`.")

__all__ = ["NevergradSearch"]
