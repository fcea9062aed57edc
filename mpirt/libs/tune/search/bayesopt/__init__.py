"""``ray.tune.search.bayesopt``: BayesOptSearch (needs ``pip install bayesian-optimization``)."""
from .bayesopt_search import BayesOptSearch

__all__ = ["BayesOptSearch"]
