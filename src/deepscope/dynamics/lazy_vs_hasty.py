"""The lazy-vs-hasty experiment: which examples feature learning and lazy training learn first.

George, Lajoie & Baratin, "Lazy vs hasty: linearization in deep networks impacts learning
schedule based on example difficulty", TMLR 2022 (arXiv 2209.09658). Each network is forked from
one initialisation into ``f_alpha = alpha (h(theta) - h(theta_0))``
(:class:`~deepscope.dynamics.alpha_scaling.AlphaScaled`), and the regimes are compared at matched
training loss on the ladder ``ln(C) 0.96^k`` (:mod:`deepscope.dynamics.ladder`).

- :func:`compare_toys`: the 2-D toys as the authors' code runs them (disk, yinyang1,
  disk_flip_diagonal, each with 0 and 5 irrelevant input dimensions; 100 points, 100 runs per
  alpha), every run and alpha trained as one stack by full-batch gradient descent
  (:func:`~deepscope.dynamics.full_batch.train_full_batch`); the mean map of
  ``loss(alpha_min) - loss(alpha_max)`` on a grid at each training-loss level, judged by
  :func:`mean_map_statistics` (near-vs-far contrast and Spearman with the distance to the
  boundary, intervals from resampling runs).
- :func:`compare_real`: real data (:func:`load_real`: MNIST-1D or CIFAR-10), minibatch SGD per
  condition, alpha and seed (:func:`~deepscope.dynamics.alpha_training.train_alpha`), the
  difficulty groupings (c-score, label noise, spurious patch, kNN boundary proxy) and
  ``Delta = gap(alpha_min) - gap(alpha_max)`` per grouping.

Cookbook::

    from deepscope.dynamics.lazy_vs_hasty import compare_real, compare_toys, load_real
    from deepscope.train import Run
    from deepscope.train.loop import TrainOptions

    toys = compare_toys(Run("runs/toy", seed=0), seeds=8, levels=(0.65, 0.6), grid=21)
    toys.result["disk"]["extra5"]["0.6"]["contrast"]     # near - far of the mean Delta map
    toys.result["disk"]["extra0"]["0.6"]["holds"]        # contrast > 0, interval above 0

    data = load_real("mnist1d", n=600, seed=0, channels=8)
    res = compare_real(Run("runs/m", seed=0), data, seeds=2, min_loss=1.0,
                       options=TrainOptions(epochs=3, batch_size=32, lr=0.1, momentum=0.9))
    res.result["delta"]["noise"]                         # Delta over seeds, 95% interval

Sub-runs: ``toy/batched`` (the stack's training) and ``toy/<toy>/extra<e>/alpha<a>`` (grid
losses, training curves);
``<condition>/alpha<a>/seed<k>`` (one network each, through ``run.grid``) and
``cscore/seed<s>/fold<f>`` (the hold-out models of the consistency score).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepscope.train.loop import TrainOptions
from deepscope.train.rng import fork_seeded, make_generator
from deepscope.train.stats import summarise

__all__ = [
    "toy_setup", "toy_grid", "compare_toys", "ToyComparison", "mean_map_statistics", "load_real", "RealData", "compare_real",
    "RealComparison", "CONDITION", "GROUP_NAMES", "CIFAR_TRAIN", "REAL_DEFAULTS",
]

#: CIFAR-10: the first 40k training images train (all have c-scores), the other 10k are held out.
CIFAR_TRAIN = 40_000
#: compare_real's training defaults (the paper's CIFAR-10 protocol but lr 0.1, see
#: docs/lazy_vs_hasty.md): SGD with momentum 0.9, batch 125, a constant rate, at most 200 epochs.
REAL_DEFAULTS = TrainOptions(epochs=200, batch_size=125, lr=0.1, momentum=0.9, weight_decay=0.0,
                             optimizer="sgd", schedule="constant", checkpoint_every=1)
#: Which training condition each difficulty measure is read from.
CONDITION = {"cscore": "clean", "boundary": "clean", "noise": "noise", "spurious": "spurious"}
#: The two groups of the binary measures (easy first).
GROUP_NAMES = {"noise": ("clean labels", "noisy labels"),
               "spurious": ("majority (patch agrees)", "minority (patch misleads)")}


class _Finished:
    """The parent run's record of sub-runs trained: a metrics line and a checkpoint each, so
    that result.json's "seconds" counts the wall time of every invocation of a resumed run."""

    def __init__(self, run):
        self.run = run
        self.step = run.restore()["step"]

    def __call__(self, name: str) -> None:
        self.step += 1
        self.run.log(self.step, finished=name)
        self.run.save(self.step)


# ----------------------------------------------------------------------------------------------
# The 2-D toys
# ----------------------------------------------------------------------------------------------
def toy_setup(name: str, seeds: int, *, points: int, hidden: Sequence[int], base_seed: int = 0,
              extra_dims: int = 0):
    """Per run: training points ``(K, N, 2 + extra_dims)``, labels ``(K, N)`` and the initial MLPs.

    Run ``k`` draws its points from ``(base_seed, 'toy-<name>-data-<k>')`` and its MLP
    ``(2 + extra_dims) - hidden - 1`` from ``(base_seed, 'toy-init-<k>')`` (with ``extra_dims``
    > 0: ``'toy-<name>-extra<e>-data-<k>'`` and ``'toy-init-extra<e>-<k>'``); the toys share
    the initialisations. Both regimes of run ``k`` start from the same network and data.
    """
    from deepscope.dynamics.difficulty import sample_toy
    from deepscope.nets import MLP

    tag = f"-extra{extra_dims}" if extra_dims else ""
    xs, ys, nets = [], [], []
    for k in range(seeds):
        x, y = sample_toy(name, points, extra_dims=extra_dims,
                          generator=make_generator(base_seed, f"toy-{name}{tag}-data-{k}"))
        xs.append(x)
        ys.append(y)
        with fork_seeded(make_generator(base_seed, f"toy-init{tag}-{k}")):
            nets.append(MLP(2 + extra_dims, list(hidden), 1))
    return torch.stack(xs), torch.stack(ys), nets


