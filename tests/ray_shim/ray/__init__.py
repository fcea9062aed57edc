"""A ``ray`` package that is mpirt, for running Ray programs unchanged in the tests.

Put ``tests/ray_shim`` first on ``sys.path`` (or ``PYTHONPATH``) and ``import ray`` gives
``mpirt``; ``ray.X`` gives ``mpirt.X``, with Ray's libraries mapped to ``mpirt.libs``
(``ray.tune`` -> ``mpirt.libs.tune``, ``ray.rllib`` -> ``mpirt.libs.rl``). Each alias is the
same module object as its target, so ``ray.util.ActorPool is mpirt.util.ActorPool``.
It lives in the tests only: mpirt itself never claims the name ``ray``.
"""
import importlib.abc
import importlib.util
import sys

from mpirt._library_names import AliasLoader   # the same loader as mpirt's own library names

# Longest prefix first: the first match wins. (``mpirt.tune`` and the other library names under mpirt are
# mpirt's own aliases: ``mpirt/_library_names.py``.)
_LIBRARIES = (("rllib", "mpirt.libs.rl"), ("tune", "mpirt.libs.tune"), ("train", "mpirt.libs.train"),
              ("air", "mpirt.libs.air"))
_PREFIXES = tuple((f"ray.{name}", target) for name, target in _LIBRARIES) + (("ray", "mpirt"),)


def _target(fullname):
    for alias, real in _PREFIXES:
        if fullname == alias or fullname.startswith(alias + "."):
            return real + fullname[len(alias):]
    return None


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        real = _target(fullname)
        if real is None or fullname == "ray":
            return None
        if importlib.util.find_spec(real) is None:
            return None  # ModuleNotFoundError names the ray module, as it would without the shim
        return importlib.util.spec_from_loader(fullname, AliasLoader(real))


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())

import mpirt as _mpirt  # noqa: E402

sys.modules[__name__] = _mpirt
