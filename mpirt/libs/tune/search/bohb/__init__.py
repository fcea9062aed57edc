"""``ray.tune.search.bohb``: the name exists; mpirt does not wrap it yet (see docs/tune.md)."""
from .._unwrapped import unwrapped_searcher

TuneBOHB = unwrapped_searcher("TuneBOHB", "hpbandster", "HpBandSter must be installed! You can install HpBandSter with the command: `pip install hpbandster ConfigSpace`.")

__all__ = ["TuneBOHB"]
