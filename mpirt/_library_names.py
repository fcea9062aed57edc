"""Ray's library names under mpirt: ``mpirt.tune``, ``mpirt.train`` and ``mpirt.rllib`` are ``mpirt.libs.tune``,
``mpirt.libs.train`` and ``mpirt.libs.rl``, as attributes (``mpirt.tune.run``) and as imports
(``import mpirt.tune``, ``from mpirt.tune.search.optuna import OptunaSearch``), which Ray programs use both ways.

An import finder maps each such name to the real module and returns that same module object, so
``mpirt.tune is mpirt.libs.tune`` and each module is imported once, under its real name.
"""
import importlib
import importlib.abc
import importlib.util
import sys

LIBRARIES = {"tune": "mpirt.libs.tune", "train": "mpirt.libs.train", "rllib": "mpirt.libs.rl"}


def real_name(fullname: str, root: str = "mpirt") -> str | None:
    """The module ``fullname`` stands for (``<root>.tune.search`` -> ``mpirt.libs.tune.search``), or None."""
    for name, target in LIBRARIES.items():
        alias = f"{root}.{name}"
        if fullname == alias or fullname.startswith(alias + "."):
            return target + fullname[len(alias):]
    return None


class AliasLoader(importlib.abc.Loader):
    """Gives the real module for an alias: imported under its real name, then its own spec put back."""

    def __init__(self, target: str):
        self.target = target
        self._real = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._real = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module):
        module.__spec__, module.__loader__ = self._real


class LibraryFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        real = real_name(fullname)
        if real is None or importlib.util.find_spec(real) is None:
            return None    # ModuleNotFoundError then names the module asked for
        return importlib.util.spec_from_loader(fullname, AliasLoader(real))


def install() -> None:
    if not any(isinstance(finder, LibraryFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, LibraryFinder())   # before the path finder, which would load a second copy
