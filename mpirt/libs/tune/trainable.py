"""Trainables: what a trial runs. A class with ``setup``/``step``/checkpoint hooks, or a function.

``Trainable.train()`` runs one ``step()`` and adds the bookkeeping fields Ray's
results carry (``training_iteration``, ``time_total_s``, ...). Function
trainables are adapted to the same interface by ``FunctionTrainable``, which
runs the function on a thread and turns each ``report`` into one ``train()``.
"""
import copy
import inspect
import os
import pickle
import queue
import socket
import tempfile
import threading
import time
import traceback

from . import session as session_mod
from .checkpoint import Checkpoint
from .execution.placement_groups import PlacementGroupFactory

_METADATA_FILE = ".tune_metadata"


def with_metadata(checkpoint, meta):
    """``checkpoint`` plus Tune's bookkeeping (iteration, time, timesteps) as one more file."""
    files = checkpoint.files
    files[_METADATA_FILE] = pickle.dumps(meta)
    return Checkpoint(files=files)


def split_metadata(checkpoint):
    """(the user's checkpoint, Tune's bookkeeping dict) of a checkpoint made by ``with_metadata``."""
    files = checkpoint.files
    meta = pickle.loads(files.pop(_METADATA_FILE)) if _METADATA_FILE in files else {}
    return Checkpoint(files=files), meta
# The checkpoint a function trainable reported travels to the driver inside its result.
CHECKPOINT_KEY = "__checkpoint__"
# Marks the result of a function trainable that returned: it ends the trial and carries no new metrics.
RETURNED_KEY = "__returned__"


def _resources_of_config(resources, config):
    """``with_resources``' annotation for one config: a function of the config is called."""
    if callable(resources) and not isinstance(resources, (dict, PlacementGroupFactory)):
        return resources(config)
    return resources


