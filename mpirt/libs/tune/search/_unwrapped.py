"""Searchers Ray wraps that mpirt does not wrap yet: the module paths exist, the class raises
Ray's message naming the package when it is missing, and ``NotImplementedError`` when it is
installed (rather than silently running something else)."""
from .searcher import Searcher, import_optional


def unwrapped_searcher(name, module, message):
    def __init__(self, *args, **kwargs):
        import_optional(module, message)
        raise NotImplementedError(f"mpirt does not wrap {name} yet: use OptunaSearch, HyperOptSearch or "
                                  "BayesOptSearch (ray.tune.search.optuna/hyperopt/bayesopt)")

    return type(name, (Searcher,), {"__init__": __init__, "__doc__": f"Ray's {name} (not wrapped by mpirt)."})
