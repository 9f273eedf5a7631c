"""Example difficulty: consistency scores, spurious features, distance to a boundary.

The four ways arXiv 2209.09658 (George, Lajoie & Baratin 2022) splits examples into easy and hard
(the fourth, label noise, is :func:`deepscope.data.noise.symmetric_noise`).

Cookbook::

    import torch
    from deepscope.dynamics.difficulty import (
        sample_toy, distance_to_boundary, spurious_patch, knn_agreement,
        holdout_consistency, quantile_groups, load_cscores,
    )
    from deepscope.data.noise import symmetric_noise
    g = torch.Generator().manual_seed(0)

    # 2-D toys in [-1, 1]^2: the label and the exact distance to the decision boundary
    x, y = sample_toy("yinyang1", 100, generator=g)          # (100, 2), (100,) in {0, 1}
    d = distance_to_boundary(x, "yinyang1")                  # (100,) small = hard
    x5, y5 = sample_toy("disk", 100, generator=g, extra_dims=5)   # (100, 7): 5 irrelevant inputs

    # 15% of each class moved to another class; flipped examples are hard
    noise = symmetric_noise(y_train, 0.15, num_classes=10, generator=g, include_true=False)
    y_noisy, flipped = noise.labels, noise.corrupted

    # a class-coded patch that agrees with the label for 90% of the examples (the majority)
    x_sp, agrees = spurious_patch(x_train, y_train, 10, majority=0.9, size=8, generator=g)

    # consistency score (c-score proxy): held-out probability of the true label over k folds x seeds
    def fit_predict(train_idx, test_idx, seed, fold):     # train on train_idx, score test_idx
        ...
        return p_true                                      # (len(test_idx),) in [0, 1]
    cs = holdout_consistency(len(y_train), fit_predict, folds=4, seeds=3, generator=g)
    cs.score, cs.per_seed, cs.reliability                  # (N,), (S, N), {"pairwise": ...}

    groups = quantile_groups(cs.score, 5)                  # 0: lowest score (hardest) .. 4
    scores, labels = load_cscores("cifar10-cscores-orig-order.npz", n=50_000)   # Jiang et al.

References: c-scores, Jiang, Zhang, Talwar & Mozer 2021 (arXiv 2002.03206).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "TOYS",
    "PAPER_TOYS",
    "DISK_RADIUS",
    "YINYANG1_DOT",
    "YINYANG1_CENTRES",
    "YINYANG_DOT",
    "toy_labels",
    "distance_to_boundary",
    "sample_toy",
    "spurious_patch",
    "knn_agreement",
    "quantile_groups",
    "holdout_splits",
    "holdout_consistency",
    "Consistency",
    "consistency_reliability",
    "load_cscores",
]

#: The 2-D toy datasets (inputs uniform in [-1, 1]^2, labels 0/1). ``disk``, ``yinyang1`` and
#: ``disk_flip_diagonal`` are the toys of the paper (the first two as the authors' code defines
#: them; see :func:`toy_labels`); ``yinyang_scurve`` is ours (an S-curve yin-yang, not the
#: authors').
TOYS = ("disk", "yinyang1", "disk_flip_diagonal", "yinyang_scurve")
#: The toys of the paper (arXiv 2209.09658, Fig. 2 and its appendix).
PAPER_TOYS = ("disk", "yinyang1", "disk_flip_diagonal")
#: Radius of the disk toy's class-1 disk: pi r^2 = 2, half of the square's area.
DISK_RADIUS = math.sqrt(2.0 / math.pi)
#: Radius of the two opposite-class discs of the authors' ``yinyang1``.
YINYANG1_DOT = 0.3
#: Centres of ``yinyang1``'s two discs: class 1 inside the lower-right one, 0 inside the upper-left.
YINYANG1_CENTRES = ((0.5, -0.5), (-0.5, 0.5))
#: Radius of the dots of our S-curve yin-yang (``yinyang_scurve``).
YINYANG_DOT = 0.15


def _check_toy(name: str) -> None:
    if name not in TOYS:
        raise ValueError(f"toy == {name!r}, must be one of {list(TOYS)}")


def _points(x: Any) -> torch.Tensor:
    """The first two coordinates of (N, D >= 2) points (the others are irrelevant inputs)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"x has shape {tuple(t.shape)}, must be (N, D) points with D >= 2 (the "
                         "label depends on the first two coordinates)")
    t = t[:, :2]
    return t if t.is_floating_point() else t.double()


