"""Data parallelism under ``torchrun``: the same loop on 1 process or N, same numbers.

deepscope's loops draw every batch's indices from one explicit generator. Under ``torchrun``
every process holds the same generator (same seed), so all processes draw the same *global*
batch; each takes its own slice of it (:func:`shard`), the model is wrapped in
``DistributedDataParallel`` (:func:`wrap`), which averages the gradients, and the update is
the single-process update of the global batch (up to float summation order). No
``DistributedSampler`` is needed and resume needs nothing extra: the generator state is in the
checkpoint, which only rank 0 writes and every rank reads.

>>> from deepscope.train.distributed import init_distributed, shard, wrap, all_reduce_mean
>>> dist = init_distributed("auto")          # doctest: +SKIP
>>> model = wrap(model, dist)               # doctest: +SKIP   (DDP when world_size > 1)
>>> idx = torch.randperm(n, generator=g)[:batch]   # doctest: +SKIP  (the global batch)
>>> loss = F.cross_entropy(model(x[shard(idx, dist)]), y[shard(idx, dist)])   # doctest: +SKIP

Launch: ``torchrun --nproc-per-node 2 -m deepscope.cli run RECIPE ...`` (gloo on CPU, NCCL
on CUDA, one GPU per process: ``cuda:LOCAL_RANK``). Only rank 0 writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Dist", "env_rank", "init_distributed", "current", "shard", "wrap", "unwrap",
           "all_reduce_mean", "barrier"]


@dataclass(frozen=True)
class Dist:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank() -> int:
    """This process's global rank as torchrun sets it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def current() -> Dist:
    """The process group's view, or a single process when none is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")))
    return Dist()


def init_distributed(device: str | torch.device = "auto") -> tuple[Dist, torch.device]:
    """Join the ``torchrun`` process group if there is one; return it and this process's device.

    Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) nothing happens. Under
    torchrun the backend is NCCL when the device is CUDA and gloo otherwise, and a CUDA
    device becomes ``cuda:LOCAL_RANK``.
    """
    from deepscope.train.run import resolve_device

    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), dev
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return current(), dev


def shard(indices: torch.Tensor, dist: Dist | None = None) -> torch.Tensor:
    """This process's slice of a global batch of ``indices`` (every ``world_size``-th one).

    The global batch size must be a multiple of the world size, so every process averages
    over as many examples and DDP's gradient mean is the global batch's mean.
    """
    dist = dist or current()
    if not dist.enabled:
        return indices
    if len(indices) % dist.world_size:
        raise ValueError(
            f"batch of {len(indices)} examples does not split over world_size == "
            f"{dist.world_size} processes; use a batch size that is a multiple of it"
        )
    return indices[dist.rank :: dist.world_size]


def wrap(model: nn.Module, dist: Dist | None = None) -> nn.Module:
    """``DistributedDataParallel(model)`` under torchrun, ``model`` itself otherwise."""
    dist = dist or current()
    if not dist.enabled:
        return model
    dev = next(model.parameters()).device
    ids = [dev.index] if dev.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (for state_dicts and evaluation)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(value: torch.Tensor | float, dist: Dist | None = None) -> torch.Tensor:
    """The mean of ``value`` over the processes (the value itself on one process)."""
    dist = dist or current()
    t = torch.as_tensor(value, dtype=torch.float64).clone()
    if dist.enabled:
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t)
        t = t / dist.world_size
    return t.cpu()


def barrier(dist: Dist | None = None) -> None:
    """Wait for every process (no-op on one)."""
    if (dist or current()).enabled:
        torch.distributed.barrier()
