"""``mpirt.libs.train.torch`` (Ray's ``ray.train.torch``): ``TorchTrainer`` and the helpers a training
loop calls on its worker: ``prepare_model`` (DistributedDataParallel over the job's MPI) and
``prepare_data_loader`` (a DistributedSampler, and batches moved to the worker's device)."""
import dataclasses
from typing import Any, Dict, Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from mpirt.util import collective

from .. import session
from ..trainer import DataParallelTrainer
from . import process_group

__all__ = ["TorchTrainer", "TorchConfig", "prepare_model", "prepare_data_loader", "get_device", "get_devices"]


@dataclasses.dataclass
class TorchConfig:
    """Ray's torch backend settings. mpirt's process group always runs over MPI: ``backend`` may be
    None, "mpirt", "gloo" or "nccl" (the last two are accepted and run over MPI too)."""

    backend: Optional[str] = None
    init_method: str = "env"
    timeout_s: int = 1800

    def __post_init__(self):
        if self.backend not in (None, "mpirt", "gloo", "nccl"):
            raise ValueError(f"TorchConfig(backend={self.backend!r}): use None (mpirt's MPI process group)")


def _setup_torch(context, group_name):
    """On each worker: the default torch process group over the workers' collective group, and the device."""
    if context.use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(_device_of(context))     # the session is not set yet: get_device() would refuse
    process_group.init_process_group(collective.get_group_handle(group_name))

    def teardown():
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return teardown


class TorchTrainer(DataParallelTrainer):
    """Data-parallel PyTorch training: ``train_loop_per_worker`` runs on each worker with
    ``torch.distributed`` initialized (no address, no port: over MPI)."""

    _one_per_process = True

    def __init__(self, train_loop_per_worker, *, train_loop_config: Optional[Dict[str, Any]] = None,
                 torch_config: Optional[TorchConfig] = None, scaling_config=None, run_config=None, datasets=None,
                 dataset_config=None, resume_from_checkpoint=None, metadata=None):
        if torch_config is not None and not isinstance(torch_config, TorchConfig):
            raise ValueError(f"`torch_config` should be an instance of `TorchConfig`, found {type(torch_config)}")
        self.torch_config = torch_config or TorchConfig()
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config, scaling_config=scaling_config,
                         run_config=run_config, datasets=datasets, dataset_config=dataset_config,
                         resume_from_checkpoint=resume_from_checkpoint, metadata=metadata)

    _backend_setup = staticmethod(_setup_torch)


def get_device() -> torch.device:
    """The worker's device: its GPU (by local rank among the GPUs it sees) with ``use_gpu``, else the CPU."""
    return _device_of(session.get_context())


def _device_of(context) -> torch.device:
    if context.use_gpu and torch.cuda.is_available():
        return torch.device("cuda", context.get_local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def get_devices():
    return [get_device()]


def prepare_model(model: torch.nn.Module, move_to_device: bool = True, parallel_strategy: Optional[str] = "ddp",
                  parallel_strategy_kwargs: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """Move ``model`` to the worker's device and wrap it in DistributedDataParallel (with more than one
    worker), whose gradient allreduce runs over MPI."""
    if parallel_strategy not in ("ddp", "fsdp", None):
        raise ValueError(f"parallel_strategy={parallel_strategy!r}: use 'ddp' or None")
    if parallel_strategy == "fsdp":
        raise NotImplementedError("prepare_model(parallel_strategy='fsdp'): mpirt's process group runs DDP; FSDP "
                                  "is not supported yet")
    device = get_device()
    if move_to_device:
        model = model.to(device)
    if parallel_strategy == "ddp" and session.get_context().get_world_size() > 1:
        kwargs = dict(parallel_strategy_kwargs or {})
        if device.type == "cuda":
            kwargs.setdefault("device_ids", [device])
        model = torch.nn.parallel.DistributedDataParallel(model, **kwargs)
    return model


class _EpochLoader:
    """A prepared DataLoader: each pass sets its DistributedSampler's epoch (so shuffling differs per
    epoch) and moves batches to the worker's device."""

    def __init__(self, loader: DataLoader, device: Optional[torch.device]):
        self._loader = loader
        self._device = device
        self._epoch = 0

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def __iter__(self):
        sampler = self._loader.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(self._epoch)
        self._epoch += 1
        for batch in self._loader:
            yield batch if self._device is None else _to(batch, self._device)


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: _to(value, device) for key, value in batch.items()}
    return batch


def prepare_data_loader(data_loader: DataLoader, add_dist_sampler: bool = True, move_to_device: bool = True,
                        auto_transfer: bool = False):
    """``data_loader`` giving each worker its share of the data (a DistributedSampler, shuffled if the
    loader shuffled) and batches on the worker's device."""
    if not isinstance(data_loader, DataLoader):
        raise TypeError(f"prepare_data_loader() takes a torch.utils.data.DataLoader, got {type(data_loader).__name__}")
    context = session.get_context()
    world_size = context.get_world_size()
    sampler = data_loader.sampler
    if add_dist_sampler and world_size > 1 and not isinstance(sampler, DistributedSampler):
        if not isinstance(sampler, (RandomSampler, SequentialSampler)):
            raise ValueError(f"prepare_data_loader(): the loader's sampler is a {type(sampler).__name__}; only a "
                             f"default or shuffling loader can be split over the workers (or pass "
                             f"add_dist_sampler=False and split the data yourself)")
        distributed: DistributedSampler = DistributedSampler(
            data_loader.dataset, num_replicas=world_size, rank=context.get_world_rank(),
            shuffle=isinstance(sampler, RandomSampler))
        options: Dict[str, Any] = dict(
            batch_size=data_loader.batch_size, sampler=distributed, num_workers=data_loader.num_workers,
            collate_fn=data_loader.collate_fn, pin_memory=data_loader.pin_memory, drop_last=data_loader.drop_last,
            timeout=data_loader.timeout, worker_init_fn=data_loader.worker_init_fn)
        if data_loader.num_workers > 0:
            options.update(prefetch_factor=data_loader.prefetch_factor,
                           persistent_workers=data_loader.persistent_workers)
        data_loader = DataLoader(data_loader.dataset, **options)
    device = get_device() if move_to_device else None
    return _EpochLoader(data_loader, None if device is None or device.type == "cpu" else device)
