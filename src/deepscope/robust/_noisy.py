"""Pieces shared by the noisy-label loops (CrossSplit and its baselines): math, batching, evaluation.

The math here is pure (tensors in, tensors out) and tested against closed forms:
:func:`jsd`, :func:`sharpen`, :func:`soft_cross_entropy`, :func:`prior_penalty`,
:func:`linear_rampup`, :func:`nt_xent`. The rest builds networks and optimisers the same way
for every method, so that baselines get the same networks, data and budget, and holds what
every loop does alike around its own algorithm: the checks, :func:`setup`, :func:`optimisers`,
:func:`resume` (prologue), :func:`optimiser_step`, :func:`ce_epoch` (the cross-entropy epoch
of ``train_ce`` and of the warm-ups) and :func:`end_epoch` (log, checkpoint, advance).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.robust.augment import Views
from deepscope.train.distributed import Dist, all_reduce_grads, forward_sharded, init_distributed
from deepscope.train.rng import fork_seeded
from deepscope.train.run import NullRun, Run, as_run

__all__ = [
    "TrainResult", "jsd", "sharpen", "soft_cross_entropy", "prior_penalty", "neg_entropy",
    "linear_rampup", "nt_xent", "mix", "split_halves",
]


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


# -- validation ------------------------------------------------------------------------------

def check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} == {value!r}, must be an integer >= {low}")
    return value


def check_float(name: str, value: Any, low: float, high: float = math.inf, *,
                open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (value > low) if open_low else (value >= low)) and value <= high
    if not ok:
        lo = f"> {low}" if open_low else f">= {low}"
        rng = lo if high == math.inf else f"{lo} and <= {high}"
        raise ValueError(f"{name} == {value!r}, must be a number {rng}")
    return float(value)


def check_data(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, name: str = "x"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (N, ...) float and labels (N,) int in 0..K-1, on the CPU."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} and its labels must be torch.Tensors")
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


def check_training(epochs: int, batch_size: int, checkpoint_every: int, lr: float,
                   lr_min: float, momentum: float, weight_decay: float) -> None:
    """The budget and optimiser arguments every loop takes."""
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_int("checkpoint_every", checkpoint_every, 1)
    for name, v in (("lr", lr), ("lr_min", lr_min), ("momentum", momentum),
                    ("weight_decay", weight_decay)):
        check_float(name, v, 0.0)


# -- building -----------------------------------------------------------------------------------

def build_models(names: Sequence[str], *, net: str, net_kwargs: Mapping[str, Any] | None,
                 input_shape: Sequence[int], num_classes: int, generator: torch.Generator,
                 device: torch.device) -> dict[str, nn.Module]:
    """One network per name from :func:`deepscope.nets.build_net`, initialised from ``generator``."""
    from deepscope.nets import build_net

    out = {}
    for name in names:
        with fork_seeded(generator):
            out[name] = build_net(net, input_shape=tuple(input_shape), num_classes=num_classes,
                                  **dict(net_kwargs or {})).to(device)
    return out


def sgd_cosine(params, *, lr: float, momentum: float, weight_decay: float, epochs: int,
               lr_min: float):
    """SGD with momentum and weight decay, cosine-annealed per epoch from ``lr`` to ``lr_min``."""
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=lr_min)


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


def check_amp(amp: bool, device: torch.device) -> None:
    if amp and device.type != "cuda":
        raise ValueError(f"amp == True needs a CUDA device, got {device}; use amp=False on the CPU")


# -- what every loop does around its algorithm ------------------------------------------------

def setup(run: Run | NullRun | None, device: str | torch.device | None, amp: bool,
          views: Views | None) -> tuple[Run | NullRun, Dist, torch.device, Views]:
    """``(run, dist, device, views)``: the run (a NullRun when None), the process group and
    this process's device (:func:`~deepscope.train.distributed.init_distributed`), ``amp``
    checked against the device, and the identity views when ``views`` is None."""
    run = as_run(run, device)
    dist, dev = init_distributed(run.device)
    check_amp(amp, dev)
    return run, dist, dev, views or Views()


def optimisers(models: Mapping[str, nn.Module], heads: Mapping[str, nn.Module] | None = None,
               *, lr: float, momentum: float, weight_decay: float, epochs: int, lr_min: float
               ) -> tuple[dict, dict]:
    """One :func:`sgd_cosine` per network (with its head's parameters, if it has one in
    ``heads``): ``(opts, scheds)``, dicts by the networks' names."""
    opts, scheds = {}, {}
    for name, m in models.items():
        params = list(m.parameters()) + (list(heads[name].parameters()) if heads and name in heads
                                         else [])
        opts[name], scheds[name] = sgd_cosine(params, lr=lr, momentum=momentum,
                                              weight_decay=weight_decay, epochs=epochs,
                                              lr_min=lr_min)
    return opts, scheds


