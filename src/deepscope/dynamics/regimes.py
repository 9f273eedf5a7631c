"""Lazy vs feature-learning regimes: the alpha knob, the loss ladder, learning times, linearity probes.

George, Lajoie & Baratin, "Lazy vs hasty: linearization in deep networks impacts learning
schedule based on example difficulty", TMLR 2022 (arXiv 2209.09658); the alpha scaling is
Chizat, Oyallon & Bach, "On lazy training in differentiable programming" (arXiv 1812.07956).

Cookbook::

    import copy, torch
    from deepscope.dynamics.regimes import (
        AlphaScaled, linearize, LossLadder, ladder_levels, learning_times, group_gap,
        example_losses, relu_sign_agreement, tangent_kernel, kernel_alignment, train_alpha,
    )
    from deepscope.nets import MLP

    net = MLP(40, [64, 64], 10)
    hasty = AlphaScaled(copy.deepcopy(net), alpha=1.0)      # feature learning
    lazy = AlphaScaled(copy.deepcopy(net), alpha=100.0)     # same initialisation, lazy
    x, y = torch.randn(256, 40), torch.randint(10, (256,))
    opt = torch.optim.SGD(lazy.parameters(), lr=0.01, momentum=0.9)
    loss, correct = example_losses(lazy(x), y)              # (256,), (256,) per example
    lazy.objective(loss.mean()).backward()                  # the training rule: L / alpha^2
    opt.step()

    lin = linearize(net)                                    # h(theta0) + J(theta0)(theta - theta0)

    # the loss ladder: rungs ln(C) * 0.96^k on the running mean training loss
    ladder = LossLadder(ladder_levels(10), window=8)
    for rung in ladder.update(step=1, loss=2.2):
        ladder.record(rung, loss=loss.detach(), correct=correct)
    t = learning_times(ladder.stack("correct"))            # (N,) rung index, inf: not learned

    relu_sign_agreement(lazy, x)                            # 1.0 at initialisation
    k0 = tangent_kernel(lazy, x[:32])                       # (32, 32) trace over the outputs (ntk)
    kernel_alignment(k0, tangent_kernel(lazy, x[:32]))      # uncentered alignment, 1.0 here

    model = train_alpha(lazy, x, y, generator=torch.Generator().manual_seed(0), epochs=5,
                        batch_size=32, lr=0.01, momentum=0.9, ladder=ladder)

The two regimes are compared **at matched training loss**, not at matched steps: each rung of
the ladder stores every probe example's loss and correctness, and :func:`group_gap` compares a
hard and an easy group of examples rung by rung.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.train.distributed import all_reduce_grads, init_distributed, reduce_metrics, shard
from deepscope.train.run import Run, as_run

__all__ = [
    "AlphaScaled",
    "Linearized",
    "linearize",
    "example_losses",
    "ladder_levels",
    "LossLadder",
    "learning_times",
    "group_gap",
    "regime_delta",
    "learning_time_spearman",
    "snapshot_outputs",
    "relu_sign_agreement",
    "tangent_kernel",
    "kernel_alignment",
    "train_alpha",
    "train_full_batch",
    "FullBatchResult",
]


# --------------------------------------------------------------------------------------
# The alpha knob
# --------------------------------------------------------------------------------------
class AlphaScaled(nn.Module):
    """``f_alpha(x) = alpha * (h(theta, x) - h(theta_0, x))`` with a frozen copy of the initial model.

    Parameters
    ----------
    model : nn.Module
        The network ``h``; it is trained in place (``self.model``). A frozen deep copy taken
        now is ``h(theta_0, .)`` (``self.init``, ``requires_grad=False``), so ``f_alpha`` is zero
        at initialisation for every alpha. Fork two regimes from one initialisation with
        ``AlphaScaled(copy.deepcopy(net), 1.0)`` and ``AlphaScaled(copy.deepcopy(net), 100.0)``.
    alpha : float
        > 0. ``alpha = 1`` is the ordinary network minus its initial output (feature learning);
        ``alpha >> 1`` is lazy training: the parameters move by O(1 / alpha) and ``f_alpha``
        approaches the linearised model (:func:`linearize`).

    Notes
    -----
    **Training rule.** Chizat & Bach's scaling trains on the objective ``L(f_alpha) / alpha**2``
    at an unchanged learning rate ``eta``. Its gradient is ``(1 / alpha) J^T dL/df_alpha``, the
    same update as the gradient ``J^T dL/df_alpha`` at rate ``eta / alpha``. This class
    implements the **objective form**, :meth:`objective`: ``model.objective(loss).backward()``
    with the optimiser built once at the nominal rate. Why this form: every optimiser that is
    linear in the gradient (SGD, momentum, Nesterov) then follows the same trajectory as the
    rate form, while the optimiser, its learning rate and its schedule stay identical across
    alphas, so alpha is the only thing that changes between the two regimes. At initialisation
    the function-space velocity ``-eta J J^T dL/df`` is then independent of alpha.
    Adaptive optimisers (Adam, RMSprop) divide the 1/alpha^2 back out: with them neither
    form gives lazy training.

    ``init`` is evaluated without gradient. Models with batch statistics (BatchNorm in train
    mode) mix examples differently in ``model`` and ``init``; use ``norm='none'``.
    """

    def __init__(self, model: nn.Module, alpha: float):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model is a {type(model).__name__}, must be a torch.nn.Module")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0 \
                or not math.isfinite(alpha):
            raise ValueError(f"alpha == {alpha!r}, must be a finite number > 0 (1: feature "
                             f"learning, 100: lazy)")
        self.model = model
        self.init = copy.deepcopy(model).requires_grad_(False)
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor, *, init_output: torch.Tensor | None = None) -> torch.Tensor:
        """``alpha * (model(x) - init(x))``; pass ``init_output = init(x)`` to reuse it (full batch)."""
        if init_output is None:
            with torch.no_grad():
                init_output = self.init(x)
        return self.alpha * (self.model(x) - init_output)

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The training rule: ``loss / alpha**2`` (see the class notes for why this form)."""
        return loss / self.alpha**2

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class Linearized(nn.Module):
    """``h_lin(theta, x) = h(theta_0, x) + J(theta_0, x) (theta - theta_0)`` (see :func:`linearize`).

    ``self.model`` holds the trainable ``theta`` (a copy of the network, used only for its
    parameters); ``self.init`` is frozen at ``theta_0``. The Jacobian-vector product is exact
    (``torch.func.jvp``) and differentiable in ``theta``, so the linearised model trains with
    the same optimisers as the network.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model is a {type(model).__name__}, must be a torch.nn.Module")
        self.model = copy.deepcopy(model)
        self.init = copy.deepcopy(model).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, jvp

        p0 = {k: v.detach() for k, v in self.init.named_parameters()}
        theta = dict(self.model.named_parameters())
        tangent = {k: theta[k] - p0[k] for k in p0}
        buffers = dict(self.init.named_buffers())
        out, dout = jvp(lambda p: functional_call(self.init, {**p, **buffers}, (x,)), (p0,), (tangent,))
        return out + dout


def linearize(model: nn.Module) -> Linearized:
    """The exact first-order model of ``model`` around its current parameters ``theta_0``.

    Parameters
    ----------
    model : nn.Module
        Copied: the result starts at ``theta = theta_0`` and trains its own copy.

    Returns
    -------
    Linearized
        ``h(theta_0, x) + J(theta_0, x) (theta - theta_0)``, computed with ``torch.func.jvp``.
        ``AlphaScaled(linearize(net), alpha)`` is alpha-independent: the lazy limit of
        ``AlphaScaled(net, alpha)`` as alpha grows.

    Examples
    --------
    >>> from deepscope.nets import MLP
    >>> net = MLP(3, [16], 2)
    >>> x = torch.randn(5, 3)
    >>> torch.allclose(linearize(net)(x), net(x))        # equal at theta_0
    True
    """
    return Linearized(model)


# --------------------------------------------------------------------------------------
# Per-example losses and the loss ladder
# --------------------------------------------------------------------------------------
def example_losses(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss and correctness of classifier outputs.

    Parameters
    ----------
    out : (..., N, C) or (..., N, 1) or (..., N) tensor
        Logits. ``C >= 2``: softmax cross-entropy. One output: the logistic loss
        ``softplus(-s f)`` with ``s = 2 y - 1`` (binary labels 0/1).
    y : (..., N) int tensor
        Class indices (0/1 for one output); broadcast against ``out``'s leading dimensions.

    Returns
    -------
    loss : (..., N) tensor
    correct : (..., N) bool tensor
        Arg-max equals the label (for one output: the sign of ``f`` matches).
    """
    if out.ndim >= 1 and out.ndim == y.ndim and out.shape[-1] != 1:
        out = out.unsqueeze(-1)  # (..., N) logistic outputs
    if out.shape[-1] == 1:
        f = out.squeeze(-1)
        yy = torch.broadcast_to(y, f.shape)
        if yy.dtype == torch.bool or yy.is_floating_point():
            raise TypeError(f"y has dtype {y.dtype}, must be integer class indices 0/1")
        s = 2.0 * yy.to(f.dtype) - 1.0
        return F.softplus(-s * f), (f > 0) == (yy > 0)
    c = out.shape[-1]
    yy = torch.broadcast_to(y, out.shape[:-1])
    if yy.is_floating_point() or yy.dtype == torch.bool:
        raise TypeError(f"y has dtype {y.dtype}, must be integer class indices")
    loss = F.cross_entropy(out.reshape(-1, c), yy.reshape(-1), reduction="none").reshape(yy.shape)
    return loss, out.argmax(-1) == yy


