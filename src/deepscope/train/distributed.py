"""Data parallelism under ``torchrun``: the same loop on 1 process or N, same numbers.

deepscope's loops draw every batch's indices from one explicit generator. Under ``torchrun``
every process holds the same generator (same seed), so all processes draw the same *global*
batch; each takes its own slice of it (:func:`shard`), the model is wrapped in
``DistributedDataParallel`` (:func:`wrap`), which averages the gradients, and the update is
the single-process update of the global batch (up to float summation order). No
``DistributedSampler`` is needed and resume needs nothing extra: the generator state is in the
checkpoint, which only rank 0 writes and every rank reads.

>>> from deepscope.train.distributed import init_distributed, shard, wrap, all_reduce_mean
>>> dist = init_distributed("auto")  # under torchrun  # doctest: +SKIP
>>> model = wrap(model, dist)  # DDP when world_size > 1  # doctest: +SKIP
>>> idx = torch.randperm(n, generator=g)[:batch]  # the global batch  # doctest: +SKIP
>>> loss = F.cross_entropy(model(x[shard(idx, dist)]), y[shard(idx, dist)])  # under torchrun  # doctest: +SKIP

Launch: ``torchrun --nproc-per-node 2 -m deepscope.cli run RECIPE ...`` (gloo on CPU, NCCL
on CUDA, one GPU per process: ``cuda:LOCAL_RANK``). Only rank 0 writes the run directory.

Loops whose gradients do not come from one forward of a DDP-wrapped module use the explicit
pieces instead: :func:`all_reduce_grads` (DDP's gradient mean, after ``backward`` or
``torch.autograd.grad``), :func:`sharded_draws` (per-example noise drawn for the global batch,
each process keeping its rows), :func:`gather_rows` / :func:`forward_sharded` (a network run on
this process's rows, the whole batch's outputs back, differentiably, for losses that mix rows)
and :func:`reduce_metrics`. Which loop uses what: docs/architecture.md (torchrun).

BatchNorm: the networks of the CPU-scale recipes have none (``norm='none'`` is every
``build_net`` default). A network built with ``norm='batch'`` normalises each process's slice
with its own statistics, as under DDP, so its numbers differ from one process's; we do not
convert to ``SyncBatchNorm``, which runs only on CUDA (not with gloo on the CPU, where the
tests run) and would make CPU and GPU runs differ in kind. A BatchNorm *outside* the network
on gathered rows (CrossSplit's projection head) sees the whole batch.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

__all__ = ["Dist", "env_rank", "resolve_device", "init_distributed", "current", "shard", "wrap", "unwrap",
           "all_reduce_mean", "all_reduce_grads", "reduce_metrics", "gather_rows", "gather_batch",
           "forward_sharded", "Sharded", "sharded_draws", "barrier"]


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


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """This process's ``torch.device`` for ``'auto'``/``'cpu'``/``'cuda[:N]'``: the one place it is decided.

    ``'auto'`` is CUDA when available, else the CPU. Under torchrun (``WORLD_SIZE`` > 1) a
    bare ``'cuda'`` (or ``'auto'`` on a GPU machine) is this process's GPU, ``cuda:LOCAL_RANK``,
    made the current device at once (so what a recipe moves to ``'cuda'`` lands on its own GPU,
    not on GPU 0 of every process); an explicit ``'cuda:N'`` is kept. A ``torch.device`` is
    returned as it is. Unknown or absent devices raise ``ValueError`` naming the fix.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device == {device!r} is not a device; use 'auto', 'cpu' or 'cuda:N'") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device == {device!r} but CUDA is not available; use device='cpu' or 'auto'")
    if dev.type != "cuda" or dev.index is not None or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return dev
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str | torch.device = "auto") -> tuple[Dist, torch.device]:
    """This process's device (:func:`resolve_device`) and the torchrun process group, joined once.

    Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) there is no group to join.
    Under torchrun the first call joins it (NCCL when the device is CUDA, gloo otherwise);
    later calls find it joined. ``Run`` calls this when it is made; loops call it through
    :func:`deepscope.train.loop.setup`.
    """
    dev = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist(), dev
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        _watch_uncaught()
        atexit.register(_leave_group)
    return current(), dev


_uncaught: list[BaseException] = []