class Trainable:
    """Subclass and define ``setup(config)``, ``step() -> dict``, and for checkpoints
    ``save_checkpoint(checkpoint_dir) -> None | dict`` and ``load_checkpoint(checkpoint)``."""

    def __init__(self, config=None, trial_id=None, trial_name=None):
        self.config = dict(config or {})
        self.trial_id = trial_id or "default"
        self.trial_name = trial_name or self.trial_id
        self._iteration = 0
        self._iterations_since_restore = 0
        self._time_total = 0.0
        self._timesteps_total = None
        self._episodes_total = None
        self._last_result = {}
        self.setup(copy.deepcopy(self.config))

    @classmethod
    def default_resource_request(cls, config):
        """The resources each trial of this trainable needs, given its config: a
        ``tune.PlacementGroupFactory`` (or a resource dict), or None for Tune's default (1 CPU, or
        ``resources_per_trial``). ``tune.with_resources`` sets it; the RL algorithms compute theirs."""
        return _resources_of_config(getattr(cls, "_resources", None), config)

    # ---- the hooks users override
    def setup(self, config):
        """Build the model, environment, data: everything a trial needs before its first step."""

    def step(self):
        raise NotImplementedError(f"{type(self).__name__} must define step() returning a dict of metrics")

    def save_checkpoint(self, checkpoint_dir):
        """Write state into ``checkpoint_dir`` (return None) or return it as a dict."""
        return None

    def load_checkpoint(self, checkpoint):
        """Restore what ``save_checkpoint`` wrote: the directory path, or the dict it returned."""

    def cleanup(self):
        """Release what ``setup`` took; called when the trial stops."""

    def reset_config(self, new_config):
        """Return True after switching to ``new_config`` in place (lets PBT reuse this trainable)."""
        return False

    # ---- bookkeeping
    @property
    def iteration(self):
        return self._iteration

    training_iteration = iteration

    def train(self):
        """Run one step and return its result with Tune's standard fields added."""
        start = time.time()
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict of metrics, got {type(result).__name__}")
        result = dict(result)
        elapsed = time.time() - start
        self._iteration += 1
        self._iterations_since_restore += 1
        self._time_total += elapsed
        if "timesteps_this_iter" in result:
            self._timesteps_total = (self._timesteps_total or 0) + result["timesteps_this_iter"]
        if "episodes_this_iter" in result:
            self._episodes_total = (self._episodes_total or 0) + result["episodes_this_iter"]
        if self._timesteps_total is not None:
            result.setdefault("timesteps_total", self._timesteps_total)
        if self._episodes_total is not None:
            result.setdefault("episodes_total", self._episodes_total)
        result.setdefault("done", False)
        result.update(training_iteration=self._iteration, time_this_iter_s=elapsed,
                      time_total_s=self._time_total, iterations_since_restore=self._iterations_since_restore,
                      timestamp=time.time(), trial_id=self.trial_id, hostname=socket.gethostname(),
                      pid=os.getpid())
        self._last_result = result
        return result

    def _metadata(self):
        return {"iteration": self._iteration, "time_total": self._time_total,
                "timesteps_total": self._timesteps_total, "episodes_total": self._episodes_total}

    def _apply_metadata(self, meta):
        self._iteration = meta.get("iteration", 0)
        self._time_total = meta.get("time_total", 0.0)
        self._timesteps_total = meta.get("timesteps_total")
        self._episodes_total = meta.get("episodes_total")
        self._iterations_since_restore = 0

    def save_to_checkpoint(self):
        """Checkpoint this trainable into a ``Checkpoint`` (its files' bytes plus bookkeeping)."""
        with tempfile.TemporaryDirectory(prefix="mpirt_tune_save_") as directory:
            returned = self.save_checkpoint(directory)
            if isinstance(returned, dict):
                checkpoint = Checkpoint.from_dict(returned)
            elif returned is None or os.path.abspath(str(returned)) == os.path.abspath(directory):
                checkpoint = Checkpoint.from_directory(directory)
            elif isinstance(returned, (str, os.PathLike)) and os.path.exists(returned):
                checkpoint = Checkpoint.from_directory(returned if os.path.isdir(returned) else os.path.dirname(returned))
            else:
                raise TypeError(f"{type(self).__name__}.save_checkpoint() must return None, a dict or a path, "
                                f"got {type(returned).__name__}")
        return with_metadata(checkpoint, self._metadata())

    def restore_from_checkpoint(self, checkpoint):
        """Load a ``Checkpoint`` made by ``save_to_checkpoint`` (on this or any other rank)."""
        user, meta = split_metadata(checkpoint)
        if user.is_dict():
            self.load_checkpoint(user.to_dict())
        else:
            with user.as_directory() as directory:
                self.load_checkpoint(directory)
        self._apply_metadata(meta)

    def save(self, checkpoint_dir=None):
        """Save to a directory (a new temporary one by default) and return its path."""
        checkpoint = self.save_to_checkpoint()
        return checkpoint.to_directory(checkpoint_dir)

    def restore(self, checkpoint):
        """Restore from a ``Checkpoint`` or a directory written by ``save``."""
        if not isinstance(checkpoint, Checkpoint):
            checkpoint = Checkpoint.from_directory(checkpoint)
        self.restore_from_checkpoint(checkpoint)

    def stop(self):
        self.cleanup()

    def get_config(self):
        return copy.deepcopy(self.config)


class _FunctionSession:
    """The state ``tune.report`` reaches from a function trainable's thread."""

    def __init__(self, trainable):
        self._trainable = trainable
        self.trial_id = trainable.trial_id
        self.trial_name = trainable.trial_name
        self.checkpoint = None
        self.pending_checkpoint = None

    @property
    def trial_dir(self):
        return self._trainable.trial_dir

    def report(self, metrics, checkpoint):
        self._trainable._on_report(metrics, checkpoint or self.pending_checkpoint)
        self.pending_checkpoint = None


