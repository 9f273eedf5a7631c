"""Baselines for training under label noise, with CrossSplit's networks, data and budget.

>>> import torch
>>> from deepscope.robust.baselines import train_ce, train_coteaching
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(300, 20, generator=g); y = (x[:, 0] > 0).long()
>>> res = train_ce(x, y, num_classes=2, net="mlp", net_kwargs={"hidden": (16,)},
...                options={"epochs": 2, "batch_size": 64}, generator=g, x_test=x, y_test=y)
>>> len(res.history), 0.5 < res.last_test_acc <= 1.0
(2, True)

- :func:`train_ce`: cross-entropy on the noisy labels; the result holds the test accuracy at
  the last and the best epoch, and, given a validation split, the epoch of best validation
  accuracy. :func:`train_ce_early_stopping` holds out a *noisy* validation split (the only
  one a practitioner has) and reports the test accuracy at its best epoch: the honest baseline.
- :func:`train_coteaching`: Co-teaching (Han et al. 2018, arXiv 1804.06872): two networks,
  each trains on the small-loss examples of its peer's choosing; the kept fraction falls
  from 1 to ``1 - forget_rate`` over the first ``num_gradual`` epochs.
- :func:`train_dividemix`: DivideMix (Li, Socher & Hoi 2020, arXiv 2002.07394): per-sample
  loss GMM co-divide into labelled/unlabeled sets for the peer, label refinement and
  co-guessing, MixMatch. It shares most components with CrossSplit.
- :func:`train_confident_learning`: Confident learning (Northcutt et al. 2021, arXiv
  1911.00068) through the cleanlab library itself: out-of-fold predicted probabilities ->
  ``cleanlab.filter.find_label_issues`` -> drop the flagged examples -> retrain.

Two-network methods predict with the sum of both networks' logits, as CrossSplit does.
Every loop is written with :mod:`deepscope.train.loop`'s kit: the shared knobs in ``options``
(a :class:`~deepscope.train.loop.TrainOptions` or a dict; each loop's own defaults in
``*_DEFAULTS``), ``net`` a built-in name, your own ``nn.Module`` or a factory, and a
:class:`~deepscope.train.loop.TrainResult` back. Every loop logs one line per epoch to its
run, checkpoints, and resumes to identical numbers.

Under ``torchrun`` each loop works as :func:`deepscope.robust.crosssplit.train_crosssplit`:
the same global batches, views and MixUp draws on every process, each network run on the
process's slice of the rows (``forward_sharded``), the loss computed on the gathered logits
(the small-loss selection of co-teaching and DivideMix's MixUp see the whole batch), the
gradients averaged (``all_reduce_grads``); no-gradient passes (DivideMix's loss GMM and
guesses, the test accuracy) are split too (``Sharded``), every process getting the whole
batch's predictions.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.data.augment import Views
from deepscope.robust.noisy_training import (
    NOISY_DEFAULTS,
    ce_epoch,
    check_data,
    check_inputs,
    linear_rampup,
    mix,
    optimisers,
    predict_probs,
    prior_penalty,
    sharpen,
    soft_cross_entropy,
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
    make_optimizer,
    optimiser_step,
    resume,
    setup,
)
from deepscope.train.rng import spawn
from deepscope.train.run import NullRun, Run

__all__ = [
    "train_ce", "train_ce_early_stopping", "train_coteaching", "train_dividemix",
    "train_confident_learning", "coteaching_keep_rate", "CE_DEFAULTS", "COTEACHING_DEFAULTS",
    "DIVIDEMIX_DEFAULTS",
]

#: :func:`train_ce`'s budget (and :func:`train_confident_learning`'s): :data:`NOISY_DEFAULTS`.
CE_DEFAULTS = NOISY_DEFAULTS
#: :func:`train_coteaching`'s budget: :data:`NOISY_DEFAULTS`.
COTEACHING_DEFAULTS = NOISY_DEFAULTS
#: :func:`train_dividemix`'s budget: DivideMix's batch of 64 and learning rate of 0.02.
DIVIDEMIX_DEFAULTS = NOISY_DEFAULTS.replace(batch_size=64, lr=0.02)


# -- cross-entropy ---------------------------------------------------------------------------------

def train_ce(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    net: NetSpec = "cnn1d",
    net_kwargs: Mapping[str, Any] | None = None,
    views: Views | None = None,
    confidence_penalty: float = 0.0,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    desc: str = "ce",
) -> TrainResult:
    """Cross-entropy training of one network on (noisy) labels.

    Parameters
    ----------
    x : (N, ...) float tensor or array
    y : (N,) int tensor or array
        Given labels.
    num_classes : int
    x_test, y_test : tensors, optional
        ``test_acc`` after every epoch.
    x_val, y_val : tensors, optional
        A (noisy) validation split: ``val_acc`` after every epoch, and the network of the
        best ``val_acc`` is kept (``info['best_val_epoch']``, ``info['best_val_state']``).
    net, net_kwargs, views, generator, run
        As :func:`deepscope.robust.crosssplit.train_crosssplit`: ``net`` a name of
        :data:`deepscope.nets.NETS`, your own ``nn.Module`` (trained in place) or a function
        returning one. The training view is ``views.weak``.
    confidence_penalty : float
        Weight of the negative-entropy penalty (0: plain cross-entropy).
    options : TrainOptions or dict, optional
        The shared knobs; unset ones take :data:`CE_DEFAULTS` (300 epochs, batch 128, SGD
        0.1 with momentum 0.9 and weight decay 5e-4, cosine to 2e-3, checkpoint every epoch).

    Returns
    -------
    TrainResult
        ``models['net']``; ``history`` with ``train_loss``, ``test_acc``, ``val_acc``;
        ``info['best_val_epoch']`` and ``info['test_acc_at_best_val']`` given a validation split.
    """
    opts = TrainOptions.resolve(options, CE_DEFAULTS)
    x, y, x_test, y_test, _ = check_inputs(x, y, num_classes, x_test=x_test, y_test=y_test)
    if x_val is not None:
        x_val, y_val = check_data(x_val, y_val, num_classes, name="x_val")
    check_float("confidence_penalty", confidence_penalty, 0.0)
    run, dist, dev = setup(run, opts)
    generator, views = generator_or_default(generator), views or Views()
    model = make_models(["net"], net, input_shape=x.shape[1:], num_classes=num_classes,
                        generator=generator, device=dev, net_kwargs=net_kwargs)["net"]
    opt, sched = make_optimizer(model.parameters(), opts)
    scaler = grad_scaler(dev, opts.amp)
    best = {"net": copy.deepcopy(model)}  # the network at the best validation accuracy
    ckpt = dict(model=model, best=best, opt=opt, sched=sched, scaler=scaler, generator=generator)
    start, history = resume(run, **ckpt)
    idx = torch.arange(len(x))
    with run.progress(opts.epochs, desc=desc, start=start) as advance:
        for epoch in range(start + 1, opts.epochs + 1):
            loss = ce_epoch(model, opt, scaler, x, y, idx, batch_size=opts.batch_size,
                            views=views, generator=generator, dist=dist, device=dev,
                            amp=opts.amp, confidence_penalty=confidence_penalty)
            rec: dict[str, Any] = {"epoch": epoch, "train_loss": round(loss, 5)}
            rec.update(test_metrics({"net": Sharded(model, dist)}, x_test, y_test, views=views,
                                    device=dev))
            if x_val is not None:
                rec["val_acc"] = round(float((predict_probs(Sharded(model, dist), x_val,
                                                            views=views, device=dev)
                                              .argmax(1) == y_val).double().mean()), 5)
                if rec["val_acc"] > max((r["val_acc"] for r in history), default=-1.0):
                    best["net"].load_state_dict(model.state_dict())
            end_epoch(run, epoch, rec, history, scheds=[sched], options=opts, advance=advance,
                      checkpoint=ckpt)
    model.eval()
    info: dict[str, Any] = {}
    if x_val is not None:
        i = int(np.argmax([r["val_acc"] for r in history]))  # first epoch of the best val_acc
        info.update(best_val_epoch=history[i]["epoch"], best_val_acc=history[i]["val_acc"],
                    test_acc_at_best_val=history[i].get("test_acc"),
                    best_val_state=best["net"].eval())
    return TrainResult({"net": model}, history, info)


def train_ce_early_stopping(
    x: torch.Tensor, y: torch.Tensor, *, num_classes: int, val_fraction: float = 0.1,
    generator: torch.Generator | None = None, **kwargs: Any,
) -> TrainResult:
    """Cross-entropy with early stopping on a held-out *noisy* validation split.

    A random ``val_fraction`` of (x, y) is held out (its labels are as noisy as the rest);
    the network trains on the remainder with :func:`train_ce` and the epoch of best
    validation accuracy is selected. ``info['test_acc_at_best_val']`` is the honest number;
    ``info['val_index']`` the held-out indices. Other keywords (``net``, ``views``,
    ``options``, ``run``, ...) go to :func:`train_ce`.
    """
    check_float("val_fraction", val_fraction, 0.0, 0.5, open_low=True)
    generator = generator_or_default(generator)
    x, y = check_data(x, y, num_classes)
    perm = torch.randperm(len(x), generator=generator)
    n_val = max(1, int(round(val_fraction * len(x))))
    val, tr = perm[:n_val].sort().values, perm[n_val:].sort().values
    res = train_ce(x[tr], y[tr], num_classes=num_classes, generator=generator, x_val=x[val],
                   y_val=y[val], **kwargs)
    res.info["val_index"] = val
    return res


# -- co-teaching -----------------------------------------------------------------------------------

def coteaching_keep_rate(epoch: int, forget_rate: float, num_gradual: int = 10,
                         exponent: float = 1.0) -> float:
    """R(T) = 1 - forget_rate * min((T / num_gradual)^c, 1) for the 0-based epoch T (arXiv 1804.06872)."""
    if num_gradual <= 0:
        return 1.0 - forget_rate
    return 1.0 - forget_rate * min((epoch / num_gradual) ** exponent, 1.0)


def train_coteaching(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    forget_rate: float,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    y_true: torch.Tensor | None = None,
    net: NetSpec = "cnn1d",
    net_kwargs: Mapping[str, Any] | None = None,
    views: Views | None = None,
    num_gradual: int = 10,
    exponent: float = 1.0,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    desc: str = "coteaching",
) -> TrainResult:
    """Co-teaching (Han et al. 2018, arXiv 1804.06872, Algorithm 1).

    In each batch, each network ranks the examples by its cross-entropy and keeps the
    ``R(T)`` fraction with the smallest loss; the *peer* takes a gradient step on them.

    Parameters
    ----------
    forget_rate : float in [0, 1)
        τ: the fraction eventually dropped; the paper sets it to the (assumed known) noise rate.
    num_gradual, exponent : int, float
        ``R(T) = 1 - τ min((T / num_gradual)^c, 1)`` (10 and 1 in the paper).
    y_true : (N,) int tensor, optional
        Clean labels, only to log ``kept_precision`` (the fraction of kept examples whose label
        is correct).
    options : TrainOptions or dict, optional
        Unset knobs take :data:`COTEACHING_DEFAULTS` (those of :func:`train_ce`).

    Notes
    -----
    Other parameters as :func:`train_ce`; a module given as ``net`` is network a, b its re-initialised copy.

    Returns
    -------
    TrainResult
        ``models`` 'net_a', 'net_b'; ``history`` with ``keep_rate``, ``test_acc``.
    """
    o = TrainOptions.resolve(options, COTEACHING_DEFAULTS)
    x, y, x_test, y_test, y_true = check_inputs(x, y, num_classes, x_test=x_test,
                                                y_test=y_test, y_true=y_true)
    check_float("forget_rate", forget_rate, 0.0, 0.99)
    check_int("num_gradual", num_gradual, 0)
    run, dist, dev = setup(run, o)
    generator, views = generator_or_default(generator), views or Views()
    models = make_models(["net_a", "net_b"], net, input_shape=x.shape[1:],
                         num_classes=num_classes, generator=generator, device=dev,
                         net_kwargs=net_kwargs)
    opts, scheds = optimisers(models, o)
    scaler = grad_scaler(dev, o.amp)
    ckpt = dict(models=models, opts=opts, scheds=scheds, scaler=scaler, generator=generator)
    start, history = resume(run, **ckpt)
    idx = torch.arange(len(x))
    with run.progress(o.epochs, desc=desc, start=start) as advance:
        for epoch in range(start + 1, o.epochs + 1):
            keep = coteaching_keep_rate(epoch - 1, forget_rate, num_gradual, exponent)
            for m in models.values():
                m.train()
            kept_clean, kept = 0, 0
            for b in batches(idx, o.batch_size, generator):
                xb, yb = views.weak(x[b].to(dev), generator), y[b].to(dev)
                with autocast(dev, o.amp):
                    la = forward_sharded(models["net_a"], xb, dist).float()
                    lb = forward_sharded(models["net_b"], xb, dist).float()
                n_keep = max(1, int(keep * len(b)))
                # each network picks its small-loss examples for its peer
                pick_a = F.cross_entropy(la, yb, reduction="none").detach().argsort()[:n_keep]
                pick_b = F.cross_entropy(lb, yb, reduction="none").detach().argsort()[:n_keep]
                loss_a = F.cross_entropy(la[pick_b], yb[pick_b])
                loss_b = F.cross_entropy(lb[pick_a], yb[pick_a])
                for name, loss in (("net_a", loss_a), ("net_b", loss_b)):
                    optimiser_step(opts[name], scaler, loss, dist)
                if y_true is not None:
                    yt = y_true[b].to(dev)
                    kept_clean += int((yb[pick_a] == yt[pick_a]).sum() + (yb[pick_b] == yt[pick_b]).sum())
                    kept += 2 * n_keep
            rec: dict[str, Any] = {"epoch": epoch, "keep_rate": round(keep, 5)}
            if kept:
                rec["kept_precision"] = round(kept_clean / kept, 5)
            rec.update(test_metrics({k: Sharded(m, dist) for k, m in models.items()}, x_test,
                                    y_test, views=views, device=dev))
            end_epoch(run, epoch, rec, history, scheds=scheds.values(), options=o,
                      advance=advance, checkpoint=ckpt)
    for m in models.values():
        m.eval()
    return TrainResult(models, history, {})


# -- DivideMix ------------------------------------------------------------------------------------

class _LossMemory:
    """Each network's min-max-normalised per-sample losses of its last ``window`` co-divides.

    The released ``Train_cifar.py`` keeps every epoch's normalised losses (``all_loss``) and,
    at 90% noise, fits the GMM to the mean of the last 5 instead of the current epoch's.
    Checkpointed (``state_dict``) so that a resumed run divides as an uninterrupted one.
    """

    def __init__(self, window: int):
        self.window = window
        self.losses: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """Remember ``loss`` for ``name``; the mean of its last ``window`` losses."""
        kept = (self.losses.get(name, []) + [loss])[-self.window:]
        self.losses[name] = kept
        return torch.stack(kept).mean(0)

    def state_dict(self) -> dict:
        return {"window": self.window, "losses": {k: list(v) for k, v in self.losses.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["window"]) != self.window:
            raise ValueError(f"loss_window == {self.window}, but the checkpoint was written with "
                             f"{int(state['window'])}; pass loss_window={int(state['window'])} "
                             "or a new --out")
        self.losses = {k: list(v) for k, v in state["losses"].items()}


def _normalised_loss(model, x, y, *, views, device, amp: bool) -> torch.Tensor:
    """Per-sample cross-entropy against the given label, in eval mode on the test view,
    min-max normalised to [0, 1] (the released ``eval_train``): (N,) float64 tensor."""
    p = predict_probs(model, x, views=views, device=device, amp=amp)
    loss = -torch.log(p[torch.arange(len(y)), y].clamp_min(1e-12)).double()
    return (loss - loss.min()) / (loss.max() - loss.min()).clamp_min(1e-12)


def _gmm_clean_probability(loss: torch.Tensor, *, seed: int) -> torch.Tensor:
    """DivideMix's co-divide: a 2-component GMM (the released settings) on the normalised
    losses; the posterior of the component with the smaller mean. (N,) float tensor."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4,
                          random_state=seed % 2**32)
    z = loss.numpy()[:, None]
    gmm.fit(z)
    prob = gmm.predict_proba(z)[:, int(np.argmin(gmm.means_.ravel()))]
    return torch.from_numpy(prob).float()