def _pad_input(net: torch.nn.Module, dim: int) -> torch.nn.Module:
    """A copy of an MLP whose first layer takes ``dim`` inputs, the added columns zero: on
    inputs padded with zeros it computes, and trains, exactly as the original (the added
    weights see zero inputs, so their gradient is zero)."""
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    if first.in_features == dim:
        return net
    out = copy.deepcopy(net)
    lin = next(m for m in out.modules() if isinstance(m, torch.nn.Linear))
    w = torch.zeros(lin.out_features, dim, dtype=lin.weight.dtype)
    w[:, :lin.in_features] = lin.weight.detach()
    lin.weight = torch.nn.Parameter(w)
    lin.in_features = dim
    return out


def _pad(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x if x.shape[-1] == dim else torch.cat(
        [x, x.new_zeros(*x.shape[:-1], dim - x.shape[-1])], -1)


def _rowwise_corr(rows, v, *, rank: bool):
    """Pearson (or, ``rank=True``, Spearman with average ranks) of each row of ``rows`` (S, G)
    with ``v`` (G,): what ``scipy.stats.pearsonr`` / ``spearmanr`` give row by row, at once."""
    from scipy.stats import rankdata

    a = rankdata(rows, axis=1) if rank else np.asarray(rows, dtype=np.float64)
    b = rankdata(v) if rank else np.asarray(v, dtype=np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a @ b) / (np.sqrt((a * a).sum(1)) * np.sqrt((b * b).sum()))


def mean_map_statistics(delta: Any, distance: Any, *, bands: int = 5, resamples: int = 1000,
                        seed: int | Sequence[int] = 0) -> dict:
    """The paper's statistic: the mean Delta map over runs against the distance to the boundary.

    Parameters
    ----------
    delta : (K, G) array
        Per run, ``loss(alpha=1) - loss(alpha=100)`` at G grid points (one run: one seed's
        network in both regimes at the same training loss).
    distance : (G,) array
        Distance of each grid point to the decision boundary.
    bands : int
        Distance bands (quantiles of ``distance`` over the grid): the contrast compares the
        nearest band with the farthest.
    resamples : int
        Bootstrap resamples of the K runs (with replacement) for the 95% intervals.
    seed : int or sequence of int
        Seeds ``numpy.random.default_rng`` for the resampling.

    Returns
    -------
    dict
        ``contrast`` = mean Delta in the nearest band minus the farthest band of the mean map,
        ``near``, ``far``, ``spearman`` (rank correlation of the mean map with the distance;
        the paper's effect makes it < 0), each of ``contrast`` and ``spearman`` with
        ``*_ci95`` (2.5 and 97.5 percentiles over resampled runs), ``n_runs``, ``bands``,
        ``resamples`` and ``holds``: contrast > 0 with its interval above 0 (Delta larger
        near the boundary than far from it, the paper's claim).

    Examples
    --------
    >>> d = np.linspace(0, 1, 50)
    >>> runs = 0.1 - 0.2 * d + np.zeros((4, 1))     # four identical runs: Delta falls with d
    >>> st = mean_map_statistics(runs, d, resamples=20)
    >>> round(st["spearman"], 6), st["holds"]
    (-1.0, True)
    """
    delta = np.asarray(delta, dtype=np.float64)
    dist = np.asarray(distance, dtype=np.float64)
    if delta.ndim != 2 or dist.ndim != 1 or delta.shape[1] != dist.shape[0] or delta.shape[0] < 1:
        raise ValueError(f"delta has shape {delta.shape} and distance {dist.shape}; need (K, G) "
                         "and (G,) with K >= 1 runs")
    if isinstance(bands, bool) or not isinstance(bands, int) or not 2 <= bands <= dist.size:
        raise ValueError(f"bands == {bands!r}, must be an integer in 2..{dist.size}, e.g. 5")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples == {resamples!r}, must be an integer >= 1, e.g. 1000")
    near = dist <= np.quantile(dist, 1 / bands)
    far = dist >= np.quantile(dist, 1 - 1 / bands)
    k = delta.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(resamples, k))
    weights = np.zeros((resamples, k))
    np.add.at(weights, (np.repeat(np.arange(resamples), k), idx.ravel()), 1.0 / k)
    maps = np.vstack([delta.mean(0), weights @ delta])           # (1 + B, G)
    contrast = maps[:, near].mean(1) - maps[:, far].mean(1)
    rho = _rowwise_corr(maps, dist, rank=True)
    ci = lambda v: [float(np.nanpercentile(v[1:], 2.5)), float(np.nanpercentile(v[1:], 97.5))]  # noqa: E731
    out = {"contrast": float(contrast[0]), "contrast_ci95": ci(contrast),
           "near": float(maps[0, near].mean()), "far": float(maps[0, far].mean()),
           "spearman": float(rho[0]), "spearman_ci95": ci(rho),
           "n_runs": int(k), "bands": bands, "resamples": resamples}
    out["holds"] = bool(k >= 2 and out["contrast"] > 0 and out["contrast_ci95"][0] > 0)
    return out