class FunctionTrainable(Trainable):
    """Runs ``fn(config)`` / ``fn(config, reporter)`` on a thread; each report is one ``train()``."""

    _function = None  # set by wrap_function

    def setup(self, config):
        self._results = queue.Queue()
        self._resume = threading.Semaphore(0)
        self._stopped = False
        self._thread = None
        self._last_checkpoint = None
        self._last_metrics = {}
        self._trial_dir = None
        self._session = _FunctionSession(self)
        self._user_config = config

    @property
    def trial_dir(self):
        """``get_trial_dir()``: the trial's directory among the experiment's results (where its result.json
        is, as in Ray; made on this rank if absent, as on a node without a shared file system), or a temporary
        one for a trainable run outside Tune. Made when first asked for: one made for every trial, asked for or
        not, was left in the temporary directory by each."""
        if self._trial_dir is None:
            self._trial_dir = tempfile.mkdtemp(prefix=f"mpirt_trial_{self.trial_id}_")
        else:
            os.makedirs(self._trial_dir, exist_ok=True)
        return self._trial_dir

    @trial_dir.setter
    def trial_dir(self, path):
        self._trial_dir = path

    def _call_function(self):
        function = type(self)._function
        params = list(inspect.signature(function).parameters.values())
        if len(params) >= 2 and params[1].name in ("reporter", "report"):
            return function(self._user_config, session_mod.StatusReporter())
        if len(params) >= 2 and params[1].name == "checkpoint_dir":
            checkpoint = self._session.checkpoint
            directory = checkpoint.to_directory() if checkpoint is not None and not checkpoint.is_dict() else None
            return function(self._user_config, checkpoint_dir=directory)
        return function(self._user_config)

    def _run(self):
        session_mod._set_current(self._session)
        _enter_actor_context(self._context)
        try:
            returned = self._call_function()
            if isinstance(returned, dict):
                self._results.put(("result", returned, None))
                self._resume.acquire()
            self._results.put(("done", None, None))
        except session_mod.TrialStopped:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the driver as the trial's error
            error.__mpirt_traceback__ = traceback.format_exc()
            self._results.put(("error", error, None))

    def _on_report(self, metrics, checkpoint):
        if self._stopped:
            raise session_mod.TrialStopped()
        self._results.put(("result", metrics, checkpoint))
        self._resume.acquire()
        if self._stopped:
            raise session_mod.TrialStopped()

    def step(self):
        if self._thread is None:
            self._context = _actor_context()
            self._thread = threading.Thread(target=self._run, name=f"trial-{self.trial_id}", daemon=True)
            self._thread.start()
        else:
            self._resume.release()
        kind, payload, checkpoint = self._results.get()
        if kind == "error":
            raise payload
        if kind == "done":
            result = dict(self._last_metrics)
            result["done"] = True
            result[RETURNED_KEY] = True
            # the function returned: its last report already counted as an iteration
            self._iteration -= 1
            self._iterations_since_restore -= 1
            return result
        self._last_metrics = dict(payload)
        result = dict(payload)
        if checkpoint is not None:
            if not isinstance(checkpoint, Checkpoint):
                raise TypeError(f"tune.report(checkpoint=...) needs a tune.Checkpoint, got {type(checkpoint).__name__}")
            self._last_checkpoint = checkpoint
            result[CHECKPOINT_KEY] = with_metadata(checkpoint, {**self._metadata(), "iteration": self._iteration + 1})
        return result

    def save_to_checkpoint(self):
        """A function trainable's checkpoint is the last one it reported (None if it never did)."""
        if self._last_checkpoint is None:
            return None
        return with_metadata(self._last_checkpoint, self._metadata())

    def restore_from_checkpoint(self, checkpoint):
        self._session.checkpoint, meta = split_metadata(checkpoint)
        self._last_checkpoint = self._session.checkpoint
        self._apply_metadata(meta)

    def stop(self):
        self._stopped = True
        self._resume.release()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.cleanup()


def _actor_context():
    """The trial actor's runtime context (mpirt keeps it per thread), for the function's thread:
    ``get_runtime_context()`` there answers for the actor (its id, its resources), as in Ray."""
    from mpirt.core.call_context import task_context
    return {k: v for k, v in vars(task_context).items() if k != "call"}


def _enter_actor_context(context):
    from mpirt.core.call_context import task_context
    for key, value in context.items():
        setattr(task_context, key, value)


def wrap_function(function):
    """A Trainable class that runs ``function`` (what tune.run does with a plain function)."""
    if not callable(function):
        raise TypeError(f"a trainable must be a function or a Trainable subclass, got {function!r}")
    name = getattr(function, "__name__", "trainable")
    attrs = {"_function": staticmethod(function), "__module__": getattr(function, "__module__", __name__)}
    if getattr(function, "_resources", None) is not None:     # tune.with_resources
        attrs["_resources"] = function._resources
    return type(name, (FunctionTrainable,), attrs)
