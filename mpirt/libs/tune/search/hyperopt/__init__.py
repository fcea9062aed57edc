"""``ray.tune.search.hyperopt``: HyperOptSearch (needs ``pip install hyperopt``)."""
from .hyperopt_search import HyperOptSearch

__all__ = ["HyperOptSearch"]