def _watch_uncaught() -> None:
    """Note an uncaught exception on its way out, so that :func:`_leave_group` does not wait."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        _uncaught.append(value)
        previous(kind, value, tb)

    sys.excepthook = hook


def _leave_group() -> None:
    """Leave the process group at exit, after the other processes have finished their work.

    A process that destroys its gloo group while a peer is still completing the last
    collective can make that peer abort ("terminate called without an active exception",
    SIGABRT), so on a clean exit every process first waits for the others (gloo's
    ``monitored_barrier``, which gives up after a minute rather than hang). After an uncaught
    exception there is no wait: the others are still in their loops and torchrun stops them.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if not _uncaught:
        try:
            if torch.distributed.get_backend() == "gloo":
                torch.distributed.monitored_barrier(timeout=timedelta(seconds=60))
            else:
                torch.distributed.barrier()
        except RuntimeError:  # a peer that left early: nothing left to wait for
            pass
    torch.distributed.destroy_process_group()


def shard(indices: torch.Tensor, dist: Dist | None = None, *, even: bool = True) -> torch.Tensor:
    """This process's slice of a global batch of ``indices`` (every ``world_size``-th one).

    With ``even=True`` the global batch size must be a multiple of the world size, so every
    process averages over as many examples and DDP's gradient mean is the global batch's
    mean. ``even=False`` allows unequal slices (none empty); weigh them with
    ``all_reduce_grads(..., count=len(slice))``.
    """
    dist = dist or current()
    if not dist.enabled:
        return indices
    if not even:
        if len(indices) < dist.world_size:
            raise ValueError(
                f"batch of {len(indices)} examples leaves a process of world_size == "
                f"{dist.world_size} without any; use batches of at least {dist.world_size}"
            )
        return indices[dist.rank :: dist.world_size]
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


def all_reduce_grads(params, dist: Dist | None = None, *, count: int | None = None) -> None:
    """Average the ``.grad`` of ``params`` over the processes, in place (no-op on one process).

    What DDP's reducer does after ``backward``, done explicitly for loops whose gradients do
    not come from one forward of a wrapped module: ``torch.autograd.grad`` (which never runs
    DDP's hooks), adversarial attacks and views that share the network's parameters (A3T's
    encoder), a second network or a discriminator stepped inside the loss. One flat
    all-reduce per call. ``count`` (this process's examples in the batch) weighs the mean
    by the examples each process saw, for unequal slices (``shard(..., even=False)``): the
    result is the gradient of the global batch's mean loss when each process's loss is the
    mean over its slice. Parameters without a gradient are skipped (the same on every
    process: they run the same code).
    """
    dist = dist or current()
    if not dist.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if count is None:
        weight = 1.0 / dist.world_size
    else:
        weight = count / float(_all_reduce_sum(torch.tensor(float(count)), dist))
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]) * weight
    torch.distributed.all_reduce(flat)
    pos = 0
    for g in grads:
        g.copy_(flat[pos:pos + g.numel()].view_as(g))
        pos += g.numel()


def _all_reduce_sum(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    t = t.clone()
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t)
    return t.cpu()


def reduce_metrics(metrics: dict[str, float], count: int,
                   dist: Dist | None = None) -> dict[str, float]:
    """Each metric's mean over the processes weighted by their ``count`` of examples.

    Every process must pass the same keys (they run the same code); one all-reduce.
    """
    dist = dist or current()
    if not dist.enabled:
        return dict(metrics)
    keys = sorted(metrics)
    v = torch.tensor([float(metrics[k]) * count for k in keys] + [float(count)],
                     dtype=torch.float64)
    v = _all_reduce_sum(v, dist)
    return {k: float(v[i] / v[-1]) for i, k in enumerate(keys)}


