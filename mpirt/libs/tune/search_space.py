"""Search spaces: ``grid_search`` and sampling domains, nested anywhere in a config dict.

``generate_variants`` expands every grid (cross product) and samples every
domain; ``sample_from`` functions see the partly resolved config (``spec.config``)
so one value can depend on another, as in Ray Tune.
"""
import copy
import itertools
import math
import random
import types


class Domain:
    """A distribution to sample one config value from."""

    def sample(self, rng, spec=None):
        raise NotImplementedError

    def quantized(self, value):
        q = getattr(self, "q", None)
        if q is None:
            return value
        return type(value)(round(value / q) * q) if isinstance(value, int) else round(round(value / q) * q, 12)


class Categorical(Domain):
    def __init__(self, categories):
        categories = list(categories)
        if not categories:
            raise ValueError("tune.choice() needs at least one category")
        self.categories = categories

    def sample(self, rng, spec=None):
        return copy.deepcopy(rng.choice(self.categories))

    def __repr__(self):
        return f"choice({self.categories!r})"


class Float(Domain):
    def __init__(self, lower, upper, log=False, q=None):
        _check_bounds("uniform" if not log else "loguniform", lower, upper)
        if log and lower <= 0:
            raise ValueError(f"tune.loguniform() needs lower > 0, got {lower}")
        self.lower, self.upper, self.log, self.q = float(lower), float(upper), log, q

    def sample(self, rng, spec=None):
        if self.log:
            value = math.exp(rng.uniform(math.log(self.lower), math.log(self.upper)))
        else:
            value = rng.uniform(self.lower, self.upper)
        return self.quantized(value)

    def __repr__(self):
        return f"{'loguniform' if self.log else 'uniform'}({self.lower}, {self.upper}{', q=%s' % self.q if self.q else ''})"


class Integer(Domain):
    """Integers in ``[lower, upper)`` (``randint``), or ``[lower, upper]`` when quantized (``qrandint``)."""

    def __init__(self, lower, upper, q=None, log=False):
        _check_bounds("randint", lower, upper)
        self.lower, self.upper, self.q, self.log = int(lower), int(upper), q, log

    def sample(self, rng, spec=None):
        if self.log:
            value = int(math.exp(rng.uniform(math.log(self.lower), math.log(self.upper))))
            if self.q is None:
                return min(value, self.upper - 1)
            return self._clamp(self.quantized(value))
        if self.q is not None:
            return self._clamp(self.quantized(rng.randint(self.lower, self.upper)))
        return rng.randrange(self.lower, self.upper)

    def _clamp(self, value):
        """Into ``[lower, upper]`` on multiples of ``q`` (when the bounds themselves are not multiples)."""
        low = -(-self.lower // self.q) * self.q
        high = self.upper // self.q * self.q
        return int(min(max(value, low), high)) if low <= high else int(min(max(value, self.lower), self.upper))

    def __repr__(self):
        return f"randint({self.lower}, {self.upper})"


class Normal(Domain):
    def __init__(self, mean=0.0, sd=1.0, q=None):
        if sd <= 0:
            raise ValueError(f"tune.randn() needs sd > 0, got {sd}")
        self.mean, self.sd, self.q = float(mean), float(sd), q

    def sample(self, rng, spec=None):
        return self.quantized(rng.gauss(self.mean, self.sd))

    def __repr__(self):
        return f"randn({self.mean}, {self.sd})"


class Function(Domain):
    """``sample_from(lambda spec: ...)``: computed from the rest of the config."""

    def __init__(self, func):
        if not callable(func):
            raise TypeError(f"tune.sample_from() needs a callable, got {func!r}")
        self.func = func

    def sample(self, rng, spec=None):
        try:
            return self.func(spec)
        except TypeError:
            return self.func()

    def __repr__(self):
        return f"sample_from({getattr(self.func, '__name__', self.func)})"


def _check_bounds(name, lower, upper):
    for value in (lower, upper):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"tune.{name}() bounds must be numbers, got {value!r}")
    if not lower < upper:
        raise ValueError(f"tune.{name}() needs lower < upper, got {lower} >= {upper}")


def choice(categories):
    return Categorical(categories)


