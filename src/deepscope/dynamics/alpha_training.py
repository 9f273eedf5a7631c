"""Minibatch SGD of an alpha-scaled model, recording every probe example on the loss ladder.

The protocol of George, Lajoie & Baratin (arXiv 2209.09658, section 3) on real data: the
network ``f_alpha = alpha (h - h_0)`` trains on ``L / alpha^2`` by SGD with momentum; each time
the running training loss reaches a rung of the ladder, every probe example's loss and
correctness are stored, and the linearity probes (ReLU signs, tangent-kernel rotation) are
logged every few rungs.

Cookbook::

    import torch
    from deepscope.dynamics.alpha_training import train_alpha
    from deepscope.dynamics.ladder import LossLadder, ladder_levels, learning_times

    x, y = torch.randn(600, 40), torch.randint(10, (600,))
    ladder = LossLadder(ladder_levels(10, min_loss=1.0), window=5)   # 5 minibatches an epoch
    res = train_alpha("mlp", x, y, alpha=100.0, num_classes=10, ladder=ladder,
                      options={"epochs": 20, "batch_size": 125, "lr": 0.1},
                      generator=torch.Generator().manual_seed(0), linearity_x=x[:64])
    res.model                                   # the AlphaScaled model, trained
    learning_times(ladder.stack("correct"))     # (600,) rung at which each example was learned
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch

from deepscope.dynamics.alignment import cka
from deepscope.dynamics.alpha_scaling import AlphaScaled, relu_sign_agreement, tangent_kernel
from deepscope.dynamics.ladder import LossLadder, example_losses
from deepscope.train.config import check_int
from deepscope.train.distributed import reduce_metrics, shard
from deepscope.train.loop import (
    NetSpec,
    TrainOptions,
    TrainResult,
    autocast,
    evaluating,
    generator_or_default,
    grad_scaler,
    make_models,
    make_optimizer,
    optimiser_step,
    resume,
    setup,
)
from deepscope.train.run import NullRun, Run

__all__ = ["train_alpha", "DEFAULTS"]

#: train_alpha's own defaults (the paper's CIFAR-10 protocol: batch 125, SGD lr 0.01, momentum
#: 0.9, no weight decay, a constant rate); fields the caller sets in ``options`` win.
DEFAULTS = TrainOptions(epochs=100, batch_size=125, lr=0.01, momentum=0.9, weight_decay=0.0,
                        optimizer="sgd", schedule="constant", checkpoint_every=1)


def _init_outputs(model: AlphaScaled, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``model.init(x)`` in batches: the frozen network's outputs, computed once per input set."""
    with torch.no_grad():
        return torch.cat([model.init(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def _evaluate(model: AlphaScaled, x: torch.Tensor, y: torch.Tensor, h0: torch.Tensor,
              batch: int) -> tuple:
    losses, correct = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out = model(x[i:i + batch], init_output=h0[i:i + batch])
            lo, co = example_losses(out, y[i:i + batch])
            losses.append(lo.float().cpu())
            correct.append(co.cpu())
    return torch.cat(losses), torch.cat(correct)


def train_alpha(
    net: AlphaScaled | NetSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    alpha: float | None = None,
    num_classes: int | None = None,
    net_kwargs: Mapping[str, Any] | None = None,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    ladder: LossLadder | None = None,
    run: Run | NullRun | None = None,
    probe_x: torch.Tensor | None = None,
    probe_y: torch.Tensor | None = None,
    linearity_x: torch.Tensor | None = None,
    kernel_x: torch.Tensor | None = None,
    linearity_every: int = 10,
    eval_batch: int = 1000,
    stop_when_done: bool = True,
    desc: str = "",
) -> TrainResult:
    """Minibatch SGD on ``model.objective(mean loss)``, recording every probe example on the ladder.

    The paper's protocol (arXiv 2209.09658, section 3): each time the running mean training
    loss reaches a rung, the loss and correctness of every probe example are stored in
    ``ladder`` (``ladder.stack("loss")``, ``ladder.stack("correct")``: (R, N)), and a
    metrics line ``{rung, level, train_loss, probe_loss, probe_acc}`` is logged. Every
    ``linearity_every`` rungs the ReLU sign agreement (on ``linearity_x``) and the
    tangent-kernel alignment with initialisation (uncentred CKA, on ``kernel_x``) are logged
    too, as ``sign_agreement`` and ``kernel_alignment``.

    Parameters
    ----------
    net : AlphaScaled, str, nn.Module or callable
        An :class:`AlphaScaled` model is trained in place (build one per alpha from the same
        initial network to compare regimes). Otherwise the network ``h`` -- a name of
        :data:`deepscope.nets.NETS`, a module or a function returning one
        (:func:`~deepscope.train.loop.make_models`) -- is wrapped as ``AlphaScaled(h, alpha)``.
    x : (N, ...) tensor, y : (N,) int tensor
        Training data (moved to the device once).
    alpha : float, optional
        The scale when ``net`` is not an AlphaScaled (default 1: feature learning).
    num_classes : int, optional
        Outputs of a network built from a name (default ``max(y) + 1``).
    net_kwargs : dict, optional
        Options of a built-in network.
    options : TrainOptions or dict, optional
        ``epochs`` (a cap: see ``stop_when_done``), ``batch_size``, ``lr``, ``momentum``,
        ``weight_decay``, ``optimizer``, ``schedule``, ``checkpoint_every``, ``amp``, ``device``;
        unset fields take :data:`DEFAULTS`. The objective carries the 1/alpha^2, so the
        optimiser runs at the nominal rate; Adam divides it back out (no lazy regime).
        The last minibatch of an epoch may be smaller.
    generator : torch.Generator, optional
        Draws the minibatch order (one permutation per epoch, on the CPU), and the initial
        network when one is built here. Default: PyTorch's global generator.
    ladder : LossLadder, optional
        Its ``window`` should be the number of minibatches per epoch. Checkpointed with the run.
        None: plain training for ``epochs`` (no records), e.g. the hold-out models of a c-score.
    run : Run, optional
        Metrics, checkpoints (every ``checkpoint_every`` epochs) and resume.
    probe_x, probe_y : tensors, optional
        Examples recorded at each rung (default: the training set itself).
    linearity_x, kernel_x : tensors, optional
        Inputs of the two linearity probes (skipped when None). Keep ``kernel_x`` small (the
        kernel costs one gradient per example and output).
    linearity_every : int
        Probe every this many rungs (and at rung 0).
    eval_batch : int
        Batch size of the probe evaluation.
    stop_when_done : bool
        Stop at the end of the epoch in which the last rung fired.

    Notes
    -----
    Under ``torchrun`` every process draws the same global minibatch, computes the loss on
    its slice (:func:`~deepscope.train.distributed.shard`, unequal slices allowed: the last
    minibatch may be smaller), weighs it by its share of the minibatch so that the averaged
    gradient is the global minibatch's, and the ladder gets the global minibatch's mean loss.
    Every process evaluates the probes (the same numbers), and only rank 0 writes.

    Returns
    -------
    TrainResult
        ``models["net"]`` the trained AlphaScaled model; ``history`` every logged record (one
        per rung with ``rung``, one per epoch with ``epoch`` and ``running_loss``, each with
        its SGD ``step``); ``info["ladder"]`` the ladder (None without one).
    """
    opts = TrainOptions.resolve(options, DEFAULTS)
    for name, v in (("eval_batch", eval_batch), ("linearity_every", linearity_every)):
        check_int(name, v, 1)
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"x has {x.shape[0]} rows and y {y.shape[0]}; they must match (>= 1)")
    run, dist, dev = setup(run, opts)
    generator = generator_or_default(generator)
    n, bs = x.shape[0], opts.batch_size
    if dist.enabled and min(bs, n - (math.ceil(n / bs) - 1) * bs) < dist.world_size:
        raise ValueError(f"batch_size == {bs} with {n} examples leaves a minibatch smaller than "
                         f"world_size == {dist.world_size}; use batches with at least one "
                         "example per process")
    if isinstance(net, AlphaScaled):
        if alpha is not None and alpha != net.alpha:
            raise ValueError(f"alpha == {alpha!r} with an AlphaScaled of alpha {net.alpha:g}; pass "
                             "one or the other")
        model = net.to(dev)
    else:
        h = make_models(["net"], net, input_shape=x.shape[1:], generator=generator, device=dev,
                        num_classes=num_classes or int(y.max()) + 1, net_kwargs=net_kwargs)["net"]
        model = AlphaScaled(h, 1.0 if alpha is None else alpha)
    x, y = x.to(dev), y.to(dev)
    px = x if probe_x is None else probe_x.to(dev)
    py = y if probe_y is None else probe_y.to(dev)
    # the frozen network's outputs never change: compute them once (a third of each step's work)
    h0 = _init_outputs(model, x, eval_batch)
    h0_probe = h0 if probe_x is None else _init_outputs(model, px, eval_batch)
    opt, sched = make_optimizer(model.model.parameters(), opts)
    scaler = grad_scaler(dev, opts.amp)
    # the kernel at initialisation, from the frozen copy (so a resumed run gets the same one)
    k0 = None if kernel_x is None else tangent_kernel(
        copy.deepcopy(model.init).requires_grad_(True), kernel_x.to(dev))

    def log(step: int, rec: dict) -> None:
        history.append({"step": step, **rec})
        run.log(step, **rec)

    def probe(rung: int, step: int, loss: float) -> None:
        with evaluating(model):
            lo, co = _evaluate(model, px, py, h0_probe, eval_batch)
            ladder.record(rung, loss=lo, correct=co)
            rec = {"rung": rung, "level": round(ladder.levels[rung], 6), "train_loss": round(loss, 6),
                   "probe_loss": round(float(lo.mean()), 6),
                   "probe_acc": round(float(co.float().mean()), 5)}
            if rung % linearity_every == 0:
                if linearity_x is not None:
                    rec["sign_agreement"] = round(relu_sign_agreement(model, linearity_x.to(dev)), 6)
                if k0 is not None:
                    with torch.enable_grad():
                        k = tangent_kernel(model, kernel_x.to(dev))
                    rec["kernel_alignment"] = round(float(cka(k0, k, centered=False)), 6)
        log(step, rec)

    ckpt = dict(model=model, opt=opt, sched=sched, scaler=scaler, generator=generator,
                **({} if ladder is None else {"ladder": ladder}))
    step, history = resume(run, **ckpt)
    start_epoch = max((r["epoch"] for r in history if "epoch" in r), default=0)
    window: deque[float] = deque(maxlen=math.ceil(n / bs))  # the epoch's running loss
    done = False
    with run.progress(opts.epochs, desc=desc, start=start_epoch) as advance:
        for epoch in range(start_epoch + 1, opts.epochs + 1):
            if done:
                break
            model.train()
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, bs):
                idx = order[i:i + bs].to(dev)  # the global minibatch
                rows = shard(torch.arange(len(idx), device=dev), dist, even=False)
                mine = idx[rows]
                with autocast(dev, opts.amp):
                    loss = example_losses(model(x[mine], init_output=h0[mine]), y[mine])[0].mean()
                objective = model.objective(loss)
                if dist.enabled:  # this slice's share of the global minibatch's mean
                    objective = objective * (len(rows) * dist.world_size / len(idx))
                optimiser_step(opt, scaler, objective, dist)
                step += 1
                value = reduce_metrics({"loss": loss.item()}, len(rows), dist)["loss"]
                window.append(value)
                for rung in [] if ladder is None else ladder.update(step, value):
                    probe(rung, step, ladder.running_mean)
            sched.step()
            running = sum(window) / len(window)
            log(step, {"epoch": epoch, "running_loss": round(running, 6)})
            done = stop_when_done and ladder is not None and ladder.done
            if epoch % opts.checkpoint_every == 0 or epoch == opts.epochs or done:
                run.save(step, **ckpt, history=history)
            advance(1, loss=running)
    return TrainResult(models={"net": model}, history=history, info={"ladder": ladder})
