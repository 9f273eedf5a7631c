"""What CrossSplit and its baselines share: the semi-supervised math, data checks, evaluation.

The math is pure (tensors in, tensors out) and tested against closed forms:
:func:`jsd`, :func:`sharpen`, :func:`soft_cross_entropy`, :func:`prior_penalty`,
:func:`neg_entropy`, :func:`linear_rampup`, :func:`nt_xent`, :func:`mix`, :func:`split_halves`.

>>> import torch
>>> from deepscope.robust.noisy_training import jsd, sharpen
>>> p, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
>>> round(float(jsd(p, q)), 4)                      # log 2 for disjoint supports
0.6931
>>> sharpen(torch.tensor([[0.25, 0.75]]), 0.5)
tensor([[0.1000, 0.9000]])

The rest is what the loops do alike around their algorithm, beside the training kit of
:mod:`deepscope.train.loop`: :data:`NOISY_DEFAULTS` (the budget every noisy-label loop starts
from), :func:`check_inputs` (inputs and labels), :func:`optimisers` (one per network),
:func:`ce_epoch` (the cross-entropy epoch of ``train_ce`` and of the warm-ups),
:func:`predict_probs` and :func:`test_metrics` (evaluation through the data's
:class:`~deepscope.data.augment.Views`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.data.augment import Views
from deepscope.train.config import check_int
from deepscope.train.distributed import Dist, forward_sharded
from deepscope.train.loop import (
    TrainOptions,
    accuracy,
    autocast,
    batches,
    evaluating,
    make_optimizer,
    optimiser_step,
)

__all__ = [
    "jsd", "sharpen", "soft_cross_entropy", "prior_penalty", "neg_entropy", "linear_rampup",
    "nt_xent", "mix", "split_halves", "NOISY_DEFAULTS", "check_data", "check_inputs",
    "optimisers", "ce_epoch", "predict_probs", "test_metrics",
]

#: The budget of the noisy-label loops (CrossSplit's CIFAR schedule): 300 epochs of SGD with
#: momentum 0.9 and weight decay 5e-4, the learning rate cosine-annealed per epoch to 2e-3,
#: a checkpoint every epoch. Each loop changes what its paper changes (batch size, lr).
NOISY_DEFAULTS = TrainOptions(epochs=300, batch_size=128, lr=0.1, momentum=0.9,
                              weight_decay=5e-4, optimizer="sgd", schedule="cosine",
                              lr_min=2e-3, checkpoint_every=1, amp=False)


# -- math ------------------------------------------------------------------------------------

def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (natural log) between rows: (N, K), (N, K) -> (N,).

    ``JSD(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``; in [0, log 2],
    0 iff p == q, log 2 for distributions with disjoint supports. Zeros are handled exactly
    (``0 log 0 = 0``).
    """
    m = (p + q) / 2
    kl = lambda a: (torch.xlogy(a, a) - torch.xlogy(a, m)).sum(-1)  # noqa: E731
    return (kl(p) + kl(q)) / 2


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """``p^(1/T)`` renormalised over the last dimension (MixMatch, arXiv 1905.02249, eq. 7)."""
    s = p.clamp_min(0) ** (1.0 / temperature)
    return s / s.sum(-1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_k t_k log softmax(logits)_k``: (N, K), (N, K) -> scalar."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """``KL(uniform || mean_i softmax(logits_i))``: pushes the mean prediction towards uniform."""
    n, k = logits.shape
    # log of the mean prediction, computed in log space: a class whose probability underflows
    # in every row would otherwise give log(0) and NaN gradients
    log_mean = torch.logsumexp(F.log_softmax(logits, dim=-1), dim=0) - math.log(n)
    return (math.log(1.0 / k) - log_mean).sum() / k


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean of ``sum_k p_k log p_k``: the confidence penalty DivideMix adds under asymmetric noise."""
    logp = F.log_softmax(logits, dim=-1)
    return (logp.exp() * logp).sum(-1).mean()


def linear_rampup(epoch: float, start: float, length: float) -> float:
    """``clip((epoch - start) / length, 0, 1)``: the weight ramp of the unlabeled term."""
    if length <= 0:
        return 1.0 if epoch >= start else 0.0
    return float(min(max((epoch - start) / length, 0.0), 1.0))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's contrastive loss (arXiv 2002.05709, eq. 1) for two views (N, D), (N, D) of N items.

    Rows are L2-normalised; each of the 2N rows has its other view as the positive and the
    2N - 2 other rows as negatives; the mean cross-entropy over the 2N rows.
    """
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def mix(x: torch.Tensor, t: torch.Tensor, lam: float, perm: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (arXiv 1710.09412): ``lam * a + (1 - lam) * a[perm]`` for inputs and targets."""
    return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]