def _record_steps(max_steps: int, points: int = 200) -> list[int]:
    """Log-spaced steps 0..max_steps at which every run's training loss is kept (the figure)."""
    return sorted({0, *np.unique(np.round(np.logspace(0, np.log10(max_steps), points))).astype(int).tolist()})


def _key(name: str, extra: int) -> str:
    return f"{name}/extra{extra}"


def _train_toys(run, done, data: dict, grids: dict, *, datasets, alphas, seeds, levels, lr,
                max_steps, checkpoint_every, config: dict) -> dict:
    """Every (dataset, alpha) pair's runs as ONE stack (per-network alpha and data): one
    training sub-run ``toy/batched``, then each pair's grid losses and training curves in
    ``toy/<name>/extra<e>/alpha<a>``.

    Datasets with fewer input dimensions are padded with zero inputs (and zero first-layer
    columns, :func:`_pad_input`), which changes nothing they compute. One stack instead of
    one per pair: the slow lazy runs of all datasets share their last thousands of steps (the
    tail where few networks are left and a step is mostly overhead), and each step's products
    are larger. Each network still trains exactly as it would alone (tested in
    tests/dynamics/test_full_batch.py).
    """
    from deepscope.dynamics.alpha_scaling import AlphaScaled
    from deepscope.dynamics.difficulty import toy_labels
    from deepscope.dynamics.full_batch import snapshot_outputs, train_full_batch
    from deepscope.dynamics.ladder import example_losses
    from deepscope.nets.batched import BatchedMLP

    pairs = [(ds, a) for ds in datasets for a in alphas]
    subs = {(ds, a): run.child(f"toy/{_key(*ds)}/alpha{a:g}",
                               config={**config, "toy": ds[0], "extra_dims": ds[1], "alpha": a})
            for ds, a in pairs}
    if all(sub.finished for sub in subs.values()):
        return subs
    k = seeds
    dim = 2 + max(e for _, e in datasets)
    nets = {ds: [_pad_input(n, dim) for n in data[ds][2]] for ds in datasets}
    x = torch.cat([_pad(data[ds][0], dim) for ds, _ in pairs])
    y = torch.cat([data[ds][1] for ds, _ in pairs])
    alpha = [a for _, a in pairs for _ in range(k)]
    model = AlphaScaled(BatchedMLP.stack([n for ds, _ in pairs for n in nets[ds]]), 1.0)
    train = run.child("toy/batched", config={**config, "pairs": [[*ds, a] for ds, a in pairs]})
    res = train_full_batch(model, x, y, levels=levels, lr=lr, alpha=alpha, max_steps=max_steps,
                           run=train, checkpoint_every=checkpoint_every,
                           record_steps=_record_steps(max_steps),
                           desc=f"toy: {len(pairs)} x {k} networks")
    if not train.finished:  # seconds: the training's wall time, across resumes
        train.write_result({"steps": res.steps.tolist(),
                            "seconds": round(time.time() - train.started, 3)})
    for j, (ds, a) in enumerate(pairs):
        sub = subs[ds, a]
        if sub.finished:
            continue
        part = slice(j * k, (j + 1) * k)
        pair = AlphaScaled(BatchedMLP.stack(nets[ds]), a)  # this pair's initial networks
        grid = _pad(grids[ds[1]], dim)
        with torch.no_grad():  # h(theta_0) on the grid, shared by the levels; in cache-sized chunks
            h0_grid = torch.cat([pair.init(grid[i:i + 512]) for i in range(0, len(grid), 512)], 1)
        grid_losses = torch.stack([
            example_losses(snapshot_outputs(pair, {n: v[part].cpu() for n, v in snap.items()},
                                            grid, init_output=h0_grid, batch=512),
                           toy_labels(grid, ds[0]))[0]
            for snap in res.snapshots])      # (L, K, G)
        steps = res.steps[:, part]
        sub.save_file("grid_losses.pt", {"losses": grid_losses, "steps": steps,
                                         "record_steps": res.record_steps,
                                         "loss_history": res.loss_history[part]})
        sub.write_result({"steps": steps.tolist(), "reached": [int((r >= 0).sum()) for r in steps]})
        done(f"toy/{_key(*ds)}/alpha{a:g}")
    return subs


@dataclass
class ToyComparison:
    """What :func:`compare_toys` returns.

    Attributes
    ----------
    result : dict
        ``result[toy][f"extra{e}"][f"{level:g}"]``: ``n_runs`` (runs that reached the level in
        both regimes), ``reached`` per alpha, ``median_steps`` per alpha, and where
        ``n_runs >= 1`` :func:`mean_map_statistics` of the Delta map (the paper's statistic:
        ``contrast``, ``spearman``, their intervals over resampled runs, ``holds``), and
        ``per_seed_spearman`` (each run's own map's Spearman with the distance, summarised
        over runs: a secondary number, not the paper's; see docs/lazy_vs_hasty.md).
    maps : dict
        ``maps[(toy, e)] = [(level, (G,) mean Delta map or None), ...]`` on the grid.
    curves : dict
        ``curves[(toy, e)] = (record_steps (R,), {alpha: (K, R) training losses})``.
    examples : dict
        ``examples[(toy, e)] = (x (N, 2 + e), y (N,))``: run 0's training set (the figure).
    """

    result: dict
    maps: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)


