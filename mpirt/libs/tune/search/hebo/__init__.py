"""``ray.tune.search.hebo``: the name exists; mpirt does not wrap it yet (see docs/tune.md)."""
from .._unwrapped import unwrapped_searcher

HEBOSearch = unwrapped_searcher("HEBOSearch", "hebo", "HEBO must be installed! You can install HEBO with the command: `pip install 'HEBO>=0.2.0'`.")

__all__ = ["HEBOSearch"]