def gather_rows(t: torch.Tensor, dist: Dist | None = None, *,
                total: int | None = None) -> torch.Tensor:
    """The global batch's rows from every process's :func:`shard` of them, in the global order.

    The inverse of :func:`shard`: ``gather_rows(f(x[shard(i)]), total=len(i))`` is
    ``f(x[i])``. ``total`` (the global batch size) is needed for unequal slices
    (``shard(..., even=False)``); by default the slices are equal. Differentiable: the backward
    pass sends each process the sum over the processes of the gradient of its rows, so a loss
    computed *identically on every process* from the gathered rows, followed by
    :func:`all_reduce_grads` (the mean), gives the single-process gradient. Use it for terms
    that are not a mean over examples (batch statistics, in-batch negatives, MixUp across the
    batch, log-mean-exp over the batch).
    """
    dist = dist or current()
    if not dist.enabled:
        return t
    from torch.distributed.nn.functional import all_gather

    w = dist.world_size
    total = len(t) * w if total is None else int(total)
    m = -(-total // w)  # the longest slice; shorter ones are padded for the collective
    if len(t) < m:
        t = torch.cat([t, t.new_zeros((m - len(t), *t.shape[1:]))])
    parts = all_gather(t.contiguous())
    return torch.stack(parts, dim=1).reshape(-1, *t.shape[1:])[:total]



def gather_batch(t: torch.Tensor, dist: Dist | None = None) -> torch.Tensor:
    """The global batch's rows of ``t`` (this process's slice, possibly unequal), no gradient.

    For statistics of a whole batch that are not means over its examples (CKA, a relative
    shift): computed on the gathered rows, every process gets the single-process number.
    Outside torchrun, ``t`` itself.
    """
    dist = dist or current()
    if not dist.enabled:
        return t
    total = int(_all_reduce_sum(torch.tensor([float(len(t))], dtype=torch.float64), dist).item())
    return gather_rows(t.detach(), dist, total=total)

def forward_sharded(module, inputs: torch.Tensor, dist: Dist | None = None) -> torch.Tensor:
    """``module(inputs)`` for a global batch, each process computing its slice of the rows.

    ``gather_rows(module(inputs[shard(rows)]))``: every process gets the whole batch's
    outputs (differentiable), computes the loss from them exactly as one process does, and
    averages the gradients with :func:`all_reduce_grads`. For losses that mix the rows of a
    batch (MixUp targets, a mean prediction, a projection head with BatchNorm on gathered
    features); the network itself sees only its slice (BatchNorm inside it keeps per-process
    statistics, as under DDP). A batch with fewer rows than processes is computed whole by
    every process.
    """
    dist = dist or current()
    if not dist.enabled or len(inputs) < dist.world_size:  # too few rows to split: all compute
        return module(inputs)
    rows = shard(torch.arange(len(inputs), device=inputs.device), dist, even=False)
    return gather_rows(module(inputs[rows]), dist, total=len(inputs))


class Sharded(nn.Module):
    """``module`` called through :func:`forward_sharded`: each process computes its rows of
    every batch the wrapper is called on, and gets the whole batch's outputs back.

    Hand it to code that calls a network on a batch (prediction helpers, evaluation), so that
    the work is split without changing that code; ``Sharded(m).eval()`` sets ``m`` to eval.
    Every process must make the same calls. The module itself is ``.module``.
    """

    def __init__(self, module: nn.Module, dist: Dist | None = None):
        super().__init__()
        self.module = module
        self.dist = dist

    @property
    def training(self) -> bool:  # the wrapped module's mode, so that saving and restoring
        return self.module.training if "module" in self._modules else True  # a mode is exact

    @training.setter
    def training(self, mode: bool) -> None:
        pass  # nn.Module.train(mode) sets the children's modes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_sharded(self.module, x, self.dist)


class _ShardedDraws(torch.overrides.TorchFunctionMode):
    def __init__(self, generator: torch.Generator, rows: torch.Tensor, total: int):
        super().__init__()
        self.generator, self.rows, self.total = generator, rows, total

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("generator") is not self.generator:
            return func(*args, **kwargs)
        if func not in (torch.rand, torch.randn):
            raise RuntimeError(
                f"{getattr(func, '__name__', func)} draws from a sharded generator; only "
                "torch.rand and torch.randn with the batch as first dimension can be sharded"
            )
        shape = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
        shape = tuple(kwargs.pop("size", shape))
        if not shape or shape[0] != len(self.rows):
            raise RuntimeError(
                f"a draw of shape {shape} from a sharded generator: its first dimension must "
                f"be this process's {len(self.rows)} rows of the global batch"
            )
        return func((self.total, *shape[1:]), **kwargs)[self.rows.to(kwargs.get("device") or "cpu")]


def sharded_draws(generator: torch.Generator, rows: torch.Tensor, total: int):
    """Make per-example draws from ``generator`` for the global batch, keep this process's rows.

    Inside the context, ``torch.rand`` / ``torch.randn`` calls with ``generator=generator``
    whose first dimension is ``len(rows)`` draw the whole global batch of ``total`` rows and
    return ``rows`` of it: every process consumes the generator exactly as one process does
    and gets its rows of the same numbers (random starts of PGD, TRADES's noise, a
    stochastic encoder's noise). Other draws from ``generator`` raise. A no-op (no mode)
    when ``len(rows) == total``.

    Parameters
    ----------
    rows : (n,) int tensor
        Positions of this process's examples in the global batch, e.g.
        ``shard(torch.arange(total))``.
    """
    import contextlib

    if len(rows) == total:
        return contextlib.nullcontext()
    return _ShardedDraws(generator, rows, total)


def barrier(dist: Dist | None = None) -> None:
    """Wait for every process (no-op on one)."""
    if (dist or current()).enabled:
        torch.distributed.barrier()
