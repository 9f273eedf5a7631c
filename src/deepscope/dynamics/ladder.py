"""The loss ladder: compare training regimes at matched training loss, example by example.

George, Lajoie & Baratin, "Lazy vs hasty: linearization in deep networks impacts learning
schedule based on example difficulty", TMLR 2022 (arXiv 2209.09658), section 3: the regimes are
compared **at matched training loss**, not at matched steps. Each rung ``ln(C) 0.96^k`` of the
ladder stores every probe example's loss and correctness when the running mean training loss
first reaches it; :func:`group_gap` compares a hard and an easy group rung by rung, and
:func:`learning_times` reads when each example was learned.

Cookbook::

    import torch
    from deepscope.dynamics.ladder import (
        LossLadder, example_losses, ladder_levels, learning_times, regime_delta,
    )

    out, y = torch.randn(256, 10), torch.randint(10, (256,))
    loss, correct = example_losses(out, y)                  # (256,), (256,) per example
    ladder = LossLadder(ladder_levels(10), window=8)        # rungs ln(10) * 0.96^k
    for rung in ladder.update(step=1, loss=2.2):
        ladder.record(rung, loss=loss, correct=correct)
    t = learning_times(ladder.stack("correct"))            # (N,) rung index, inf: not learned
    # regime_delta(losses_alpha1, losses_alpha100, hard, easy) -> (Delta, shared rungs)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "example_losses", "ladder_levels", "LossLadder", "learning_times", "group_gap",
    "regime_delta", "matched_loss_delta", "learning_time_spearman",
]


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


def matched_loss_delta(losses_a: Any, losses_b: Any, hard: Any, easy: Any,
                       levels: Sequence[float]) -> tuple[float, int]:
    """``gap_a - gap_b`` at matched *actual* mean loss, averaged over ``levels`` both cover.

    :func:`regime_delta` pairs the regimes rung by rung. A rung fires when the running mean
    training loss (over the last epoch of minibatches) reaches it; where the loss falls fast,
    that mean lags and the network recorded at a rung has a lower mean loss than the rung.
    Here each regime's gap is read against its own mean loss over the recorded examples (the
    x-axis of the paper's figures), interpolated linearly onto the ``levels`` inside the range
    of mean losses both regimes recorded, and the differences are averaged.

    Parameters
    ----------
    losses_a, losses_b : (Ra, N), (Rb, N) tensors or arrays
        Per-example losses at each record of the two regimes (``a``: alpha = 1).
    hard, easy : (N,) bool masks
    levels : sequence of float
        Mean losses at which the gaps are compared (the ladder's levels).

    Returns
    -------
    delta : float
        NaN when no level lies in both ranges.
    levels_compared : int

    Examples
    --------
    >>> lo = np.array([[2.0, 2.0], [1.0, 0.0]])      # a: gap 0 at mean 2, gap 1 at mean 0.5
    >>> hi = np.array([[2.0, 2.0], [1.5, 0.5]])      # b: gap 0 at mean 2, gap 1 at mean 1
    >>> d, n = matched_loss_delta(lo, hi, np.array([True, False]), np.array([False, True]), [1.5, 1.0])
    >>> round(d, 4), n                                # at 1.5: 1/3 - 1/2; at 1.0: 2/3 - 1
    (-0.25, 2)
    """
    fns = []
    for losses in (losses_a, losses_b):
        lo = np.asarray(losses.cpu() if isinstance(losses, torch.Tensor) else losses, dtype=float)
        if len(lo) == 0:
            return float("nan"), 0
        mean = lo.mean(1)
        order = np.argsort(mean)
        fns.append((mean[order], group_gap(lo, hard, easy)[order]))
    top = min(f[0][-1] for f in fns)
    bottom = max(f[0][0] for f in fns)
    grid = np.asarray([v for v in levels if bottom * (1 - 1e-9) <= v <= top * (1 + 1e-9)], dtype=float)
    if not len(grid):
        return float("nan"), 0
    return float(np.mean(np.interp(grid, *fns[0]) - np.interp(grid, *fns[1]))), len(grid)


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
