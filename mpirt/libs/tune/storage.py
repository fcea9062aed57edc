"""Where an experiment's results live: ``<local_dir>/<name>/``.

- ``experiment_state.jsonl``: an append-only journal of every trial, result,
  checkpoint and status change. It is the source of truth for ``resume``: each
  line is written and flushed as it happens, so a ``kill -9`` loses at most the
  line being written (a torn last line is ignored).
- ``experiment.h5``: one HDF5 file for people and tools: each trial's config
  (attributes), metric time series (datasets) and checkpoints (external links
  to per-checkpoint HDF5 files). It is rewritten to a temporary file and renamed,
  so it is always complete, and refreshed every few seconds and at the end.
- ``<trial>/``: ``params.json``, ``result.json`` (JSON lines), ``progress.csv``,
  TensorBoard events (``tensorboard_events.py``) and ``checkpoint_*.h5``.
"""
import base64
import contextlib
import csv
import errno
import itertools
import json
import logging
import numbers
import os
import queue
import threading
import time

import cloudpickle
import numpy as np

from ... import slurm
from .checkpoint import Checkpoint
from .execution.placement_groups import resources_to_json
from .tensorboard_events import EventFile

logger = logging.getLogger(__name__)

JOURNAL = "experiment_state.jsonl"
HDF5_FILE = "experiment.h5"


def default_local_dir():
    """``$MPIRT_RESULTS_DIR``, else ``$SLURM_SUBMIT_DIR/mpirt_results`` under Slurm, else ``~/mpirt_results``."""
    return slurm.default_results_dir()


_slurm_names_given = itertools.count(1)


def reserve_default_name(local_dir, trainable_name):
    """A new experiment's name when none is given; it never names an existing experiment.

    Outside Slurm: ``<trainable>_<date>`` as in Ray, with ``_2``, ``_3``, ... when that directory
    exists (made here with ``mkdir``, so two experiments started in the same second, even by
    two processes, get different directories). Under Slurm: ``<job name>-<job id>`` for the
    script's first experiment, ``..._2`` for its second, ...: the same names when a requeued
    job runs the script again, so ``resume="AUTO"`` finds each one.
    """
    base = slurm.default_run_name()
    if base:
        number = next(_slurm_names_given)
        return base if number == 1 else f"{base}_{number}"
    base = f"{trainable_name}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    local_dir = os.path.abspath(os.path.expanduser(local_dir))
    os.makedirs(local_dir, exist_ok=True)
    for number in itertools.count(1):
        name = base if number == 1 else f"{base}_{number}"
        try:
            os.mkdir(os.path.join(local_dir, name))
            return name
        except FileExistsError:
            continue


_JSON_PLAIN = (str, int, float, bool, type(None))


def to_json(value):
    """JSON-safe copy of a result: numpy scalars and arrays become Python numbers and lists."""
    if type(value) in _JSON_PLAIN:   # most values of a result: one check, not the five below
        return value
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def flatten(data, prefix=""):
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def _encode(obj):
    return base64.b64encode(cloudpickle.dumps(obj)).decode("ascii")


def _decode(text):
    return cloudpickle.loads(base64.b64decode(text))


def _decode_or_none(text):
    """A journaled config, or None when it cannot be unpickled here (restore then needs param_space=)."""
    try:
        return _decode(text)
    except Exception:  # noqa: BLE001 - e.g. a class that no longer exists
        logger.warning("a trial's config in the journal could not be unpickled", exc_info=True)
        return None


@contextlib.contextmanager
def _naming_the_file(path, what):
    """An OSError writing the results (a full disk, a read-only directory) says which file and what to do:
    the bare error names neither (h5py's and a flushed journal's say only "No space left on device")."""
    try:
        yield
    except OSError as error:
        if error.errno is None:
            raise
        hint = (" Free space there, or give RunConfig(storage_path=...) a directory on a disk with room."
                if error.errno == errno.ENOSPC else "")
        raise type(error)(error.errno, f"Tune could not write {what}, {path}: {os.strerror(error.errno)}.{hint}") \
            from error


