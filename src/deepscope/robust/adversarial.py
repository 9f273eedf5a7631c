"""Adversarial training: one loop, one small objective per method.

>>> import torch
>>> from deepscope.nets import MLP
>>> from deepscope.robust.adversarial import PGDAT, train_robust
>>> from deepscope.train.rng import fork_seeded
>>> g = torch.Generator().manual_seed(0)
>>> x, y = torch.rand(64, 8), torch.randint(3, (64,))
>>> with fork_seeded(g):
...     net = MLP(8, [16], 3)
>>> net = train_robust(net, x, y, PGDAT(eps=0.1, bounds=(0.0, 1.0), steps=3),
...                    generator=g, epochs=1, batch_size=32)

Objectives (the same network, optimiser and budget for every one of them):

- :class:`Standard`: cross-entropy on clean inputs.
- :class:`FGSMAT`: ``α·CE(x) + (1 − α)·CE(x_fgsm)``, α = 0.5 (Goodfellow et al., arXiv 1412.6572).
- :class:`PGDAT`: ``CE(x_pgd)`` with random start (Madry et al., arXiv 1706.06083).
- :class:`TRADES`: ``CE(x) + β·KL(p(x) ‖ p(x'))``, x' maximising the KL by PGD, β = 6
  (Zhang et al., arXiv 1901.08573).
- ``A3T`` (:mod:`deepscope.robust.a3t`): FGSM adversarial training plus a discriminator on a
  hidden layer (Erraqabi et al., arXiv 1801.04055).

An objective is ``loss(model, x, y, generator) -> (loss, metrics)``; one that owns extra
trainable state (A3T's discriminator) builds it in ``setup(model, generator=, device=)`` and
lists it in ``state()`` so that checkpoints hold it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.robust.attacks import FGSM, PGD, eval_mode, kl_divergence
from deepscope.robust.attacks.base import check_norm
from deepscope.train.distributed import (
    all_reduce_grads,
    init_distributed,
    reduce_metrics,
    shard,
    sharded_draws,
)
from deepscope.train.run import NullRun, Run, as_run

__all__ = [
    "Objective", "Standard", "FGSMAT", "PGDAT", "TRADES", "METHODS", "make_objective",
    "train_robust",
]


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps == {eps!r}, must be a finite number > 0")
    return float(eps)


def _check_fraction(name: str, v: float) -> float:
    if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} == {v!r}, must be in [0, 1]")
    return float(v)


class Objective:
    """A training objective: ``loss(model, x, y, generator) -> (scalar loss, {name: float})``."""

    name = "objective"

    def setup(self, model: nn.Module, *, generator: torch.Generator, device: torch.device) -> None:
        """Build extra trainable state (none by default); called once before training."""

    def state(self) -> dict[str, Any]:
        """Extra objects to checkpoint by name (modules, optimizers); ``{}`` by default."""
        return {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.endswith("_")]
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"


class Standard(Objective):
    """Cross-entropy on clean inputs (the undefended baseline)."""

    name = "standard"

    def __init__(self, **_ignored: Any):
        pass

    def loss(self, model, x, y, generator):
        loss = F.cross_entropy(model(x), y)
        return loss, {"loss": loss.item()}


class FGSMAT(Objective):
    """FGSM adversarial training: ``α·CE(x, y) + (1 − α)·CE(x + ε·sign(∇ₓCE), y)``.

    Goodfellow, Shlens & Szegedy 2015 (arXiv 1412.6572), eq. (6), with their α = 0.5.
    ``bounds`` are the input domain the adversarial examples are clipped to.
    """

    name = "fgsm-at"

    def __init__(self, *, eps: float, norm: str = "linf", bounds=(0.0, 1.0), alpha: float = 0.5):
        self.eps = _check_eps(eps)
        self.norm = check_norm(norm)
        self.bounds = bounds
        self.alpha = _check_fraction("alpha", alpha)

    def loss(self, model, x, y, generator):
        x_adv = FGSM(model, eps=self.eps, norm=self.norm, bounds=self.bounds)(x, y)
        clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(x_adv), y)
        loss = self.alpha * clean + (1 - self.alpha) * adv
        return loss, {"loss": loss.item(), "ce_clean": clean.item(), "ce_adv": adv.item()}


class PGDAT(Objective):
    """PGD adversarial training: ``CE(x_pgd, y)``, ``steps`` steps from a random start.

    Madry et al. 2018 (arXiv 1706.06083), eq. (2.1). Their MNIST setting is ε = 0.3, 40 steps
    of 0.01; the default here is 10 steps of 2.5·ε/10 (a CPU budget; ``steps=40,
    step_size=0.01`` gives theirs).
    """

    name = "pgd-at"

    def __init__(self, *, eps: float, norm: str = "linf", bounds=(0.0, 1.0), steps: int = 10,
                 step_size: float | None = None):
        self.eps = _check_eps(eps)
        self.norm = check_norm(norm)
        self.bounds = bounds
        self.steps = steps
        self.step_size = step_size
        self._attack(nn.Identity())  # validate steps / step_size now

    def _attack(self, model):
        return PGD(model, eps=self.eps, norm=self.norm, bounds=self.bounds, steps=self.steps,
                   step_size=self.step_size, random_start=True)

    def loss(self, model, x, y, generator):
        x_adv = self._attack(model)(x, y, generator=generator)
        loss = F.cross_entropy(model(x_adv), y)
        return loss, {"loss": loss.item()}


class TRADES(Objective):
    """TRADES: ``CE(x, y) + β·KL(p(x) ‖ p(x'))`` with x' = argmax of the KL in the ε-ball.

    Zhang et al. 2019 (arXiv 1901.08573), eq. (5) and Algorithm 1: the inner maximisation
    starts at ``x + 0.001·N(0, I)`` and takes ``steps`` PGD steps on the KL; β = 6 (1/λ, their
    MNIST and CIFAR-10 value).
    """

    name = "trades"

    def __init__(self, *, eps: float, norm: str = "linf", bounds=(0.0, 1.0), beta: float = 6.0,
                 steps: int = 10, step_size: float | None = None):
        self.eps = _check_eps(eps)
        self.norm = check_norm(norm)
        self.bounds = bounds
        if not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError(f"beta == {beta!r}, must be >= 0")
        self.beta = float(beta)
        self.steps = steps
        self.step_size = step_size
        self._attack(nn.Identity())

    def _attack(self, model):
        return PGD(model, eps=self.eps, norm=self.norm, bounds=self.bounds, steps=self.steps,
                   step_size=self.step_size, loss=kl_divergence, init_std=1e-3)

    def loss(self, model, x, y, generator):
        with torch.no_grad(), eval_mode(model):
            p_clean = F.softmax(model(x), 1)
        x_adv = self._attack(model)(x, p_clean, generator=generator)
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        kl = kl_divergence(model(x_adv), F.softmax(logits, 1)).mean()
        loss = ce + self.beta * kl
        return loss, {"loss": loss.item(), "ce_clean": ce.item(), "kl": kl.item()}


def _a3t(**options):
    from deepscope.robust.a3t import A3T

    return A3T(**options)


_OBJECTIVES = {"standard": Standard, "fgsm-at": FGSMAT, "pgd-at": PGDAT, "trades": TRADES,
               "a3t": _a3t}
#: Method names accepted by :func:`make_objective`.
METHODS = tuple(_OBJECTIVES)


def make_objective(method: str, **options: Any) -> Objective:
    """The objective of ``method`` ('standard', 'fgsm-at', 'pgd-at', 'trades', 'a3t').

    ``options`` are the objective's keywords (``eps``, ``norm``, ``bounds``, ...); the
    standard objective ignores them.
    """
    if method not in _OBJECTIVES:
        raise ValueError(f"method == {method!r}, must be one of {list(METHODS)}")
    return _OBJECTIVES[method](**options)


def train_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: Objective, *,
                 generator: torch.Generator, run: Run | NullRun | None = None,
                 device: str | torch.device | None = None, epochs: int = 50, batch_size: int = 64,
                 lr: float = 1e-3, checkpoint_every: int = 0, log_every: int = 10,
                 desc: str = "") -> nn.Module:
    """Train ``model`` in place on ``(x, y)`` with ``objective`` (Adam, minibatches, epochs).

    Parameters
    ----------
    model : nn.Module
        Built by the caller (inside ``fork_seeded(generator)`` for a reproducible start).
    x : (N, ...) float tensor
        Training inputs, inside the bounds the objective's attacks use.
    y : (N,) int64 tensor
    objective : Objective
        :class:`Standard`, :class:`FGSMAT`, :class:`PGDAT`, :class:`TRADES` or ``A3T``.
    generator : torch.Generator
        The only source of randomness: minibatch order, random starts, extra modules' init.
    run : Run, optional
        Metrics (``loss`` and the objective's terms every ``log_every`` steps) and
        checkpoints (model, optimiser, generator, the objective's state, the epoch's
        permutation); a killed run resumes where its last checkpoint left off.
    epochs, batch_size, lr : training budget (Adam; the last partial batch is kept).
    checkpoint_every : int
        Steps between checkpoints; 0 means once per epoch.

    Under ``torchrun`` every process draws the same global batch, takes its slice of it
    (:func:`~deepscope.train.distributed.shard`, unequal slices allowed), makes the random
    starts of its attacks as the rows of the global batch's draws
    (:func:`~deepscope.train.distributed.sharded_draws`), and averages the gradients weighed by
    its examples (:func:`~deepscope.train.distributed.all_reduce_grads`, also inside A3T for
    its discriminator): the same updates as one process, up to float summation order.
    Explicit averaging rather than a DDP wrapper, because the objectives reach the network
    through attacks and views (A3T's encoder) that a DDP forward would not see. Every batch,
    the last one too, must hold at least one example per process. A network with BatchNorm
    (``norm='batch'``) normalises each process's slice by itself, as under DDP.

    Returns
    -------
    nn.Module
        ``model``, trained, in train mode.
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} == {v!r}, must be an integer >= 1")
    if not lr > 0:
        raise ValueError(f"lr == {lr!r}, must be > 0")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x has {x.shape[0]} examples and y {y.shape[0]}; pass the same number (> 0)")
    run = as_run(run, device)
    dist, dev = init_distributed(run.device)
    n = x.shape[0]
    last = n - (math.ceil(n / batch_size) - 1) * batch_size  # the last batch's size
    if dist.enabled and min(batch_size, last) < dist.world_size:
        raise ValueError(f"batch_size == {batch_size} with {n} examples leaves a batch smaller than "
                         f"world_size == {dist.world_size}; use a batch size and a number of "
                         "examples whose every batch has one example per process")
    per_epoch = math.ceil(n / batch_size)
    steps = epochs * per_epoch
    every = checkpoint_every or per_epoch
    model.to(dev).train()
    objective.setup(model, generator=generator, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    extra = objective.state()
    state = run.restore(model=model, opt=opt, generator=generator, perm=None, **extra)
    start, perm = state["step"], state.get("perm")
    with run.progress(steps, desc=desc, start=start) as advance:
        for step in range(start + 1, steps + 1):
            i = (step - 1) % per_epoch
            if i == 0:
                perm = torch.randperm(n, generator=generator)
            idx = perm[i * batch_size:(i + 1) * batch_size]  # the global batch
            rows = shard(torch.arange(len(idx)), dist, even=False)
            xb, yb = x[idx[rows]].to(dev), y[idx[rows]].to(dev)
            with sharded_draws(generator, rows, len(idx)):
                loss, metrics = objective.loss(model, xb, yb, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            all_reduce_grads(model.parameters(), dist, count=len(rows))
            opt.step()
            if step % log_every == 0 or step == steps:
                metrics = reduce_metrics(metrics, len(rows), dist)
                run.log(step, epoch=(step - 1) // per_epoch + 1, **metrics)
            if step % every == 0 or step == steps:
                run.save(step, model=model, opt=opt, generator=generator, perm=perm, **extra)
            advance(1, loss=metrics["loss"])
    return model