def ladder_levels(num_classes: int, *, ratio: float = 0.96, min_loss: float = 1e-2) -> list[float]:
    """The loss ladder ``L0 * ratio**k`` for ``k = 0, 1, ...`` while ``>= min_loss``, ``L0 = ln C``.

    ``ln C`` is the cross-entropy of the zero function (for one logistic output, ``C = 2``:
    ``ln 2``), where every alpha-scaled model starts (arXiv 2209.09658, section 3).

    Examples
    --------
    >>> [round(v, 4) for v in ladder_levels(2, min_loss=0.6)]
    [0.6931, 0.6654, 0.6388, 0.6133]
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes == {num_classes!r}, must be an integer >= 2")
    if not 0 < ratio < 1:
        raise ValueError(f"ratio == {ratio!r}, must be in (0, 1), e.g. 0.96")
    l0 = math.log(num_classes)
    if not 0 < min_loss <= l0:
        raise ValueError(f"min_loss == {min_loss!r}, must be in (0, ln C == {l0:.4f}]")
    n = int(math.floor(math.log(min_loss / l0) / math.log(ratio) + 1e-9)) + 1
    return [l0 * ratio**k for k in range(n)]


class LossLadder:
    """Fire once per rung when the running mean training loss first reaches it; store records.

    Parameters
    ----------
    levels : sequence of float
        Strictly decreasing losses, e.g. :func:`ladder_levels`.
    window : int
        The running mean is over the last ``window`` values passed to :meth:`update` (use the
        number of minibatches per epoch for SGD, 1 for full-batch training). Fewer values are
        averaged until the window fills.

    Attributes
    ----------
    levels : list of float
    steps_ : list of int
        Step at which each fired rung fired (one per rung, in order).
    next_ : int
        Index of the next rung to fire; ``done`` once all have.

    A rung ``k`` fires at the first update where the running mean is ``<= levels[k]`` (to a
    relative 1e-6: the float32 cross-entropy of the zero function is ``ln C`` rounded); a large
    drop fires several rungs at once (each gets the same step). Rungs never fire twice, even if
    the loss rises again. ``state_dict``/``load_state_dict`` make it a checkpointable object
    for :meth:`deepscope.train.Run.save`.

    Examples
    --------
    >>> ladder = LossLadder([0.6, 0.5, 0.4])
    >>> [ladder.update(s, v) for s, v in enumerate([0.7, 0.55, 0.38, 0.2], 1)]
    [[], [0], [1, 2], []]
    >>> ladder.steps_
    [2, 3, 3]
    """

    def __init__(self, levels: Sequence[float], *, window: int = 1):
        lv = [float(v) for v in levels]
        if not lv or any(not math.isfinite(v) for v in lv) or any(b >= a for a, b in zip(lv, lv[1:])):
            raise ValueError(f"levels == {lv[:5]}{'...' if len(lv) > 5 else ''}, must be a non-empty "
                             "strictly decreasing sequence of finite losses")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window == {window!r}, must be an integer >= 1")
        self.levels = lv
        self.window = window
        self._buffer: deque[float] = deque(maxlen=window)
        self.steps_: list[int] = []
        self.next_ = 0
        self._records: dict[str, list[torch.Tensor]] = {}
        self._record_rungs: list[int] = []

    @property
    def done(self) -> bool:
        return self.next_ >= len(self.levels)

    @property
    def running_mean(self) -> float:
        return sum(self._buffer) / len(self._buffer) if self._buffer else math.inf

    def update(self, step: int, loss: float) -> list[int]:
        """Add one training loss; return the rungs (indices) that fire now."""
        loss = float(loss)
        if not math.isfinite(loss):
            raise ValueError(f"loss == {loss} at step {step}: training diverged; lower the learning rate")
        self._buffer.append(loss)
        m = self.running_mean
        fired = []
        # a relative tolerance of 1e-6, so that the zero function's float32 loss ln(C) fires rung 0
        while self.next_ < len(self.levels) and m <= self.levels[self.next_] * (1 + 1e-6):
            fired.append(self.next_)
            self.steps_.append(int(step))
            self.next_ += 1
        return fired

    def record(self, rung: int, **values: torch.Tensor) -> None:
        """Store per-example tensors (e.g. ``loss=(N,)``, ``correct=(N,)``) for a fired rung, in order."""
        expected = len(self._record_rungs)
        if rung != expected or rung >= len(self.steps_):
            raise ValueError(f"rung == {rung}, must be {expected}: record each fired rung once, in "
                             "the order update() returned them")
        if self._records and set(values) != set(self._records):
            raise ValueError(f"record got {sorted(values)}, earlier rungs stored {sorted(self._records)}")
        for k, v in values.items():
            self._records.setdefault(k, []).append(torch.as_tensor(v).detach().cpu())
        self._record_rungs.append(rung)

    def stack(self, name: str) -> torch.Tensor:
        """``(R, N)``: the recorded ``name`` at every recorded rung."""
        if name not in self._records:
            raise KeyError(f"no records named {name!r}; recorded: {sorted(self._records)}")
        return torch.stack(self._records[name])

    @property
    def recorded_levels(self) -> list[float]:
        return [self.levels[r] for r in self._record_rungs]

    def state_dict(self) -> dict:
        return {
            "levels": list(self.levels), "window": self.window, "buffer": list(self._buffer),
            "steps": list(self.steps_), "next": self.next_, "record_rungs": list(self._record_rungs),
            "records": {k: torch.stack(v) for k, v in self._records.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["levels"]) != self.levels or state["window"] != self.window:
            raise ValueError("checkpointed ladder has other levels or window; pass a new --out")
        self._buffer = deque((float(v) for v in state["buffer"]), maxlen=self.window)
        self.steps_ = [int(s) for s in state["steps"]]
        self.next_ = int(state["next"])
        self._record_rungs = [int(r) for r in state["record_rungs"]]
        self._records = {k: list(v.unbind(0)) for k, v in state["records"].items()}


def learning_times(correct: Any, times: Sequence[float] | None = None) -> np.ndarray:
    """Per example, the first logged point after which it stays correct (``inf``: not learned).

    Parameters
    ----------
    correct : (T, N) bool tensor or array
        Correctness of N examples at T logged points (e.g. ``ladder.stack("correct")``).
    times : (T,) sequence, optional
        The time of each logged point (a step, a rung's loss). Default ``0..T-1`` (rung index).

    Returns
    -------
    (N,) float array
        ``times[t]`` for the smallest ``t`` with ``correct[t:]`` all true; ``inf`` if the
        example is wrong at the last point.

    Examples
    --------
    >>> learning_times(np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], bool).T)
    array([ 1.,  2., inf])
    """
    c = np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct).astype(bool)
    if c.ndim != 2 or c.shape[0] < 1:
        raise ValueError(f"correct has shape {c.shape}, must be (T, N) with T >= 1 logged points")
    t = np.arange(c.shape[0], dtype=float) if times is None else np.asarray(times, dtype=float)
    if t.shape != (c.shape[0],):
        raise ValueError(f"times has shape {t.shape}, must be ({c.shape[0]},): one per logged point")
    # last index where the example is wrong; learned right after it
    wrong = ~c
    last_wrong = np.where(wrong.any(0), c.shape[0] - 1 - np.argmax(wrong[::-1], axis=0), -1)
    first = last_wrong + 1
    out = np.full(c.shape[1], np.inf)
    ok = first < c.shape[0]
    out[ok] = t[first[ok]]
    return out


def group_gap(losses: Any, hard: Any, easy: Any) -> np.ndarray:
    """Per rung, the mean loss of the hard group minus that of the easy group.

    Parameters
    ----------
    losses : (R, N) tensor or array
        Per-example losses at R rungs.
    hard, easy : (N,) bool masks
        The two groups (non-empty).

    Returns
    -------
    (R,) array
        ``mean(losses[:, hard]) - mean(losses[:, easy])``; average it over the rungs two
        regimes share for the paper's comparison, ``gap(alpha=1) - gap(alpha=100)``.
    """
    lo = np.asarray(losses.cpu() if isinstance(losses, torch.Tensor) else losses, dtype=float)
    h = np.asarray(hard.cpu() if isinstance(hard, torch.Tensor) else hard).astype(bool)
    e = np.asarray(easy.cpu() if isinstance(easy, torch.Tensor) else easy).astype(bool)
    if lo.ndim != 2 or h.shape != (lo.shape[1],) or e.shape != (lo.shape[1],):
        raise ValueError(f"losses has shape {lo.shape}, hard {h.shape}, easy {e.shape}; need "
                         "(R, N), (N,), (N,)")
    if not h.any() or not e.any():
        raise ValueError(f"hard has {int(h.sum())} and easy {int(e.sum())} examples; both groups "
                         "must be non-empty")
    return lo[:, h].mean(1) - lo[:, e].mean(1)


def regime_delta(losses_a: Any, losses_b: Any, hard: Any, easy: Any) -> tuple[float, int]:
    """The paper's comparison: ``mean over shared rungs of gap_a - gap_b`` and the number of rungs.

    Parameters
    ----------
    losses_a, losses_b : (Ra, N), (Rb, N) tensors or arrays
        Per-example losses on the same ladder for two regimes (``a``: alpha = 1, ``b``: alpha =
        100); rung r of both sits at the same running training loss. Only the first
        ``min(Ra, Rb)`` rungs, reached by both, are compared.
    hard, easy : (N,) bool masks

    Returns
    -------
    delta : float
        ``> 0``: at equal training loss, regime ``a`` has pulled further ahead on the easy group
        relative to the hard one than regime ``b`` (the paper's effect for a = feature learning).
        NaN when no rung is shared.
    rungs : int
    """
    r = min(len(losses_a), len(losses_b))
    if r == 0:
        return float("nan"), 0
    a = np.asarray(losses_a.cpu() if isinstance(losses_a, torch.Tensor) else losses_a)[:r]
    b = np.asarray(losses_b.cpu() if isinstance(losses_b, torch.Tensor) else losses_b)[:r]
    return float(np.mean(group_gap(a, hard, easy) - group_gap(b, hard, easy))), r


def learning_time_spearman(difficulty: Any, times: Any) -> float:
    """Spearman correlation of a difficulty score (high = hard) with learning times.

    Examples never learned (``inf``) rank after every learned one (ties among them). NaN if
    either argument is constant.
    """
    from scipy.stats import spearmanr

    d = np.asarray(difficulty.cpu() if isinstance(difficulty, torch.Tensor) else difficulty, dtype=float)
    t = np.asarray(times, dtype=float).copy()
    if d.shape != t.shape or d.ndim != 1:
        raise ValueError(f"difficulty has shape {d.shape} and times {t.shape}; need two (N,) arrays")
    finite = np.isfinite(t)
    t[~finite] = (t[finite].max() + 1) if finite.any() else 0.0
    if np.ptp(d) == 0 or np.ptp(t) == 0:
        return float("nan")
    return float(spearmanr(d, t).statistic)


# --------------------------------------------------------------------------------------
# Linearity probes
# --------------------------------------------------------------------------------------
_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_}


class _ReluSigns(torch.overrides.TorchFunctionMode):
    """Record ``input > 0`` at every ReLU call (nn.ReLU, F.relu, torch.relu, Tensor.relu)."""

    def __init__(self) -> None:
        super().__init__()
        self.signs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELUS:
            self.signs.append((args[0] > 0).detach())
        return func(*args, **(kwargs or {}))


def _relu_signs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    mode = _ReluSigns()
    with torch.no_grad(), mode:
        model(x)
    return mode.signs


def relu_sign_agreement(model: nn.Module, x: torch.Tensor, reference: nn.Module | None = None, *,
                        per_layer: bool = False) -> float | list[float]:
    """Fraction of ReLU units (over the probe inputs) whose sign matches the reference network's.

    Parameters
    ----------
    model : nn.Module
        An :class:`AlphaScaled` (compared with its frozen ``init``) or any network.
    x : (N, ...) tensor
        Probe inputs.
    reference : nn.Module, optional
        The network at initialisation; default ``model.init`` for an AlphaScaled.
    per_layer : bool
        Return one fraction per ReLU call (in call order) instead of the pooled fraction.

    Returns
    -------
    float or list of float
        1.0 when every pre-activation has the sign it had at initialisation (lazy training keeps
        the activation pattern; feature learning changes it). Every call of ``nn.ReLU``,
        ``F.relu``, ``torch.relu`` or ``Tensor.relu`` is seen (through a ``TorchFunctionMode``).
    """
    if isinstance(model, AlphaScaled):
        net, reference = model.model, model.init if reference is None else reference
    else:
        net = model
    if reference is None:
        raise ValueError("reference is None and model is not an AlphaScaled: pass the network at "
                         "initialisation as reference=")
    a, b = _relu_signs(net, x), _relu_signs(reference, x)
    if not a:
        raise ValueError("the model calls no ReLU (nn.ReLU, F.relu, torch.relu); sign agreement "
                         "is defined for ReLU networks only")
    if len(a) != len(b) or any(u.shape != v.shape for u, v in zip(a, b)):
        raise ValueError("model and reference call their ReLUs on different shapes; they must "
                         "share one architecture")
    same = [(u == v) for u, v in zip(a, b)]
    if per_layer:
        return [float(s.float().mean()) for s in same]
    return float(sum(int(s.sum()) for s in same) / sum(s.numel() for s in same))


def tangent_kernel(model: nn.Module, x: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """The empirical tangent kernel traced over outputs, ``K[i, j] = sum_o <df_o(x_i), df_o(x_j)>``.

    :func:`deepscope.dynamics.ntk.empirical_ntk` with ``mode="trace"``.

    Parameters
    ----------
    model : nn.Module
        Differentiated with respect to its parameters with ``requires_grad=True`` (for an
        :class:`AlphaScaled`, those of ``model.model``, so the kernel of ``f_alpha`` is
        ``alpha**2`` times that of ``h``; the frozen ``init`` does not count).
    x : (N, ...) tensor
    chunk_size : int, optional
        Examples per block (see ``empirical_ntk``).

    Returns
    -------
    (N, N) tensor
    """
    from deepscope.dynamics.ntk import empirical_ntk

    return empirical_ntk(model, x, mode="trace", chunk_size=chunk_size)


def kernel_alignment(k1: torch.Tensor, k2: torch.Tensor) -> float:
    """Uncentered kernel alignment ``<K1, K2>_F / (||K1||_F ||K2||_F)`` in [-1, 1].

    :func:`deepscope.dynamics.alignment.cka` with ``centered=False``, as a float. Scale-invariant,
    so the kernel of ``f_alpha`` (``alpha**2 K_h``) and that of ``h`` align identically. 1.0: the
    tangent kernel has not rotated since the reference (lazy training).
    """
    from deepscope.dynamics.alignment import cka

    if k1.shape != k2.shape or k1.ndim != 2:
        raise ValueError(f"kernels have shapes {tuple(k1.shape)} and {tuple(k2.shape)}; need two "
                         "(N, N) matrices on the same inputs")
    if not bool(k1.any()) or not bool(k2.any()):
        raise ValueError("a kernel is identically zero; alignment is undefined")
    return float(cka(k1, k2, centered=False))


# --------------------------------------------------------------------------------------
# Training loops
# --------------------------------------------------------------------------------------
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
    model: AlphaScaled,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    ladder: LossLadder | None = None,
    run: Run | None = None,
    device: str | torch.device | None = None,
    epochs: int = 100,
    batch_size: int = 125,
    lr: float = 0.01,
    momentum: float = 0.9,
    probe_x: torch.Tensor | None = None,
    probe_y: torch.Tensor | None = None,
    linearity_x: torch.Tensor | None = None,
    kernel_x: torch.Tensor | None = None,
    linearity_every: int = 10,
    eval_batch: int = 1000,
    checkpoint_every: int = 1,
    stop_when_done: bool = True,
    desc: str = "",
) -> AlphaScaled:
    """Minibatch SGD on ``model.objective(mean loss)``, recording every probe example on the ladder.

    The paper's protocol (arXiv 2209.09658, section 3): each time the running mean training
    loss reaches a rung, the loss and correctness of every probe example are stored in
    ``ladder`` (``ladder.stack("loss")``, ``ladder.stack("correct")``: (R, N)), and a
    metrics line ``{rung, level, train_loss}`` is logged. Every ``linearity_every`` rungs the
    ReLU sign agreement (on ``linearity_x``) and the tangent-kernel alignment with
    initialisation (on ``kernel_x``) are logged too.

    Parameters
    ----------
    model : AlphaScaled
        Trained in place; build it from the initial network for each alpha.
    x : (N, ...) tensor, y : (N,) int tensor
        Training data (moved to the device once).
    generator : torch.Generator
        Draws the minibatch order (one permutation per epoch, on the CPU).
    ladder : LossLadder, optional
        Its ``window`` should be the number of minibatches per epoch. Checkpointed with the run.
        None: plain training for ``epochs`` (no records), e.g. the hold-out models of a c-score.
    run : Run, optional
        Metrics, checkpoints (every ``checkpoint_every`` epochs) and resume.
    epochs, batch_size, lr, momentum
        SGD (``torch.optim.SGD``) at the nominal rate; :meth:`AlphaScaled.objective` applies
        the 1/alpha^2. The last minibatch of an epoch may be smaller.
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

    Under ``torchrun`` every process draws the same global minibatch, computes the loss on
    its slice (:func:`~deepscope.train.distributed.shard`, unequal slices allowed: the last
    minibatch may be smaller), and the gradients are averaged weighed by the examples each
    process saw (:func:`~deepscope.train.distributed.all_reduce_grads`); the ladder gets the
    global minibatch's mean loss. Every process evaluates the probes (the same numbers), and
    only rank 0 writes. The same updates as one process, up to float summation order.

    Returns
    -------
    AlphaScaled
        The trained model (the same object).
    """
    if not isinstance(model, AlphaScaled):
        raise TypeError(f"model is a {type(model).__name__}, must be an AlphaScaled")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch", eval_batch),
                    ("checkpoint_every", checkpoint_every), ("linearity_every", linearity_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} == {v!r}, must be an integer >= 1")
    if not lr > 0 or not 0 <= momentum < 1:
        raise ValueError(f"lr == {lr}, momentum == {momentum}: need lr > 0 and 0 <= momentum < 1")
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"x has {x.shape[0]} rows and y {y.shape[0]}; they must match (>= 1)")
    run = as_run(run, device)
    dist, dev = init_distributed(run.device)
    if dist.enabled and min(batch_size, x.shape[0] - (math.ceil(x.shape[0] / batch_size) - 1)
                            * batch_size) < dist.world_size:
        raise ValueError(f"batch_size == {batch_size} with {x.shape[0]} examples leaves a minibatch "
                         f"smaller than world_size == {dist.world_size}; use batches with at "
                         "least one example per process")
    model.to(dev)
    x, y = x.to(dev), y.to(dev)
    px = x if probe_x is None else probe_x.to(dev)
    py = y if probe_y is None else probe_y.to(dev)
    # the frozen network's outputs never change: compute them once (a third of each step's work)
    h0 = _init_outputs(model, x, eval_batch)
    h0_probe = h0 if probe_x is None else _init_outputs(model, px, eval_batch)
    n = x.shape[0]
    opt = torch.optim.SGD(model.model.parameters(), lr=lr, momentum=momentum)
    # the kernel at initialisation, from the frozen copy (so a resumed run gets the same one)
    k0 = None if kernel_x is None else tangent_kernel(
        copy.deepcopy(model.init).requires_grad_(True), kernel_x.to(dev))

    def probe(rung: int, step: int, loss: float) -> None:
        model.eval()
        lo, co = _evaluate(model, px, py, h0_probe, eval_batch)
        ladder.record(rung, loss=lo, correct=co)
        rec = {"rung": rung, "level": round(ladder.levels[rung], 6), "train_loss": round(loss, 6),
               "probe_loss": round(float(lo.mean()), 6), "probe_acc": round(float(co.float().mean()), 5)}
        if rung % linearity_every == 0:
            if linearity_x is not None:
                rec["sign_agreement"] = round(relu_sign_agreement(model, linearity_x.to(dev)), 6)
            if k0 is not None:
                rec["kernel_alignment"] = round(kernel_alignment(k0, tangent_kernel(model, kernel_x.to(dev))), 6)
        run.log(step, **rec)
        model.train()

    tracked = {} if ladder is None else {"ladder": ladder}
    state = run.restore(model=model, opt=opt, generator=generator, epoch=0, **tracked)
    step, start_epoch = state["step"], state.get("epoch", 0)
    window: deque[float] = deque(maxlen=math.ceil(n / batch_size))  # the epoch's running loss
    done = False
    with run.progress(epochs, desc=desc, start=start_epoch) as advance:
        for epoch in range(start_epoch + 1, epochs + 1):
            if done:
                break
            model.train()
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size].to(dev)  # the global minibatch
                rows = shard(torch.arange(len(idx), device=dev), dist, even=False)
                mine = idx[rows]
                loss = example_losses(model(x[mine], init_output=h0[mine]), y[mine])[0].mean()
                opt.zero_grad(set_to_none=True)
                model.objective(loss).backward()
                all_reduce_grads(model.model.parameters(), dist, count=len(rows))
                opt.step()
                step += 1
                value = reduce_metrics({"loss": loss.item()}, len(rows), dist)["loss"]
                window.append(value)
                for rung in [] if ladder is None else ladder.update(step, value):
                    probe(rung, step, ladder.running_mean)
            running = sum(window) / len(window)
            run.log(step, epoch=epoch, running_loss=round(running, 6))
            done = stop_when_done and ladder is not None and ladder.done
            if epoch % checkpoint_every == 0 or epoch == epochs or done:
                run.save(step, model=model, opt=opt, generator=generator, epoch=epoch, **tracked)
            advance(1, loss=running)
    return model


@dataclass
class FullBatchResult:
    """What :func:`train_full_batch` returns.

    Attributes
    ----------
    levels : list of float
    steps : (L, K) long tensor
        Step at which network k's training loss first reached ``levels[l]`` (-1: never).
    snapshots : list of dict
        Per level, ``{parameter name: (K, ...) tensor}``: each network's parameters at the step
        it reached the level (its final parameters where it never did).
    final : dict
        ``{parameter name: (K, ...)}`` at the end.
    """

    levels: list[float]
    steps: torch.Tensor
    snapshots: list[dict[str, torch.Tensor]]
    final: dict[str, torch.Tensor]


def _loss_and_dloss(f: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`example_losses`'s loss of ``f`` (K, N, C) and its derivative ``d loss / d f``.

    One output: ``softplus(z)`` with ``z = -s f``, derivative ``-s sigmoid(z)``. ``C >= 2``:
    cross-entropy ``logsumexp(f) - f_y``, derivative ``softmax(f) - onehot(y)``.
    """
    if f.shape[-1] == 1:
        s = (2.0 * y.to(f.dtype) - 1.0).unsqueeze(-1)
        z = -s * f
        return F.softplus(z).squeeze(-1), -s * torch.sigmoid(z)
    logp = torch.log_softmax(f, -1)
    loss = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    grad = logp.exp_()
    grad.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(loss, -1.0).unsqueeze(-1))
    return loss, grad


