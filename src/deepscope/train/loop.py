"""The training kit every epoch-based loop is written with, and the result every loop returns.

A loop shows what is particular to its method; the rest is here::

    DEFAULTS = TrainOptions(epochs=100, batch_size=128, lr=0.1)     # the method's own defaults

    def train_mine(x, y, *, num_classes, net="mlp", options=None, generator=None, run=None):
        opts = TrainOptions.resolve(options, DEFAULTS)              # the user's fields win
        run, dist, device = setup(run, opts)
        generator = generator_or_default(generator)
        models = make_models(["net"], net, input_shape=x.shape[1:], num_classes=num_classes,
                             generator=generator, device=device)
        opt, sched = make_optimizer(models["net"].parameters(), opts)
        scaler = grad_scaler(device, opts.amp)
        ckpt = dict(models=models, opt=opt, sched=sched, scaler=scaler, generator=generator)
        start, history = resume(run, **ckpt)
        with run.progress(opts.epochs, desc="mine", start=start) as advance:
            for epoch in range(start + 1, opts.epochs + 1):
                for b in batches(torch.arange(len(x)), opts.batch_size, generator):
                    ...
                    optimiser_step(opt, scaler, loss, dist)
                end_epoch(run, epoch, {"epoch": epoch, "loss": ...}, history, scheds=[sched],
                          options=opts, advance=advance, checkpoint=ckpt)
        return TrainResult(models=models, history=history)

:class:`TrainOptions` holds the knobs every loop shares (budget, optimiser, schedule,
checkpoint interval, mixed precision, device) and validates them in one place; a field left
``None`` takes the loop's own default. :class:`TrainResult` is what every loop returns and what
recipes and ``deepscope sweep`` read alike. ``net`` is a built-in name
(:data:`deepscope.nets.NETS`), an ``nn.Module`` of the user's, or a function returning one.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import torch
from torch import nn

from deepscope.train.config import check_float, check_int, require
from deepscope.train.distributed import Dist, all_reduce_grads, init_distributed
from deepscope.train.rng import fork_seeded
from deepscope.train.run import NullRun, Run

__all__ = [
    "TrainOptions", "TrainResult", "NetSpec", "setup", "make_models", "make_optimizer",
    "generator_or_default", "batches", "cycle_batches", "autocast", "grad_scaler", "resume",
    "optimiser_step", "end_epoch", "evaluating", "accuracy",
]

#: A network: a name of :data:`deepscope.nets.NETS`, a module, or a function returning a module.
NetSpec = str | nn.Module | Callable[[], nn.Module]


@dataclass(frozen=True)
class TrainOptions:
    """The knobs every training loop shares. ``None``: the loop's own default.

    Parameters
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
    lr : float
        Initial learning rate.
    momentum : float
        SGD momentum (ignored by Adam).
    weight_decay : float
    optimizer : 'sgd' or 'adam'
    schedule : 'cosine' or 'constant'
        'cosine' anneals the learning rate per epoch from ``lr`` to ``lr_min``.
    lr_min : float
        The cosine schedule's last learning rate.
    checkpoint_every : int
        Checkpoint every this many epochs (and after the last).
    amp : bool
        float16 autocast and a gradient scaler on CUDA; refused on the CPU.
    device : str or torch.device
        'auto', 'cpu', 'cuda', 'cuda:N'. Default: the run's device (the CPU without a run).

    Examples
    --------
    >>> from deepscope.train.loop import TrainOptions
    >>> mine = TrainOptions(epochs=3)
    >>> TrainOptions.resolve(mine, TrainOptions(epochs=100, lr=0.1)).lr
    0.1
    >>> TrainOptions(epochs=0)
    Traceback (most recent call last):
    ...
    ValueError: epochs == 0, must be an integer >= 1
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    optimizer: Literal["sgd", "adam"] | None = None
    schedule: Literal["cosine", "constant"] | None = None
    lr_min: float | None = None
    checkpoint_every: int | None = None
    amp: bool | None = None
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        for name in ("lr", "momentum", "weight_decay", "lr_min"):
            if getattr(self, name) is not None:
                check_float(name, getattr(self, name), 0.0)
        if self.optimizer is not None:
            require(self.optimizer in ("sgd", "adam"), "optimizer", self.optimizer, "'sgd' or 'adam'")
        if self.schedule is not None:
            require(self.schedule in ("cosine", "constant"), "schedule", self.schedule,
                    "'cosine' or 'constant'")
        if self.amp is not None:
            require(isinstance(self.amp, bool), "amp", self.amp, "True or False")

    @staticmethod
    def resolve(options: TrainOptions | Mapping[str, Any] | None,
                defaults: TrainOptions) -> TrainOptions:
        """``options``' fields where set, ``defaults``' elsewhere, the rest the kit's own.

        A mapping is accepted too (``{"epochs": 3}``); an unknown key names the known ones.
        """
        if options is None:
            options = TrainOptions()
        elif isinstance(options, Mapping):
            known = {f.name for f in fields(TrainOptions)}
            bad = sorted(set(options) - known)
            if bad:
                raise ValueError(f"options has {bad[0]!r}, must be among {sorted(known)}")
            options = TrainOptions(**options)
        elif not isinstance(options, TrainOptions):
            raise TypeError(f"options is a {type(options).__name__}, must be a TrainOptions or a dict")
        merged = {f.name: getattr(options, f.name) if getattr(options, f.name) is not None
                  else getattr(defaults, f.name) for f in fields(TrainOptions)}
        base = {f.name: v for f, v in zip(fields(TrainOptions), _KIT_DEFAULTS)}
        return TrainOptions(**{k: v if v is not None else base[k] for k, v in merged.items()})

    def replace(self, **changes: Any) -> TrainOptions:
        """A copy with ``changes``."""
        return replace(self, **changes)


