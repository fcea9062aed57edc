"""Checkpoints: a trial's saved state, as a dict or a directory of files.

A checkpoint is made on whatever rank runs the trial and travels to the driver
as plain data (``Checkpoint`` pickles its files' bytes), so trials need no
shared file system; the driver stores it next to the experiment's HDF5 file.
"""
import contextlib
import os
import pickle
import shutil
import tempfile

_DICT_FILE = "checkpoint_dict.pkl"


class Checkpoint:
    """Saved state of a trial: ``from_dict``/``to_dict`` or ``from_directory``/``to_directory``."""

    def __init__(self, files=None):
        # relative path -> bytes; a dict checkpoint is one pickled file
        self._files = dict(files or {})

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise TypeError(f"Checkpoint.from_dict needs a dict, got {type(data).__name__}")
        return cls({_DICT_FILE: pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)})

    @classmethod
    def from_directory(cls, path):
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"checkpoint directory {path!r} does not exist")
        files = {}
        for root, _dirs, names in os.walk(path):
            for name in names:
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    files[os.path.relpath(full, path)] = f.read()
        return cls(files)

    @property
    def files(self):
        """Relative path -> bytes of every file in the checkpoint."""
        return dict(self._files)

    def is_dict(self):
        return _DICT_FILE in self._files

    def to_dict(self):
        if _DICT_FILE in self._files:
            return pickle.loads(self._files[_DICT_FILE])
        raise ValueError("this checkpoint was made from a directory; use to_directory() or as_directory()")

    def to_directory(self, path=None):
        path = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="mpirt_checkpoint_")
        os.makedirs(path, exist_ok=True)
        for rel, data in self._files.items():
            full = os.path.join(path, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        return path

    @contextlib.contextmanager
    def as_directory(self):
        path = self.to_directory()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def __repr__(self):
        kind = "dict" if self.is_dict() else f"{len(self._files)} files"
        return f"Checkpoint({kind}, {sum(len(v) for v in self._files.values())} bytes)"

    def __eq__(self, other):
        return isinstance(other, Checkpoint) and other._files == self._files
