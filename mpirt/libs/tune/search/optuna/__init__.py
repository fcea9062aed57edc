"""``ray.tune.search.optuna``: OptunaSearch (needs ``pip install optuna``)."""
from .optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