def toy_grid(grid: int, extra_dims: int = 0, *, seed: int = 0) -> torch.Tensor:
    """The ``grid x grid`` points of the Delta maps on [-1, 1]^2, x varying fastest; with
    ``extra_dims`` > 0 each point also gets irrelevant coordinates uniform in [-1, 1] (one
    draw from ``(seed, 'toy-grid-extra<e>')``, shared by all runs: the test points are drawn
    as the training points are)."""
    side = torch.linspace(-1, 1, grid)
    pts = torch.cartesian_prod(side, side).flip(1)
    if extra_dims:
        g = make_generator(seed, f"toy-grid-extra{extra_dims}")
        pts = torch.cat([pts, torch.rand(len(pts), extra_dims, generator=g) * 2 - 1], 1)
    return pts


def compare_toys(run, *, toys: Sequence[str] = ("disk", "yinyang1", "disk_flip_diagonal"),
                 extra_dims: Sequence[int] = (0, 5), alphas: Sequence[float] = (1.0, 100.0),
                 seeds: int = 100, points: int = 100, hidden: Sequence[int] = (60, 60, 60),
                 levels: Sequence[float] = (0.5, 0.4, 0.3), lr: float = 0.1,
                 max_steps: int = 25_000, grid: int = 61, bands: int = 5, resamples: int = 1000,
                 checkpoint_every: int = 2500) -> ToyComparison:
    """The 2-D toys of arXiv 2209.09658 as the authors' code runs them: Delta loss maps at
    matched training loss, judged on the mean map over runs.

    Parameters
    ----------
    run : Run
        Its ``seed`` seeds the data and the networks; sub-runs as in the module docstring.
    toys : sequence of names from :data:`deepscope.dynamics.difficulty.TOYS`
    extra_dims : sequence of int
        Irrelevant input dimensions, uniform in [-1, 1], added to every toy (the paper: 0 and 5).
    alphas : sequence of float
        Delta compares the smallest with the largest.
    seeds : int
        Runs per toy and alpha (one dataset and initialisation each; the paper: 100).
    points : int
        Training points per run (the authors' generator: 100).
    hidden : sequence of int
        Hidden widths of the MLP (the paper: 60, 60, 60).
    levels : sequence of float
        Decreasing training losses at which the maps are taken (the paper: 0.5, 0.4, 0.3).
    lr, max_steps : float, int
        Full-batch gradient descent (the paper: lr 0.1, at most 25,000 iterations).
    grid : int
        Grid points per side of the maps.
    bands, resamples : int
        Of :func:`mean_map_statistics`.
    checkpoint_every : int
        Steps between checkpoints of the stacked training (changes nothing it computes).
    """
    from deepscope.dynamics.difficulty import distance_to_boundary

    alphas = sorted(alphas)
    a_lo, a_hi = alphas[0], alphas[-1]
    datasets = [(name, int(e)) for name in toys for e in extra_dims]
    config = {"toys": list(toys), "extra_dims": [int(e) for e in extra_dims], "alphas": alphas,
              "seeds": seeds, "points": points, "hidden": list(hidden), "levels": list(levels),
              "lr": lr, "max_steps": max_steps, "grid": grid}
    grids = {e: toy_grid(grid, e, seed=run.seed) for e in {e for _, e in datasets}}
    data = {ds: toy_setup(ds[0], seeds, points=points, hidden=hidden, base_seed=run.seed,
                          extra_dims=ds[1]) for ds in datasets}
    subs = _train_toys(run, _Finished(run), data, grids, datasets=datasets, alphas=alphas,
                       seeds=seeds, levels=list(levels), lr=lr, max_steps=max_steps,
                       checkpoint_every=checkpoint_every, config=config)
    out = ToyComparison(result={})
    for di, ds in enumerate(datasets):
        name, e = ds
        dist = distance_to_boundary(grids[e], name).numpy()
        losses, reached, steps, hist = {}, {}, {}, {}
        for a in alphas:
            blob = torch.load(subs[ds, a].dir / "grid_losses.pt", weights_only=True)
            losses[a], steps[a] = blob["losses"].numpy(), blob["steps"].numpy()
            reached[a] = steps[a] >= 0
            hist[a] = blob["loss_history"].numpy()
            rec = blob["record_steps"].numpy()
        out.curves[ds] = (rec, hist)
        out.examples[ds] = (data[ds][0][0], data[ds][1][0])
        per_level = {}
        out.maps[ds] = []
        for li, lv in enumerate(levels):
            ok = reached[a_lo][li] & reached[a_hi][li]          # runs that reached it in both
            delta = losses[a_lo][li][ok] - losses[a_hi][li][ok]  # (k, G)
            entry = {"n_runs": int(ok.sum()),
                     "reached": {f"{a:g}": int(reached[a][li].sum()) for a in alphas},
                     "median_steps": {f"{a:g}": float(np.median(steps[a][li][reached[a][li]]))
                                      if reached[a][li].any() else None for a in alphas}}
            if ok.sum() >= 1:
                mean = delta.mean(0)
                out.maps[ds].append((lv, mean))
                entry.update(mean_map_statistics(delta, dist, bands=bands, resamples=resamples,
                                                 seed=[run.seed, di, li]))
                entry["per_seed_spearman"] = summarise(_rowwise_corr(delta, dist, rank=True))
            else:
                out.maps[ds].append((lv, None))
            per_level[f"{lv:g}"] = entry
        out.result.setdefault(name, {})[f"extra{e}"] = per_level
    return out


