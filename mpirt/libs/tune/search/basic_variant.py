"""Ray's default search: every ``grid_search`` combination times ``num_samples`` random samples."""
import random

from .. import search_space
from .searcher import Searcher


class BasicVariantGenerator(Searcher):
    """Grid search over ``grid_search`` values times ``num_samples`` random samples of the domains.

    Seeded (the experiment's seed by default), so a resumed experiment regenerates the same
    configs and can hand new object references to the trials it already made.
    """

    def __init__(self, points_to_evaluate=None, max_concurrent=0, constant_grid_search=False,
                 random_state=None):
        super().__init__()
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, (list, tuple)):
            raise TypeError(f"points_to_evaluate must be a list of config dicts, got {points_to_evaluate!r}")
        if not isinstance(max_concurrent, int) or max_concurrent < 0:
            raise ValueError(f"max_concurrent must be an integer >= 0 (0: no limit), got {max_concurrent!r}")
        self._points = [dict(p) for p in points_to_evaluate or []]
        self.max_concurrent = max_concurrent
        self.random_state = random_state
        self._rng = random.Random(random_state)
        self._variants = None
        self._next = 0

    def set_search_properties(self, metric, mode, config, num_samples=1, **spec):
        super().set_search_properties(metric, mode, config)
        self._variants = self._points + list(search_space.generate_variants(config, num_samples, self._rng))
        self._next = 0
        return True

    def seed_if_unseeded(self, seed):
        """Seed with the experiment's seed unless the user chose one (so restore regenerates the configs)."""
        if self.random_state is None:
            self.random_state = seed
            self._rng.seed(seed)

    def suggest(self, trial_id):
        if self._next >= len(self._variants):
            return Searcher.FINISHED
        config = self._variants[self._next]
        self._next += 1
        return config

    def variant(self, index):
        """The config the ``index``-th suggestion was (re-made from the param space)."""
        return self._variants[index] if index < len(self._variants) else None

    def skip(self, count):
        """On resume: the first ``count`` variants were already made into trials."""
        self._next = min(self._next + count, len(self._variants))

    def total_trials(self):
        return len(self._variants)