# The kit's own values for what neither the user nor the loop set (in field order).
_KIT_DEFAULTS = (100, 128, 0.1, 0.9, 0.0, "sgd", "cosine", 0.0, 1, False, None)


@dataclass
class TrainResult:
    """What every training loop returns.

    Attributes
    ----------
    models : dict of name -> nn.Module
        The trained networks ('net_a', 'net_b' for two-network methods, 'net' otherwise).
    history : list of dict
        One record per epoch, as logged to the run's metrics.jsonl (``epoch``, ``test_acc``, ...).
    info : dict
        Method-specific values (split indices, selected epoch, removed examples, ...).
    """

    models: dict[str, nn.Module]
    history: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def predict(self, x: torch.Tensor, *, transform: Callable | None = None,
                device: str | torch.device = "cpu", batch_size: int = 1024) -> torch.Tensor:
        """Sum of the models' logits on ``x`` (N, ...) -> (N, K) on the CPU, in eval mode.

        ``transform`` maps a batch on the device before the models see it (e.g. a ``Views``'
        ``test`` normalisation).
        """
        models, dev, out = list(self.models.values()), torch.device(device), []
        with evaluating(*models):
            for xb in torch.as_tensor(x).split(batch_size):
                xb = xb.to(dev)
                xb = transform(xb) if transform is not None else xb
                out.append(sum(m.to(dev)(xb).float() for m in models).cpu())
        return torch.cat(out)

    @property
    def model(self) -> nn.Module:
        """The network of a one-network loop (the first one otherwise)."""
        return next(iter(self.models.values()))

    def _series(self, key: str) -> list[float]:
        return [r[key] for r in self.history if r.get(key) is not None]

    @property
    def last_test_acc(self) -> float:
        """Test accuracy after the last epoch (NaN when no test set was given)."""
        accs = self._series("test_acc")
        return accs[-1] if accs else float("nan")

    @property
    def best_test_acc(self) -> float:
        """Highest test accuracy over epochs: selected on the test set, so optimistic."""
        accs = self._series("test_acc")
        return max(accs) if accs else float("nan")


# -- set-up ------------------------------------------------------------------------------------

def setup(run: Run | NullRun | None, options: TrainOptions) -> tuple[Run | NullRun, Dist, torch.device]:
    """``(run, dist, device)`` for a loop: the run (a :class:`NullRun` when None; the caller's run
    is never changed), the torchrun process group and this process's device, ``options.device``
    when set, else the run's (the CPU without a run), decided by
    :func:`~deepscope.train.distributed.init_distributed`; ``amp`` checked against the device."""
    spec = options.device if options.device is not None else (run.device if run is not None else "cpu")
    dist, device = init_distributed(spec)
    if run is None:
        run = NullRun(device)
    if options.amp and device.type != "cuda":
        raise ValueError(f"amp == True needs a CUDA device, got {device}; use amp=False on the CPU")
    return run, dist, device