def toy_labels(x: Any, name: str) -> torch.Tensor:
    """Labels (0/1, int64) of points for the toy ``name`` (only the first two coordinates count).

    - ``'disk'``: 1 inside the disk of radius :data:`DISK_RADIUS` around the origin (half of
      the square), as in the authors' code.
    - ``'yinyang1'``: the authors' yin-yang (tfjgeorge/ntk_alignment,
      NTK_alignment_viz_on_toy_datasets.ipynb, ``generate_yinyang_dataset(variant=1)``): 1 where
      the vertical coordinate is > 0, flipped inside the two discs of radius
      :data:`YINYANG1_DOT` centred at (0.5, -0.5) (class 1 there) and (-0.5, 0.5) (class 0).
    - ``'disk_flip_diagonal'``: the disk with its labels flipped above the diagonal ``x2 > x1``.
      **Our definition**: the authors' generator of this toy is not published (their
      ``datasets.py`` is missing from tfjgeorge/lazy_vs_hasty); the name says a disk flipped
      on one side of a diagonal, which is what this is. Each class keeps half of the square.
    - ``'yinyang_scurve'`` (ours, not the authors'): the S-curve made of the right half of the
      circle of radius 1/2 around (0, 1/2) and the left half of the one around (0, -1/2)
      splits the square; class 1 is the left part, and two dots of radius
      :data:`YINYANG_DOT` around (0, +-1/2) take the opposite class.
    """
    _check_toy(name)
    p = _points(x)
    if name == "disk":
        return (p.norm(dim=1) < DISK_RADIUS).long()
    if name == "disk_flip_diagonal":
        return ((p.norm(dim=1) < DISK_RADIUS) ^ (p[:, 1] > p[:, 0])).long()
    if name == "yinyang1":
        c1, c0 = (torch.tensor(c, dtype=p.dtype, device=p.device) for c in YINYANG1_CENTRES)
        cls = (p[:, 1] > 0) ^ ((p - c1).norm(dim=1) < YINYANG1_DOT) ^ ((p - c0).norm(dim=1) < YINYANG1_DOT)
        return cls.long()
    up = torch.tensor([0.0, 0.5], dtype=p.dtype, device=p.device)
    d_up, d_down = (p - up).norm(dim=1), (p + up).norm(dim=1)
    cls = ((p[:, 0] < 0) | (d_up < 0.5)) & ~(d_down < 0.5)
    dot = (d_up < YINYANG_DOT) | (d_down < YINYANG_DOT)
    return (cls ^ dot).long()


def _dist_half_circle(p: torch.Tensor, cy: float, right: bool) -> torch.Tensor:
    """Distance from points to the half (x >= 0 if right, else x <= 0) of the circle |q - (0, cy)| = 1/2."""
    c = torch.tensor([0.0, cy], dtype=p.dtype, device=p.device)
    on_side = p[:, 0] >= 0 if right else p[:, 0] <= 0
    radial = ((p - c).norm(dim=1) - 0.5).abs()
    e1 = (p - (c + torch.tensor([0.0, 0.5], dtype=p.dtype, device=p.device))).norm(dim=1)
    e2 = (p - (c - torch.tensor([0.0, 0.5], dtype=p.dtype, device=p.device))).norm(dim=1)
    return torch.where(on_side, radial, torch.minimum(e1, e2))


def distance_to_boundary(x: Any, name: str) -> torch.Tensor:
    """Exact Euclidean distance, in the plane of the first two coordinates, to the toy's
    decision boundary (see :func:`toy_labels`).

    Parameters
    ----------
    x : (N, D) tensor or array, D >= 2
        Coordinates after the first two (irrelevant inputs) are ignored.
    name : one of :data:`TOYS`

    Returns
    -------
    (N,) tensor
        Small near the boundary (hard examples), large far from it (easy ones).

    Examples
    --------
    >>> distance_to_boundary(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), "disk").round(decimals=4)
    tensor([0.7979, 0.2021])
    """
    _check_toy(name)
    p = _points(x)
    circle = (p.norm(dim=1) - DISK_RADIUS).abs()
    if name == "disk":
        return circle
    if name == "disk_flip_diagonal":  # the circle and the diagonal, all of it a boundary
        return torch.minimum(circle, (p[:, 1] - p[:, 0]).abs() / math.sqrt(2.0))
    if name == "yinyang1":  # the line x2 = 0 and the two circles (they do not meet the line)
        d = p[:, 1].abs()
        for c in YINYANG1_CENTRES:
            cc = torch.tensor(c, dtype=p.dtype, device=p.device)
            d = torch.minimum(d, ((p - cc).norm(dim=1) - YINYANG1_DOT).abs())
        return d
    s_curve = torch.minimum(_dist_half_circle(p, 0.5, True), _dist_half_circle(p, -0.5, False))
    up = torch.tensor([0.0, 0.5], dtype=p.dtype, device=p.device)
    dots = torch.minimum(((p - up).norm(dim=1) - YINYANG_DOT).abs(),
                         ((p + up).norm(dim=1) - YINYANG_DOT).abs())
    return torch.minimum(s_curve, dots)