# ----------------------------------------------------------------------------------------------
# Real data: MNIST-1D and CIFAR-10
# ----------------------------------------------------------------------------------------------
@dataclass
class RealData:
    """Training and held-out data of :func:`compare_real`, and how to build its network.

    Attributes
    ----------
    x_raw, y : (N, ...) tensor, (N,) int tensor
        Training inputs before ``prep`` (the spurious patch is drawn on them), labels.
    xt_raw, yt : held-out inputs (before ``prep``) and labels.
    build : callable
        ``build() -> nn.Module``, a new network (call it inside ``fork_seeded``).
    patch_values : (float, float)
        The entries of the spurious patch's codes, in ``x_raw``'s units.
    prep : callable
        ``prep(x_raw) -> x``, the standardisation the network sees.
    num_classes : int
    """

    x_raw: torch.Tensor
    y: torch.Tensor
    xt_raw: torch.Tensor
    yt: torch.Tensor
    build: Callable[[], torch.nn.Module]
    patch_values: tuple[float, float]
    prep: Callable[[torch.Tensor], torch.Tensor]
    num_classes: int = 10


def _load_cifar(data_root):
    from deepscope.data import load_dataset

    return load_dataset("cifar10", data_root=data_root)


def load_real(mode: str, *, n: int = 5000, seed: int = 0, data_root: str | None = None,
              channels: int = 25, width: int = 64) -> RealData:
    """The data and network of a real-data mode.

    ``'mnist1d'``: ``n`` MNIST-1D examples (80% train) from ``seed``, a 1-D CNN with
    ``channels`` channels. ``'cifar10'``: the first :data:`CIFAR_TRAIN` training images train,
    the other 10k are held out, standardised per channel; a ResNet-18 of ``width`` without
    normalisation layers (the paper's setting).
    """
    from deepscope.nets import build_net

    if mode == "mnist1d":
        from deepscope.data import load_dataset

        ds = load_dataset("mnist1d", n=n, seed=seed)

        def build_cnn():
            return build_net("cnn1d", input_shape=(40,), num_classes=10, channels=channels)

        return RealData(ds.x_train, ds.y_train, ds.x_test, ds.y_test, build_cnn, (-1.0, 1.0),
                        lambda v: v)
    if mode != "cifar10":
        raise ValueError(f"mode == {mode!r}, must be 'mnist1d' or 'cifar10'")
    ds = _load_cifar(data_root)
    x, y = ds.x_train[:CIFAR_TRAIN], ds.y_train[:CIFAR_TRAIN]
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)

    def build_resnet():
        return build_net("resnet18", input_shape=tuple(x.shape[1:]), num_classes=10, norm="none",
                         width=width)

    # the patch is drawn on raw pixels (values 0/1), then everything is standardised
    return RealData(x, y, ds.x_train[CIFAR_TRAIN:], ds.y_train[CIFAR_TRAIN:], build_resnet,
                    (0.0, 1.0), lambda v: (v - mean) / std)


@dataclass
class RealComparison:
    """What :func:`compare_real` returns.

    Attributes
    ----------
    result : dict
        ``n_train``, ``n_probe``, ``lr`` (the SGD step per alpha), ``levels`` (the ladder); per
        measure ``delta`` (Delta over seeds with ``per_seed``, ``shared_rungs``,
        ``lowest_shared_level`` and ``per_rung``: per seed, gap(alpha_min) - gap(alpha_max) at
        each shared rung, whose mean is that seed's Delta), ``delta_matched_loss`` (the same
        comparison at matched actual mean training loss,
        :func:`~deepscope.dynamics.ladder.matched_loss_delta`, with ``per_seed`` and
        ``levels_compared``), ``spearman`` and ``spearman_full_ladder``
        (difficulty vs learning time per alpha), ``groups`` (group names); per condition and
        alpha ``conditions`` (test accuracy, rungs, linearity at the end); ``cscore_source`` or
        ``cscore_reliability`` when the c-score was used.
    curves : dict
        For the figures: per measure and alpha, per seed ``(overall loss (R,), group losses
        (R, G))``; per measure and ``("times", alpha)``, per seed ``(learning times, groups)``.
    """

    result: dict
    curves: dict = field(default_factory=dict)


def _final_linearity(model, lin_x, ker_x) -> dict:
    """Sign agreement and kernel alignment with initialisation of the trained model."""
    from deepscope.dynamics.alignment import cka
    from deepscope.dynamics.alpha_scaling import relu_sign_agreement, tangent_kernel

    out = {"final_sign_agreement": relu_sign_agreement(model, lin_x), "final_kernel_alignment": None}
    if ker_x is not None:
        k0 = tangent_kernel(copy.deepcopy(model.init).requires_grad_(True), ker_x)
        out["final_kernel_alignment"] = float(cka(k0, tangent_kernel(model, ker_x), centered=False))
    return out


