"""The Tuner's configuration objects, with Ray 2.x's fields, defaults and checks.

``TuneConfig`` (what to search), ``RunConfig`` (where results go, when to stop),
``CheckpointConfig`` (how many checkpoints to keep), ``FailureConfig`` (retries),
``ResumeConfig`` (what ``Tuner.restore`` does with unfinished and errored trials). Fields that
mean nothing on an MPI job are accepted; docs/tune.md lists what each does here.
"""
import dataclasses
import datetime
import enum
import logging
import os
import warnings
from typing import Any, Callable, List, Optional, Union

logger = logging.getLogger(__name__)

MAX, MIN = "max", "min"


@dataclasses.dataclass
class TuneConfig:
    """What to search: ``metric``/``mode``, the searcher and scheduler, how many samples.

    ``seed`` is mpirt's: it seeds the default searcher, so ``Tuner.restore`` can regenerate
    the same configs (e.g. with fresh object references); a random one is drawn if None.
    """

    mode: Optional[str] = None
    metric: Optional[str] = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Optional[Union[int, float, datetime.timedelta]] = None
    reuse_actors: bool = False
    trial_name_creator: Optional[Callable] = None
    trial_dirname_creator: Optional[Callable] = None
    chdir_to_trial_dir: Any = "DEPRECATED"
    seed: Optional[int] = None

    def __post_init__(self):
        if self.chdir_to_trial_dir != "DEPRECATED":
            raise DeprecationWarning("`chdir_to_trial_dir` is deprecated. Use the RAY_CHDIR_TO_TRIAL_DIR "
                                     "environment variable instead.")
        if self.mode not in (None, MIN, MAX):
            raise ValueError(f"`mode` must be 'min' or 'max', got {self.mode!r}")
        if isinstance(self.time_budget_s, datetime.timedelta):
            self.time_budget_s = self.time_budget_s.total_seconds()


@dataclasses.dataclass
class ResumeConfig:
    """What ``Tuner.restore`` does with each kind of trial: RESUME from its last checkpoint,
    RESTART from scratch, or SKIP (leave it as it ended)."""

    class ResumeType(enum.Enum):
        RESUME = "resume"
        RESTART = "restart"
        SKIP = "skip"

    finished: Any = ResumeType.SKIP
    unfinished: Any = ResumeType.RESUME
    errored: Any = ResumeType.SKIP

    def __post_init__(self):
        for field in ("finished", "unfinished", "errored"):
            value = getattr(self, field)
            if not isinstance(value, ResumeConfig.ResumeType):
                try:
                    setattr(self, field, ResumeConfig.ResumeType(value))
                except ValueError:
                    raise ValueError(f"ResumeConfig({field}={value!r}): must be one of "
                                     f"{[t.value for t in ResumeConfig.ResumeType]}") from None


def resume_config_from_legacy(resume):
    """``tune.run(resume=...)``'s True/'AUTO'/'AUTO+ERRORED'/... as a ResumeConfig (None: start afresh)."""
    if resume is False or resume is None:
        return None
    if resume is True:
        return ResumeConfig()
    if not isinstance(resume, str):
        raise ValueError(f"resume must be True, False or 'AUTO' (optionally with +ERRORED, +RESTART_ERRORED, "
                         f"+ERRORED_ONLY or +RESTART_ERRORED_ONLY), got {resume!r}")
    settings = resume.split("+")
    if settings[0] in ("LOCAL", "REMOTE", "PROMPT", "ERRORED_ONLY"):
        raise DeprecationWarning(f"'{settings[0]}' is deprecated. Please pass in one of (True, False, 'AUTO').")
    if settings[0] not in ("AUTO", ""):
        raise ValueError(f"resume must be True, False or 'AUTO' (optionally with +ERRORED, ...), got {resume!r}")
    kind = ResumeConfig.ResumeType
    config = ResumeConfig()
    for setting in settings[1:]:
        if setting == "ERRORED":
            config = ResumeConfig(errored=kind.RESUME)
        elif setting == "RESTART_ERRORED":
            config = ResumeConfig(errored=kind.RESTART)
        elif setting == "ERRORED_ONLY":
            config = ResumeConfig(unfinished=kind.SKIP, errored=kind.RESUME)
        elif setting == "RESTART_ERRORED_ONLY":
            config = ResumeConfig(unfinished=kind.SKIP, errored=kind.RESTART)
        else:
            raise ValueError(f"Invalid resume setting: '{setting}'")
    return config


