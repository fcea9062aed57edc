"""``ScalingConfig``: how many training workers, and what each holds (Ray Train's)."""
import dataclasses
from typing import Dict, Optional

from ..tune.config import CheckpointConfig, FailureConfig, RunConfig  # noqa: F401 - Ray Train shares Tune's

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclasses.dataclass
class ScalingConfig:
    """``num_workers`` workers, each holding ``resources_per_worker`` (default one CPU, plus one GPU with
    ``use_gpu``), reserved together as one placement group laid out by ``placement_strategy``."""

    trainer_resources: Optional[Dict[str, float]] = None
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: Optional[Dict[str, float]] = None
    placement_strategy: str = "PACK"
    accelerator_type: Optional[str] = None

    def __post_init__(self):
        if not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 1:
            raise ValueError(f"ScalingConfig(num_workers={self.num_workers!r}): the number of workers must be an "
                             f"int of at least 1")
        if self.placement_strategy not in _STRATEGIES:
            raise ValueError(f"ScalingConfig(placement_strategy={self.placement_strategy!r}): use one of "
                             f"{', '.join(_STRATEGIES)}")
        if self.resources_per_worker is not None:
            if not isinstance(self.resources_per_worker, dict):
                raise TypeError(f"ScalingConfig(resources_per_worker={self.resources_per_worker!r}) needs a dict "
                                f"like {{'CPU': 2}}")
            for name, amount in self.resources_per_worker.items():
                if not isinstance(amount, (int, float)) or amount < 0:
                    raise ValueError(f"ScalingConfig(resources_per_worker={self.resources_per_worker!r}): "
                                     f"{name} must be a non-negative number")
            if self.use_gpu and self.resources_per_worker.get("GPU") == 0:
                raise ValueError("`use_gpu` is True but `GPU` is set to 0 in `resources_per_worker`. Either set "
                                 "`use_gpu` to False or request a positive number of `GPU` in "
                                 "`resources_per_worker.")
        if self.accelerator_type is not None:
            raise NotImplementedError("ScalingConfig(accelerator_type=...): mpirt's nodes carry no accelerator "
                                      "labels; set resources_per_worker instead")

    @property
    def worker_bundle(self) -> Dict[str, float]:
        """The resources one worker holds (Ray's keys: "CPU", "GPU", custom names)."""
        bundle = dict(self.resources_per_worker) if self.resources_per_worker is not None else {}
        bundle.setdefault("CPU", 1.0)
        if self.use_gpu:
            bundle.setdefault("GPU", 1.0)
        return {name: float(amount) for name, amount in bundle.items() if amount}
