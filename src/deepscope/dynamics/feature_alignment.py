"""Neural feature alignment along SGD training, with a fraction of random labels (arXiv 2008.00938).

Baratin et al. train classifiers with SGD and momentum, some training labels replaced by
random ones, and watch the empirical tangent kernel on fixed probe sets of 100 training and
100 test examples at steps ``floor(5 * 1.15^k)``: its centred alignment with the labels, per
layer too, its spectrum (top eigenvalue, effective rank) and a complexity measure along the
path. :func:`train_feature_alignment` is that loop; the measurements are
:class:`deepscope.dynamics.ntk_tracker.AlignmentTracker`'s.

Cookbook::

    import torch
    from deepscope.data import load_dataset
    from deepscope.dynamics.feature_alignment import train_feature_alignment, over_seeds
    from deepscope.train import Run

    ds = load_dataset("mnist1d", n=5000, seed=0)
    res = train_feature_alignment(
        ds.x_train, ds.y_train, ds.x_test, ds.y_test, net="mlp",
        generator=torch.Generator().manual_seed(0), run=Run("runs/fa", seed=0),  # or run=None
        random_labels=0.2, epochs=30, lr=0.05)
    res.history[-1]["align_train"], res.history[0]["align_train"]   # final, initial
    res.final["gap"]               # train accuracy (labels trained on) - test accuracy
    over_seeds([0.41, 0.45, 0.43])  # {'mean': ..., 'std': ..., 'ci95': (lo, hi), 'n': 3}

Runs unchanged under ``torchrun``: every process draws the same global batch from the
generator and trains on its shard of it, the model is wrapped in DDP, and the kernels are
computed on the unwrapped model (the same numbers on every process; only rank 0 writes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.dynamics.ntk_tracker import AlignmentTracker, log_steps
from deepscope.nets import build_net
from deepscope.train.distributed import all_reduce_mean, init_distributed, shard, unwrap, wrap
from deepscope.train.rng import fork_seeded, spawn
from deepscope.train.run import NullRun, Run, as_run

__all__ = [
    "FeatureAlignmentResult", "train_feature_alignment", "randomize_labels", "crop_flip",
    "evaluate", "over_seeds",
]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class FeatureAlignmentResult:
    """What :func:`train_feature_alignment` returns.

    Attributes
    ----------
    model : nn.Module
        The trained network (unwrapped), on the training device.
    history : list of dict
        One record per tracker step: ``step``, ``epoch``, the tracker's numbers
        (``align_train``, ``align_test``, ``layer_align_train``, ``layer_align_test``,
        ``top_eigenvalue``, ``effective_rank``, ..., ``trace_k``, ``norm_dw``, ``complexity``)
        and the accuracies and losses of :func:`evaluate` on the whole sets.
    labels : (N,) tensor
        The training labels used (with the random ones).
    changed : (N,) bool tensor
        Which labels differ from the given ones.
    final : dict
        The last record's accuracies and losses, ``gap`` (train accuracy on the labels trained
        on minus test accuracy), ``loss_gap`` (test minus train loss) and ``complexity``.
    """

    model: nn.Module
    history: list[dict]
    labels: torch.Tensor
    changed: torch.Tensor
    final: dict = field(default_factory=dict)


def over_seeds(values: Iterable[float]) -> dict:
    """``{"mean", "std", "ci95", "n", "values"}`` of per-seed values.

    ``std`` has ddof = 1 (0 for one value) and ``ci95`` is the two-sided 95% Student-t
    interval of the mean (``(mean, mean)`` for one value). NaN values are dropped.
    """
    from scipy import stats

    a = np.asarray([float(v) for v in values], dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": (math.nan, math.nan), "n": 0, "values": []}
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    half = float(stats.t.ppf(0.975, a.size - 1)) * std / math.sqrt(a.size) if a.size > 1 else 0.0
    return {"mean": mean, "std": std, "ci95": (mean - half, mean + half), "n": int(a.size),
            "values": a.tolist()}


def randomize_labels(y: torch.Tensor, fraction: float, num_classes: int, *,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``round(fraction * N)`` labels, chosen at random, by labels uniform over the classes.

    As in the authors' code (arXiv 2008.00938) the new label is uniform over *all* classes, so
    about ``1 / num_classes`` of the chosen labels stay correct.

    Parameters
    ----------
    y : (N,) integer tensor
    fraction : float in [0, 1]
    num_classes : int
    generator : torch.Generator
        Draws the positions and the new labels (CPU).

    Returns
    -------
    labels : (N,) int64 tensor, changed : (N,) bool tensor (``labels != y``)
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction == {fraction!r}, must be a fraction in [0, 1]")
    y = torch.as_tensor(y).long().cpu()
    n = y.shape[0]
    k = round(fraction * n)
    pos = torch.randperm(n, generator=generator)[:k]
    labels = y.clone()
    labels[pos] = torch.randint(0, num_classes, (k,), generator=generator)
    return labels, labels != y


def crop_flip(x: torch.Tensor, generator: torch.Generator, *, pad: int = 4) -> torch.Tensor:
    """Random crops of zero-padded images and horizontal flips (CIFAR's usual augmentation).

    Parameters
    ----------
    x : (N, C, H, W) tensor
    generator : torch.Generator (CPU)
        Draws the offsets ``0..2 pad`` and the flips, three numbers per image.
    """
    if x.ndim != 4:
        raise ValueError(f"x has shape {tuple(x.shape)}; crop_flip takes images (N, C, H, W)")
    n, c, h, w = x.shape
    off = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = (off[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (off[1, :, None] + torch.arange(w, device=x.device))
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    return xp[torch.arange(n, device=x.device)[:, None, None, None],
              torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, *labels: torch.Tensor,
             batch_size: int = 1000) -> list[tuple[float, float]]:
    """``(accuracy, mean cross-entropy)`` of ``model`` on ``x`` for each labelling, one forward pass.

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (its mode is put back afterwards), in batches.
    x : (N, *features) tensor
    *labels : (N,) integer tensors
        E.g. the labels trained on and the true ones.
    """
    was = model.training
    model.eval()
    correct, loss = [0.0] * len(labels), [0.0] * len(labels)
    for i in range(0, x.shape[0], batch_size):
        out = model(x[i:i + batch_size])
        pred = out.argmax(1)
        for j, y in enumerate(labels):
            yi = y[i:i + batch_size]
            correct[j] += float((pred == yi).sum())
            loss[j] += float(F.cross_entropy(out, yi, reduction="sum"))
    model.train(was)
    return [(c / x.shape[0], v / x.shape[0]) for c, v in zip(correct, loss)]


def _check(x_train, y_train, x_test, y_test, ints: Mapping[str, int], floats: Mapping[str, float]):
    for name, v in ints.items():
        least = 2 if name == "n_probe" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"{name} == {v!r}, must be an integer >= {least}")
    lr, momentum, wd, frac = floats["lr"], floats["momentum"], floats["weight_decay"], floats["random_labels"]
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr == {lr!r}, must be a finite number > 0")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum == {momentum!r}, must be in [0, 1)")
    if not wd >= 0:
        raise ValueError(f"weight_decay == {wd!r}, must be >= 0")
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"random_labels == {frac!r}, must be a fraction in [0, 1]")
    for xs, ys, which in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if xs.shape[0] != ys.shape[0] or ys.ndim != 1:
            raise ValueError(f"x_{which} has {xs.shape[0]} examples and y_{which} shape "
                             f"{tuple(ys.shape)}; pass (N, ...) inputs and (N,) labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"x_train examples have shape {tuple(x_train.shape[1:])} and x_test "
                         f"{tuple(x_test.shape[1:])}; they must match")
    if ints["batch_size"] > x_train.shape[0]:
        raise ValueError(f"batch_size == {ints['batch_size']}, must be <= the {x_train.shape[0]} "
                         f"training examples")


def train_feature_alignment(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    generator: torch.Generator,
    net: str = "mlp",
    net_kwargs: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    run: Run | NullRun | None = None,
    device: str | torch.device | None = None,
    random_labels: float = 0.0,
    epochs: int = 50,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    augment: Augment | None = None,
    n_probe: int = 100,
    per_layer: bool = True,
    first_step: float = 5.0,
    ratio: float = 1.15,
    checkpoint_every: int = 1,
    desc: str = "",
) -> FeatureAlignmentResult:
    """Train a classifier with SGD + momentum and track its tangent-kernel alignment.

    The experiment of Baratin et al., "Implicit Regularization via Neural Feature Alignment",
    AISTATS 2021 (arXiv 2008.00938): a ``random_labels`` fraction of the training labels is
    replaced (:func:`randomize_labels`), the network is trained on cross-entropy in mini-batches
    of shuffled epochs, and at step 0 and the steps ``floor(first_step * ratio^k)`` (the
    paper: 5 and 1.15), plus the last step, an
    :class:`~deepscope.dynamics.ntk_tracker.AlignmentTracker` computes on 100 fixed training
    examples (with the labels trained on, as the authors' code) and 100 test examples: the
    centred kernel alignment ``A = y^T K_c y / (||K_c||_F ||y||^2)``, per layer, the train
    kernel's spectrum, and the path complexity ``C = (1/n) sum_k ||theta_k - theta_(k-1)||
    sqrt(Tr K_k)`` (see :func:`deepscope.dynamics.alignment.path_complexity`). Each record
    also holds the accuracies and losses on the whole sets (:func:`evaluate`).

    Parameters
    ----------
    x_train, x_test : (N, *features), (M, *features) float tensors
    y_train, y_test : (N,), (M,) integer labels
    generator : torch.Generator
        Draws, in order, the probe sets, the initialisation, the random labels (so runs that
        differ only in ``random_labels`` share probes and initialisation, and their randomised
        examples are nested), then every epoch's shuffle and augmentation. Checkpointed.
    net, net_kwargs : str, dict
        ``deepscope.nets.build_net(net, input_shape=x_train.shape[1:], num_classes=...,
        **net_kwargs)``; without BatchNorm (the tangent kernel needs examples processed
        independently).
    num_classes : int, optional
        Default ``max(y_train, y_test) + 1``.
    run : Run, optional
        Metrics (one line per tracker record, one per epoch with its mean loss), a checkpoint
        every ``checkpoint_every`` epochs and at the end (model, optimiser, generator, tracker,
        history), resumed from when present. ``None`` writes nothing.
    device : str or torch.device, optional
        Default the run's (CPU without a run). Under torchrun, this process's device.
    random_labels : float in [0, 1]
        Fraction of training labels replaced.
    epochs, batch_size, lr, momentum, weight_decay
        SGD (the authors' code: momentum 0.9, weight decay 5e-4, batch 128). The global batch
        size must be a multiple of the number of processes; the last partial batch of an epoch
        is dropped.
    augment : callable, optional
        ``augment(x_batch, generator) -> x_batch`` on each (global) batch, e.g. :func:`crop_flip`.
    n_probe : int
        Probe examples per set (the paper: 100).
    per_layer : bool
        Also record each layer's alignment.
    first_step, ratio : float
        The tracker's schedule ``floor(first_step * ratio^k)``.
    checkpoint_every : int
        Epochs between checkpoints.
    desc : str
        Progress-bar label.

    Returns
    -------
    FeatureAlignmentResult
    """
    floats = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
              "random_labels": random_labels}
    ints = {"epochs": epochs, "batch_size": batch_size, "n_probe": n_probe,
            "checkpoint_every": checkpoint_every}
    _check(x_train, y_train, x_test, y_test, ints, floats)
    run = as_run(run, device)
    dist, dev = init_distributed(run.device)
    y_train, y_test = torch.as_tensor(y_train).long(), torch.as_tensor(y_test).long()
    k = num_classes or int(max(y_train.max(), y_test.max())) + 1
    # Probes and initialisation first, then the labels: runs that differ only in the fraction
    # share both, and the randomised examples of a smaller fraction are among a larger one's.
    probe_seed = spawn(generator)
    with fork_seeded(generator):
        model = build_net(net, input_shape=tuple(x_train.shape[1:]), num_classes=k,
                          **dict(net_kwargs or {})).to(dev)
    labels, changed = randomize_labels(y_train, random_labels, k, generator=generator)
    steps_per_epoch = x_train.shape[0] // batch_size
    total = epochs * steps_per_epoch
    x, y = x_train.to(dev), labels.to(dev)
    xt, yt, y_clean = x_test.to(dev), y_test.to(dev), y_train.to(dev)
    schedule = set(log_steps(total, first=first_step, ratio=ratio)) | {total}
    tracker = AlignmentTracker(x, y, xt, yt, n_probe=n_probe, seed=probe_seed, steps=schedule,
                               per_layer=per_layer)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    state = run.restore(model=model, opt=opt, generator=generator, tracker=tracker, history=[])
    step, history = state["step"], list(state.get("history", []))
    ddp = wrap(model, dist)

    def record(step: int, epoch: int) -> None:
        rec = tracker(step, model)  # the unwrapped model: the same kernel on every process
        if rec is None:
            return
        (acc, loss), (acc_clean, _) = evaluate(model, x, y, y_clean)
        [(test_acc, test_loss)] = evaluate(model, xt, yt)
        line = {"epoch": epoch, **rec, "train_acc": acc, "train_acc_clean": acc_clean,
                "train_loss": loss, "test_acc": test_acc, "test_loss": test_loss}
        history.append({"step": step, **line})
        run.log(step, **line)

    if step == 0:
        record(0, 0)
    n = x.shape[0]
    with run.progress(total, desc=desc, start=step) as advance:
        for epoch in range(step // steps_per_epoch + 1, epochs + 1):
            perm = torch.randperm(n, generator=generator)
            loss_sum = torch.zeros((), device=dev)
            for b in range(steps_per_epoch):
                idx = perm[b * batch_size:(b + 1) * batch_size].to(dev)  # the global batch
                mine = shard(torch.arange(batch_size, device=dev), dist)
                xb = x[idx] if augment is None else augment(x[idx], generator)
                loss = F.cross_entropy(ddp(xb[mine]), y[idx][mine])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach()
                step += 1
                record(step, epoch)
                advance(1)
            run.log(step, epoch=epoch,
                    loss=float(all_reduce_mean(loss_sum / steps_per_epoch, dist)))
            if epoch % checkpoint_every == 0 or epoch == epochs:
                run.save(step, model=model, opt=opt, generator=generator, tracker=tracker,
                         history=history)
    last = history[-1]
    final = {key: last[key] for key in ("train_acc", "train_acc_clean", "train_loss", "test_acc",
                                        "test_loss", "complexity")}
    final.update(gap=last["train_acc"] - last["test_acc"],
                 loss_gap=last["test_loss"] - last["train_loss"], step=last["step"])
    return FeatureAlignmentResult(unwrap(ddp), history, labels, changed, final)