def generator_or_default(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or PyTorch's default CPU generator when None (as ``torch.randn`` does)."""
    if generator is None:
        return torch.default_generator
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator is a {type(generator).__name__}, must be a torch.Generator or None")
    return generator


def make_models(names: Sequence[str], net: NetSpec, *, input_shape: Sequence[int],
                num_classes: int, generator: torch.Generator, device: torch.device,
                net_kwargs: Mapping[str, Any] | None = None) -> dict[str, nn.Module]:
    """One network per name, initialised from ``generator``, on ``device``.

    Parameters
    ----------
    names : sequence of str
        The networks' names ('net', or 'net_a', 'net_b').
    net : str, nn.Module or callable
        A name of :data:`deepscope.nets.NETS` (built with ``input_shape``, ``num_classes`` and
        ``net_kwargs``); a function returning a new module (called once per name, inside
        :func:`~deepscope.train.rng.fork_seeded`, so the networks are reproducible); or a module.
        A module is used as it is for the first name; further names get deep copies with
        every submodule's ``reset_parameters()`` called (independent initialisations).
    """
    if net_kwargs and not isinstance(net, str):
        raise ValueError("net_kwargs is given with a module or factory as net; pass the options "
                         "to your own builder instead, or use a built-in name")
    out: dict[str, nn.Module] = {}
    for i, name in enumerate(names):
        with fork_seeded(generator):
            if isinstance(net, str):
                from deepscope.nets import build_net

                m = build_net(net, input_shape=tuple(input_shape), num_classes=num_classes,
                              **dict(net_kwargs or {}))
            elif isinstance(net, nn.Module):
                m = net if i == 0 else _reinitialised(net)
            elif callable(net):
                m = net()
                if not isinstance(m, nn.Module):
                    raise TypeError(f"net() returned a {type(m).__name__}, must return an nn.Module")
            else:
                raise TypeError(f"net is a {type(net).__name__}, must be a name of deepscope.nets."
                                "NETS, an nn.Module or a function returning one")
        out[name] = m.to(device)
    return out


def _reinitialised(module: nn.Module) -> nn.Module:
    m = copy.deepcopy(module)
    for sub in m.modules():
        if callable(getattr(sub, "reset_parameters", None)):
            sub.reset_parameters()
    return m


def make_optimizer(params, options: TrainOptions, *, epochs: int | None = None):
    """``(optimizer, scheduler)`` from ``options`` (resolved): SGD with momentum or Adam, with
    weight decay; a per-epoch cosine schedule to ``lr_min`` over ``epochs`` (default
    ``options.epochs``), or a constant one."""
    if options.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum,
                              weight_decay=options.weight_decay)
    if options.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=epochs or options.epochs, eta_min=options.lr_min)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


# -- batches, precision ------------------------------------------------------------------------

def batches(idx: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A random permutation of ``idx`` cut into batches of ``batch_size`` (the last may be smaller)."""
    perm = idx[torch.randperm(len(idx), generator=generator)]
    return list(perm.split(batch_size))


def cycle_batches(idx: torch.Tensor, batch_size: int, count: int, generator: torch.Generator
                  ) -> list[torch.Tensor]:
    """``count`` batches of ``batch_size`` from ``idx``, reshuffled each time it runs out."""
    out: list[torch.Tensor] = []
    pool = idx[torch.randperm(len(idx), generator=generator)]
    pos = 0
    for _ in range(count):
        if pos + batch_size > len(pool):
            pool = idx[torch.randperm(len(idx), generator=generator)]
            pos = 0
        out.append(pool[pos:pos + batch_size])
        pos += batch_size
    return out


def autocast(device: torch.device, amp: bool):
    """float16 autocast on CUDA when ``amp``; a no-op otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """A GradScaler enabled only for ``amp`` on CUDA (its state is checkpointed like any other)."""
    return torch.amp.GradScaler(device.type, enabled=bool(amp and device.type == "cuda"))


# -- the epoch ---------------------------------------------------------------------------------

def resume(run: Run | NullRun, **objects: Any) -> tuple[int, list[dict]]:
    """``run.restore(**objects, history=None)``: the last epoch done (0 on a fresh run) and the
    history up to it. Pass the same objects to :func:`end_epoch`'s ``checkpoint``."""
    state = run.restore(**objects, history=None)
    return state["step"], list(state.get("history") or [])


def optimiser_step(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                   loss: torch.Tensor, dist: Dist | None = None) -> None:
    """Backward through the (scaled) loss, average the gradients of ``opt``'s parameters over
    the processes (the loss is the global batch's on every process), step, update the scaler."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
    if dist is not None:
        all_reduce_grads([p for group in opt.param_groups for p in group["params"]], dist)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()


def end_epoch(run: Run | NullRun, epoch: int, rec: dict, history: list[dict], *, scheds,
              options: TrainOptions, advance, checkpoint: Mapping[str, Any]) -> None:
    """Step the learning-rate schedules, append ``rec`` to ``history`` and log it, checkpoint
    ``checkpoint`` (with the history) every ``options.checkpoint_every`` epochs and after the
    last, advance the progress bar."""
    for s in scheds:
        s.step()
    history.append(rec)
    run.log(epoch, **{k: v for k, v in rec.items() if k != "epoch"})
    if epoch % options.checkpoint_every == 0 or epoch == options.epochs:
        run.save(epoch, **checkpoint, history=history)
    advance(1, **{k: rec[k] for k in ("test_acc",) if k in rec})


@contextlib.contextmanager
def evaluating(*models: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; each model's previous mode restored after."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max is the label; NaN for no rows."""
    return float((logits.argmax(-1) == y).double().mean()) if len(y) else float("nan")