#: Networks per block of the hand-written step, so that a block's activations stay in cache
#: (400 toy networks: ~5 MB per activation). Measured on a loaded machine (load ~5, one
#: thread), so only roughly: one short benchmark at K = 400 gave 62 ms per step in blocks
#: against 115 ms in one pass, a second one no clear difference; the recipe's first 400 steps
#: (K = 400 -> ~200) took 20.0-22.5 s in blocks of 64 against 22.8-23.2 s in one pass. 100:
#: the toy's 100-seed stacks run in one pass, the 400-network stack in four.
STEP_BLOCK = 100


def _relu_mlp_step(layers: int, *, block: int = STEP_BLOCK):
    """Loss and gradients of a ReLU :class:`~deepscope.nets.batched.BatchedMLP`, written out.

    Returns ``grad(params, x, h0, y, alpha) -> (loss (K,), grads)`` for ``params = [W_1, b_1,
    ...]`` (W: (K, in, out), b: (K, out)) and ``alpha`` (K, 1, 1): the mean loss of each
    network and the gradient of ``sum_k loss_k / alpha_k**2`` (the :meth:`AlphaScaled.objective`
    rule, one alpha per network), computed ``block`` networks at a time. The same products
    autograd takes (``a^T delta`` and ``delta W^T`` per layer, ``threshold_backward`` for the
    ReLU), without building a graph: at K = 100 the toy step is ~25 tensor operations.
    """

    def grad(params: list[torch.Tensor], x: torch.Tensor, h0: torch.Tensor, y: torch.Tensor,
             alpha: torch.Tensor):
        k = x.shape[0]
        if k <= block:
            return one(params, x, h0, y, alpha)
        parts = [one([p[i:i + block] for p in params], x[i:i + block], h0[i:i + block],
                     y[i:i + block], alpha[i:i + block]) for i in range(0, k, block)]
        return (torch.cat([loss for loss, _ in parts]),
                [torch.cat(g) for g in zip(*(grads for _, grads in parts))])

    def one(params: list[torch.Tensor], x: torch.Tensor, h0: torch.Tensor, y: torch.Tensor,
            alpha: torch.Tensor):
        ws, bs = params[0::2], params[1::2]
        # one output (the toy's logistic loss): the last layer's products are matrix-vector
        # products, which elementwise products and sums do ~4x faster than bmm at K = 100
        vec = ws[-1].shape[2] == 1
        acts = [x]
        for i in range(layers - 1):
            acts.append(torch.baddbmm(bs[i].unsqueeze(1), acts[-1], ws[i]).relu_())
        if vec:
            w_row = ws[-1].transpose(1, 2)                                   # (K, 1, H)
            h = torch.linalg.vecdot(acts[-1], w_row).add_(bs[-1]).unsqueeze(-1)
        else:
            h = torch.baddbmm(bs[-1].unsqueeze(1), acts[-1], ws[-1])
        loss, dloss = _loss_and_dloss(alpha * (h - h0), y)
        # d(sum_k mean_n loss / alpha^2) / dh = dloss/df * alpha / (N alpha^2)
        delta = dloss.div_(alpha * y.shape[1])
        grads: list[torch.Tensor] = [None] * (2 * layers)  # type: ignore[list-item]
        for i in range(layers - 1, -1, -1):
            last = vec and i == layers - 1
            if last:
                grads[2 * i] = torch.linalg.vecdot(acts[i], delta, dim=1).unsqueeze(-1)
            else:
                grads[2 * i] = torch.bmm(acts[i].transpose(1, 2), delta)
            grads[2 * i + 1] = delta.sum(1)
            if i:
                back = delta * w_row if last else torch.bmm(delta, ws[i].transpose(1, 2))
                delta = torch.ops.aten.threshold_backward(back, acts[i], 0.0)
        return loss.mean(1), grads

    return grad


