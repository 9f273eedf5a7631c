"""CrossSplit (Kim, Baratin, Zhang & Lacoste-Julien, ICML 2023, arXiv 2212.01674).

>>> import torch
>>> from deepscope.robust.crosssplit import train_crosssplit
>>> from deepscope.data.noise import make_label_noise
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(400, 40, generator=g); y = (x[:, :10].sum(1) > 0).long()
>>> noisy = make_label_noise(y, "sym40", num_classes=2, generator=g)
>>> res = train_crosssplit(x, noisy.labels, num_classes=2, net="mlp",
...                        net_kwargs={"hidden": (32,)}, warmup_epochs=1, y_true=y,
...                        options={"epochs": 3, "batch_size": 64}, generator=g)
>>> sorted(res.models), len(res.history), res.predict(x[:5]).shape
(['net_a', 'net_b'], 3, torch.Size([5, 2]))

The labelled set is split once into two disjoint halves D_a, D_b; network a trains on D_a's
labels, network b on D_b's. A network never sees its peer's labels, so its predictions there
are an independent opinion about them. After a cross-entropy warm-up, each epoch:

**Cross-split label correction (CLC)**, for network k and its peer p, on an example
(x_i, ỹ_i) of k's half: ``p_i`` = the peer's softmax averaged over ``peer_views`` weak views;

- ``JSD_i = JSD(onehot(ỹ_i), p_i)`` (Jensen-Shannon divergence, natural log);
- eq. (4): ``w_i = (JSD_i - min_c) / (max_c - min_c)`` clipped to [0, 1], with min and max
  over the examples of k's half whose given label is ``c = ỹ_i`` (recomputed every epoch);
- eq. (2): ``β_i = 1/2 + γ (w_i - 1/2)``, γ = 0.6, then 0.8 from warm-up + 20 epochs, then 1.0
  from warm-up + 30 (``gamma_schedule``), so β ∈ [0.2, 0.8] early and [0, 1] later;
- eq. (1): ``s_i = β_i p_i + (1 - β_i) onehot(ỹ_i)``, then sharpened:
  ``s_i^(1/T) / sum_k s_ik^(1/T)`` with T = 0.5.

Equation numbers are those the authors' released code gives these lines (its comments name
eqs. (1), (2) and (4)); the JSD itself sits between them.

**Cross-split semi-supervised training**: network k treats the other half's inputs as
unlabeled. Their targets are k's own sharpened mean prediction over weak views. Labelled
strong views (targets s_i) and unlabeled strong views are mixed (MixUp, λ ~ Beta(4, 4),
λ = max(λ, 1 - λ)), and the loss is (as in DivideMix, arXiv 2002.07394, eqs. 9-12)::

    L = soft-CE(labelled) + λ_u(t) MSE(softmax, targets | unlabeled)
        + KL(uniform || mean prediction) + 0.025 NT-Xent(two strong unlabeled views)

with λ_u ramped linearly from 0 to 30 over the 16 epochs after warm-up. The contrastive term
uses a projection head (Linear + BatchNorm to 128 dimensions) on ``net.features`` (a network
of your own needs a ``features`` submodule for it, or ``contrastive_weight=0``).

**Prediction**: argmax of the sum of the two networks' logits.

Every ingredient can be switched off for the paper's ablation: ``label_correction=False``
(train on the given one-hot labels), ``semi_supervised=False`` (no unlabeled term, no
contrastive term: each network sees only its half), ``mixup=False``, ``contrastive_weight=0``,
``prior_weight=0``, and ``split='all'``: both networks train on all the labelled data and
use all of it as unlabeled data, which is what the authors' released loaders do (they wrap
``Subset.dataset``, the full set), so that the gain of the disjoint split itself can be
measured. With ``split='disjoint'`` the warm-up also uses only each network's half. ``split``
changes four things at once (labelled set, unlabeled pool, optimiser steps per epoch, the
peer's independence); to change one at a time: ``labelled='all'`` labels each network on all
the data with the unlabeled pool (the peer's half) and the peer kept; :func:`equal_step_schedule`
gives the disjoint form the optimiser steps of all-data training (twice the epochs, every phase
stretched alike); ``unlabeled_weight`` sets λ_u (0: the unlabeled term contributes nothing;
``history`` logs ``loss_u`` and ``loss_u_weighted``).

The defaults follow the paper's CIFAR setup (two strong views per example, targets refreshed
per batch). ``refresh='epoch'`` computes the peer's predictions (for CLC) and each network's
own predictions (unlabeled targets) once per epoch instead; they are the same numbers
(b's prediction on D_a is a's CLC input and b's unlabeled target), so an epoch costs one
extra forward pass over the data instead of four per batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.data.augment import Views
from deepscope.robust.noisy_training import (
    NOISY_DEFAULTS,
    ce_epoch,
    check_inputs,
    jsd,
    linear_rampup,
    mix,
    nt_xent,
    optimisers,
    predict_probs,
    prior_penalty,
    sharpen,
    soft_cross_entropy,
    split_halves,
    test_metrics,
)
from deepscope.train.config import check_float, check_int
from deepscope.train.distributed import Sharded, forward_sharded
from deepscope.train.loop import (
    NetSpec,
    TrainOptions,
    TrainResult,
    autocast,
    batches,
    cycle_batches,
    end_epoch,
    evaluating,
    generator_or_default,
    grad_scaler,
    make_models,
    optimiser_step,
    resume,
    setup,
)
from deepscope.train.rng import fork_seeded, spawn
from deepscope.train.run import NullRun, Run

__all__ = [
    "train_crosssplit", "class_minmax", "normalised_jsd", "correction_beta", "clc_soft_labels",
    "gamma_at", "PAPER_GAMMA_SCHEDULE", "CROSSSPLIT_DEFAULTS", "equal_step_schedule",
]

#: :func:`train_crosssplit`'s budget: the paper's CIFAR schedule (300 epochs, labelled batch
#: 256, SGD 0.1 with momentum 0.9 and weight decay 5e-4, cosine to 2e-3).
CROSSSPLIT_DEFAULTS = NOISY_DEFAULTS.replace(batch_size=256)

#: (epochs after warm-up, γ): γ = 0.6, 0.8 from warm-up + 20, 1.0 from warm-up + 30.
PAPER_GAMMA_SCHEDULE: tuple[tuple[int, float], ...] = ((0, 0.6), (20, 0.8), (30, 1.0))


# -- cross-split label correction: pure functions ------------------------------------------------

def class_minmax(values: torch.Tensor, labels: torch.Tensor, num_classes: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class min and max of ``values`` (N,) grouped by ``labels`` (N,) -> (K,), (K,).

    A class without examples gets min 0 and max 1.
    """
    lo = torch.zeros(num_classes, dtype=values.dtype)
    hi = torch.ones(num_classes, dtype=values.dtype)
    for c in labels.unique().tolist():
        v = values[labels == c]
        lo[c], hi[c] = v.min(), v.max()
    return lo, hi


