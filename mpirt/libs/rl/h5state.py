"""An algorithm's state as one HDF5 file: nested dicts become groups, arrays datasets, bytes opaque
datasets, and everything else JSON in an attribute. Weights are readable by any HDF5 tool
(``h5ls -r algo.h5``) without mpirt or torch."""
import json

import numpy as np

FORMAT_VERSION = 1


def _h5py():
    """h5py, imported when a checkpoint is read or written: training works without it."""
    try:
        import h5py
    except ImportError as error:
        raise ImportError("saving and restoring RL algorithms needs h5py: pip install h5py") from error
    return h5py


def write(path, state, attrs, blobs=None):
    """Write ``state`` (nested dict) under /state, ``attrs`` (JSON-able) as root attributes and ``blobs``
    (name -> bytes, such as a pickled env creator) as opaque root datasets."""
    with _h5py().File(path, "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value)
        _write_group(f.create_group("state"), state)
        for name, data in (blobs or {}).items():
            f.create_dataset(name, data=np.void(bytes(data)))


def read_blob(path, name):
    """The bytes ``write`` stored as blob ``name``, or None."""
    with _h5py().File(path, "r") as f:
        return f[name][()].tobytes() if name in f else None


def read(path):
    """(state, attrs) as written by ``write``."""
    with _h5py().File(path, "r") as f:
        if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION or "state" not in f:
            raise ValueError(f"{path} is not an mpirt.libs.rl checkpoint (format {FORMAT_VERSION})")
        attrs = {key: json.loads(value) for key, value in f.attrs.items() if key != "format_version"}
        return _read_group(f["state"]), attrs


def _write_group(group, state):
    for key, value in state.items():
        key = str(key)
        if isinstance(value, dict):
            _write_group(group.create_group(key), value)
        elif isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
        elif isinstance(value, (bytes, bytearray)):
            group.create_dataset(key, data=np.void(bytes(value)))
        else:
            group.attrs[key] = json.dumps(value)


def _read_group(group):
    state = {key: json.loads(value) for key, value in group.attrs.items()}
    for key, item in group.items():
        if isinstance(item, _h5py().Group):
            state[key] = _read_group(item)
        else:
            value = item[()]
            state[key] = value.tobytes() if isinstance(value, np.void) else np.asarray(value)
    return state
