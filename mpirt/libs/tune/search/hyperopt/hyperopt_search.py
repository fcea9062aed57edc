"""``HyperOptSearch``: HyperOpt's Tree-structured Parzen Estimator proposes each trial's config.

HyperOpt is written for its own ``fmin`` loop; this drives its ``Trials`` store and
``tpe.suggest`` one trial at a time (ask), and writes each finished trial's loss back (tell).
HyperOpt minimizes, so a ``mode="max"`` metric is negated.
"""
import copy
import functools
import random

from ... import search_space
from ..searcher import Searcher, build_config, check_metric_mode, import_optional, label, searchable_leaves


class HyperOptSearch(Searcher):
    """Needs ``pip install hyperopt``. ``space`` is a Tune search space (or the Tuner's
    ``param_space``) or a native HyperOpt space (a dict of ``hp.*`` expressions)."""

    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, n_initial_points=20,
                 random_state_seed=None, gamma=0.25):
        self._hpo = import_optional("hyperopt", "HyperOpt must be installed! Run `pip install hyperopt`.")
        super().__init__(metric, mode)
        if n_initial_points is not None and (not isinstance(n_initial_points, int) or n_initial_points < 0):
            raise ValueError(f"n_initial_points must be an integer >= 0, got {n_initial_points!r}")
        self._algo = functools.partial(self._hpo.tpe.suggest, n_startup_jobs=n_initial_points or 20, gamma=gamma)
        self._points = [dict(p) for p in points_to_evaluate or []]
        import numpy as np
        self._rng = np.random.default_rng(random_state_seed)
        self._py_rng = random.Random(random_state_seed)
        self._space = space
        self._domain = None
        self._live = {}                      # trial_id -> hyperopt trial id
        if space is not None:
            self._setup(space)

    def set_search_properties(self, metric, mode, config, **spec):
        if self._domain is not None:
            return False
        super().set_search_properties(metric, mode, config)
        self._setup(config)
        return True

    def _setup(self, space):
        hp = self._hpo.hp
        self._space = space
        if search_space.has_domains(space) or not space:
            self._leaves = searchable_leaves(space, "HyperOpt")
            self._native = False
            hp_space = {label(path): self._convert(hp, label(path), domain) for path, domain in self._leaves}
        else:
            self._leaves, self._native = [], True
            hp_space = space
        self._hp_space = hp_space
        self._domain = self._hpo.Domain(lambda spc: spc, hp_space)
        self._trials = self._hpo.Trials()

    @staticmethod
    def _convert(hp, name, domain):
        import math
        if isinstance(domain, search_space.Categorical):
            return hp.choice(name, domain.categories)
        if isinstance(domain, search_space.Float):
            if domain.log:
                low, high = math.log(domain.lower), math.log(domain.upper)
                return hp.qloguniform(name, low, high, domain.q) if domain.q else hp.loguniform(name, low, high)
            return (hp.quniform(name, domain.lower, domain.upper, domain.q) if domain.q
                    else hp.uniform(name, domain.lower, domain.upper))
        if isinstance(domain, search_space.Integer):
            if domain.log:
                return hp.qloguniform(name, math.log(domain.lower), math.log(domain.upper), domain.q or 1)
            if domain.q:
                return hp.quniform(name, domain.lower, domain.upper, domain.q)
            return hp.randint(name, domain.lower, domain.upper)
        if isinstance(domain, search_space.Normal):
            return hp.qnormal(name, domain.mean, domain.sd, domain.q) if domain.q else hp.normal(name, domain.mean,
                                                                                              domain.sd)
        raise ValueError(f"HyperOpt does not support parameters of type `{type(domain).__name__}` "
                         f"(config[{name!r}] = {domain!r})")

    def _values(self, doc):
        """The config values HyperOpt chose in ``doc`` (choice indices turned into their values)."""
        chosen = {name: vals[0] for name, vals in doc["misc"]["vals"].items() if vals}
        values = self._hpo.space_eval(self._hp_space, chosen)
        if self._native:
            return values
        out = {}
        for path, domain in self._leaves:
            value = values[label(path)]
            if isinstance(domain, search_space.Integer):
                value = int(value)
            out[path] = value
        return out

    def _point_doc(self, tid, point):
        """A HyperOpt trial document for a config given by the user (``points_to_evaluate``)."""
        flat = {label(p): v for p, v in search_space._walk(point)}
        vals = {}
        for path, domain in self._leaves:
            # a partial point: the values it leaves out are sampled
            value = flat[label(path)] if label(path) in flat else domain.sample(self._py_rng)
            vals[label(path)] = [domain.categories.index(value)
                                 if isinstance(domain, search_space.Categorical) else value]
        misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": None,
                "idxs": {name: [tid] for name in vals}, "vals": vals}
        return self._trials.new_trial_docs([tid], [None], [{"status": "new"}], [misc])

    def suggest(self, trial_id):
        if self._domain is None:
            check_metric_mode(self)
            raise self._no_space_error()
        check_metric_mode(self)
        tid = self._trials.new_trial_ids(1)[0]
        if self._points:
            docs = self._point_doc(tid, self._points.pop(0))
        else:
            self._trials.refresh()
            docs = self._algo([tid], self._domain, self._trials, int(self._rng.integers(2 ** 31 - 1)))
        self._trials.insert_trial_docs(docs)
        self._trials.refresh()
        doc = self._doc(tid)
        doc["state"] = self._hpo.JOB_STATE_RUNNING
        self._live[trial_id] = tid
        values = self._values(doc)
        if self._native:
            return copy.deepcopy(values)
        return build_config(self._space, values)

    def _doc(self, tid):
        return next(d for d in self._trials._dynamic_trials if d["tid"] == tid)

    def on_trial_complete(self, trial_id, result=None, error=False):
        tid = self._live.pop(trial_id, None)
        if tid is None:
            return
        doc = self._doc(tid)
        if error or not result or self.metric not in result:
            doc["state"] = self._hpo.JOB_STATE_ERROR
            doc["misc"]["error"] = (str(TypeError), "trial failed or did not report the metric")
        else:
            sign = -1.0 if self.mode == "max" else 1.0
            doc["state"] = self._hpo.JOB_STATE_DONE
            doc["result"] = {"loss": sign * float(result[self.metric]), "status": "ok"}
        self._trials.refresh()

    def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
        tid = self._trials.new_trial_ids(1)[0]
        docs = self._point_doc(tid, parameters)
        self._trials.insert_trial_docs(docs)
        self._trials.refresh()
        doc = self._doc(tid)
        if error:
            doc["state"] = self._hpo.JOB_STATE_ERROR
        else:
            doc["state"] = self._hpo.JOB_STATE_DONE
            doc["result"] = {"loss": (-1.0 if self.mode == "max" else 1.0) * float(value), "status": "ok"}
        self._trials.refresh()