def normalised_jsd(labels: torch.Tensor, peer_probs: torch.Tensor, *, num_classes: int,
                   lo: torch.Tensor | None = None, hi: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Eq. (4): ``w_i = clip((JSD_i - min_c) / (max_c - min_c), 0, 1)`` with ``c = labels[i]``.

    Parameters
    ----------
    labels : (N,) int tensor
        Given (noisy) labels.
    peer_probs : (N, K) tensor
        The peer network's predicted probabilities.
    lo, hi : (K,) tensors, optional
        Per-class min and max of the JSD; by default over these N examples.

    Returns
    -------
    (N,) tensor in [0, 1]
    """
    onehot = F.one_hot(labels, num_classes).to(peer_probs.dtype)
    d = jsd(onehot, peer_probs)
    if lo is None or hi is None:
        lo, hi = class_minmax(d, labels, num_classes)
    lo, hi = lo.to(d), hi.to(d)
    return ((d - lo[labels]) / (hi[labels] - lo[labels]).clamp_min(1e-12)).clamp(0.0, 1.0)


def correction_beta(w: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. (2): ``β = 1/2 + γ (w - 1/2)``."""
    return 0.5 + gamma * (w - 0.5)


def clc_soft_labels(labels: torch.Tensor, peer_probs: torch.Tensor, *, num_classes: int,
                    gamma: float, temperature: float = 0.5, lo: torch.Tensor | None = None,
                    hi: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-split label correction: eqs. (4), (2), (1), then sharpening.

    Parameters
    ----------
    labels : (N,) int tensor
    peer_probs : (N, K) tensor
    num_classes : int
    gamma : float
        The current γ of the schedule.
    temperature : float
        Sharpening temperature T (0.5); 1 leaves the convex combination as it is.
    lo, hi : (K,) tensors, optional
        Per-class JSD min and max (default: over these examples).

    Returns
    -------
    soft : (N, K) tensor
        Sharpened ``β p + (1 - β) onehot``.
    beta : (N,) tensor
    """
    beta = correction_beta(normalised_jsd(labels, peer_probs, num_classes=num_classes,
                                          lo=lo, hi=hi), gamma)
    onehot = F.one_hot(labels, num_classes).to(peer_probs.dtype)
    soft = beta[:, None] * peer_probs + (1 - beta[:, None]) * onehot
    return sharpen(soft, temperature), beta


def gamma_at(epochs_after_warmup: float,
             schedule: Sequence[tuple[int, float]] = PAPER_GAMMA_SCHEDULE) -> float:
    """γ of ``schedule`` (pairs (epochs after warm-up, γ), increasing) at this point."""
    g = schedule[0][1]
    for start, value in schedule:
        if epochs_after_warmup >= start:
            g = value
    return float(g)


def equal_step_schedule(factor: int = 2, *, epochs: int, warmup_epochs: int,
                        rampup_epochs: int = 16,
                        gamma_schedule: Sequence[tuple[int, float]] = PAPER_GAMMA_SCHEDULE
                        ) -> dict:
    """Every epoch count of :func:`train_crosssplit` multiplied by ``factor``.

    A disjoint network passes over half the data per epoch, so at equal epochs it takes half
    the optimiser steps of a network trained on all of it (cross-entropy, ``split='all'``,
    ``labelled='all'``). ``equal_step_schedule(2, ...)`` gives the disjoint form as many steps
    (same batch sizes) with every phase -- warm-up, λ_u ramp, γ schedule, learning-rate
    schedule -- stretched alike: pass ``epochs`` to ``options`` and the rest as keywords.

    >>> equal_step_schedule(2, epochs=40, warmup_epochs=10)
    {'epochs': 80, 'warmup_epochs': 20, 'rampup_epochs': 32, 'gamma_schedule': ((0, 0.6), (40, 0.8), (60, 1.0))}
    """
    check_int("factor", factor, 1)
    return {"epochs": factor * epochs, "warmup_epochs": factor * warmup_epochs,
            "rampup_epochs": factor * rampup_epochs,
            "gamma_schedule": tuple((factor * int(e), float(g)) for e, g in gamma_schedule)}


# -- the loop ----------------------------------------------------------------------------------

def train_crosssplit(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    y_true: torch.Tensor | None = None,
    net: NetSpec = "cnn1d",
    net_kwargs: Mapping[str, Any] | None = None,
    views: Views | None = None,
    warmup_epochs: int = 10,
    unlabeled_batch_size: int | None = None,
    warmup_batch_size: int | None = None,
    split: Literal["disjoint", "all"] = "disjoint",
    labelled: Literal["half", "all"] = "half",
    label_correction: bool = True,
    semi_supervised: bool = True,
    mixup: bool = True,
    refresh: Literal["batch", "epoch"] = "batch",
    gamma_schedule: Sequence[tuple[int, float]] = PAPER_GAMMA_SCHEDULE,
    temperature: float = 0.5,
    peer_views: int = 2,
    train_views: int = 2,
    mixup_alpha: float = 4.0,
    unlabeled_weight: float = 30.0,
    rampup_epochs: int = 16,
    prior_weight: float = 1.0,
    contrastive_weight: float = 0.025,
    contrastive_temperature: float = 0.05,
    projection_dim: int = 128,
    confidence_penalty: float = 0.0,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    desc: str = "crosssplit",
) -> TrainResult:
    """Train CrossSplit's two networks on noisy labels (arXiv 2212.01674; see the module docstring).

    Parameters
    ----------
    x : (N, ...) float tensor or array
        Training inputs (before any augmentation; images in [0, 1]).
    y : (N,) int tensor or array
        Given, possibly noisy, labels.
    num_classes : int
    x_test, y_test : tensors, optional
        Evaluated after every epoch (``test_acc``: the sum of both networks' logits).
    y_true : (N,) int tensor, optional
        Clean training labels, only for logging ``label_acc``: the fraction of each network's
        labelled half whose corrected label (argmax of the soft label) is the true one.
    net : str, nn.Module or callable
        A name of :data:`deepscope.nets.NETS` ('cnn1d', 'preact-resnet18', ...) built with
        ``net_kwargs``; your own module (network a, trained in place; network b is a
        re-initialised copy); or a function returning a new module (called once per network).
    views : Views, optional
        Weak/strong/test transforms (:mod:`deepscope.data.augment`); default: identity.
    warmup_epochs : int
        Cross-entropy warm-up epochs among the ``epochs`` (10 on CIFAR-10, 30 on CIFAR-100).
    unlabeled_batch_size, warmup_batch_size : int, optional
        Unlabeled batch (default ``batch_size // 2``, the authors' 128), warm-up batch
        (default ``2 * batch_size``, as the authors' warm-up loader).
    split : 'disjoint' or 'all'
        'all' reproduces the released loaders: both networks see all the data (labelled and
        unlabeled), which changes the labelled set, the unlabeled pool, the optimiser steps
        per epoch and the peer's independence at once.
    labelled : 'half' or 'all'
        With ``split='disjoint'``: the labelled set of each network, its own half (the paper)
        or all the data. Only that changes: the unlabeled pool stays the peer's half, the peer
        is still the other network, and the label correction still uses the peer's
        prediction (warm-up and label correction then run over all the data). At equal epochs
        'all' also doubles the optimiser steps per epoch; :func:`equal_step_schedule` gives
        the disjoint form the same steps.
    label_correction, semi_supervised, mixup : bool
        Ablation switches.
    refresh : 'batch' or 'epoch'
        When the peer's and the own predictions are computed (see the module docstring).
    gamma_schedule : sequence of (int, float)
    temperature : float
        Sharpening temperature T for soft labels and unlabeled targets.
    peer_views : int
        Weak views averaged into predictions (0: the un-augmented input).
    train_views : int
        Strong views per example in the training batch (2 in the paper).
    mixup_alpha, unlabeled_weight, rampup_epochs, prior_weight : float, float, int, float
        λ ~ Beta(α, α); λ_u and its ramp; weight of KL(uniform || mean prediction).
    contrastive_weight, contrastive_temperature, projection_dim : float, float, int
        The NT-Xent term on two strong views of the unlabeled batch (0 disables it). The
        temperature 0.05 is the released code's (SAITPublic/CrossSplit, commit 28b9f1f,
        ``Contrastive_loss.py``: ``SupConLoss(temperature=0.05, base_temperature=0.05)``,
        called without labels, i.e. SimCLR's NT-Xent).
    confidence_penalty : float
        Weight of the negative-entropy penalty during warm-up (the authors use 0.1 under
        asymmetric noise).
    options : TrainOptions or dict, optional
        The shared knobs (epochs, batch_size (the labelled batch), lr, ..., amp, device);
        unset ones take :data:`CROSSSPLIT_DEFAULTS`.
    generator : torch.Generator, optional
        Every random draw (split, initialisation, batches, views, MixUp) comes from it;
        default PyTorch's own.
    run : Run, optional
        Metrics (one line per epoch), checkpoints every ``checkpoint_every`` epochs, resume.

    Notes
    -----
    Under ``torchrun`` every process draws the same batches, views, MixUp coefficients and
    permutations for the *global* batch (all from ``generator``), runs its network on its
    slice of the rows (:func:`~deepscope.train.distributed.forward_sharded`), gets the whole
    batch's logits (and features, for the contrastive head) back, computes the loss exactly
    as one process does -- MixUp mixes across the batch, the prior penalty uses the batch's
    mean prediction, the projection head's BatchNorm and NT-Xent use the whole batch -- and
    averages the gradients (:func:`~deepscope.train.distributed.all_reduce_grads`). The
    no-gradient passes (the peer's and the network's own predictions for label correction
    and unlabeled targets, the test accuracy) are split the same way
    (:class:`~deepscope.train.distributed.Sharded`), every process getting the whole batch's
    predictions. A BatchNorm inside the network would see per-process statistics; the
    networks used here have none (``norm='none'``, the default) or use ``norm='group'``.

    Returns
    -------
    TrainResult
        ``models`` 'net_a', 'net_b'; ``history`` per epoch (``test_acc``, ``test_acc_net_a``,
        ``test_acc_net_b``, ``label_acc``, ``beta_mean``, ``gamma``, ``lambda_u``, losses);
        ``info['split']`` the two index tensors, ``info['mode']`` the ``split`` argument.
    """
    o = TrainOptions.resolve(options, CROSSSPLIT_DEFAULTS)
    epochs, batch_size, amp = o.epochs, o.batch_size, o.amp
    x, y, x_test, y_test, y_true = check_inputs(x, y, num_classes, x_test=x_test,
                                                y_test=y_test, y_true=y_true)
    for name, v, low in (("warmup_epochs", warmup_epochs, 0), ("peer_views", peer_views, 0),
                         ("train_views", train_views, 1), ("rampup_epochs", rampup_epochs, 0),
                         ("projection_dim", projection_dim, 1)):
        check_int(name, v, low)
    if warmup_epochs > epochs:
        raise ValueError(f"warmup_epochs == {warmup_epochs}, must be <= epochs == {epochs}")
    if split not in ("disjoint", "all"):
        raise ValueError(f"split == {split!r}, must be 'disjoint' (the paper) or 'all' "
                         "(both networks see all the data, as the released loaders)")
    if labelled not in ("half", "all"):
        raise ValueError(f"labelled == {labelled!r}, must be 'half' (each network's own half, "
                         "the paper) or 'all' (every label, the unlabeled pool unchanged)")
    if labelled == "all" and split == "all":
        raise ValueError("labelled == 'all' needs split == 'disjoint' (split='all' already "
                         "labels everything); pass one of the two")
    if refresh not in ("batch", "epoch"):
        raise ValueError(f"refresh == {refresh!r}, must be 'batch' or 'epoch'")
    check_float("temperature", temperature, 0.0, open_low=True)
    check_float("mixup_alpha", mixup_alpha, 0.0, open_low=True)
    for name, v in (("unlabeled_weight", unlabeled_weight), ("prior_weight", prior_weight),
                    ("contrastive_weight", contrastive_weight),
                    ("confidence_penalty", confidence_penalty)):
        check_float(name, v, 0.0)
    check_float("contrastive_temperature", contrastive_temperature, 0.0, open_low=True)
    if not gamma_schedule or any(not 0 <= g <= 1 for _, g in gamma_schedule):
        raise ValueError(f"gamma_schedule == {tuple(gamma_schedule)}, must be non-empty pairs "
                         "(epochs after warm-up, gamma in [0, 1])")
    ub = unlabeled_batch_size or max(1, batch_size // 2)
    wb = warmup_batch_size or 2 * batch_size
    check_int("unlabeled_batch_size", ub, 1)
    check_int("warmup_batch_size", wb, 1)
    run, dist, dev = setup(run, o)
    generator, views = generator_or_default(generator), views or Views()
    n, k_cls = len(x), num_classes
    use_con = semi_supervised and contrastive_weight > 0

    idx_a, idx_b = split_halves(n, generator)
    halves = {"net_a": idx_a, "net_b": idx_b}
    peer = {"net_a": "net_b", "net_b": "net_a"}
    if split == "all":
        labelled_rows = {"net_a": torch.arange(n), "net_b": torch.arange(n)}
        unlabeled = dict(labelled_rows)  # everything
    else:
        labelled_rows = {k: torch.arange(n) if labelled == "all" else halves[k] for k in halves}
        unlabeled = {k: halves[peer[k]] for k in halves}  # the other half's inputs
    models = make_models(["net_a", "net_b"], net, input_shape=x.shape[1:], num_classes=k_cls,
                         generator=generator, device=dev, net_kwargs=net_kwargs)
    # the networks as called in no-gradient passes: each process computes its rows
    sharded = {name: Sharded(m, dist) for name, m in models.items()}
    heads: dict[str, nn.Module] = {}
    if use_con:
        for name, m in models.items():
            dim = _feature_dim(m, x[:2].to(dev))
            with fork_seeded(generator):
                heads[name] = nn.Sequential(nn.Linear(dim, projection_dim),
                                            nn.BatchNorm1d(projection_dim)).to(dev)
    opts, scheds = optimisers(models, o, heads)
    scaler = grad_scaler(dev, amp)
    onehot_y = F.one_hot(y, k_cls).float()
    ckpt = dict(models=models, heads=heads, opts=opts, scheds=scheds, scaler=scaler,
                generator=generator)
    start, history = resume(run, **ckpt)

    def train_epoch(name: str, e0: int, soft: torch.Tensor | None, own_u: torch.Tensor | None,
                    lo: torch.Tensor, hi: torch.Tensor, gamma: float) -> dict:
        model = models[name]
        model.train()
        lab = batches(labelled_rows[name], batch_size, generator)
        unl = cycle_batches(unlabeled[name], ub, len(lab), generator) if semi_supervised else []
        lams = np.random.default_rng(spawn(generator)).beta(mixup_alpha, mixup_alpha, len(lab))
        sums = {"loss_x": 0.0, "loss_u": 0.0, "loss_u_weighted": 0.0, "loss_con": 0.0}
        lam_u = 0.0
        for i, b in enumerate(lab):
            xl = x[b].to(dev)
            # targets of the labelled batch: corrected soft labels, or the given one-hot labels
            if not label_correction:
                tl = onehot_y[b].to(dev)
            elif refresh == "epoch":
                tl = soft[b].to(dev)
            else:
                p = predict_probs(sharded[peer[name]], x[b], views=views, device=dev,
                                  generator=generator,
                                  n_views=peer_views, amp=amp)
                tl = clc_soft_labels(y[b], p, num_classes=k_cls, gamma=gamma,
                                     temperature=temperature, lo=lo, hi=hi)[0].to(dev)
            inputs = [views.strong(xl, generator) for _ in range(train_views)]
            targets = [tl] * train_views
            n_lab = len(b) * train_views
            if semi_supervised:
                u = unl[i]
                if refresh == "epoch":
                    tu = sharpen(own_u[u], temperature).to(dev)
                else:  # the network's own prediction now, in its current (train) mode
                    with torch.no_grad(), autocast(dev, amp):
                        xu_w = x[u].to(dev)
                        pu = sum(torch.softmax(sharded[name](views.weak(xu_w, generator)).float(), -1)
                                 for _ in range(max(peer_views, 1))) / max(peer_views, 1)
                    tu = sharpen(pu, temperature)
                xu = x[u].to(dev)
                u_views = [views.strong(xu, generator) for _ in range(max(train_views, 2 if use_con else 1))]
                inputs += u_views[:train_views]
                targets += [tu] * train_views
            all_x, all_t = torch.cat(inputs), torch.cat(targets)
            if mixup:
                lam = float(max(lams[i], 1 - lams[i]))
                perm = torch.randperm(len(all_x), generator=generator).to(dev)
                all_x, all_t = mix(all_x, all_t, lam, perm)
            with autocast(dev, amp):
                logits = forward_sharded(model, all_x, dist).float()
            loss_x = soft_cross_entropy(logits[:n_lab], all_t[:n_lab])
            loss = loss_x + prior_weight * prior_penalty(logits)
            if semi_supervised:
                lam_u = unlabeled_weight * linear_rampup(e0 + i / len(lab), warmup_epochs,
                                                         rampup_epochs)
                loss_u = ((torch.softmax(logits[n_lab:], -1) - all_t[n_lab:]) ** 2).mean()
                loss = loss + lam_u * loss_u
                sums["loss_u"] += loss_u.item()
                sums["loss_u_weighted"] += lam_u * loss_u.item()
            if use_con:
                with autocast(dev, amp):
                    z1 = heads[name](forward_sharded(model.features, u_views[0], dist)).float()
                    z2 = heads[name](forward_sharded(model.features, u_views[1], dist)).float()
                loss_con = nt_xent(z1, z2, contrastive_temperature)
                loss = loss + contrastive_weight * loss_con
                sums["loss_con"] += loss_con.item()
            optimiser_step(opts[name], scaler, loss, dist)
            sums["loss_x"] += loss_x.item()
        return {k: v / max(len(lab), 1) for k, v in sums.items()} | {"lambda_u": lam_u}

    with run.progress(epochs, desc=desc, start=start) as advance:
        for epoch in range(start + 1, epochs + 1):
            e0 = epoch - 1  # epochs done before this one
            rec: dict[str, Any] = {"epoch": epoch, "lr": scheds["net_a"].get_last_lr()[0]}
            if e0 < warmup_epochs:
                rec["phase"] = "warmup"
                for name, model in models.items():
                    loss = ce_epoch(model, opts[name], scaler, x, y, labelled_rows[name],
                                    batch_size=wb, views=views, generator=generator, dist=dist,
                                    device=dev, amp=amp, confidence_penalty=confidence_penalty)
                    rec[f"loss_{name}"] = round(loss, 5)
                if y_true is not None:  # before correction, the labels are the given ones
                    rec["label_acc"] = round(float((y == y_true).double().mean()), 5)
            else:
                rec["phase"] = "crosssplit"
                gamma = gamma_at(e0 - warmup_epochs, gamma_schedule)
                # probs[k][i]: network k's mean weak-view prediction on example i of its peer's
                # labelled set -- the peer's CLC input and k's own unlabeled target.
                probs = {}
                for name in models:
                    rows = labelled_rows[peer[name]]
                    full = torch.zeros(n, k_cls)
                    full[rows] = predict_probs(sharded[name], x[rows], views=views, device=dev,
                                               generator=generator, n_views=peer_views, amp=amp)
                    probs[name] = full
                soft, lohi, betas, correct = {}, {}, [], []
                for name in models:
                    rows = labelled_rows[name]
                    p = probs[peer[name]][rows]
                    d = jsd(F.one_hot(y[rows], k_cls).float(), p)
                    lohi[name] = class_minmax(d, y[rows], k_cls)
                    if label_correction:
                        s, beta = clc_soft_labels(y[rows], p, num_classes=k_cls, gamma=gamma,
                                                  temperature=temperature, lo=lohi[name][0],
                                                  hi=lohi[name][1])
                        betas.append(beta)
                    else:
                        s = F.one_hot(y[rows], k_cls).float()
                    full = torch.zeros(n, k_cls)
                    full[rows] = s
                    soft[name] = full
                    if y_true is not None:
                        correct.append((s.argmax(1) == y_true[rows]).double())
                for name in models:
                    stats = train_epoch(name, e0, soft[name], probs[name], *lohi[name], gamma)
                    rec.update({f"{k}_{name}": round(v, 5) for k, v in stats.items()})
                rec["gamma"] = gamma
                if betas:
                    rec["beta_mean"] = round(float(torch.cat(betas).mean()), 5)
                if correct:
                    rec["label_acc"] = round(float(torch.cat(correct).mean()), 5)
            rec.update(test_metrics(sharded, x_test, y_test, views=views, device=dev))
            end_epoch(run, epoch, rec, history, scheds=scheds.values(), options=o,
                      advance=advance, checkpoint=ckpt)
    for m in models.values():
        m.eval()
    return TrainResult(models, history, {"split": (idx_a, idx_b), "mode": split,
                                             "labelled": labelled})


def _feature_dim(model: nn.Module, x: torch.Tensor) -> int:
    """Width of ``model.features``' output, for the contrastive head."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module):
        raise ValueError(
            f"contrastive_weight > 0 puts a projection head on net.features, but the "
            f"{type(model).__name__} given has no .features submodule (input -> (N, D)); give "
            "your module one, or pass contrastive_weight=0 (or semi_supervised=False)")
    dim = getattr(model, "feature_dim", None)
    if dim is None:
        with evaluating(model):
            dim = features(x).flatten(1).shape[1]
    return int(dim)