def _clean_auc(w: torch.Tensor, clean: torch.Tensor) -> float | None:
    """ROC AUC of the clean probabilities ``w`` for the truly clean examples (what the released
    loader logs at each co-divide); None when every example is clean or every one noisy."""
    from sklearn.metrics import roc_auc_score

    if bool(clean.all()) or not bool(clean.any()):
        return None
    return float(roc_auc_score(clean.numpy(), w.double().numpy()))


def train_dividemix(
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
    p_threshold: float = 0.5,
    temperature: float = 0.5,
    mixup_alpha: float = 4.0,
    unlabeled_weight: float = 25.0,
    rampup_epochs: int = 16,
    prior_weight: float = 1.0,
    guess_views: int = 2,
    loss_window: int = 1,
    mixup: bool = True,
    confidence_penalty: float = 0.0,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    desc: str = "dividemix",
) -> TrainResult:
    """DivideMix (Li, Socher & Hoi 2020, arXiv 2002.07394, Algorithm 1).

    As the authors' released ``Train_cifar.py`` (LiJunnan1992/DivideMix@d9d3058, checked line
    by line). After a cross-entropy warm-up (both networks on all the data), every epoch and
    for each network k with peer p:

    - co-divide: both networks' per-sample losses (eval mode, test view, cross-entropy against
      the given label, min-max normalised over all N examples) are computed before either
      trains; a 2-component GMM (max_iter 10, tol 1e-2, reg_covar 5e-4) on p's losses gives
      each example's clean probability ``w_i`` (the smaller-mean component's posterior);
      ``w_i > p_threshold`` -> labelled (with weight w_i), else unlabeled; an epoch is one
      pass over the labelled set, the unlabeled set cycled beside it;
    - label refinement (eq. 3): ``y_i' = sharpen(w_i y_i + (1 - w_i) mean_views p_k(x_i))``;
    - co-guessing (eq. 4): unlabeled targets = sharpen(mean over both networks and views);
    - MixMatch: MixUp of labelled and unlabeled weak views (λ ~ Beta(α, α), λ = max(λ, 1-λ));
      loss = soft-CE + λ_u MSE + KL(uniform || mean prediction) (eqs. 9-12).

    Parameters
    ----------
    p_threshold, temperature, mixup_alpha, unlabeled_weight, rampup_epochs, prior_weight
        τ = 0.5, T = 0.5, α = 4, λ_u, its linear ramp over 16 epochs after warm-up, and the
        prior term's weight: the released defaults. The paper chooses λ_u per dataset and
        noise from {0, 25, 50, 150} on a small validation set; pass its value for the setting.
    loss_window : int
        Epochs of normalised losses averaged per example before the GMM: 1 (the released code
        at every noise level but 90%) or 5 (its setting at 90% noise, for a steadier division).
    mixup : bool
        Ablation switch: False trains on the unmixed labelled and unlabeled views, the rest of
        the loss unchanged (the released code always mixes). On MNIST-1D with the 1-D CNN at
        60-80% symmetric noise, the mixed epochs drive both networks to predict one or two
        classes; see docs/crosssplit.md.
    guess_views : int
        Weak views per example averaged for refinement and guessing and mixed into the batch (2).
    y_true : (N,) int tensor, optional
        Clean labels, to log ``labelled_precision`` (fraction of the labelled set truly clean)
        and ``clean_auc`` (ROC AUC of ``w`` for the truly clean examples, as the released
        loader logs).
    warmup_epochs : int
        Cross-entropy epochs (batch ``2 * batch_size``) before the first co-divide.
    options : TrainOptions or dict, optional
        Unset knobs take :data:`DIVIDEMIX_DEFAULTS` (batch 64, lr 0.02, otherwise
        :func:`train_ce`'s).

    Notes
    -----
    Other parameters as :func:`train_coteaching`; ``confidence_penalty`` applies during warm-up (0.1 under
    asymmetric noise in the paper).

    Returns
    -------
    TrainResult
        ``models`` 'net_a', 'net_b'; ``history`` with ``labelled_fraction``, ``test_acc``...
    """
    o = TrainOptions.resolve(options, DIVIDEMIX_DEFAULTS)
    x, y, x_test, y_test, y_true = check_inputs(x, y, num_classes, x_test=x_test,
                                                y_test=y_test, y_true=y_true)
    check_int("warmup_epochs", warmup_epochs, 0)
    check_int("guess_views", guess_views, 1)
    check_int("rampup_epochs", rampup_epochs, 0)
    check_int("loss_window", loss_window, 1)
    check_float("p_threshold", p_threshold, 0.0, 1.0)
    check_float("temperature", temperature, 0.0, open_low=True)
    check_float("mixup_alpha", mixup_alpha, 0.0, open_low=True)
    for name, v in (("unlabeled_weight", unlabeled_weight), ("prior_weight", prior_weight),
                    ("confidence_penalty", confidence_penalty)):
        check_float(name, v, 0.0)
    if warmup_epochs > o.epochs:
        raise ValueError(f"warmup_epochs == {warmup_epochs}, must be <= epochs == {o.epochs}")
    run, dist, dev = setup(run, o)
    generator, views = generator_or_default(generator), views or Views()
    n, k_cls, amp = len(x), num_classes, o.amp
    models = make_models(["net_a", "net_b"], net, input_shape=x.shape[1:], num_classes=k_cls,
                         generator=generator, device=dev, net_kwargs=net_kwargs)
    opts, scheds = optimisers(models, o)
    scaler = grad_scaler(dev, amp)
    peer = {"net_a": "net_b", "net_b": "net_a"}
    onehot_y = F.one_hot(y, k_cls).float()
    ckpt = dict(models=models, opts=opts, scheds=scheds, scaler=scaler, generator=generator)
    memory = _LossMemory(loss_window)
    if loss_window > 1:  # only then is there a history to carry across a resume
        ckpt["loss_memory"] = memory
    start, history = resume(run, **ckpt)
    everything = torch.arange(n)

    def mean_probs(nets, xb) -> torch.Tensor:
        with torch.no_grad(), autocast(dev, amp):
            ps = [torch.softmax(m(views.weak(xb, generator)).float(), -1)
                  for m in nets for _ in range(guess_views)]
        return sum(ps) / len(ps)

    def train_epoch(name: str, e0: int, w: torch.Tensor) -> dict:
        model, other = models[name], models[peer[name]]
        model.train()
        other.eval()  # the peer only guesses
        lab_idx = (w > p_threshold).nonzero().squeeze(1)
        unl_idx = (w <= p_threshold).nonzero().squeeze(1)
        if len(lab_idx) == 0:  # nothing looks clean: fall back to the most probable half
            lab_idx = w.argsort(descending=True)[: max(1, n // 2)]
            unl_idx = w.argsort(descending=True)[max(1, n // 2):]
        lab = batches(lab_idx, o.batch_size, generator)
        unl = cycle_batches(unl_idx, o.batch_size, len(lab), generator) if len(unl_idx) else []
        lams = np.random.default_rng(spawn(generator)).beta(mixup_alpha, mixup_alpha, len(lab))
        lx_sum = lu_sum = 0.0
        for i, b in enumerate(lab):
            xl = x[b].to(dev)
            wb = w[b].to(dev)[:, None]
            p_own = mean_probs([Sharded(model, dist)], xl)
            tl = sharpen(wb * onehot_y[b].to(dev) + (1 - wb) * p_own, temperature)
            inputs = [views.weak(xl, generator) for _ in range(guess_views)]
            targets = [tl] * guess_views
            n_lab = len(b) * guess_views
            if unl:
                xu = x[unl[i]].to(dev)
                tu = sharpen(mean_probs([Sharded(model, dist), Sharded(other, dist)], xu),
                             temperature)
                inputs += [views.weak(xu, generator) for _ in range(guess_views)]
                targets += [tu] * guess_views
            all_x, all_t = torch.cat(inputs), torch.cat(targets)
            if mixup:
                lam = float(max(lams[i], 1 - lams[i]))
                perm = torch.randperm(len(all_x), generator=generator).to(dev)
                all_x, all_t = mix(all_x, all_t, lam, perm)
            with autocast(dev, amp):
                logits = forward_sharded(model, all_x, dist).float()
            loss_x = soft_cross_entropy(logits[:n_lab], all_t[:n_lab])
            loss = loss_x + prior_weight * prior_penalty(logits)
            if unl:
                lam_u = unlabeled_weight * linear_rampup(e0 + i / len(lab), warmup_epochs,
                                                         rampup_epochs)
                loss_u = ((torch.softmax(logits[n_lab:], -1) - all_t[n_lab:]) ** 2).mean()
                loss = loss + lam_u * loss_u
                lu_sum += loss_u.item()
            optimiser_step(opts[name], scaler, loss, dist)
            lx_sum += loss_x.item()
        rec = {"loss_x": lx_sum / len(lab), "loss_u": lu_sum / len(lab),
               "labelled_fraction": len(lab_idx) / n}
        if y_true is not None:
            rec["labelled_precision"] = float((y[lab_idx] == y_true[lab_idx]).double().mean())
            auc = _clean_auc(w, y == y_true)
            if auc is not None:
                rec["clean_auc"] = auc
        return rec

    with run.progress(o.epochs, desc=desc, start=start) as advance:
        for epoch in range(start + 1, o.epochs + 1):
            e0 = epoch - 1
            rec: dict[str, Any] = {"epoch": epoch}
            if e0 < warmup_epochs:
                rec["phase"] = "warmup"
                for name, model in models.items():
                    loss = ce_epoch(model, opts[name], scaler, x, y, everything,
                                    batch_size=2 * o.batch_size, views=views, generator=generator,
                                    dist=dist, device=dev, amp=amp,
                                    confidence_penalty=confidence_penalty)
                    rec[f"loss_{name}"] = round(loss, 5)
            else:
                rec["phase"] = "dividemix"
                clean = {}
                with evaluating(*models.values()):
                    for name, m in models.items():
                        loss = memory.add(name, _normalised_loss(Sharded(m, dist), x, y,
                                                                 views=views, device=dev, amp=amp))
                        clean[name] = _gmm_clean_probability(loss, seed=spawn(generator))
                for name in models:  # each network trains on its peer's division
                    stats = train_epoch(name, e0, clean[peer[name]])
                    rec.update({f"{k}_{name}": round(v, 5) for k, v in stats.items()})
            rec.update(test_metrics({k: Sharded(m, dist) for k, m in models.items()}, x_test,
                                    y_test, views=views, device=dev))
            end_epoch(run, epoch, rec, history, scheds=scheds.values(), options=o,
                      advance=advance, checkpoint=ckpt)
    for m in models.values():
        m.eval()
    return TrainResult(models, history, {})


# -- confident learning (cleanlab) ---------------------------------------------------------------

def train_confident_learning(
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
    folds: int = 4,
    cv_epochs: int | None = None,
    filter_by: str = "prune_by_noise_rate",
    confidence_penalty: float = 0.0,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    desc: str = "cleanlab",
) -> TrainResult:
    """Confident learning with cleanlab: out-of-fold probabilities, drop the flagged labels, retrain.

    1. Split the data into ``folds`` folds; for each, train :func:`train_ce` on the others for
       ``cv_epochs`` and predict probabilities on it (the test view, in eval mode).
    2. ``cleanlab.filter.find_label_issues(labels, pred_probs, filter_by=filter_by)`` flags
       the examples whose given label is likely wrong (Northcutt et al. 2021, arXiv 1911.00068).
    3. Train :func:`train_ce` on the remaining examples.

    Each fold and the final training are sub-runs (``fold<i>``, ``retrain``) of ``run``, so a
    killed run resumes inside the stage it reached and skips finished folds.

    Parameters
    ----------
    folds : int
        >= 2.
    cv_epochs : int, optional
        Epochs of each fold model; default: the options' ``epochs``.
    filter_by : str
        cleanlab's method: 'prune_by_noise_rate' (default), 'prune_by_class', 'both',
        'confident_learning', 'predicted_neq_given', ...
    y_true : (N,) int tensor, optional
        Clean labels, to report the precision and recall of the removed set.
    net : str, nn.Module or callable
        As :func:`train_ce`. A module is copied for each fold (every fold starts from its
        weights) and trained in place by the final stage.
    options : TrainOptions or dict, optional
        Unset knobs take :data:`CE_DEFAULTS`.

    Notes
    -----
    Other parameters as :func:`train_ce`.

    Returns
    -------
    TrainResult
        The retrained network and its history; ``info`` holds ``removed`` (bool mask),
        ``n_removed``, ``pred_probs`` and, given ``y_true``, ``removed_precision`` /
        ``removed_recall``.
    """
    from cleanlab.filter import find_label_issues

    o = TrainOptions.resolve(options, CE_DEFAULTS)
    x, y = check_data(x, y, num_classes)
    check_int("folds", folds, 2)
    if y_true is not None:
        _, y_true = check_data(x, y_true, num_classes, name="y_true")
    cv_epochs = o.epochs if cv_epochs is None else cv_epochs
    check_int("cv_epochs", cv_epochs, 1)
    run, _, _ = setup(run, o)
    generator, views = generator_or_default(generator), views or Views()
    ce = dict(num_classes=num_classes, net_kwargs=net_kwargs, views=views,
              confidence_penalty=confidence_penalty)
    perm = torch.randperm(len(x), generator=generator)
    fold_of = torch.empty(len(x), dtype=torch.long)
    fold_of[perm] = torch.arange(len(x)) % folds
    probs = torch.zeros(len(x), num_classes)
    for f in range(folds):
        held = (fold_of == f).nonzero().squeeze(1)
        sub = run.child(f"fold{f}", config={"fold": f, "folds": folds, "cv_epochs": cv_epochs})
        g = torch.Generator().manual_seed(spawn(generator))  # one stream per fold
        path = None if sub.dir is None else sub.dir / "pred_probs.pt"
        if sub.finished and path is not None and path.exists():
            p = torch.load(path, weights_only=True)
        else:
            tr = (fold_of != f).nonzero().squeeze(1)
            fold_net = copy.deepcopy(net) if isinstance(net, nn.Module) else net
            res = train_ce(x[tr], y[tr], net=fold_net, options=o.replace(epochs=cv_epochs),
                           generator=g, run=sub, desc=f"{desc} fold {f}", **ce)
            p = predict_probs(res.models["net"], x[held], views=views, device=sub.device)
            if path is not None:
                sub.save_file(path.name, p)
                sub.write_result({"fold": f, "n_held": len(held)})
        probs[held] = p
    removed = torch.from_numpy(find_label_issues(y.numpy(), probs.double().numpy(),
                                                 filter_by=filter_by, n_jobs=1))
    keep = (~removed).nonzero().squeeze(1)
    g = torch.Generator().manual_seed(spawn(generator))
    sub = run.child("retrain", config={"n_kept": len(keep)})
    res = train_ce(x[keep], y[keep], net=net, options=o, generator=g, run=sub, x_test=x_test,
                   y_test=y_test, desc=f"{desc} retrain", **ce)
    info: dict[str, Any] = {"removed": removed, "n_removed": int(removed.sum()), "pred_probs": probs}
    if y_true is not None:
        wrong = y != y_true
        info["removed_precision"] = float(wrong[removed].double().mean()) if removed.any() else float("nan")
        info["removed_recall"] = float(removed[wrong].double().mean()) if wrong.any() else float("nan")
    res.info.update(info)
    if sub.dir is not None and not sub.finished:
        sub.write_result({k: v for k, v in info.items() if k not in ("removed", "pred_probs")}
                         | {"last_test_acc": res.last_test_acc})
    return res
