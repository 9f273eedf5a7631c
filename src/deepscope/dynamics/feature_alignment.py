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
    from deepscope.dynamics.feature_alignment import train_feature_alignment
    from deepscope.train import Run

    ds = load_dataset("mnist1d", n=5000, seed=0)
    res = train_feature_alignment(
        ds.x_train, ds.y_train, ds.x_test, ds.y_test, net="mlp",     # or any nn.Module
        generator=torch.Generator().manual_seed(0), run=Run("runs/fa", seed=0),  # or run=None
        random_labels=0.2, options={"epochs": 30, "lr": 0.05})
    res.history[-1]["align_train"], res.history[0]["align_train"]   # final, initial
    res.info["final"]["gap"]       # train accuracy (labels trained on) - test accuracy

Runs unchanged under ``torchrun``: every process draws the same global batch from the
generator, trains on its shard of it and the gradients are averaged; the kernels are
computed on the whole model (the same numbers on every process; only rank 0 writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from deepscope.dynamics.ntk_tracker import PAPER_RATIO, AlignmentTracker, log_steps
from deepscope.train.config import check_float, check_int
from deepscope.train.distributed import all_reduce_mean, shard
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
from deepscope.train.rng import spawn
from deepscope.train.run import NullRun, Run

__all__ = ["train_feature_alignment", "evaluate", "kaiming_init", "DEFAULTS", "INITS"]

#: Initialisations: ``"default"`` (PyTorch's, as built) or ``"kaiming"`` (the authors' code:
#: Kaiming-normal weights of every Linear and Conv layer, zero biases).
INITS = ("default", "kaiming")

#: An augmentation: ``augment(x_batch, generator=g) -> x_batch``, e.g.
#: ``deepscope.data.augment.ImageTransform(crop_padding=4, flip=True)``.
Augment = Callable[..., torch.Tensor]

#: train_feature_alignment's own defaults (the authors' code: batch 128, momentum 0.9, weight
#: decay 5e-4, a constant rate); fields the caller sets in ``options`` win.
DEFAULTS = TrainOptions(epochs=50, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4,
                        optimizer="sgd", schedule="constant", checkpoint_every=1)


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
    correct, loss = [0.0] * len(labels), [0.0] * len(labels)
    with evaluating(model):
        for i in range(0, x.shape[0], batch_size):
            out = model(x[i:i + batch_size])
            pred = out.argmax(1)
            for j, y in enumerate(labels):
                yi = y[i:i + batch_size]
                correct[j] += float((pred == yi).sum())
                loss[j] += float(F.cross_entropy(out, yi, reduction="sum"))
    return [(c / x.shape[0], v / x.shape[0]) for c, v in zip(correct, loss)]


def kaiming_init(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Kaiming-normal weights (fan-in, ReLU gain) and zero biases for every Linear/Conv layer.

    The authors' initialisation (github.com/tfjgeorge/ntk_alignment, commit 7132338,
    ``tasks.py::kaiming_init``); drawn from ``generator``. Returns ``model``.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
    return model


def _train_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_clean: torch.Tensor,
                 quantile: float, batch_size: int = 1000) -> dict[str, float]:
    """Accuracy and loss on the labels trained on and the true ones, and the margin, one pass."""
    from deepscope.dynamics.alignment import margin

    with evaluating(model), torch.no_grad():
        out = torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    pred = out.argmax(1)
    return {"train_acc": float((pred == y).float().mean()),
            "train_acc_clean": float((pred == y_clean).float().mean()),
            "train_loss": float(F.cross_entropy(out, y)),
            "margin": margin(out.float(), y, quantile=quantile)}


def _check_data(x_train, y_train, x_test, y_test, batch_size: int) -> None:
    for xs, ys, which in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if xs.shape[0] != ys.shape[0] or ys.ndim != 1:
            raise ValueError(f"x_{which} has {xs.shape[0]} examples and y_{which} shape "
                             f"{tuple(ys.shape)}; pass (N, ...) inputs and (N,) labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"x_train examples have shape {tuple(x_train.shape[1:])} and x_test "
                         f"{tuple(x_test.shape[1:])}; they must match")
    if batch_size > x_train.shape[0]:
        raise ValueError(f"batch_size == {batch_size}, must be <= the {x_train.shape[0]} "
                         f"training examples")


