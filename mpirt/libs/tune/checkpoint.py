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
_METADATA_FILE = ".metadata.pkl"


class Checkpoint:
    """Saved state of a trial: ``Checkpoint.from_directory(dir)`` (Ray's way) or ``from_dict``.

    ``Checkpoint(path)`` reads the directory ``path`` now (Ray reads it lazily, from wherever it
    is stored); ``path`` is that directory, or the checkpoint's HDF5 file once the driver stored it.
    """

    def __init__(self, path=None, filesystem=None, *, files=None):
        if filesystem is not None:
            raise NotImplementedError("Checkpoint(filesystem=...) is not supported by mpirt: checkpoints are read "
                                      "from a local or shared file system path")
        if path is not None and files is not None:
            raise TypeError("Checkpoint() takes a directory path or files, not both")
        # relative path -> bytes; a dict checkpoint is one pickled file
        self._files = _read_directory(path) if path is not None else dict(files or {})
        self.path = os.fspath(path) if path is not None else None
        self.filesystem = None

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise TypeError(f"Checkpoint.from_dict needs a dict, got {type(data).__name__}")
        return cls(files={_DICT_FILE: pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)})

    @classmethod
    def from_directory(cls, path):
        """A checkpoint holding the files of directory ``path`` (copied now: the directory may go)."""
        return cls(path)

    @property
    def files(self):
        """Relative path -> bytes of every file in the checkpoint."""
        return dict(self._files)

    def get_metadata(self):
        """The metadata dict attached with ``set_metadata``/``update_metadata`` (empty if none)."""
        data = self._files.get(_METADATA_FILE)
        return pickle.loads(data) if data is not None else {}

    def set_metadata(self, metadata):
        if not isinstance(metadata, dict):
            raise TypeError(f"Checkpoint metadata must be a dict, got {type(metadata).__name__}")
        self._files[_METADATA_FILE] = pickle.dumps(dict(metadata))

    def update_metadata(self, metadata):
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    def is_dict(self):
        return _DICT_FILE in self._files

    def to_dict(self):
        if _DICT_FILE in self._files:
            return pickle.loads(self._files[_DICT_FILE])
        raise ValueError("this checkpoint was made from a directory; use to_directory() or as_directory()")

    def to_directory(self, path=None):
        """Write the checkpoint's files into ``path`` (a new temporary directory by default); returns it."""
        path = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="mpirt_checkpoint_")
        os.makedirs(path, exist_ok=True)
        for rel, data in self._files.items():
            full = os.path.join(path, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        return path

    @classmethod
    def from_files(cls, files, path=None):
        """A checkpoint of ``files`` ({relative path: bytes}), e.g. read back from its HDF5 file."""
        checkpoint = cls(files=files)
        checkpoint.path = path
        return checkpoint

    @contextlib.contextmanager
    def as_directory(self):
        path = self.to_directory()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def __repr__(self):
        if self.path is not None:
            return f"Checkpoint(filesystem=local, path={self.path})"
        kind = "dict" if self.is_dict() else f"{len(self._files)} files"
        return f"Checkpoint({kind}, {sum(len(v) for v in self._files.values())} bytes)"

    def __getstate__(self):
        return {"_files": self._files, "path": self.path}

    def __setstate__(self, state):
        self._files = state["_files"]
        self.path = state.get("path")
        self.filesystem = None

    def __eq__(self, other):
        return isinstance(other, Checkpoint) and other._files == self._files


def _read_directory(path):
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint directory {path!r} does not exist")
    files = {}
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, path)] = f.read()
    return files