def split_halves(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` once into two disjoint random halves (sizes ceil(n/2), floor(n/2)).

    Returns sorted index tensors ``(a, b)``: disjoint, together covering ``range(n)``, and a
    function of the generator's state only.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n == {n!r}, must be an integer >= 2 to split in two halves")
    perm = torch.randperm(n, generator=generator)
    h = (n + 1) // 2
    return perm[:h].sort().values, perm[h:].sort().values


# -- checks ------------------------------------------------------------------------------------

def check_data(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, name: str = "x"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (N, ...) float and labels (N,) int in 0..K-1 (numpy or torch), on the CPU as tensors."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name}.dtype == {x.dtype}, must be floating point")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.is_floating_point:
        raise ValueError(f"labels of {name} have shape {tuple(y.shape)}, must be ({len(x)},) integers")
    check_int("num_classes", num_classes, 2)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels of {name} span {int(y.min())}..{int(y.max())}, must be in "
                         f"0..{num_classes - 1}")
    return x.detach().cpu(), y.detach().cpu().long()


def check_inputs(x: torch.Tensor, y: torch.Tensor, num_classes: int, *,
                 x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                 y_true: torch.Tensor | None = None):
    """:func:`check_data` on the training set, and on the test set and clean labels when given.

    Returns ``(x, y, x_test, y_test, y_true)`` on the CPU (the optional ones None when absent).
    """
    x, y = check_data(x, y, num_classes)
    if x_test is not None:
        x_test, y_test = check_data(x_test, y_test, num_classes, name="x_test")
    if y_true is not None:
        _, y_true = check_data(x, y_true, num_classes, name="y_true")
    return x, y, x_test, y_test, y_true


# -- what the loops do alike ---------------------------------------------------------------------

def optimisers(models: Mapping[str, nn.Module], options: TrainOptions,
               heads: Mapping[str, nn.Module] | None = None) -> tuple[dict, dict]:
    """One optimiser and schedule (:func:`~deepscope.train.loop.make_optimizer`) per network,
    with its head's parameters if it has one in ``heads``: ``(opts, scheds)`` by name."""
    opts, scheds = {}, {}
    for name, m in models.items():
        params = list(m.parameters()) + (list(heads[name].parameters()) if heads and name in heads
                                         else [])
        opts[name], scheds[name] = make_optimizer(params, options)
    return opts, scheds


def ce_epoch(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, *, batch_size: int,
             views: Views, generator: torch.Generator, dist: Dist, device: torch.device,
             amp: bool, confidence_penalty: float = 0.0) -> float:
    """One epoch of cross-entropy on weak views of ``x[idx]`` in random batches; the mean
    batch loss (``confidence_penalty`` weighs :func:`neg_entropy`)."""
    model.train()
    total, bs = 0.0, batches(idx, batch_size, generator)
    for b in bs:
        xb = views.weak(x[b].to(device), generator)  # the global batch's view
        with autocast(device, amp):
            logits = forward_sharded(model, xb, dist).float()
        loss = F.cross_entropy(logits, y[b].to(device))
        if confidence_penalty:
            loss = loss + confidence_penalty * neg_entropy(logits)
        optimiser_step(opt, scaler, loss, dist)
        total += loss.item()
    return total / max(len(bs), 1)


# -- evaluation -----------------------------------------------------------------------------------

def predict_probs(model: nn.Module, x: torch.Tensor, *, views: Views, device: torch.device,
                  generator: torch.Generator | None = None, n_views: int = 0,
                  batch_size: int = 1024, amp: bool = False) -> torch.Tensor:
    """Softmax of ``model`` on ``x`` (N, ...) -> (N, K) on the CPU, in eval mode.

    ``n_views == 0``: on the test view. ``n_views >= 1``: the mean over that many weak views
    (drawn from ``generator``).
    """
    out = []
    with evaluating(model):
        for xb in x.split(batch_size):
            xb = xb.to(device)
            if n_views == 0:
                inputs = [views.test(xb)]
            else:
                inputs = [views.weak(xb, generator) for _ in range(n_views)]
            with autocast(device, amp):
                p = sum(torch.softmax(model(v).float(), dim=-1) for v in inputs) / len(inputs)
            out.append(p.cpu())
    return torch.cat(out)


def _test_logits(model: nn.Module, x: torch.Tensor, *, views: Views, device: torch.device,
                 batch_size: int = 1024) -> torch.Tensor:
    """``model``'s logits on the test view: (N, ...) -> (N, K) on the CPU, in eval mode."""
    out = []
    with evaluating(model):
        for xb in x.split(batch_size):
            out.append(model(views.test(xb.to(device))).float().cpu())
    return torch.cat(out)


def test_metrics(models: Mapping[str, nn.Module], x_test: torch.Tensor | None,
                 y_test: torch.Tensor | None, *, views: Views, device: torch.device) -> dict:
    """``test_acc`` of the ensemble (sum of logits) and, with two or more models, of each one."""
    if x_test is None:
        return {}
    logits = {name: _test_logits(m, x_test, views=views, device=device)
              for name, m in models.items()}
    rec = {"test_acc": round(accuracy(sum(logits.values()), y_test), 5)}
    if len(models) > 1:
        for name, lg in logits.items():
            rec[f"test_acc_{name}"] = round(accuracy(lg, y_test), 5)
    return rec
