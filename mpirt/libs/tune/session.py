"""What a function trainable talks to: ``tune.report`` and ``tune.get_checkpoint``.

Each function trial runs on its own thread inside a trial actor; the thread
finds its session through a thread-local. ``report`` hands the metrics to the
actor's ``train()`` call and blocks until the driver asks for the next result,
so a trial never runs ahead of the scheduler that may stop it.
"""
import threading

_local = threading.local()


class TrialStopped(BaseException):
    """Raised inside a function trainable's ``report`` when its trial was stopped.

    A BaseException so that a user's ``except Exception`` does not swallow it.
    """


def _current():
    session = getattr(_local, "session", None)
    if session is None:
        raise RuntimeError("tune.report()/tune.get_checkpoint() called outside a Tune trial: "
                           "call them from a function passed to tune.run() or Tuner()")
    return session


def _set_current(session):
    _local.session = session


def report(metrics=None, *, checkpoint=None, **kwargs):
    """Report metrics (``report({"loss": x})`` or ``report(loss=x)``), optionally with a Checkpoint."""
    if metrics is not None and not isinstance(metrics, dict):
        raise TypeError(f"tune.report() takes a dict of metrics, got {type(metrics).__name__}")
    merged = dict(metrics or {})
    merged.update(kwargs)
    _current().report(merged, checkpoint)


def get_checkpoint():
    """The Checkpoint this trial was restored from (by resume, retry or PBT), or None."""
    return _current().checkpoint


def get_trial_id():
    return _current().trial_id


def get_trial_name():
    return _current().trial_name


def get_trial_dir():
    """The trial's directory among the experiment's results, where its result.json is (as in Ray); made on
    this rank if absent, so on a node without a shared file system it holds only what this rank wrote."""
    return _current().trial_dir


class StatusReporter:
    """The seed API's ``reporter``: ``reporter(mean_accuracy=0.9, timesteps_total=100)``."""

    def __call__(self, **metrics):
        report(metrics)

    @staticmethod
    def save_checkpoint(data):
        """Attach a dict checkpoint to the next report."""
        from .checkpoint import Checkpoint
        _current().pending_checkpoint = Checkpoint.from_dict(data)


class TuneContext:
    """What ``tune.get_context()`` returns inside a trial: its name, id and directory."""

    def get_trial_name(self):
        return _current().trial_name

    def get_trial_id(self):
        return _current().trial_id

    def get_trial_dir(self):
        return _current().trial_dir

    def get_world_size(self):
        return 1

    def get_world_rank(self):
        return 0

    def get_local_rank(self):
        return 0

    def get_metadata(self):
        return {}


def get_context():
    """The running trial's context (``get_trial_name()``, ``get_trial_id()``, ``get_trial_dir()``)."""
    return TuneContext()
