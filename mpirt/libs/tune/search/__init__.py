"""Search algorithms (``ray.tune.search``): where trial configs come from.

``BasicVariantGenerator`` expands grids and samples domains (the default). The model-based
searchers live in subpackages named as in Ray and import their package when built:
``optuna.OptunaSearch``, ``hyperopt.HyperOptSearch``, ``bayesopt.BayesOptSearch``.
"""
import inspect

from ..search_space import grid_search
from .basic_variant import BasicVariantGenerator
from .concurrency_limiter import ConcurrencyLimiter
from .searcher import MissingSearcherPackage, Searcher

_SEARCHERS = {
    "variant_generator": ("basic_variant", "BasicVariantGenerator"),
    "random": ("basic_variant", "BasicVariantGenerator"),
    "ax": ("ax", "AxSearch"),
    "hyperopt": ("hyperopt", "HyperOptSearch"),
    "bayesopt": ("bayesopt", "BayesOptSearch"),
    "bohb": ("bohb", "TuneBOHB"),
    "nevergrad": ("nevergrad", "NevergradSearch"),
    "optuna": ("optuna", "OptunaSearch"),
    "zoopt": ("zoopt", "ZOOptSearch"),
    "hebo": ("hebo", "HEBOSearch"),
}


def _searcher_class(module, name):
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def create_searcher(search_alg, **kwargs):
    """A searcher by name (``"optuna"``, ``"hyperopt"``, ...); unknown keyword arguments are dropped."""
    key = search_alg.lower() if isinstance(search_alg, str) else search_alg
    if key not in _SEARCHERS:
        raise ValueError(f"The `search_alg` argument must be one of {list(_SEARCHERS)}. Got: {search_alg}")
    cls = _searcher_class(*_SEARCHERS[key])
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})


def __getattr__(name):
    # ``from mpirt.libs.tune.search import OptunaSearch`` keeps working (it was defined here)
    if name == "OptunaSearch":
        return _searcher_class("optuna", "OptunaSearch")
    if name == "HyperOptSearch":
        return _searcher_class("hyperopt", "HyperOptSearch")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Searcher", "BasicVariantGenerator", "ConcurrencyLimiter", "grid_search", "create_searcher",
           "MissingSearcherPackage", "OptunaSearch", "HyperOptSearch"]