def _autograd_step(model: AlphaScaled, names: list[str]):
    """``grad(params, x, h0, y, alpha) -> (loss (K,), grads)`` for any stacked network, by autograd."""
    from torch.func import functional_call

    buffers = dict(model.model.named_buffers())

    def grad(params: list[torch.Tensor], x: torch.Tensor, h0: torch.Tensor, y: torch.Tensor,
             alpha: torch.Tensor):
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_(True) for p in params]
            h = functional_call(model.model, {**dict(zip(names, leaves)), **buffers}, (x,))
            loss = example_losses(alpha * (h - h0), y)[0].mean(-1)
            # the objective rule L / alpha^2, per network
            grads = torch.autograd.grad((loss / alpha.view(-1) ** 2).sum(), leaves)
        return loss.detach(), list(grads)

    return grad


def _step_function(model: AlphaScaled, names: list[str], implementation: str):
    from deepscope.nets.batched import BatchedLinear, BatchedMLP

    net = model.model
    relu_mlp = type(net) is BatchedMLP and net.activation == "relu"
    if implementation == "auto":
        implementation = "manual" if relu_mlp else "autograd"
    if implementation == "autograd":
        return _autograd_step(model, names)
    if not relu_mlp:
        raise ValueError(f"implementation == 'manual' needs a ReLU BatchedMLP, model.model is a "
                         f"{type(net).__name__}; use 'autograd' (or 'auto')")
    order = [f"{i}.{p}" for i, m in enumerate(net) if isinstance(m, BatchedLinear)
             for p in ("weight", "bias")]
    if order != names:
        raise ValueError(f"BatchedMLP parameters are {names}, expected {order}")
    return _relu_mlp_step(len(order) // 2)


def train_full_batch(
    model: AlphaScaled,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    levels: Sequence[float],
    lr: float = 0.1,
    max_steps: int = 20_000,
    run: Run | None = None,
    device: str | torch.device | None = None,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    alpha: torch.Tensor | Sequence[float] | None = None,
    implementation: str = "auto",
    desc: str = "",
) -> FullBatchResult:
    """Full-batch gradient descent of K stacked networks until each reaches every loss level.

    The 2-D toy of arXiv 2209.09658: many seeds of a small network trained by plain gradient
    descent on ``model.objective(L(f_alpha))``; each network's parameters are stored when its
    own training loss first reaches each level. A network stops training once it has reached
    the last level, and finished networks are dropped from the batched computation, so the
    cost follows the slowest seeds only as long as they run.

    Parameters
    ----------
    model : AlphaScaled
        Wrapping a stacked network (:mod:`deepscope.nets.batched`) whose every parameter has
        the number of networks K as its first dimension and which maps (K, N, D) to (K, N, 1)
        or (K, N, C).
    x : (K, N, D) or (N, D) tensor
        Training inputs per network (or shared).
    y : (K, N) or (N,) int tensor
    levels : sequence of float
        Decreasing training losses at which to snapshot (e.g. 0.5, 0.4, 0.3).
    lr : float
        Gradient-descent step on the objective (the paper's toy: 0.1).
    max_steps : int
        Networks that have not reached the last level by then stop there (their ``steps`` stay
        -1 for the levels not reached).
    alpha : (K,) tensor or sequence of float, optional
        One alpha per network, in place of ``model.alpha``: several regimes (and several
        datasets, through ``x``) trained as one stack, e.g. alpha 1 and 100 side by side.
        Network k follows ``f = alpha_k (h - h_0)`` on ``L / alpha_k**2`` exactly as it would
        alone. None: ``model.alpha`` for all.
    implementation : {'auto', 'manual', 'autograd'}
        How each step's gradient is computed. ``'manual'``: the backward pass of a ReLU
        :class:`~deepscope.nets.batched.BatchedMLP` written out with batched matrix products
        (no autograd graph; the cheaper step when few networks are left). ``'autograd'``:
        ``torch.func.functional_call`` and ``torch.autograd.grad``, any stacked network.
        ``'auto'`` (default): ``'manual'`` where it applies. Both are tested equal to float
        rounding, and to K separate runs.

    Returns
    -------
    FullBatchResult
        The networks' ``model.model`` parameters are left at ``final``.
    """
    if not isinstance(model, AlphaScaled):
        raise TypeError(f"model is a {type(model).__name__}, must be an AlphaScaled")
    lv = [float(v) for v in levels]
    if not lv or any(b >= a for a, b in zip(lv, lv[1:])):
        raise ValueError(f"levels == {lv}, must be a non-empty strictly decreasing sequence")
    for name, v in (("max_steps", max_steps), ("checkpoint_every", checkpoint_every),
                    ("log_every", log_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} == {v!r}, must be an integer >= 1")
    if not lr > 0:
        raise ValueError(f"lr == {lr!r}, must be > 0")
    if implementation not in ("auto", "manual", "autograd"):
        raise ValueError(f"implementation == {implementation!r}, must be one of "
                         "['auto', 'manual', 'autograd']")
    run = as_run(run, device)
    dev = run.device
    model.to(dev)
    params = dict(model.model.named_parameters())
    names = list(params)
    k = next(iter(params.values())).shape[0]
    if any(p.shape[0] != k for p in params.values()):
        raise ValueError("model.model is not a stack of networks: every parameter's first "
                         "dimension must be the number of networks K")
    x = (x if x.ndim == 3 else x.unsqueeze(0).expand(k, *x.shape)).to(dev)
    y = (y if y.ndim == 2 else y.unsqueeze(0).expand(k, *y.shape)).to(dev)
    if x.shape[0] != k or y.shape != x.shape[:2]:
        raise ValueError(f"x has shape {tuple(x.shape)} and y {tuple(y.shape)}; need (K, N, D) and "
                         f"(K, N) with K == {k} networks")
    grad = _step_function(model, names, implementation)
    if alpha is None:
        alphas = torch.full((k,), model.alpha)
    else:
        alphas = torch.as_tensor(alpha, dtype=torch.float64).flatten()
        if alphas.shape != (k,) or not bool((alphas > 0).all() & alphas.isfinite().all()):
            raise ValueError(f"alpha has {alphas.numel()} values (min {float(alphas.min()):g}), "
                             f"must be {k} finite numbers > 0: one per network")
    dtype = next(iter(params.values())).dtype
    alphas = alphas.to(device=dev, dtype=dtype).view(k, 1, 1)
    with torch.no_grad():
        h0 = model.init(x)  # fixed inputs: the frozen network's output is computed once

    # state: full-size parameters, crossing steps, snapshots
    full = {n: p.detach().clone() for n, p in params.items()}
    steps = torch.full((len(lv), k), -1, dtype=torch.long)
    snaps = [{n: v.clone() for n, v in full.items()} for _ in lv]
    state = run.restore(full=dict(full), steps=steps, snaps=list(snaps))
    start = state["step"]
    if start:
        full, steps, snaps = state["full"], state["steps"], state["snaps"]
        full = {n: v.to(dev) for n, v in full.items()}
        snaps = [{n: v.to(dev) for n, v in s.items()} for s in snaps]

    # The unfinished networks train as one compact stack: ``cur`` (their parameters), their
    # data and initial outputs; it shrinks when networks finish and is written back to ``full``
    # only then and at checkpoints (no per-step scatter of all parameters).
    active = torch.nonzero(steps[-1] < 0).squeeze(1)        # CPU indices into the K networks
    ia = active.to(dev)
    cur = [full[n][ia].clone() for n in names]
    xa, ya, h0a, aa = x[ia], y[ia], h0[ia], alphas[ia]
    level_col = torch.tensor(lv)[:, None]
    shown = start
    with run.progress(max_steps, desc=desc, start=start) as advance, torch.no_grad():
        for step in range(start + 1, max_steps + 1):
            if active.numel() == 0:
                break
            loss, grads = grad(cur, xa, h0a, ya, aa)                # loss (K_active,)
            lc = loss.cpu()
            # which networks reached which level *before* this update (their loss is now)
            reached = (lc[None, :] <= level_col) & (steps[:, active] < 0)
            finished = None
            if reached.any():
                for li in torch.nonzero(reached.any(1)).squeeze(1).tolist():
                    hit = torch.nonzero(reached[li]).squeeze(1)
                    steps[li, active[hit]] = step - 1
                    hd, gd = hit.to(dev), active[hit].to(dev)
                    for n, v in zip(names, cur):
                        snaps[li][n][gd] = v[hd]
                done_now = steps[-1, active] >= 0
                if done_now.any():
                    finished = done_now
                    # a network that has reached the last level stops where it reached it
                    fd = torch.nonzero(done_now).squeeze(1)
                    for n, v in zip(names, cur):
                        full[n][active[fd].to(dev)] = v[fd.to(dev)]
            torch._foreach_add_(cur, grads, alpha=-lr)
            if finished is not None:
                keep = torch.nonzero(~finished).squeeze(1)
                kd = keep.to(dev)
                active = active[keep]
                cur = [v[kd] for v in cur]
                xa, ya, h0a, aa = xa[kd], ya[kd], h0a[kd], aa[kd]
            if step % log_every == 0:
                run.log(step, mean_loss=round(float(lc.mean()), 6), active=int(active.numel()),
                        reached={f"{lv[i]:g}": int((steps[i] >= 0).sum()) for i in range(len(lv))})
                advance(step - shown)
                shown = step
            if step % checkpoint_every == 0 or step == max_steps or active.numel() == 0:
                for n, v in zip(names, cur):
                    full[n][active.to(dev)] = v
                run.save(step, full=full, steps=steps, snaps=snaps)
        for n, v in zip(names, cur):
            full[n][active.to(dev)] = v
    # networks that never reached a level keep their final parameters in that snapshot
    for li in range(len(lv)):
        never = torch.nonzero(steps[li] < 0).squeeze(1).to(dev)
        for n in full:
            snaps[li][n][never] = full[n][never]
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(full[n])
    return FullBatchResult(lv, steps, snaps, {n: v.clone() for n, v in full.items()})


def snapshot_outputs(model: AlphaScaled, params: Mapping[str, torch.Tensor], x: torch.Tensor, *,
                     batch: int = 512, init_output: torch.Tensor | None = None) -> torch.Tensor:
    """``f_alpha`` of a stacked network at stored parameters (e.g. a :class:`FullBatchResult` snapshot).

    Parameters
    ----------
    model : AlphaScaled
        The stacked model the parameters belong to (its ``init`` gives ``h(theta_0)``).
    params : dict
        ``{name: (K, ...)}`` parameters of ``model.model``.
    x : (G, D) tensor
        Inputs shared by the K networks (a grid).
    batch : int
        Rows of ``x`` per forward pass (512: the K networks' activations stay in cache; 2x
        faster than 4096 for the toy's 100 networks on a 61 x 61 grid).
    init_output : (K, G, out) tensor, optional
        ``model.init(x)``, when several snapshots are read on the same ``x`` (computed here
        when None).

    Returns
    -------
    (K, G, out) tensor
    """
    from torch.func import functional_call

    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            h = functional_call(model.model, dict(params), (xb,))
            h0 = model.init(xb) if init_output is None else init_output[:, i:i + batch]
            outs.append(model.alpha * (h - h0))
    return torch.cat(outs, 1)