def _ends_cut_short(path):
    """Whether the file at ``path`` is not empty and its last line has no newline."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _BackgroundWriter:
    """Runs file writes in order on one thread, so that creating a trial's log files (about
    0.6 ms each here) and TensorBoard's fsyncs stay off the experiment loop. The journal is
    written synchronously; these logs are rebuilt from it on resume."""

    def __init__(self):
        self._queue = None
        self._thread = None
        self._lock = threading.Lock()

    def submit(self, fn, *args):
        with self._lock:
            if self._thread is None:
                self._queue = queue.Queue()
                self._thread = threading.Thread(target=self._run, name="mpirt-tune-files", daemon=True)
                self._thread.start()
        self._queue.put((fn, args))

    def drain(self):
        """Wait until everything submitted so far is written."""
        if self._thread is not None:
            self._queue.join()

    def _run(self):
        while True:
            fn, args = self._queue.get()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a log file must never fail an experiment
                logger.exception("writing a trial log file failed")
            finally:
                self._queue.task_done()


_writer = _BackgroundWriter()


class TrialFiles:
    """The per-trial logs: params.json, result.json, progress.csv, TensorBoard events.

    Public methods only queue the work; ``_writer``'s thread does it, in order.
    """

    def __init__(self, path):
        self.path = path
        self._csv_fields = None
        self._results = self._csv_file = self._csv = self._events = None
        _writer.submit(os.makedirs, path, 0o777, True)

    def write_params(self, config):
        _writer.submit(self._write_params, to_json(config))

    def append(self, clean):
        """Log one result, already made JSON-safe (``to_json``)."""
        _writer.submit(self._append, clean)

    def rewrite(self, results):
        """On resume: the logs hold exactly the results the journal kept."""
        _writer.submit(self._rewrite, [to_json(r) for r in results])

    def close(self):
        _writer.submit(self._close)

    def _write_params(self, config):
        with open(os.path.join(self.path, "params.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)

    def _append(self, clean):
        if self._results is None:
            self._open_logs()
        self._results.write(json.dumps(clean) + "\n")
        self._results.flush()
        flat = flatten({k: v for k, v in clean.items() if k != "config"})
        if self._csv_fields is None:
            self._csv_fields = list(flat)
            self._csv.writerow(self._csv_fields)
        self._csv.writerow([flat.get(k, "") for k in self._csv_fields])
        self._csv_file.flush()
        self._log_tensorboard(flat, clean.get("training_iteration", 0))

    def _open_logs(self):
        """Open result.json and progress.csv for appending, kept open while the trial runs (an open and
        a close per result cost more than the write); a progress.csv already there keeps its columns."""
        csv_path = os.path.join(self.path, "progress.csv")
        if os.path.exists(csv_path) and os.path.getsize(csv_path):
            with open(csv_path, newline="") as f:
                self._csv_fields = next(csv.reader(f))
        self._results = open(os.path.join(self.path, "result.json"), "a")
        self._csv_file = open(csv_path, "a", newline="")
        self._csv = csv.writer(self._csv_file)

    def _rewrite(self, results):
        self._close()
        for name in ("result.json", "progress.csv"):
            try:
                os.remove(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
        self._csv_fields = None
        for result in results:
            self._append(result)

    def _log_tensorboard(self, flat, step):
        if self._events is None:
            self._events = EventFile(self.path)
        self._events.scalars({f"mpirt/{key}": value for key, value in flat.items()
                              if type(value) in (int, float) or (isinstance(value, numbers.Number)
                                                                 and not isinstance(value, bool))}, step)

    def _close(self):
        for file in (self._results, self._csv_file, self._events):
            if file is not None:
                file.close()
        self._results = self._csv_file = self._csv = self._events = None


class ExperimentStorage:
    def __init__(self, local_dir, name):
        self.local_dir = os.path.abspath(os.path.expanduser(local_dir))
        self.name = name
        self.path = os.path.join(self.local_dir, name)
        self.journal_path = os.path.join(self.path, JOURNAL)
        self.hdf5_path = os.path.join(self.path, HDF5_FILE)
        self._journal = None
        self._files = {}
        self._last_flush = time.monotonic()   # the first summary after an interval: a short run writes it once
        self._flush_interval = 2.0

    def exists(self):
        return os.path.exists(self.journal_path)

    def archive_previous(self):
        """Set an earlier experiment's state aside (renamed with its start time) before a new one
        starts in the same directory, so the two never mix; its trial directories stay."""
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(os.path.getmtime(self.journal_path)))
        for name in (JOURNAL, HDF5_FILE, "tuner.pkl"):
            old = os.path.join(self.path, name)
            if os.path.exists(old):
                stem, ext = os.path.splitext(name)
                target = os.path.join(self.path, f"{stem}-{stamp}{ext}")
                number = 2
                while os.path.exists(target):
                    target = os.path.join(self.path, f"{stem}-{stamp}_{number}{ext}")
                    number += 1
                os.replace(old, target)
        logger.warning("an earlier experiment's state at %s was renamed to *-%s.*: a new experiment starts there "
                       "(pass resume=True or use Tuner.restore() to continue the earlier one)", self.path, stamp)

    # ---- journal
    def open(self, fresh):
        os.makedirs(self.path, exist_ok=True)
        if fresh:
            for name in (JOURNAL, HDF5_FILE):
                if os.path.exists(os.path.join(self.path, name)):
                    os.remove(os.path.join(self.path, name))
        self._journal = open(self.journal_path, "a")
        if _ends_cut_short(self.journal_path):
            # a kill -9 mid-write left a partial last line: end it, or the first event appended now would
            # join it and be skipped by replay() with it
            self._log_raw("\n")

    def _log_raw(self, text):
        with _naming_the_file(self.journal_path, "its journal"):
            self._journal.write(text)
            self._journal.flush()

    def _log(self, event):
        self._log_raw(json.dumps(event) + "\n")

    def record_start(self, meta):
        self._log({"e": "start", "time": time.time(), **to_json(meta)})

    def record_trial(self, trial):
        trial.local_path = os.path.join(self.path, trial.dirname)
        files = self.trial_files(trial)
        files.write_params(trial.config)
        self._log({"e": "trial", "id": trial.trial_id, "name": trial.trial_name, "index": trial.index,
                   "dir": trial.dirname, "config": _encode(trial.config),
                   "resources": resources_to_json(trial.resources)})

    def record_config(self, trial):
        self.trial_files(trial).write_params(trial.config)
        self._log({"e": "config", "id": trial.trial_id, "config": _encode(trial.config)})

    def record_result(self, trial, result):
        clean = to_json(result)
        self._log({"e": "result", "id": trial.trial_id, "result": clean})
        self.trial_files(trial).append(clean)

    def record_truncate(self, trial, upto):
        """On resume: results after the checkpoint a trial restarts from are dropped (they will be redone)."""
        self._log({"e": "truncate", "id": trial.trial_id, "upto": upto})

    def record_event(self, kind, **fields):
        self._log({"e": kind, "time": time.time(), **to_json(fields)})

    def record_status(self, trial):
        self._log({"e": "status", "id": trial.trial_id, "status": trial.status, "failures": trial.num_failures,
                   "error": trial.error})

    def record_checkpoint(self, trial, checkpoint, iteration, journal=True):
        """Write the checkpoint as its own HDF5 file (atomically) and journal it (``journal=False``: the caller
        does, with ``journal_checkpoint``)."""
        import h5py
        filename = f"checkpoint_{iteration:06d}.h5"
        os.makedirs(trial.local_path, exist_ok=True)
        final = os.path.join(trial.local_path, filename)
        tmp = final + ".tmp"
        with _naming_the_file(final, "a checkpoint"), h5py.File(tmp, "w") as f:
            f.attrs["trial_id"] = trial.trial_id
            f.attrs["iteration"] = iteration
            for number, (rel, data) in enumerate(sorted(checkpoint.files.items())):
                dataset = f.create_dataset(f"file_{number}", data=np.frombuffer(data, dtype=np.uint8))
                dataset.attrs["path"] = rel
        os.replace(tmp, final)
        if journal:
            self.journal_checkpoint(trial, iteration, final)
        trial.checkpoints = [c for c in trial.checkpoints if c[1] != final] + [(iteration, final)]
        return final

    def journal_checkpoint(self, trial, iteration, file):
        """Journal the checkpoint file ``record_checkpoint`` wrote. A checkpoint reported with a result is
        journaled after that result: a journal that a kill -9 cut between the two must not hold the checkpoint
        alone, or a resumed trial would go on after a result that no file keeps."""
        self._log({"e": "checkpoint", "id": trial.trial_id, "iteration": iteration,
                   "file": os.path.join(trial.dirname, os.path.basename(file))})

    def prune_checkpoints(self, trial, keep, score_attribute=None, score_order="max"):
        """Keep ``keep`` checkpoint files of ``trial``: the best by ``score_attribute`` (the result
        at each checkpoint's iteration), else the newest; the latest one always stays, since resuming
        needs it. Files go in the background; the journal says which were dropped."""
        if len(trial.checkpoints) <= keep:
            return
        latest = trial.checkpoints[-1]
        if score_attribute:
            by_iteration = {r.get("training_iteration"): r for r in trial.results}

            def score(entry):
                value = by_iteration.get(entry[0], {}).get(score_attribute)
                if not isinstance(value, numbers.Number):
                    return float("-inf")
                return value if score_order == "max" else -value
            ranked = sorted(trial.checkpoints, key=score, reverse=True)
        else:
            ranked = list(reversed(trial.checkpoints))
        kept = set(map(tuple, ranked[:keep])) | {tuple(latest)}
        dropped = [c for c in trial.checkpoints if tuple(c) not in kept]
        trial.checkpoints = [c for c in trial.checkpoints if tuple(c) in kept]
        for iteration, file in dropped:
            self._log({"e": "drop_checkpoint", "id": trial.trial_id, "iteration": iteration})
            _writer.submit(_remove_quietly, file)

    @staticmethod
    def load_checkpoint(path):
        import h5py
        with h5py.File(path, "r") as f:
            files = {f[name].attrs["path"]: f[name][()].tobytes() for name in f}
        return Checkpoint.from_files(files, path)

    def trial_files(self, trial):
        files = self._files.get(trial.trial_id)
        if files is None:
            files = self._files[trial.trial_id] = TrialFiles(trial.local_path)
        return files

    def close_trial(self, trial):
        files = self._files.pop(trial.trial_id, None)
        if files is not None:
            files.close()

    def replay(self):
        """Read the journal back: (start metadata, [trial state dicts in order])."""
        meta, trials = {}, {}
        with open(self.journal_path) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a kill -9 cut short
                kind = event.pop("e")
                if kind == "start":
                    meta = meta or event
                elif kind == "trial":
                    trials[event["id"]] = {"id": event["id"], "name": event["name"], "index": event["index"],
                                           "dir": event.get("dir", event["name"]),
                                           "config": _decode_or_none(event["config"]),
                                           "resources": event["resources"], "results": [], "status": "PENDING",
                                           "failures": 0, "error": None, "checkpoint": None,
                                           "checkpoint_iteration": 0, "checkpoints": []}
                elif event.get("id") in trials:
                    state = trials[event["id"]]
                    if kind == "config":
                        state["config"] = _decode_or_none(event["config"])
                    elif kind == "result":
                        state["results"].append(event["result"])
                    elif kind == "status":
                        state.update(status=event["status"], failures=event["failures"], error=event["error"])
                    elif kind == "truncate":
                        state["results"] = [r for r in state["results"]
                                            if r.get("training_iteration", 0) <= event["upto"]]
                    elif kind == "checkpoint":
                        file = os.path.join(self.path, event["file"])
                        state["checkpoint"] = file
                        state["checkpoint_iteration"] = event["iteration"]
                        state["checkpoints"] = [c for c in state["checkpoints"] if c[1] != file] + [
                            (event["iteration"], file)]
                    elif kind == "drop_checkpoint":
                        state["checkpoints"] = [c for c in state["checkpoints"] if c[0] != event["iteration"]]
        return meta, list(trials.values())

    # ---- the HDF5 summary
    def maybe_flush(self, trials, meta):
        if time.monotonic() - self._last_flush >= self._flush_interval:
            self.flush(trials, meta)

    def flush(self, trials, meta, final=False):
        if final:
            _writer.drain()
        start = time.monotonic()
        self._write_hdf5(trials, meta)
        took = time.monotonic() - start
        self._last_flush = time.monotonic()
        # a big experiment flushes less often, so writing never dominates
        self._flush_interval = max(2.0, 20 * took)

    def _write_hdf5(self, trials, meta):
        import h5py
        tmp = self.hdf5_path + ".tmp"
        with _naming_the_file(self.hdf5_path, "its HDF5 results"), h5py.File(tmp, "w") as f:
            for key, value in to_json(meta).items():
                if isinstance(value, (str, int, float)):
                    f.attrs[key] = value
            group = f.create_group("trials")
            for trial in trials:
                self._write_trial(group.create_group(trial.trial_id), trial)
        os.replace(tmp, self.hdf5_path)

    def _write_trial(self, group, trial):
        import h5py
        group.attrs["trial_name"] = trial.trial_name
        group.attrs["status"] = trial.status
        group.attrs["num_failures"] = trial.num_failures
        if trial.error:
            group.attrs["error"] = trial.error
        group.attrs["config_json"] = json.dumps(to_json(trial.config), sort_keys=True)
        config = group.create_group("config")
        for key, value in flatten(to_json(trial.config)).items():
            config.attrs[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
        metrics = group.create_group("metrics")
        flat_results = [flatten({k: v for k, v in r.items() if k not in ("config", "pid")}) for r in trial.results]
        keys = {}
        for result in flat_results:
            for key, value in result.items():
                if isinstance(value, numbers.Number):
                    keys[key] = None
        for key in keys:
            series = [result.get(key) for result in flat_results]
            series = [float(v) if isinstance(v, numbers.Number) else np.nan for v in series]
            metrics.create_dataset(key, data=np.asarray(series, dtype=np.float64))
        checkpoints = group.create_group("checkpoints")
        if trial.local_path and os.path.isdir(trial.local_path):
            for filename in sorted(os.listdir(trial.local_path)):
                if filename.startswith("checkpoint_") and filename.endswith(".h5"):
                    relative = os.path.join(trial.dirname, filename)
                    checkpoints[filename[:-3]] = h5py.ExternalLink(relative, "/")
        if trial.latest_checkpoint is not None:
            group.attrs["latest_checkpoint_iteration"] = trial.checkpoint_iteration
