"""Adversarial training: one loop, one small objective per method.

>>> import torch
>>> from deepscope.robust.adversarial import PGDAT, train_robust
>>> g = torch.Generator().manual_seed(0)
>>> x, y = torch.rand(64, 8), torch.randint(3, (64,))
>>> res = train_robust("mlp", x, y, PGDAT(eps=0.1, bounds=(0.0, 1.0), steps=3), num_classes=3,
...                    net_kwargs={"hidden": [16]}, options={"epochs": 1, "batch_size": 32},
...                    generator=g)
>>> res.model(x).shape
torch.Size([64, 3])

Objectives (the same network, optimiser and budget for every one of them):

- :class:`Standard`: cross-entropy on clean inputs.
- :class:`FGSMAT`: ``α·CE(x) + (1 − α)·CE(x_fgsm)``, α = 0.5 (Goodfellow et al., arXiv 1412.6572).
- :class:`PGDAT`: ``CE(x_pgd)`` with random start (Madry et al., arXiv 1706.06083).
- :class:`TRADES`: ``CE(x) + β·KL(p(x) ‖ p(x'))``, x' maximising the KL by PGD, β = 6
  (Zhang et al., arXiv 1901.08573).
- :class:`~deepscope.robust.a3t.A3T`: FGSM adversarial training plus a discriminator on a
  hidden layer (Erraqabi et al., arXiv 1801.04055).

:func:`deepscope.robust.methods.make_objective` builds any of them by name. An objective is
``loss(model, x, y, generator) -> (loss, metrics)`` (:class:`~deepscope.robust.objective.Objective`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.robust.attacks import FGSM, PGD, eval_mode, kl_divergence
from deepscope.robust.attacks.base import check_norm
from deepscope.robust.objective import Objective, check_eps
from deepscope.train.config import check_float, check_int
from deepscope.train.distributed import all_reduce_grads, reduce_metrics, shard, sharded_draws
from deepscope.train.loop import (
    NetSpec,
    TrainOptions,
    TrainResult,
    generator_or_default,
    make_models,
    make_optimizer,
    resume,
    setup,
)
from deepscope.train.run import NullRun, Run

__all__ = ["Standard", "FGSMAT", "PGDAT", "TRADES", "train_robust", "ROBUST_DEFAULTS"]

#: :func:`train_robust`'s budget: 50 epochs of Adam at 1e-3 in batches of 64, a constant
#: learning rate, a checkpoint every epoch.
ROBUST_DEFAULTS = TrainOptions(epochs=50, batch_size=64, lr=1e-3, optimizer="adam",
                               schedule="constant", weight_decay=0.0, lr_min=0.0,
                               checkpoint_every=1, amp=False)


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
        self.eps = check_eps(eps)
        self.norm = check_norm(norm)
        self.bounds = bounds
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)

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
        self.eps = check_eps(eps)
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
        self.eps = check_eps(eps)
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


def train_robust(net: NetSpec, x: torch.Tensor, y: torch.Tensor, objective: Objective, *,
                 num_classes: int | None = None, net_kwargs: Mapping[str, Any] | None = None,
                 options: TrainOptions | Mapping[str, Any] | None = None,
                 generator: torch.Generator | None = None, run: Run | NullRun | None = None,
                 log_every: int = 10, desc: str = "") -> TrainResult:
    """Train a network on ``(x, y)`` with ``objective`` in minibatches.

    Parameters
    ----------
    net : str, nn.Module or callable
        A name of :data:`deepscope.nets.NETS` (built with ``num_classes`` and ``net_kwargs``,
        initialised from ``generator``), your own module (trained in place), or a function
        returning one.
    x : (N, ...) float tensor
        Training inputs, inside the bounds the objective's attacks use.
    y : (N,) int64 tensor
    objective : Objective
        :class:`Standard`, :class:`FGSMAT`, :class:`PGDAT`, :class:`TRADES` or
        :class:`~deepscope.robust.a3t.A3T` (:func:`~deepscope.robust.methods.make_objective`).
    num_classes : int, optional
        Needed with a built-in name.
    options : TrainOptions or dict, optional
        The shared knobs; unset ones take :data:`ROBUST_DEFAULTS` (50 epochs, batch 64, Adam
        1e-3, constant; the last partial batch is kept). ``checkpoint_every`` counts epochs.
        ``amp`` is refused: attacks and A3T's discriminator step run in full precision.
    generator : torch.Generator, optional
        The only source of randomness: initialisation, minibatch order, random starts, extra
        modules' init. Default: PyTorch's own.
    run : Run, optional
        Metrics (``loss`` and the objective's terms every ``log_every`` steps) and checkpoints
        (model, optimiser, generator, the objective's state); a killed run resumes where its
        last checkpoint left off.

    Notes
    -----
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
    TrainResult
        ``models['net']`` (``.model``), trained, in eval mode; ``history`` the logged records
        (``step``, ``epoch``, the objective's metrics).
    """
    o = TrainOptions.resolve(options, ROBUST_DEFAULTS)
    if o.amp:
        raise ValueError("amp == True, must be False for train_robust: its attacks and A3T's "
                         "discriminator step run in full precision")
    if not isinstance(objective, Objective):
        raise TypeError(f"objective is a {type(objective).__name__}, must be an Objective "
                        "(deepscope.robust.make_objective('pgd-at', eps=...))")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x has {x.shape[0]} examples and y {y.shape[0]}; pass the same number (> 0)")
    if isinstance(net, str) and num_classes is None:
        raise ValueError(f"num_classes is None, must be given to build net {net!r}")
    check_int("log_every", log_every, 1)
    run, dist, dev = setup(run, o)
    generator = generator_or_default(generator)
    n, batch_size = x.shape[0], o.batch_size
    last = n - (math.ceil(n / batch_size) - 1) * batch_size  # the last batch's size
    if dist.enabled and min(batch_size, last) < dist.world_size:
        raise ValueError(f"batch_size == {batch_size} with {n} examples leaves a batch smaller than "
                         f"world_size == {dist.world_size}; use a batch size and a number of "
                         "examples whose every batch has one example per process")
    per_epoch = math.ceil(n / batch_size)
    steps = o.epochs * per_epoch
    model = make_models(["net"], net, input_shape=x.shape[1:], num_classes=num_classes or 0,
                        generator=generator, device=dev, net_kwargs=net_kwargs)["net"]
    model.train()
    objective.setup(model, generator=generator, device=dev)
    opt, sched = make_optimizer(model.parameters(), o)
    ckpt = dict(model=model, opt=opt, sched=sched, generator=generator, **objective.state())
    start, history = resume(run, **ckpt)
    perm = None
    with run.progress(steps, desc=desc, start=start) as advance:
        for step in range(start + 1, steps + 1):
            i = (step - 1) % per_epoch
            if perm is None or i == 0:  # checkpoints fall on epoch ends: a new epoch's order
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
                epoch = (step - 1) // per_epoch + 1
                run.log(step, epoch=epoch, **metrics)
                history.append({"step": step, "epoch": epoch, **metrics})
            if i == per_epoch - 1:  # the epoch's end
                sched.step()
                if (step // per_epoch) % o.checkpoint_every == 0 or step == steps:
                    run.save(step, **ckpt, history=history)
            advance(1, loss=metrics["loss"])
    model.eval()
    return TrainResult({"net": model}, history, {})