@dataclasses.dataclass
class FailureConfig:
    """``max_failures``: retries of a failing trial from its last checkpoint (-1: forever).
    ``fail_fast``: stop the whole experiment at the first trial error (``"raise"``: and raise it)."""

    max_failures: int = 0
    fail_fast: Union[bool, str] = False

    def __post_init__(self):
        if not (isinstance(self.fail_fast, bool) or (isinstance(self.fail_fast, str)
                                                     and self.fail_fast.upper() == "RAISE")):
            raise ValueError(f"fail_fast must be one of {{bool, 'raise'}}. Got {self.fail_fast}.")
        if self.fail_fast and self.max_failures != 0:
            raise ValueError(f"max_failures must be 0 if fail_fast={self.fail_fast!r}.")


@dataclasses.dataclass
class CheckpointConfig:
    """Which checkpoints are kept: all, or the best ``num_to_keep`` by ``checkpoint_score_attribute``
    (the most recent ones when no attribute is named; a trial's latest checkpoint is always kept,
    since resuming needs it). ``checkpoint_frequency``/``checkpoint_at_end``: class trainables only."""

    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: Optional[str] = MAX
    checkpoint_frequency: Optional[int] = 0
    checkpoint_at_end: Optional[bool] = None
    _checkpoint_keep_all_ranks: Any = "DEPRECATED"
    _checkpoint_upload_from_workers: Any = "DEPRECATED"

    def __post_init__(self):
        if self._checkpoint_keep_all_ranks != "DEPRECATED":
            raise DeprecationWarning("The experimental `_checkpoint_keep_all_ranks` config is deprecated.")
        if self._checkpoint_upload_from_workers != "DEPRECATED":
            raise DeprecationWarning("The experimental `_checkpoint_upload_from_workers` config is deprecated.")
        if self.num_to_keep is not None and self.num_to_keep <= 0:
            raise ValueError(f"Received invalid num_to_keep: {self.num_to_keep}. Must be None or an integer >= 1.")
        if self.checkpoint_score_order not in (MAX, MIN):
            raise ValueError(f'checkpoint_score_order must be either "{MAX}" or "{MIN}".')
        if self.checkpoint_frequency < 0:
            raise ValueError(f"checkpoint_frequency must be >=0, got {self.checkpoint_frequency}")


@dataclasses.dataclass
class RunConfig:
    """Where results go (``storage_path``/``name``), when trials stop (``stop``), callbacks,
    checkpoint and failure handling. ``progress_interval`` (seconds between progress tables)
    is mpirt's. ``storage_filesystem`` (pyarrow) is not supported; ``sync_config`` has nothing
    to do (results are written on the driver); ``log_to_file`` is accepted without effect (trial
    output reaches the driver's console, prefixed with its rank)."""

    name: Optional[str] = None
    storage_path: Optional[str] = None
    storage_filesystem: Any = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    sync_config: Any = None
    verbose: Optional[int] = None
    stop: Any = None
    callbacks: Optional[List[Any]] = None
    progress_reporter: Any = None
    log_to_file: Any = False
    local_dir: Optional[str] = None
    progress_interval: float = 5.0

    def __post_init__(self):
        from .storage import default_local_dir
        if self.local_dir is not None:
            raise DeprecationWarning("The `RunConfig(local_dir)` argument is deprecated. You should set the "
                                     "`RunConfig(storage_path)` instead.")
        if self.storage_path is None:
            self.storage_path = default_local_dir()
        if isinstance(self.storage_path, os.PathLike):
            self.storage_path = os.fspath(self.storage_path)
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if not isinstance(self.failure_config, FailureConfig):
            raise TypeError(f"RunConfig(failure_config=...) needs a tune.FailureConfig, got {self.failure_config!r}")
        if not isinstance(self.checkpoint_config, CheckpointConfig):
            raise TypeError("RunConfig(checkpoint_config=...) needs a tune.CheckpointConfig, got "
                            f"{self.checkpoint_config!r}")
        if self.verbose is None:
            self.verbose = 1
        if self.log_to_file:
            warnings.warn("RunConfig(log_to_file=...) has no effect in mpirt: trial output is printed on the "
                          "driver, prefixed with the trial's rank", stacklevel=3)
