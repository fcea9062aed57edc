"""``ray.tune.search.sample``: the search-space functions and domain classes."""
from ..search_space import (Categorical, Domain, Float, Function, Integer, Normal, choice, lograndint,  # noqa: F401
                            loguniform, qlograndint, qloguniform, qrandint, qrandn, quniform, randint, randn,
                            sample_from, uniform)