def resume(run: Run | NullRun, **objects: Any) -> tuple[int, list[dict]]:
    """``run.restore(**objects, history=None)``: the last epoch done (0 on a fresh run) and the
    history up to it. Pass the same objects to :func:`end_epoch`'s ``checkpoint``."""
    state = run.restore(**objects, history=None)
    return state["step"], list(state.get("history") or [])


def optimiser_step(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor,
                   dist: Dist) -> None:
    """Backward through the (scaled) loss, average the gradients of ``opt``'s parameters over
    the processes (the loss is the global batch's on every process), step, update the scaler."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    all_reduce_grads([p for group in opt.param_groups for p in group["params"]], dist)
    scaler.step(opt)
    scaler.update()


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


def end_epoch(run: Run | NullRun, epoch: int, rec: dict, history: list[dict], *, scheds,
              epochs: int, checkpoint_every: int, advance, checkpoint: Mapping[str, Any]) -> None:
    """Step the learning-rate schedules, append ``rec`` to ``history`` and log it, checkpoint
    ``checkpoint`` (with the history) every ``checkpoint_every`` epochs and after the last,
    advance the progress bar."""
    for s in scheds:
        s.step()
    history.append(rec)
    run.log(epoch, **{k: v for k, v in rec.items() if k != "epoch"})
    if epoch % checkpoint_every == 0 or epoch == epochs:
        run.save(epoch, **checkpoint, history=history)
    advance(1, acc=rec.get("test_acc", float("nan")))


# -- evaluation -----------------------------------------------------------------------------------

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


def ensemble_logits(models: Sequence[nn.Module], x: torch.Tensor, *, views: Views,
                    device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Sum of the models' logits on the test view: (N, ...) -> (N, K) on the CPU."""
    out = []
    with evaluating(*models):
        for xb in x.split(batch_size):
            v = views.test(xb.to(device))
            out.append(sum(m(v).float() for m in models).cpu())
    return torch.cat(out)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).double().mean()) if len(y) else float("nan")


def test_metrics(models: Mapping[str, nn.Module], x_test: torch.Tensor | None,
                 y_test: torch.Tensor | None, *, views: Views, device: torch.device) -> dict:
    """``test_acc`` of the ensemble (sum of logits) and, with two or more models, of each one."""
    if x_test is None:
        return {}
    logits = {name: ensemble_logits([m], x_test, views=views, device=device)
              for name, m in models.items()}
    rec = {"test_acc": round(accuracy(sum(logits.values()), y_test), 5)}
    if len(models) > 1:
        for name, lg in logits.items():
            rec[f"test_acc_{name}"] = round(accuracy(lg, y_test), 5)
    return rec


@dataclass
class TrainResult:
    """What a noisy-label loop returns.

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

    def predict(self, x: torch.Tensor, *, views: Views | None = None,
                device: str | torch.device = "cpu") -> torch.Tensor:
        """Sum of the models' logits on ``x`` (N, ...) -> (N, K), in eval mode."""
        return ensemble_logits(list(self.models.values()), x, views=views or Views(),
                               device=torch.device(device))

    def _accs(self) -> list[float]:
        return [r["test_acc"] for r in self.history if r.get("test_acc") is not None]

    @property
    def last_test_acc(self) -> float:
        """Test accuracy after the last epoch."""
        accs = self._accs()
        return accs[-1] if accs else float("nan")

    @property
    def best_test_acc(self) -> float:
        """Highest test accuracy over epochs: selected on the test set, so optimistic."""
        accs = self._accs()
        return max(accs) if accs else float("nan")