def _cscores(run, done, data: RealData, x: torch.Tensor, *, options: TrainOptions,
             cscores: str | Path | None, folds: int, repeats: int, epochs: int, config: dict):
    """``(scores (N,), extra result entries)``: from a file, or by hold-out training."""
    from deepscope.dynamics.alpha_scaling import AlphaScaled
    from deepscope.dynamics.alpha_training import train_alpha
    from deepscope.dynamics.difficulty import holdout_consistency, load_cscores

    y, n = data.y, x.shape[0]
    if cscores is not None:
        cs, lab = load_cscores(cscores)  # 50,000 scores: checked by the recipe's Config
        if lab is not None and not np.array_equal(lab[:n], y.numpy()):
            raise ValueError(f"cscores == '{cscores}' has labels that differ from CIFAR-10's "
                             "training labels; pass the file in the original training order")
        return cs[:n], {"cscore_source": str(cscores)}

    def fit_predict(train_idx, test_idx, seed, fold):
        sub = run.child(f"cscore/seed{seed}/fold{fold}", config={**config, "seed": seed, "fold": fold})
        if not sub.finished:
            with fork_seeded(make_generator(run.seed, f"cscore-init-{seed}-{fold}")):
                model = AlphaScaled(data.build(), 1.0)
            train_alpha(model, x[train_idx], y[train_idx], options=options.replace(epochs=epochs),
                        generator=make_generator(run.seed, f"cscore-order-{seed}-{fold}"),
                        run=sub, desc=sub.dir.name)
            with torch.no_grad():
                model.eval()
                logits = torch.cat([model(x[test_idx][i:i + 1000].to(sub.device)).cpu()
                                    for i in range(0, len(test_idx), 1000)])
            p = logits.softmax(1)[torch.arange(len(test_idx)), y[test_idx]]
            sub.write_result({"p_true": p.tolist()})
            done(f"cscore/seed{seed}/fold{fold}")
        return torch.tensor(sub.read_result()["p_true"])

    c = holdout_consistency(n, fit_predict, folds=folds, seeds=repeats,
                            generator=make_generator(run.seed, "cscore-splits"))
    return c.score, {"cscore_reliability": c.reliability}


def _options_config(options: TrainOptions) -> dict:
    """The set fields of ``options``, as a sub-run's config records them."""
    return {k: v for k, v in vars(options).items() if v is not None}