def sample_toy(name: str, n: int, *, generator: torch.Generator,
               extra_dims: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniform in [-1, 1]^(2 + extra_dims) with their toy labels.

    Returns ``(x (n, 2 + extra_dims) float32, y (n,) int64)``: the label depends on the first
    two coordinates only; the ``extra_dims`` others are irrelevant inputs (the paper's
    ``extra_dims`` 5: a kernel model cannot ignore them, feature learning can).
    """
    _check_toy(name)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n == {n!r}, must be an integer >= 1")
    if isinstance(extra_dims, bool) or not isinstance(extra_dims, int) or extra_dims < 0:
        raise ValueError(f"extra_dims == {extra_dims!r}, must be an integer >= 0 (e.g. 0 or 5)")
    x = torch.rand(n, 2 + extra_dims, generator=generator) * 2 - 1
    return x, toy_labels(x, name)


# --------------------------------------------------------------------------------------
# Spurious features
# --------------------------------------------------------------------------------------
def spurious_patch(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, majority: float = 0.9,
                   size: int = 8, values: tuple[float, float] = (-1.0, 1.0),
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Overwrite a corner patch with a class code that matches the label for a majority group only.

    Each class c gets a random code (entries from ``values``, distinct across classes). For a
    fraction ``majority`` of the examples the patch shows the code of their own label (the
    spurious feature predicts the label); for the rest (the minority) it shows the code of a
    random other class. A network that leans on the easy patch gets the minority wrong: the
    minority group is the hard one (arXiv 2209.09658, spurious-correlation experiments).

    Parameters
    ----------
    x : (N, L), (N, C, L) or (N, C, H, W) tensor
        The patch is the last ``size`` entries of every spatial dimension, in all channels.
    y : (N,) int tensor
    num_classes : int
    majority : float
        In (0, 1]; fraction whose patch agrees with the label.
    size : int
        Patch side (entries per spatial dimension).
    values : (low, high)
        Entries of the codes: (-1, 1) for standardised inputs, (0, 1) for pixels in [0, 1].
    generator : torch.Generator

    Returns
    -------
    x_patched : tensor like ``x`` (a copy)
    agrees : (N,) bool tensor
        True for the majority group.
    """
    if x.ndim not in (2, 3, 4) or x.shape[0] != y.shape[0]:
        raise ValueError(f"x has shape {tuple(x.shape)} and y {tuple(y.shape)}; need x (N, L), "
                         "(N, C, L) or (N, C, H, W) with one label per row")
    spatial = x.shape[-2:] if x.ndim == 4 else x.shape[-1:]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= min(spatial):
        raise ValueError(f"size == {size!r}, must be an integer in 1..{min(spatial)} (the input's "
                         "spatial size)")
    if not 0 < majority <= 1:
        raise ValueError(f"majority == {majority!r}, must be in (0, 1], e.g. 0.9")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes == {num_classes!r}, must be an integer >= 2")
    n = x.shape[0]
    region = (slice(None),) * (x.ndim - len(spatial)) + (slice(-size, None),) * len(spatial)
    shape = x[region].shape[1:]
    lo, hi = float(values[0]), float(values[1])
    p = math.prod(shape)
    if p < 63 and 2**p < num_classes:
        raise ValueError(f"size == {size} gives {2**p} codes, fewer than the {num_classes} classes; "
                         "use a larger size")
    if p <= 20:  # draw distinct codes directly: distinct integers, written in binary
        ints = torch.randperm(2**p, generator=generator)[:num_classes]
        bits = (ints[:, None] >> torch.arange(p)) & 1
    else:
        while True:  # collisions have probability < C^2 / 2^21
            bits = torch.randint(0, 2, (num_classes, p), generator=generator)
            if len({tuple(b.tolist()) for b in bits}) == num_classes:
                break
    bits = bits.reshape(num_classes, *shape)
    codes = (lo + (hi - lo) * bits.to(x.dtype)).to(x.device)
    agrees = torch.rand(n, generator=generator) < majority
    other = (y.cpu().long() + torch.randint(1, num_classes, (n,), generator=generator)) % num_classes
    shown = torch.where(agrees, y.cpu().long(), other)
    out = x.clone()
    out[region] = codes[shown.to(x.device)]
    return out, agrees.to(x.device)


# --------------------------------------------------------------------------------------
# Data-only difficulty and grouping
# --------------------------------------------------------------------------------------
def knn_agreement(x: torch.Tensor, y: torch.Tensor, *, k: int = 10, chunk: int = 1024) -> torch.Tensor:
    """Fraction of each example's ``k`` nearest neighbours (Euclidean, itself excluded) sharing its label.

    A data-only proxy for the distance to the decision boundary on real inputs: deep inside a
    class region all neighbours agree (1.0); near a boundary, or for a mislabelled example, few do.

    Parameters
    ----------
    x : (N, ...) tensor (flattened), y : (N,) int tensor
    k : int
        Neighbours, 1..N-1.

    Returns
    -------
    (N,) float tensor in [0, 1]
    """
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"k == {k!r}, must be an integer in 1..{n - 1}")
    flat = x.reshape(n, -1).double()
    out = torch.empty(n, dtype=torch.float64)
    for i in range(0, n, chunk):
        d = torch.cdist(flat[i:i + chunk], flat)
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = math.inf
        nb = d.topk(k, largest=False).indices
        out[i:i + chunk] = (y[nb] == y[i:i + chunk, None]).double().mean(1).cpu()
    return out