def uniform(lower, upper):
    return Float(lower, upper)


def quniform(lower, upper, q):
    return Float(lower, upper, q=q)


def loguniform(lower, upper):
    return Float(lower, upper, log=True)


def qloguniform(lower, upper, q):
    return Float(lower, upper, log=True, q=q)


def randint(lower, upper):
    return Integer(lower, upper)


def qrandint(lower, upper, q=1):
    return Integer(lower, upper, q=q)


def lograndint(lower, upper):
    return Integer(lower, upper, log=True)


def qlograndint(lower, upper, q):
    """Integers in ``[lower, upper]`` sampled log-uniformly, rounded to multiples of ``q``."""
    return Integer(lower, upper, q=q, log=True)


def randn(mean=0.0, sd=1.0):
    return Normal(mean, sd)


def qrandn(mean, sd, q):
    """Normally distributed floats rounded to multiples of ``q``."""
    return Normal(mean, sd, q=q)


def sample_from(func):
    return Function(func)


def grid_search(values):
    """Try every value (and every combination with other grids in the config)."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise TypeError(f"tune.grid_search() needs a list of values, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError("tune.grid_search() needs at least one value")
    return {"grid_search": values}


def _is_grid(value):
    return isinstance(value, dict) and set(value) == {"grid_search"}


def _walk(config, path=()):
    """Yield (path, value) for every leaf, descending into dicts (not into grids)."""
    if isinstance(config, dict) and not _is_grid(config):
        for key, value in config.items():
            yield from _walk(value, path + (key,))
    else:
        yield path, config


def _assign(config, path, value):
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def validate(config):
    """Raise a clear error for a malformed search space (before any trial starts)."""
    if not isinstance(config, dict):
        raise TypeError(f"a Tune config must be a dict, got {type(config).__name__}")
    for path, value in _walk(config):
        if path and path[-1] == "grid_search":
            parent = ".".join(map(str, path[:-1]))
            raise ValueError(f"config[{parent!r}]: a grid_search dict must have no other keys")
        where = ".".join(map(str, path))
        if _is_grid(value) and not isinstance(value["grid_search"], (list, tuple)):
            raise TypeError(f"config[{where!r}]: grid_search needs a list, got {value['grid_search']!r}")
        if isinstance(value, types.FunctionType) and value.__name__ == "<lambda>":
            raise TypeError(f"config[{where!r}] is a bare lambda: wrap it in tune.sample_from(...)")


def count_grid(config):
    total = 1
    for _path, value in _walk(config):
        if _is_grid(value):
            total *= len(value["grid_search"])
    return total


def has_domains(config):
    return any(isinstance(v, Domain) or _is_grid(v) for _p, v in _walk(config))


class _Spec:
    """What ``sample_from`` functions receive: ``spec.config`` is the config being resolved."""

    def __init__(self, config):
        self.config = _AttrDict.wrap(config)


class _AttrDict(dict):
    __getattr__ = dict.__getitem__

    @classmethod
    def wrap(cls, value):
        if isinstance(value, dict):
            return cls({k: cls.wrap(v) for k, v in value.items()})
        return value


def generate_variants(config, num_samples=1, rng=None):
    """Yield ``num_samples`` x (grid combinations) resolved configs."""
    validate(config)
    rng = rng or random.Random()
    leaves = list(_walk(config))
    grids = [(path, value["grid_search"]) for path, value in leaves if _is_grid(value)]
    for _ in range(num_samples):
        for combination in itertools.product(*[values for _p, values in grids]):
            resolved = copy.deepcopy(config)
            for (path, _values), value in zip(grids, combination):
                _assign(resolved, path, copy.deepcopy(value))
            resolve_domains(resolved, rng)
            yield resolved


def resolve_domains(config, rng):
    """Sample every Domain in ``config`` in place; plain domains first, then sample_from."""
    leaves = list(_walk(config))
    for path, value in leaves:
        if isinstance(value, Domain) and not isinstance(value, Function):
            _assign(config, path, value.sample(rng))
    for path, value in leaves:
        if isinstance(value, Function):
            _assign(config, path, value.sample(rng, _Spec(config)))
    return config