def _train_cell(sub, model, xs, ys, *, data: RealData, probe, levels, options: TrainOptions,
                order: torch.Generator, lin_x, ker_x, linearity_every: int) -> dict:
    """One (condition, alpha, seed) network on the ladder: its result, its ladder in ladder.pt."""
    from deepscope.dynamics.alpha_training import train_alpha
    from deepscope.dynamics.ladder import LossLadder, example_losses

    dev = sub.device
    ladder = LossLadder(levels, window=-(-xs.shape[0] // options.batch_size))
    res = train_alpha(model, xs, ys, options=options, generator=order, ladder=ladder, run=sub,
                      probe_x=xs[probe], probe_y=ys[probe], linearity_x=lin_x,
                      kernel_x=ker_x if len(ker_x) else None, linearity_every=linearity_every,
                      desc=sub.dir.name)
    xt, yt = data.prep(data.xt_raw), data.yt
    model.eval()
    with torch.no_grad():
        lo, co = [], []
        for i in range(0, len(xt), 1000):
            ll, cc = example_losses(model(xt[i:i + 1000].to(dev)), yt[i:i + 1000].to(dev))
            lo.append(ll.cpu())
            co.append(cc.cpu())
    probes = [r for r in res.history if "sign_agreement" in r or "kernel_alignment" in r]
    final = _final_linearity(model, lin_x.to(dev), ker_x.to(dev) if len(ker_x) else None)
    records = {  # no rung crossed: empty (0, probes) records
        "loss": ladder.stack("loss") if ladder.next_ else torch.zeros(0, len(probe)),
        "correct": ladder.stack("correct") if ladder.next_
        else torch.zeros(0, len(probe), dtype=torch.bool)}
    sub.save_file("ladder.pt", records)
    return records, {
        "rungs": ladder.next_, "lowest_level": ladder.levels[ladder.next_ - 1] if ladder.next_ else None,
        "epochs": max([r["epoch"] for r in res.history if "epoch" in r] or [0]),
        "test_loss": float(torch.cat(lo).mean()), "test_acc": float(torch.cat(co).float().mean()),
        **final,
        "sign_agreement": [r.get("sign_agreement") for r in probes],
        "kernel_alignment": [r.get("kernel_alignment") for r in probes],
        "probe_rungs": [r["rung"] for r in probes],
    }


def compare_real(run, data: RealData, *, alphas: Sequence[float] = (1.0, 100.0), seeds: int = 3,
                 measures: Sequence[str] = ("cscore", "noise", "spurious", "boundary"),
                 options: TrainOptions | Mapping[str, Any] | None = None,
                 lr_per_alpha: Mapping[float, float] | None = None,
                 ratio: float = 0.96, min_loss: float = 0.05, groups: int = 5,
                 noise_fraction: float = 0.15, spurious_majority: float = 0.9, patch_size: int = 4,
                 cscores: str | Path | None = None, cscore_folds: int = 4, cscore_seeds: int = 3,
                 cscore_epochs: int = 20, knn: int = 10, probe_size: int = 0,
                 sign_probe: int = 256, kernel_probe: int = 64,
                 linearity_every: int = 5) -> RealComparison:
    """Lazy vs feature learning on real data, per difficulty grouping (arXiv 2209.09658).

    Per seed ``k`` one initial network (from ``(run.seed, 'init-<k>')``) is trained at every
    alpha under each condition the measures need: ``clean`` (c-score, boundary), ``noise``
    (a ``noise_fraction`` of each class moved to another class; the flipped examples are hard)
    and ``spurious`` (a class-coded patch agreeing with the label for a ``spurious_majority``;
    the minority is hard). The c-score is read from ``cscores`` or estimated by hold-out
    training (``cscore_folds`` folds x ``cscore_seeds`` repetitions of ``cscore_epochs``
    epochs); the boundary proxy is the kNN label agreement (``knn`` neighbours). The
    continuous measures are cut into ``groups`` quantile groups.

    Parameters
    ----------
    run : Run
        Its ``seed`` seeds everything; sub-runs as in the module docstring.
    data : RealData
        From :func:`load_real` (or the user's own).
    options : TrainOptions or dict, optional
        SGD for every network (``epochs`` is a cap: a run stops when its ladder is done);
        unset fields take :data:`REAL_DEFAULTS`.
    lr_per_alpha : dict of float -> float, optional
        SGD step of the networks of the alphas it names (e.g. ``{100.0: 10.0}``: a larger step
        that takes the lazy network down the ladder, the regimes being compared at matched
        training loss, not matched time); the other alphas, and the hold-out c-score models,
        train at ``options.lr``. The rate used per alpha is ``result["lr"]``.
    ratio, min_loss : float
        The ladder ``ln(C) ratio^k`` down to ``min_loss``.
    probe_size : int
        Training examples recorded at each rung (a fixed random subset); 0: all.
    sign_probe, kernel_probe, linearity_every : int
        Examples of the ReLU-sign and tangent-kernel probes, and how often (in rungs) they run.

    Returns
    -------
    RealComparison
    """
    from deepscope.data.noise import symmetric_noise
    from deepscope.dynamics.alpha_scaling import AlphaScaled
    from deepscope.dynamics.difficulty import knn_agreement, quantile_groups, spurious_patch
    from deepscope.dynamics.ladder import (
        group_gap,
        ladder_levels,
        learning_time_spearman,
        learning_times,
        matched_loss_delta,
        regime_delta,
    )

    alphas = sorted(alphas)
    options = TrainOptions.resolve(options, REAL_DEFAULTS)
    lr_per_alpha = {float(a): float(v) for a, v in (lr_per_alpha or {}).items()}
    unknown = sorted(set(lr_per_alpha) - set(alphas))
    if unknown or any(not v > 0 for v in lr_per_alpha.values()):
        raise ValueError(f"lr_per_alpha == {lr_per_alpha}, must map some of alphas {alphas} to "
                         "rates > 0, e.g. {100.0: 10.0}")
    alpha_options = {a: options.replace(lr=lr_per_alpha.get(a, options.lr)) for a in alphas}
    done = _Finished(run)
    dev = run.device
    x = data.prep(data.x_raw)
    y = data.y
    n = x.shape[0]
    probe = (torch.arange(n) if not probe_size or probe_size >= n else
             torch.randperm(n, generator=make_generator(run.seed, "probe"))[:probe_size].sort().values)
    levels = ladder_levels(data.num_classes, ratio=ratio,
                           min_loss=min(min_loss, np.log(data.num_classes)))
    lin_x, ker_x = x[:sign_probe], x[:kernel_probe]
    config = {"alphas": alphas, "seeds": seeds, "measures": list(measures),
              "options": _options_config(options),
              "ratio": ratio, "min_loss": min_loss, "noise_fraction": noise_fraction,
              "spurious_majority": spurious_majority, "patch_size": patch_size,
              "cscore_folds": cscore_folds, "cscore_seeds": cscore_seeds,
              "cscore_epochs": cscore_epochs, "probe_size": probe_size, "sign_probe": sign_probe,
              "kernel_probe": kernel_probe, "linearity_every": linearity_every}

    # ---- difficulty scores that do not depend on the seed: c-score, kNN agreement ----
    scores = {}
    out = {"n_train": n, "n_probe": int(len(probe)), "lr": {f"{a:g}": alpha_options[a].lr for a in alphas},
           "levels": levels}
    if "cscore" in measures:
        scores["cscore"], extra = _cscores(run, done, data, x, options=options, cscores=cscores,
                                           folds=cscore_folds, repeats=cscore_seeds,
                                           epochs=cscore_epochs, config=config)
        out.update(extra)
    if "boundary" in measures:
        scores["boundary"] = knn_agreement(x.to(dev), y.to(dev), k=knn).cpu().numpy()

    # ---- training runs: per condition, alpha and seed, from one initialisation per seed ----
    conditions = sorted({CONDITION[m] for m in measures}, key=["clean", "noise", "spurious"].index)

    @lru_cache(maxsize=1)
    def condition_data(cond: str, k: int):
        """``(inputs, labels, hard (N,) bool or None)`` of condition ``cond`` for seed ``k``."""
        if cond == "noise":
            noise = symmetric_noise(y, noise_fraction, num_classes=data.num_classes,
                                    generator=make_generator(run.seed, f"noise-{k}"),
                                    include_true=False)
            return x, noise.labels, noise.corrupted.numpy()
        if cond == "spurious":
            xp, agrees = spurious_patch(data.x_raw, y, data.num_classes, majority=spurious_majority,
                                        size=patch_size, values=data.patch_values,
                                        generator=make_generator(run.seed, f"spurious-{k}"))
            return data.prep(xp), y, (~agrees).numpy()
        return x, y, None

    def cell(sub, setting, k):
        cond, a = setting[0], float(setting[1][len("alpha"):])
        xs, ys, _ = condition_data(cond, k)
        with fork_seeded(make_generator(run.seed, f"init-{k}")):
            model = AlphaScaled(data.build(), a)  # the same initial network for every alpha
        ladders[setting, k], result = _train_cell(sub, model, xs, ys, data=data, probe=probe, levels=levels,
                             options=alpha_options[a], order=make_generator(run.seed, f"order-{k}"),
                             lin_x=lin_x, ker_x=ker_x, linearity_every=linearity_every)
        done(f"{cond}/alpha{a:g}/seed{k}")
        return result

    settings = [(cond, f"alpha{a:g}") for cond in conditions for a in alphas]
    ladders = {}  # the ladders trained now; finished sub-runs' are read from their ladder.pt
    grid = run.grid(settings, range(seeds), cell,
                    config=lambda s, k: {**config, "condition": s[0], "alpha": s[1], "seed_index": k,
                                         "options": _options_config(alpha_options[float(s[1][5:])])})
    records = {}  # (condition, alpha, seed) -> dict
    for cond in conditions:
        for a in alphas:
            for k in range(seeds):
                key = ((cond, f"alpha{a:g}"), k)
                blob = ladders.get(key) or torch.load(
                    run.dir / cond / f"alpha{a:g}" / f"seed{k}" / "ladder.pt", weights_only=True)
                records[cond, a, k] = {**grid.cells[key],
                                       "loss": blob["loss"].numpy(), "correct": blob["correct"].numpy()}
    masks = {(cond, k): condition_data(cond, k)[2] for cond in conditions if cond != "clean"
             for k in range(seeds)}

    # ---- analysis: per measure, groups, Delta, learning-time correlations ----
    a_lo, a_hi = alphas[0], alphas[-1]
    out["delta"], out["spearman"], out["spearman_full_ladder"], out["groups"] = {}, {}, {}, {}
    out["delta_matched_loss"] = {}
    curves: dict = {}
    for m in measures:
        cond = CONDITION[m]
        deltas, rungs, per_rung, matched, matched_levels = [], [], [], [], []
        rho, rho_full = {a: [] for a in alphas}, {a: [] for a in alphas}
        curves[m] = {}
        for k in range(seeds):
            if m in scores:  # continuous: high score = easy; group 0 = easiest
                sc = np.asarray(scores[m])[probe.numpy()]
                g = groups - 1 - quantile_groups(sc, groups)
                difficulty = -sc
            else:
                hard = masks[cond, k][probe.numpy()]
                g, difficulty = hard.astype(int), hard.astype(float)
            n_groups = int(g.max()) + 1
            hard_m, easy_m = g == n_groups - 1, g == 0
            d, r = regime_delta(records[cond, a_lo, k]["loss"], records[cond, a_hi, k]["loss"], hard_m, easy_m)
            deltas.append(d)
            rungs.append(r)
            dm, nm = matched_loss_delta(records[cond, a_lo, k]["loss"], records[cond, a_hi, k]["loss"],
                                        hard_m, easy_m, levels)
            matched.append(dm)
            matched_levels.append(nm)
            per_rung.append((group_gap(records[cond, a_lo, k]["loss"][:r], hard_m, easy_m)
                             - group_gap(records[cond, a_hi, k]["loss"][:r], hard_m, easy_m)).tolist()
                            if r else [])
            # learning times on the rungs every alpha reached (matched training loss), and on
            # each alpha's own full ladder (a shorter ladder caps more examples at "not learned")
            shared = min(len(records[cond, a, k]["correct"]) for a in alphas)
            for a in alphas:
                rec = records[cond, a, k]
                if shared:
                    rho[a].append(learning_time_spearman(difficulty, learning_times(rec["correct"][:shared])))
                if len(rec["correct"]):
                    rho_full[a].append(learning_time_spearman(difficulty, learning_times(rec["correct"])))
                curves[m].setdefault(a, []).append(
                    (rec["loss"].mean(1), np.stack([rec["loss"][:, g == j].mean(1) for j in range(n_groups)], 1))
                    if len(rec["loss"]) else None)
                curves[m].setdefault(("times", a), []).append(
                    (learning_times(rec["correct"][:shared]) if shared else None, g))
        ok = [d for d in deltas if d == d]
        out["delta"][m] = {**(summarise(ok) if ok else {"mean": None, "n": 0}),
                           "per_seed": deltas, "shared_rungs": rungs, "per_rung": per_rung,
                           "lowest_shared_level": levels[min(rungs) - 1] if min(rungs) else None}
        ok = [d for d in matched if d == d]
        out["delta_matched_loss"][m] = {**(summarise(ok) if ok else {"mean": None, "n": 0}),
                                        "per_seed": matched, "levels_compared": matched_levels}
        out["spearman"][m] = {f"{a:g}": summarise(v) if v else None for a, v in rho.items()}
        out["spearman_full_ladder"][m] = {f"{a:g}": summarise(v) if v else None for a, v in rho_full.items()}
        out["groups"][m] = (list(GROUP_NAMES[m]) if m in GROUP_NAMES else
                            [f"quantile {j + 1} of {groups} ({'easiest' if j == 0 else 'hardest' if j == groups - 1 else ''})".replace(" ()", "")
                             for j in range(groups)])
    out["conditions"] = {}
    for cond in conditions:
        out["conditions"][cond] = {}
        for a in alphas:
            recs = [records[cond, a, k] for k in range(seeds)]
            out["conditions"][cond][f"{a:g}"] = {
                "test_acc": summarise([r["test_acc"] for r in recs]),
                "rungs_reached": [r["rungs"] for r in recs],
                "lowest_level": [r["lowest_level"] for r in recs],
                "epochs": [r["epochs"] for r in recs],
                "final_sign_agreement": [r["final_sign_agreement"] for r in recs],
                "final_kernel_alignment": [r["final_kernel_alignment"] for r in recs],
            }
    return RealComparison(out, curves)