def train_feature_alignment(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    net: NetSpec = "mlp",
    net_kwargs: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    random_labels: float = 0.0,
    augment: Augment | None = None,
    n_probe: int = 100,
    per_layer: bool = True,
    first_step: float = 5.0,
    ratio: float = PAPER_RATIO,
    init: str = "default",
    fit_threshold: float | None = None,
    epochs_after_fit: int | None = None,
    probe_augmented: bool = False,
    margin_quantile: float = 0.1,
    desc: str = "",
) -> TrainResult:
    """Train a classifier with SGD + momentum and track its tangent-kernel alignment.

    The experiment of Baratin et al., "Implicit Regularization via Neural Feature Alignment",
    AISTATS 2021 (arXiv 2008.00938): a ``random_labels`` fraction of the training labels is
    re-drawn uniformly over all classes
    (:func:`deepscope.data.noise.symmetric_noise` with ``include_true=True``, as the
    authors' code), the network is trained on cross-entropy in mini-batches of shuffled
    epochs, and at step 0 and the steps ``floor(first_step * ratio^k)`` (the paper: 5 and
    1.15), plus the last step, an :class:`~deepscope.dynamics.ntk_tracker.AlignmentTracker`
    computes on 100 fixed training examples (with the labels trained on, as the authors' code)
    and 100 test examples: the centred kernel alignment ``A = y^T K_c y / (||K_c||_F ||y||^2)``,
    per layer, the train kernel's spectrum, and the path complexity ``C = (1/n) sum_k
    ||theta_k - theta_(k-1)|| sqrt(Tr K_k)`` (see
    :func:`deepscope.dynamics.alignment.path_complexity`). Each record also holds the
    accuracies and losses on the whole sets (:func:`evaluate`).

    Parameters
    ----------
    x_train, x_test : (N, *features), (M, *features) float tensors
    y_train, y_test : (N,), (M,) integer labels
    net : str, nn.Module or callable
        A name of :data:`deepscope.nets.NETS` (built with ``input_shape=x_train.shape[1:]``,
        ``num_classes`` and ``net_kwargs``), a module, or a function returning one; without
        BatchNorm (the tangent kernel needs examples processed independently).
    net_kwargs : dict, optional
        Options of a built-in network.
    num_classes : int, optional
        Default ``max(y_train, y_test) + 1``.
    options : TrainOptions or dict, optional
        ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``, ``optimizer``,
        ``schedule``, ``checkpoint_every`` (epochs), ``amp``, ``device``; unset fields take
        :data:`DEFAULTS`. The global batch size must be a multiple of the number of processes;
        the last partial batch of an epoch is dropped.
    generator : torch.Generator, optional
        Draws, in order, the probe sets, the initialisation, the random labels (so runs that
        differ only in ``random_labels`` share probes and initialisation), then every epoch's
        shuffle and augmentation. Checkpointed. Default: PyTorch's global generator.
    run : Run, optional
        Metrics (one line per tracker record, one per epoch with its mean loss), a checkpoint
        every ``checkpoint_every`` epochs and at the end (model, optimiser, generator, tracker,
        history), resumed from when present. ``None`` writes nothing.
    random_labels : float in [0, 1]
        Fraction of training labels re-drawn.
    augment : callable, optional
        ``augment(x_batch, generator=g) -> x_batch`` on each (global) batch, e.g.
        ``deepscope.data.augment.ImageTransform(crop_padding=4, flip=True)``.
    n_probe : int
        Probe examples per set (the paper: 100).
    per_layer : bool
        Also record each layer's alignment.
    first_step, ratio : float
        The tracker's schedule ``floor(first_step * ratio^k)``.
    init : 'default' or 'kaiming'
        ``'kaiming'``: :func:`kaiming_init` (the authors' code) after building the network.
    fit_threshold : float, optional
        Training accuracy (on the labels trained on, the whole training set, eval mode) at which
        a run counts as fitted. Checked at every record and at the end of every epoch; the first
        epoch it is reached gets a tracker record (if its last step was not already one), so
        every run has a record at the point it fits (the paper's regime: runs compared once they
        fit their labels, random ones included). The authors' code stops at a training loss
        below 0.01 (``train.py::stopping_criterion``); an accuracy threshold (0.99) is used here.
    epochs_after_fit : int, optional
        Stop this many epochs after the fitting epoch (``None``: train to ``epochs``, the cap).
    probe_augmented : bool
        Pass the training probes once through ``augment`` when they are drawn (the authors'
        probes are the first 100 examples of the augmented training loader, augmented once).
    margin_quantile : float
        Quantile of the training margins taken as ``gamma`` (:func:`deepscope.dynamics.
        alignment.margin`) for the margin-normalised variant ``complexity_per_margin``.
    desc : str
        Progress-bar label.

    Returns
    -------
    TrainResult
        ``models["net"]``; ``history``: one record per tracker step (``step``, ``epoch``, the
        tracker's numbers ``align_train``, ``align_test``, ``layer_align_train``, ...,
        ``complexity`` (the measure ``C`` cumulated so far), the accuracies and losses on the
        whole sets, ``margin`` (``gamma``) and the variant ``complexity_per_margin = C / gamma``
        (``None`` while ``gamma <= 0``));
        ``info``: ``labels`` (N,) the labels trained on, ``changed`` (N,) bool where they
        differ from ``y_train``, ``final`` the last record's accuracies and losses with ``gap``
        (train accuracy on the labels trained on minus test accuracy), ``loss_gap`` (test minus
        train loss), ``complexity``, ``complexity_per_margin`` and ``step``; ``fit_epoch`` (the first epoch whose training
        accuracy reached ``fit_threshold``, ``None`` if never or without a threshold);
        ``tracker_seconds`` and ``train_seconds`` (wall time of the kernel measurements and of
        the rest of the loop, this process's session; a resumed run counts from its restart
        for the training part).
    """
    from deepscope.data.noise import symmetric_noise

    opts = TrainOptions.resolve(options, DEFAULTS)
    check_int("n_probe", n_probe, 2)
    if init not in INITS:
        raise ValueError(f"init == {init!r}, must be one of {', '.join(INITS)}")
    if fit_threshold is not None:
        check_float("fit_threshold", fit_threshold, 0.0, 1.0)
    if epochs_after_fit is not None:
        check_int("epochs_after_fit", epochs_after_fit, 0)
    check_float("margin_quantile", margin_quantile, 0.0, 0.99)
    if probe_augmented and augment is None:
        raise ValueError("probe_augmented == True needs augment; pass augment=... or "
                         "probe_augmented=False")
    check_float("random_labels", random_labels, 0.0, 1.0)
    _check_data(x_train, y_train, x_test, y_test, opts.batch_size)
    run, dist, dev = setup(run, opts)
    generator = generator_or_default(generator)
    y_train, y_test = torch.as_tensor(y_train).long(), torch.as_tensor(y_test).long()
    k = num_classes or int(max(y_train.max(), y_test.max())) + 1
    # Probes and initialisation first, then the labels: runs that differ only in the fraction
    # share both.
    probe_seed = spawn(generator)
    model = make_models(["net"], net, input_shape=x_train.shape[1:], num_classes=k,
                        generator=generator, device=dev, net_kwargs=net_kwargs)["net"]
    if init == "kaiming":
        kaiming_init(model, generator)
    noise = symmetric_noise(y_train, random_labels, num_classes=k, generator=generator,
                            include_true=True)
    labels, changed = noise.labels, noise.corrupted
    bs = opts.batch_size
    steps_per_epoch = x_train.shape[0] // bs
    total = opts.epochs * steps_per_epoch
    x, y = x_train.to(dev), labels.to(dev)
    xt, yt, y_clean = x_test.to(dev), y_test.to(dev), y_train.to(dev)
    schedule = set(log_steps(total, first=first_step, ratio=ratio)) | {total}
    tracker = AlignmentTracker(x, y, xt, yt, n_probe=n_probe, seed=probe_seed, steps=schedule,
                               per_layer=per_layer)
    if probe_augmented:  # once, from a generator of the probe seed: the run's stream is untouched
        g_probe = torch.Generator().manual_seed(probe_seed + 1)
        tracker.x_train = augment(tracker.x_train, generator=g_probe)
    opt, sched = make_optimizer(model.parameters(), opts)
    scaler = grad_scaler(dev, opts.amp)
    ckpt = dict(model=model, opt=opt, sched=sched, scaler=scaler, generator=generator,
                tracker=tracker)
    step, history = resume(run, **ckpt)
    t_start = time.perf_counter()
    tracker_start = tracker.seconds_

    def fitted(acc: float) -> bool:
        return fit_threshold is not None and acc >= fit_threshold

    def record(step: int, epoch: int, force: bool = False) -> None:
        rec = tracker(step, model, force=force)  # the same kernel on every process
        if rec is None:
            return
        st = _train_stats(model, x, y, y_clean, margin_quantile)
        [(test_acc, test_loss)] = evaluate(model, xt, yt)
        gamma = st["margin"]
        line = {"epoch": epoch, **rec, **st, "test_acc": test_acc, "test_loss": test_loss,
                "complexity_per_margin": rec["complexity"] / gamma if gamma > 0 else None}
        history.append({"step": step, **line})
        run.log(step, **line)

    def fit_epoch() -> int | None:
        return next((h["epoch"] for h in history if fitted(h["train_acc"])), None)

    if step == 0:
        record(0, 0)
    n = x.shape[0]
    last_epoch = opts.epochs
    if fit_epoch() is not None and epochs_after_fit is not None:
        last_epoch = min(opts.epochs, fit_epoch() + epochs_after_fit)
    with run.progress(total, desc=desc, start=step) as advance:
        for epoch in range(step // steps_per_epoch + 1, last_epoch + 1):
            model.train()
            perm = torch.randperm(n, generator=generator)
            loss_sum = torch.zeros((), device=dev)
            for b in range(steps_per_epoch):
                idx = perm[b * bs:(b + 1) * bs].to(dev)  # the global batch
                mine = shard(torch.arange(bs, device=dev), dist)
                xb = x[idx] if augment is None else augment(x[idx], generator=generator)
                with autocast(dev, opts.amp):
                    loss = F.cross_entropy(model(xb[mine]), y[idx][mine])
                optimiser_step(opt, scaler, loss, dist)
                loss_sum += loss.detach()
                step += 1
                record(step, epoch)
                advance(1)
            sched.step()
            # logged at the SGD step, like the records: metrics.jsonl has one time axis
            line = {"epoch": epoch, "loss": float(all_reduce_mean(loss_sum / steps_per_epoch, dist))}
            if fit_threshold is not None and fit_epoch() is None:
                [(acc, _)] = evaluate(model, x, y)
                line["epoch_train_acc"] = acc
                if fitted(acc):
                    record(step, epoch, force=True)
            if fit_epoch() is not None and epochs_after_fit is not None:
                last_epoch = min(opts.epochs, fit_epoch() + epochs_after_fit)
            if epoch == last_epoch:
                record(step, epoch, force=True)  # the end of training always has a record
            run.log(step, **line)
            if epoch % opts.checkpoint_every == 0 or epoch == last_epoch:
                run.save(step, **ckpt, history=history)
            if epoch == last_epoch:
                break
    last = history[-1]
    final = {key: last[key] for key in ("train_acc", "train_acc_clean", "train_loss", "test_acc",
                                        "test_loss", "complexity", "complexity_per_margin")}
    final.update(gap=last["train_acc"] - last["test_acc"],
                 loss_gap=last["test_loss"] - last["train_loss"], step=last["step"])
    tracker_seconds = tracker.seconds_ - tracker_start
    return TrainResult(models={"net": model}, history=history,
                       info={"labels": labels, "changed": changed, "final": final,
                             "fit_epoch": fit_epoch(), "tracker_seconds": tracker_seconds,
                             "train_seconds": time.perf_counter() - t_start - tracker_seconds})