def quantile_groups(score: Any, n_groups: int) -> np.ndarray:
    """Split examples into ``n_groups`` groups of (nearly) equal size by rank of ``score``.

    Returns an (N,) int array: 0 holds the lowest scores, ``n_groups - 1`` the highest. Ties are
    broken by position, so the sizes differ by at most one.
    """
    s = np.asarray(score.cpu() if isinstance(score, torch.Tensor) else score, dtype=float)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise ValueError(f"score has shape {s.shape}, must be (N,) finite values")
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or not 1 <= n_groups <= s.size:
        raise ValueError(f"n_groups == {n_groups!r}, must be an integer in 1..N == {s.size}")
    ranks = np.empty(s.size, dtype=int)
    ranks[np.argsort(s, kind="stable")] = np.arange(s.size)
    return ranks * n_groups // s.size


# --------------------------------------------------------------------------------------
# Consistency score by hold-out training
# --------------------------------------------------------------------------------------
def holdout_splits(n: int, *, folds: int, seeds: int,
                   generator: torch.Generator) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """``(seed, fold, train_idx, test_idx)`` for every fold of every seed's random k-fold split.

    Each seed draws its own permutation, so each example is held out exactly once per seed,
    by a model trained on a different ``(folds - 1) / folds`` of the data.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n == {n!r}, must be an integer >= 2")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n:
        raise ValueError(f"folds == {folds!r}, must be an integer in 2..{n}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds == {seeds!r}, must be an integer >= 1")
    out = []
    for s in range(seeds):
        perm = torch.randperm(n, generator=generator)
        parts = perm.tensor_split(folds)
        for f in range(folds):
            train = torch.cat([p for i, p in enumerate(parts) if i != f]).sort().values
            out.append((s, f, train, parts[f].sort().values))
    return out


@dataclass
class Consistency:
    """A consistency score and its run-to-run reliability (see :func:`holdout_consistency`).

    Attributes
    ----------
    score : (N,) array
        Mean over seeds of the held-out score: high = consistently learned = easy.
    per_seed : (S, N) array
        One held-out score per example and seed.
    reliability : dict
        :func:`consistency_reliability` of ``per_seed``.
    """

    score: np.ndarray
    per_seed: np.ndarray
    reliability: dict


def consistency_reliability(per_seed: Any) -> dict:
    """How reproducible a consistency score is across independent repetitions.

    Parameters
    ----------
    per_seed : (S, N) array
        One score per example from each of S independent hold-out repetitions (S >= 2).

    Returns
    -------
    dict
        ``pairwise``: mean Spearman correlation between two single repetitions (the reliability
        of one); ``split_half``: Spearman correlation between the means of the even- and the
        odd-numbered repetitions; ``spearman_brown``: ``2 r / (1 + r)`` of the split-half r, the
        estimated reliability of the mean of all S; ``n_seeds``.
    """
    from scipy.stats import spearmanr

    a = np.asarray(per_seed, dtype=float)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"per_seed has shape {a.shape}, must be (S, N) with S >= 2 repetitions")

    def rho(u: np.ndarray, v: np.ndarray) -> float:
        if np.ptp(u) == 0 or np.ptp(v) == 0:
            return float("nan")
        return float(spearmanr(u, v).statistic)

    pairs = [rho(a[i], a[j]) for i in range(a.shape[0]) for j in range(i + 1, a.shape[0])]
    r = rho(a[0::2].mean(0), a[1::2].mean(0))
    return {"pairwise": float(np.nanmean(pairs)) if not np.all(np.isnan(pairs)) else float("nan"),
            "split_half": r, "spearman_brown": 2 * r / (1 + r) if r == r and r > -1 else float("nan"),
            "n_seeds": int(a.shape[0])}


def holdout_consistency(n: int, fit_predict: Callable[[torch.Tensor, torch.Tensor, int, int], Any], *,
                        folds: int = 4, seeds: int = 3, generator: torch.Generator) -> Consistency:
    """A c-score proxy: each example's held-out score, averaged over ``seeds`` random k-fold splits.

    Jiang et al. (2021) define the consistency score of an example as the expected accuracy on
    it of models trained on random subsets that exclude it. Here the subsets are the
    ``folds - 1`` other folds of a random split, repeated ``seeds`` times; ``fit_predict``
    returns a score per held-out example (the probability of its label, or 0/1 correctness).

    Parameters
    ----------
    n : int
        Number of examples.
    fit_predict : callable
        ``fit_predict(train_idx, test_idx, seed, fold) -> (len(test_idx),)`` scores in [0, 1].
        It trains a fresh model on ``train_idx`` (seed it from ``(seed, fold)``).
    folds, seeds : int
        ``folds * seeds`` trainings in all.
    generator : torch.Generator
        Draws the splits.

    Returns
    -------
    Consistency
        With its reliability across seeds (needs ``seeds >= 2``; NaNs for one seed).
    """
    per_seed = np.full((seeds, n), np.nan)
    for s, f, train, test in holdout_splits(n, folds=folds, seeds=seeds, generator=generator):
        p = np.asarray(torch.as_tensor(fit_predict(train, test, s, f)).detach().cpu(), dtype=float)
        if p.shape != (len(test),) or not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f"fit_predict returned shape {p.shape} (range {np.nanmin(p) if p.size else 0:.3g}"
                             f"..{np.nanmax(p) if p.size else 0:.3g}), must be ({len(test)},) in [0, 1]")
        per_seed[s, test.numpy()] = p
    rel = consistency_reliability(per_seed) if seeds >= 2 else {
        "pairwise": float("nan"), "split_half": float("nan"), "spearman_brown": float("nan"),
        "n_seeds": 1}
    return Consistency(per_seed.mean(0), per_seed, rel)


# --------------------------------------------------------------------------------------
# Precomputed c-scores (Jiang et al. 2021)
# --------------------------------------------------------------------------------------
def load_cscores(path: str | os.PathLike, *, n: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Load precomputed consistency scores, e.g. Jiang et al.'s ``cifar10-cscores-orig-order.npz``.

    Parameters
    ----------
    path : path
        ``.npz`` with an array ``scores`` (and optionally ``labels``) in the dataset's original
        training order, or a ``.npy`` holding the scores alone.
    n : int, optional
        Required length (50,000 for CIFAR-10's training set).

    Returns
    -------
    scores : (N,) float array in [0, 1]
    labels : (N,) int array or None
        Stored labels, to check against the dataset's (a file for another order or dataset).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"cscores == '{p}' is not a file; pass the .npz of Jiang et al.'s "
                         "c-scores (arrays 'scores' and 'labels') or a .npy of scores")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cscores == '{p}' is not a readable .npz/.npy file ({e}); pass the file "
                         "of Jiang et al.'s c-scores") from None
    labels = None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.keys())
            if "scores" not in keys:
                raise ValueError(f"cscores == '{p}' holds arrays {keys}; need one named 'scores' "
                                 "(and optionally 'labels')")
            scores = np.asarray(data["scores"], dtype=float)
            labels = np.asarray(data["labels"]) if "labels" in keys else None
    else:
        scores = np.asarray(data, dtype=float)
    if scores.ndim != 1 or not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
        raise ValueError(f"cscores == '{p}' has scores of shape {scores.shape}; need one finite "
                         "score in [0, 1] per training example")
    if n is not None and scores.shape[0] != n:
        raise ValueError(f"cscores == '{p}' has {scores.shape[0]} scores, must have {n} (one per "
                         "training example, original order)")
    if labels is not None and labels.shape != scores.shape:
        raise ValueError(f"cscores == '{p}' has {labels.shape} labels for {scores.shape} scores")
    return scores, labels
