"""Lazy vs hasty: which examples feature learning (alpha 1) and lazy training (alpha 100) learn first (arXiv 2209.09658).

    deepscope run lazy-vs-hasty --threads 1                               # 2-D toys, 100 runs per alpha
    deepscope run lazy-vs-hasty --mode mnist1d --threads 1                # CPU scale, 3 seeds
    deepscope run lazy-vs-hasty --mode toy+mnist1d --seeds 2 ...          # both (reproduce --scale quick)
    deepscope run lazy-vs-hasty --mode cifar10 --data-root ~/data \\
        --cscores cifar10-cscores-orig-order.npz --device cuda            # the paper's setting
    deepscope run lazy-vs-hasty --quick                                   # seconds

Each network is forked from one initialisation into f_alpha = alpha (h(theta) - h(theta_0)),
trained on L / alpha^2 (deepscope.dynamics.alpha_scaling.AlphaScaled), and the regimes are compared at
matched training loss on the ladder ln(C) 0.96^k. Per difficulty measure, result.json gives
Delta = gap(alpha_min) - gap(alpha_max), gap = mean loss of the hardest group minus the easiest
group's, averaged over the rungs both regimes reach, with a 95% interval over seeds (Delta > 0 is
the paper's effect), and the Spearman correlation of difficulty with learning time per alpha.

Modes: ``toy`` (the authors' toys: disk, yinyang1, disk_flip_diagonal, each with 0 and 5
irrelevant input dimensions; 100 points, MLP 2-60-60-60-1, full-batch GD lr 0.1, logistic loss,
100 runs per alpha trained as one batched model, at most 25,000 steps; the mean map over runs of
Delta loss = loss(alpha 1) - loss(alpha 100) at training losses 0.5/0.4/0.3, judged by its
near-vs-far contrast with the distance to the boundary), ``mnist1d`` (1-D CNN, the four difficulty groupings: c-score by hold-out training,
15% label noise, a spurious patch, kNN label agreement as the boundary proxy), ``cifar10``
(ResNet-18 without normalisation, first 40k training images / other 10k held out, batch 125,
SGD lr 0.01 momentum 0.9; c-scores from --cscores), ``toy+mnist1d`` (both, one verdict).
``--lazy-lr`` gives the alpha > 1 runs of the real-data modes their own SGD step (a deviation
from the paper's one rate: a larger lazy step takes alpha = 100 further down the ladder, and on
MNIST-1D also changes its Delta, see docs/lazy_vs_hasty.md). result.json also gives Delta at
matched actual training loss (``delta_matched_loss``; the rungs fire on a running mean that lags).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

from deepscope.recipes import Reproduce, System
from deepscope.train.config import RunConfig, require

PAPER = (
    "George, Lajoie & Baratin 2022 (TMLR, arXiv 2209.09658): at equal training loss, feature "
    "learning (alpha = 1) has lower loss than lazy training (alpha = 100) on easy examples and "
    "higher on hard ones, for c-score, label-noise and spurious-feature groupings (CIFAR-10 "
    "ResNet-18) and for distance to the boundary (2-D toys): Delta > 0 here. The paper gives "
    "curves, no single number to compare with."
)

MEASURES = ("cscore", "noise", "spurious", "boundary")

DEFAULTS = {  # per mode: (seeds, epochs, lr, cscore_epochs, kernel_probe); toy+mnist1d: the toy's lr is toy_lr
    "toy": (0, 0, 0.1, 0, 0),
    "toy+mnist1d": (3, 200, 0.1, 20, 64),
    "mnist1d": (3, 200, 0.1, 20, 64),
    "cifar10": (2, 200, 0.01, 30, 16),
}
QUICK_SIZES = {  # --quick: per mode
    "toy": {"toy_runs": 10, "toy_levels": (0.65, 0.6), "toy_max_steps": 800, "toy_grid": 21,
            "toy_points": 50, "toy_resamples": 200},
    "mnist1d": {"seeds": 2, "n": 600, "epochs": 3, "batch_size": 32, "cscore_epochs": 1,
                "cscore_folds": 2, "cscore_seeds": 2, "kernel_probe": 8, "sign_probe": 32,
                "channels": 8, "min_loss": 1.0, "linearity_every": 2},
    "toy+mnist1d": {},  # filled below: both presets
    "cifar10": {"seeds": 2, "epochs": 1, "batch_size": 32, "cscore_epochs": 1, "cscore_folds": 2,
                "cscore_seeds": 2, "kernel_probe": 4, "sign_probe": 8, "width": 4, "probe_size": 64,
                "min_loss": 1.5, "linearity_every": 2},
}
QUICK_SIZES["toy+mnist1d"] = {**QUICK_SIZES["mnist1d"], **QUICK_SIZES["toy"],
                              "toys": ("disk",), "toy_extra_dims": (0,)}

#: ``deepscope reproduce lazy --scale quick``: the toy as the paper runs it but with 25 runs per
#: alpha instead of 100 (the lazy runs need thousands of full-batch steps each: 100 runs cost
#: ~4x as much), and a reduced MNIST-1D grid: the three measures that reproduce at CPU scale
#: (c-score, label noise, spurious patch), 2 seeds, a shorter hold-out c-score, an epoch cap.
QUICK_PLAN = ("--mode", "toy+mnist1d", "--toy-runs", "25", "--seeds", "2",
              "--measures", "cscore", "noise", "spurious", "--epochs", "40",
              "--cscore-folds", "2", "--cscore-seeds", "2", "--cscore-epochs", "10",
              "--min-loss", "0.3", "--sign-probe", "64", "--kernel-probe", "16")


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("lazy", "Lazy vs hasty", order=4)
REPRODUCE = Reproduce(
    smoke=("--quick",),
    quick=QUICK_PLAN,
    paper=("--mode", "cifar10"),
    paper_needs_data_root=True,
)

@dataclass(frozen=True)
class Config(RunConfig):
    """Lazy (alpha >> 1) vs feature-learning (alpha = 1) training, compared per example difficulty."""

    mode: Literal["toy", "mnist1d", "cifar10", "toy+mnist1d"] = "toy"
    """'toy' (the 2-D toys), 'mnist1d' (CPU scale), 'cifar10' (paper scale, a GPU), 'toy+mnist1d' (both, one verdict)."""

    alphas: tuple[float, ...] = (1.0, 100.0)
    """Values of alpha; Delta compares the smallest with the largest (paper: 1 and 100)."""

    seeds: int = 0
    """Seeds (initialisations) of the real-data modes; 0: the mode's default (mnist1d 3, cifar10 2)."""

    toys: tuple[Literal["disk", "yinyang1", "disk_flip_diagonal", "yinyang_scurve"], ...] = (
        "disk", "yinyang1", "disk_flip_diagonal")
    """Toy datasets: the paper's disk, yinyang1 and disk_flip_diagonal (ours: the authors' generator is unpublished); yinyang_scurve is ours, not in the verdict."""

    toy_extra_dims: tuple[int, ...] = (0, 5)
    """Irrelevant input dimensions (uniform in [-1, 1]) added to every toy (paper: 0 and 5)."""

    toy_runs: int = 100
    """Runs per toy and alpha, one dataset and initialisation each (paper: 100)."""

    toy_points: int = 100
    """Training points per toy and run (the authors' generator: 100, whatever its n_train says)."""

    toy_lr: float = 0.1
    """Gradient-descent step of the toy (paper: 0.1)."""

    toy_resamples: int = 1000
    """Bootstrap resamples of the runs for the intervals of the mean-map statistics."""

    toy_hidden: tuple[int, ...] = (60, 60, 60)
    """Hidden widths of the toy MLP (paper: 2-60-60-60-1)."""

    toy_levels: tuple[float, ...] = (0.5, 0.4, 0.3)
    """Training losses at which the toy's Delta-loss map is taken (paper: 0.5, 0.4, 0.3)."""

    toy_max_steps: int = 25_000
    """Gradient-descent steps after which a toy network that has not reached the last level stops."""

    toy_grid: int = 61
    """Grid points per side of the toy's Delta-loss map."""

    measures: tuple[Literal["cscore", "noise", "spurious", "boundary"], ...] = MEASURES
    """Difficulty groupings (modes mnist1d, cifar10): consistency score, label noise, spurious patch, kNN boundary proxy."""

    n: int = 5000
    """MNIST-1D examples generated (80% train, 20% test)."""

    epochs: int = 0
    """Epoch cap per training run; 0: mode default (mnist1d 200, cifar10 200). A run stops when the ladder is done."""

    batch_size: int = 125
    """Minibatch size (paper: 125)."""

    lr: float = 0.0
    """Learning rate; 0: mode default (toy 0.1 and cifar10 0.01 as in the paper; mnist1d 0.1, see docs)."""

    lazy_lr: float = 0.0
    """SGD step of the alpha > 1 runs on real data (mnist1d, cifar10); 0: the same as --lr (the paper: one rate for both)."""

    momentum: float = 0.9
    """SGD momentum (paper: 0.9; the toy uses plain gradient descent)."""

    ratio: float = 0.96
    """Ladder ratio: rungs at ln(C) * ratio^k (paper: 0.96)."""

    min_loss: float = 0.05
    """Lowest rung of the ladder; training stops once the running loss reaches it."""

    groups: int = 5
    """Quantile groups for the continuous measures (c-score, boundary); hardest vs easiest give the gap."""

    noise_fraction: float = 0.15
    """Fraction of training labels moved to another class (paper: 15%)."""

    spurious_majority: float = 0.9
    """Fraction of examples whose spurious patch shows their own class."""

    patch_size: int = 4
    """Side of the spurious patch (entries per spatial dimension, all channels)."""

    cscore_folds: int = 4
    """Folds of the hold-out consistency score (each model trains on (k-1)/k of the data)."""

    cscore_seeds: int = 3
    """Repetitions of the k-fold hold-out (their agreement is the score's reliability)."""

    cscore_epochs: int = 0
    """Epochs of each hold-out model; 0: mode default (mnist1d 20, cifar10 30)."""

    cscores: Path | None = None
    """CIFAR-10 c-scores of Jiang et al. 2021 (.npz with 'scores' [and 'labels'], 50,000, original order); else hold-out."""

    knn: int = 10
    """Neighbours of the kNN label agreement (the boundary proxy on real data)."""

    channels: int = 25
    """Channels of the MNIST-1D CNN (paper's CNN: 25)."""

    width: int = 64
    """Width of the CIFAR ResNet-18 (64: the standard network)."""

    probe_size: int = 0
    """Training examples recorded at each rung (a fixed random subset); 0: all."""

    sign_probe: int = 256
    """Examples for the ReLU sign-agreement probe."""

    kernel_probe: int = 0
    """Examples for the tangent-kernel alignment probe; 0: mode default (mnist1d 64, cifar10 16)."""

    linearity_every: int = 5
    """Run the two linearity probes every this many rungs."""

    data_root: str | None = None
    """Folder with the CIFAR-10 files (cifar-10-batches-py), mode cifar10."""

    QUICK: ClassVar[dict] = {}  # --quick sizes depend on the mode: QUICK_SIZES, see with_preset

    def with_preset(self) -> Config:
        """The config with the ``--quick`` sizes of its mode applied (a ``replace`` preset)."""
        return replace(self, **QUICK_SIZES[self.mode]) if self.quick else self

    def validate(self) -> None:
        super().validate()
        require(len(self.alphas) >= 2 and len(set(self.alphas)) == len(self.alphas)
                and all(a > 0 for a in self.alphas), "alphas", self.alphas,
                "at least two distinct values > 0, e.g. (1, 100)")
        for name in ("seeds", "epochs", "cscore_epochs", "lr"):  # 0 picks the mode's default
            value = getattr(self, name)
            require(value >= 0, name, value, ">= 0 (0: the mode's default)")
        require(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        require(0 < self.ratio < 1, "ratio", self.ratio, "in (0, 1), e.g. 0.96")
        require(self.min_loss > 0, "min_loss", self.min_loss, "> 0")
        require(len(self.toys) >= 1 and len(set(self.toys)) == len(self.toys), "toys", self.toys,
                "one or more distinct of 'disk', 'yinyang1', 'disk_flip_diagonal', 'yinyang_scurve'")
        require(len(self.toy_extra_dims) >= 1 and all(e >= 0 for e in self.toy_extra_dims)
                and len(set(self.toy_extra_dims)) == len(self.toy_extra_dims), "toy_extra_dims",
                self.toy_extra_dims, "distinct integers >= 0, e.g. 0 5")
        require(self.toy_runs >= 2, "toy_runs", self.toy_runs, ">= 2 (the intervals resample runs)")
        require(self.toy_lr > 0, "toy_lr", self.toy_lr, "> 0, e.g. 0.1")
        require(self.toy_resamples >= 10, "toy_resamples", self.toy_resamples, ">= 10, e.g. 1000")
        require(self.toy_points >= 2, "toy_points", self.toy_points, ">= 2")
        require(len(self.toy_hidden) >= 1 and all(h >= 1 for h in self.toy_hidden), "toy_hidden",
                self.toy_hidden, "one or more widths >= 1")
        lv = self.toy_levels
        require(len(lv) >= 1 and all(0 < v < 0.6932 for v in lv) and all(b < a for a, b in zip(lv, lv[1:])),
                "toy_levels", lv, "decreasing losses in (0, ln 2), e.g. (0.5, 0.4, 0.3)")
        require(self.toy_max_steps >= 1, "toy_max_steps", self.toy_max_steps, ">= 1")
        require(self.toy_grid >= 5, "toy_grid", self.toy_grid, ">= 5")
        require(len(self.measures) >= 1 and len(set(self.measures)) == len(self.measures),
                "measures", self.measures, "one or more distinct of " + ", ".join(MEASURES))
        require(self.n >= 100, "n", self.n, ">= 100")
        require(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        require(self.groups >= 2, "groups", self.groups, ">= 2")
        require(0 < self.noise_fraction < 1, "noise_fraction", self.noise_fraction, "in (0, 1)")
        require(0.5 < self.spurious_majority < 1, "spurious_majority", self.spurious_majority, "in (0.5, 1)")
        require(self.patch_size >= 1, "patch_size", self.patch_size, ">= 1")
        require(self.cscore_folds >= 2, "cscore_folds", self.cscore_folds, ">= 2")
        require(self.cscore_seeds >= 1, "cscore_seeds", self.cscore_seeds, ">= 1")
        require(self.knn >= 1, "knn", self.knn, ">= 1")
        require(self.channels >= 1 and self.width >= 1, "channels/width", (self.channels, self.width), ">= 1")
        require(self.probe_size >= 0, "probe_size", self.probe_size, ">= 0 (0: all training examples)")
        require(self.sign_probe >= 1, "sign_probe", self.sign_probe, ">= 1")
        require(self.kernel_probe >= 0, "kernel_probe", self.kernel_probe, ">= 0 (0: the mode's default)")
        require(self.linearity_every >= 1, "linearity_every", self.linearity_every, ">= 1")
        require(self.lazy_lr >= 0, "lazy_lr", self.lazy_lr, ">= 0 (0: the same as --lr)")
        if self.lazy_lr:
            require(self.mode != "toy", "lazy_lr", self.lazy_lr,
                    "given with --mode mnist1d, cifar10 or toy+mnist1d only (the toy's step is --toy-lr)")
        if self.cscores is not None:
            require(self.mode == "cifar10", "cscores", str(self.cscores),
                    "given with --mode cifar10 only (other modes estimate c-scores by hold-out)")
            from deepscope.dynamics.difficulty import load_cscores

            load_cscores(self.cscores, n=50_000)  # raises a one-line ValueError naming the file
        if self.mode == "cifar10":
            require(self.data_root is not None and Path(self.data_root).expanduser().is_dir(),
                    "data_root", self.data_root, "a folder holding cifar-10-batches-py (--data-root)")


def resolved(cfg: Config) -> Config:
    """The config with its mode's defaults in place of the 0-valued options (alphas sorted)."""
    seeds, epochs, lr, cs_epochs, kprobe = DEFAULTS[cfg.mode]
    return replace(cfg, alphas=tuple(sorted(cfg.alphas)), seeds=cfg.seeds or seeds,
                   epochs=cfg.epochs or epochs, lr=cfg.lr or lr,
                   cscore_epochs=cfg.cscore_epochs or cs_epochs,
                   kernel_probe=cfg.kernel_probe or kprobe)


#: The options that determine the numbers, stored as result.json's "settings".
SETTINGS = ("mode", "alphas", "seeds", "toys", "toy_extra_dims", "toy_runs", "toy_lr",
            "toy_resamples", "toy_points", "toy_hidden", "toy_levels",
            "toy_max_steps", "toy_grid", "measures", "n", "epochs", "batch_size", "lr", "lazy_lr",
            "momentum", "ratio", "min_loss", "groups", "noise_fraction", "spurious_majority", "patch_size",
            "cscore_folds", "cscore_seeds", "cscore_epochs", "knn", "channels", "width",
            "probe_size", "sign_probe", "kernel_probe", "linearity_every")


def run(cfg: Config, run) -> dict:
    c = resolved(cfg)
    settings = {k: list(v) if isinstance(v, tuple) else v for k in SETTINGS
                for v in [getattr(c, k)]}
    if c.mode == "toy":
        return _run_toy(c, settings, run)
    if c.mode == "toy+mnist1d":
        toy = _run_toy(c, settings, run)
        real = _run_real(replace(c, mode="mnist1d"), settings, run)
        return {"settings": settings, "paper": PAPER, "toy": toy["toy"], "mnist1d": real,
                "headline": {"toy": toy["headline"], "mnist1d": real["headline"]},
                "summary": toy["summary"] + "\n\nMNIST-1D\n" + real["summary"]}
    return _run_real(c, settings, run)


def _run_toy(c: Config, settings: dict, run) -> dict:
    from deepscope.dynamics.lazy_vs_hasty import compare_toys

    # how often the toy checkpoints changes nothing it computes: not in the settings
    res = compare_toys(run, toys=c.toys, extra_dims=c.toy_extra_dims, alphas=c.alphas,
                       seeds=c.toy_runs, points=c.toy_points, hidden=c.toy_hidden,
                       levels=c.toy_levels, lr=c.toy_lr, max_steps=c.toy_max_steps,
                       grid=c.toy_grid, resamples=c.toy_resamples,
                       checkpoint_every=c.checkpoint_every or 2500)
    out = {"settings": settings, "paper": PAPER, "toy": res.result}
    _toy_figure(c, out, res, run)
    out["headline"] = {name: {e: {lv: {k: v.get(k) for k in ("contrast", "contrast_ci95", "holds", "n_runs")}
                                  for lv, v in per.items()} for e, per in out["toy"][name].items()}
                       for name in c.toys}
    out["summary"] = _toy_summary(c, out)
    return out


def _run_real(c: Config, settings: dict, run) -> dict:
    from deepscope.dynamics.lazy_vs_hasty import compare_real, load_real
    from deepscope.train.loop import TrainOptions

    data = load_real(c.mode, n=c.n, seed=run.seed, data_root=c.data_root, channels=c.channels,
                     width=c.width)
    res = compare_real(
        run, data, alphas=c.alphas, seeds=c.seeds, measures=c.measures,
        options=TrainOptions(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, momentum=c.momentum),
        lr_per_alpha={a: c.lazy_lr for a in c.alphas if a > 1 and c.lazy_lr},
        ratio=c.ratio, min_loss=c.min_loss, groups=c.groups, noise_fraction=c.noise_fraction,
        spurious_majority=c.spurious_majority, patch_size=c.patch_size, cscores=c.cscores,
        cscore_folds=c.cscore_folds, cscore_seeds=c.cscore_seeds, cscore_epochs=c.cscore_epochs,
        knn=c.knn, probe_size=c.probe_size, sign_probe=c.sign_probe, kernel_probe=c.kernel_probe,
        linearity_every=c.linearity_every)
    out = {"settings": settings, "paper": PAPER, **res.result}
    _figures(c, out, res.curves, run)
    out["headline"] = {m: {k: out["delta"][m].get(k) for k in ("mean", "ci95", "n")} for m in c.measures}
    out["summary"] = _summary(c, out)
    return out


def _toy_figure(c: Config, out: dict, res, run) -> None:
    """The paper's layout, one row per toy and extra-dims setting: (a) the task with run 0's
    training points and the boundary; (b) training loss against iterations for every run at
    both alphas, the levels marked; (c-e) the mean Delta map at each level, a diverging scale
    centred on 0 (one per row), the boundary drawn."""
    import numpy as np
    import torch

    from deepscope.dynamics.difficulty import toy_labels
    from deepscope.report.figures import plt, save

    a_lo, a_hi = c.alphas[0], c.alphas[-1]
    rows = list(res.maps)
    cols = 2 + len(c.toy_levels)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.0 * cols + 0.6, 2.8 * len(rows)),
                             squeeze=False, gridspec_kw={"width_ratios": [1, 1.4] + [1.15] * len(c.toy_levels)})
    fine = torch.linspace(-1, 1, 301)
    fg = torch.cartesian_prod(fine, fine).flip(1)
    for r, ds in enumerate(rows):
        name, e = ds
        label = f"{name}, +{e} dims" if e else name
        boundary = toy_labels(fg, name).reshape(301, 301).numpy()
        ax = axes[r, 0]                                   # (a) the task
        ax.imshow(boundary, origin="lower", extent=(-1, 1, -1, 1), cmap="RdYlGn", alpha=0.35)
        x, y = res.examples[ds]
        ax.scatter(x[:, 0], x[:, 1], c=y.numpy(), cmap="RdYlGn", marker="x", s=8, linewidths=0.8)
        ax.contour(fine, fine, boundary, levels=[0.5], colors="k", linewidths=0.7)
        ax.set_title(f"(a) {label}: task + run 0's data", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax = axes[r, 1]                                   # (b) training curves
        steps, hist = res.curves[ds]
        x_axis = np.maximum(steps, 1)
        for a, color in ((a_lo, "tab:green"), (a_hi, "tab:red")):
            for curve in hist[a]:
                ax.plot(x_axis, curve, color=color, alpha=0.25, linewidth=0.6)
            ax.plot([], [], color=color, label=f"alpha={a:g}")
        for i, lv in enumerate(c.toy_levels):
            ax.axhline(lv, color="k", linewidth=0.6)
            ax.text(1.0, lv, f" ({'cdefgh'[i % 6]})", fontsize=6, va="center",
                    transform=ax.get_yaxis_transform())
        ax.set_xscale("log")
        ax.set_ylim(0, np.log(2) * 1.02)
        ax.set_xlabel("GD iterations", fontsize=7)
        ax.set_ylabel("training loss", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, loc="lower left")
        ax.set_title("(b) every run's training loss", fontsize=8)
        maps = [m for _, m in res.maps[ds] if m is not None]
        vmax = max([float(np.abs(m).max()) for m in maps] or [1.0])
        for i, (lv, m) in enumerate(res.maps[ds]):
            ax = axes[r, 2 + i]                           # (c-e) mean Delta maps
            if m is not None:
                im = ax.imshow(m.reshape(c.toy_grid, c.toy_grid), origin="lower",
                               extent=(-1, 1, -1, 1), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
                fig.colorbar(im, ax=ax, fraction=0.046)
            ax.contour(fine, fine, boundary, levels=[0.5], colors="k", linewidths=0.7)
            st = out["toy"][name][f"extra{e}"][f"{lv:g}"]
            txt = (f"near-far {st['contrast']:+.3f} [{st['contrast_ci95'][0]:+.3f}, "
                   f"{st['contrast_ci95'][1]:+.3f}], n={st['n_runs']}" if "contrast" in st
                   else "no run reached it in both regimes")
            ax.set_title(f"({'cdefgh'[i % 6]}) mean Delta loss at train loss {lv:g}\n{txt}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Delta loss = loss(alpha={a_lo:g}) - loss(alpha={a_hi:g}) at equal training loss, "
                 "mean over runs (red: feature learning behind; the paper: red near the boundary, "
                 "blue far from it)", fontsize=9)
    fig.tight_layout()
    save(fig, run.figure_path("toy_delta_maps"))


def _toy_summary(c: Config, out: dict) -> str:
    a_lo, a_hi = c.alphas[0], c.alphas[-1]
    lines = [f"toy: mean over runs of delta loss = loss(alpha={a_lo:g}) - loss(alpha={a_hi:g}) on a "
             f"{c.toy_grid}^2 grid at equal training loss; contrast = mean delta in the nearest "
             "fifth of the grid (distance to the boundary) minus the farthest fifth; the paper's "
             "claim: contrast > 0 (Spearman < 0); intervals: 95% over resampled runs",
             f"{'toy':>20} {'extra':>5} {'level':>5} {'runs':>4} {'contrast [95% CI]':>27} "
             f"{'Spearman [95% CI]':>26} {'holds':>5} {'per-seed rho':>12}"]
    for name in c.toys:
        for e in c.toy_extra_dims:
            for lv in c.toy_levels:
                st = out["toy"][name][f"extra{e}"][f"{lv:g}"]
                if "contrast" not in st:
                    lines.append(f"{name:>20} {e:>5} {lv:>5g} {st['n_runs']:>4} (no run reached it in both regimes)")
                    continue
                ci, rci = st["contrast_ci95"], st["spearman_ci95"]
                lines.append(f"{name:>20} {e:>5} {lv:>5g} {st['n_runs']:>4} {st['contrast']:>+8.4f} "
                             f"[{ci[0]:+.4f}, {ci[1]:+.4f}] {st['spearman']:>+7.3f} [{rci[0]:+.3f}, "
                             f"{rci[1]:+.3f}] {'yes' if st['holds'] else 'no':>5} "
                             f"{st['per_seed_spearman']['mean']:>+12.3f}")
    lines.append("per-seed rho: the mean over runs of each run's own map's Spearman with the distance "
                 "(not the paper's statistic: one run's map is dominated by where its few points fall)")
    return "\n".join(lines)


def _figures(c: Config, out: dict, curves: dict, run) -> None:
    import numpy as np

    from deepscope.report.figures import plt, save

    a_lo, a_hi = c.alphas[0], c.alphas[-1]
    ms = c.measures
    fig, axes = plt.subplots(1, len(ms), figsize=(4.2 * len(ms), 3.6), squeeze=False)
    for ax, m in zip(axes[0], ms):
        names = out["groups"][m]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(names)))
        for a, style in ((a_lo, "-"), (a_hi, "--")):
            runs = [c for c in curves[m][a] if c is not None]
            if not runs:
                continue
            r = min(len(c[0]) for c in runs)  # rungs every seed of this alpha reached
            overall = np.mean([c[0][:r] for c in runs], 0)
            groups = np.mean([c[1][:r] for c in runs], 0)
            for j, name in enumerate(names):
                ax.plot(overall, groups[:, j], style, color=colors[j],
                        label=f"{name}" if a == a_lo else None)
        ax.invert_xaxis()
        ax.set_xlabel("mean training loss (probe set)")
        ax.set_ylabel("group mean loss")
        d = out["delta"][m]
        ci = d.get("ci95")
        ax.set_title(f"{m}: Delta = {d['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                     if d.get("mean") is not None else m, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, title=f"solid alpha={a_lo:g}, dashed {a_hi:g}", title_fontsize=6)
    save(fig, run.figure_path("group_losses"))

    fig, axes = plt.subplots(1, len(ms), figsize=(4.2 * len(ms), 3.4), squeeze=False)
    for ax, m in zip(axes[0], ms):
        names = out["groups"][m]
        data, pos, cols = [], [], []
        for j in range(len(names)):
            for i, a in enumerate((a_lo, a_hi)):
                vals = []
                for times, g in curves[m][("times", a)]:
                    if times is not None:
                        t = times[g == j]
                        cap = np.nanmax(np.where(np.isfinite(times), times, np.nan)) + 1 if np.isfinite(times).any() else 0
                        vals.append(np.where(np.isfinite(t), t, cap))  # not learned: after the last rung
                data.append(np.concatenate(vals) if vals else np.zeros(1))
                pos.append(j * 3 + i)
                cols.append("tab:blue" if i == 0 else "tab:orange")
        bp = ax.boxplot(data, positions=pos, widths=0.8, patch_artist=True, showfliers=False)
        for patch, c in zip(bp["boxes"], cols):
            patch.set_facecolor(c)
        ax.set_xticks([j * 3 + 0.5 for j in range(len(names))])
        ax.set_xticklabels([nm.split(" (")[0] for nm in names], fontsize=7, rotation=20)
        ax.set_ylabel("learning time (rung, shared ladder)")
        rho = out["spearman"][m]
        ax.set_title(m + ": Spearman(difficulty, time) " + ", ".join(
            f"a={a}: {v['mean']:.2f}" for a, v in rho.items() if v), fontsize=8)
    axes[0][0].plot([], [], "s", color="tab:blue", label=f"alpha={a_lo:g}")
    axes[0][0].plot([], [], "s", color="tab:orange", label=f"alpha={a_hi:g}")
    axes[0][0].legend(fontsize=7)
    save(fig, run.figure_path("learning_times"))


def _summary(c: Config, out: dict) -> str:
    a_lo, a_hi = c.alphas[0], c.alphas[-1]
    lines = [f"Delta = gap(alpha={a_lo:g}) - gap(alpha={a_hi:g}), gap = hardest - easiest group's mean "
             f"loss at equal training loss, averaged over shared rungs; > 0 is the paper's effect",
             f"{'measure':>9} {'Delta':>8} {'95% CI':>20} {'n':>3} {'rungs':>6}  "
             f"Spearman(difficulty, learning time on the shared rungs) alpha={a_lo:g} / {a_hi:g}"]
    for m in c.measures:
        d = out["delta"][m]
        ci = d.get("ci95")
        rho = out["spearman"][m]
        fmt = lambda v: f"{v['mean']:.3f}" if v else "n/a"  # noqa: E731
        mean = f"{d['mean']:8.4f}" if d.get("mean") is not None else "     n/a"
        cis = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
        lines.append(f"{m:>9} {mean} {cis:>20} {d.get('n', 0):>3} {min(d['shared_rungs']):>6}  "
                     f"{fmt(rho[f'{a_lo:g}'])} / {fmt(rho[f'{a_hi:g}'])}")
    lines.append("Delta at matched actual mean training loss (each regime's gap against its recorded "
                 "mean loss, on the ladder's levels both cover; the rungs fire on a running mean "
                 "that lags where the loss falls fast):")
    for m in c.measures:
        d = out["delta_matched_loss"][m]
        ci = d.get("ci95")
        lines.append(f"{m:>9} " + (f"{d['mean']:8.4f}" if d.get("mean") is not None else "     n/a")
                     + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
                     + f", levels compared {min(d['levels_compared'])}-{max(d['levels_compared'])}")
    for cond, per in out["conditions"].items():
        parts = []
        for a, v in per.items():
            sa = [u for u in v["final_sign_agreement"] if u is not None]
            ka = [u for u in v["final_kernel_alignment"] if u is not None]
            parts.append(f"alpha={a}: test acc {v['test_acc']['mean']:.3f}, lowest rung "
                         f"{min([lv for lv in v['lowest_level'] if lv is not None] or [float('nan')]):.3f}, "
                         f"signs {sum(sa) / len(sa) if sa else float('nan'):.3f}, "
                         f"kernel {sum(ka) / len(ka) if ka else float('nan'):.3f}")
        lines.append(f"{cond}: " + "; ".join(parts))
    lines.append("SGD step per alpha: " + ", ".join(f"alpha={a}: {v:g}" for a, v in out["lr"].items()))
    if "cscore_reliability" in out:
        r = out["cscore_reliability"]
        lines.append(f"c-score reliability: pairwise Spearman {r['pairwise']:.3f}, "
                     f"split-half (Spearman-Brown) {r['spearman_brown']:.3f} over {r['n_seeds']} repetitions")
    return "\n".join(lines)


def verdict(result: dict) -> dict:
    """The paper's effect from result.json.

    Real data (mnist1d, cifar10): Delta = gap(alpha=1) - gap(alpha=100) for the c-score and
    label-noise groupings; reproduced when both intervals lie above 0, partly when one does
    or both means are > 0 (or one of the two was not run), not reproduced otherwise. Toy (the
    paper's statistic, the mean map over runs): per paper toy (disk, yinyang1,
    disk_flip_diagonal), extra-dims setting and level, the claim holds where the mean Delta
    near the boundary minus far from it is > 0 with its 95% interval (resampled runs) above
    0; reproduced where it holds in every such cell, partly in some, not reproduced in none
    (cells kept by fewer than :data:`TOY_MIN_RUNS` runs in both regimes are listed, not judged).
    Both (mode toy+mnist1d): reproduced when both are, not reproduced when neither is (or
    one is and the other was not run), partly otherwise.
    """
    if "toy" in result and "mnist1d" in result:
        return _both_verdict(result)
    if "toy" in result:
        return _toy_verdict(result)
    return _real_verdict(result)


def _both_verdict(result: dict) -> dict:
    toy, real = _toy_verdict(result), _real_verdict(result["mnist1d"])
    claim = ("George, Lajoie & Baratin 2022 (arXiv 2209.09658): at equal training loss feature "
             "learning (alpha = 1) is ahead on easy examples and behind on hard ones, relative to "
             "lazy training (alpha = 100): the 2-D toys (distance to the boundary) and MNIST-1D "
             "(c-score, label noise)")
    vs = (toy["verdict"], real["verdict"])
    if vs == ("reproduced", "reproduced"):
        v = "reproduced"
    elif all(x in ("not reproduced", "not run") for x in vs):
        v = "not run" if vs == ("not run", "not run") else "not reproduced"
    else:
        v = "partly"
    return {"claim": claim, "verdict": v,
            "measured": f"toy ({toy['verdict']}): {toy['measured']} | MNIST-1D ({real['verdict']}): "
                        f"{real['measured']}"}


def _real_verdict(result: dict) -> dict:
    claim = ("George, Lajoie & Baratin 2022 (arXiv 2209.09658): at equal training loss, feature "
             "learning (alpha = 1) separates hard from easy examples more than lazy training "
             "(alpha = 100): Delta = gap(1) - gap(100) > 0 for c-score and label-noise groups, "
             "each regime's gap read at the same actual mean training loss")
    # matched actual loss (the paper's x-axis), not rung by rung: a rung fires on a lagging
    # running mean, so a fast-falling run is recorded further down (docs/lazy_vs_hasty.md)
    deltas = result.get("delta_matched_loss") or result.get("delta") or {}
    parts, above, positive, missing = [], [], [], []
    for m in ("cscore", "noise"):
        d = deltas.get(m) or {}
        if d.get("mean") is None:
            missing.append(m)
            continue
        ci = d.get("ci95") or (d["mean"], d["mean"])
        n = d.get("n", 0)
        parts.append(f"{m}: Delta {d['mean']:.3f} [95% CI {ci[0]:.3f}, {ci[1]:.3f}], n={n}")
        above.append(n >= 2 and ci[0] > 0)
        positive.append(d["mean"] > 0)
    for m in ("spurious", "boundary"):
        d = deltas.get(m) or {}
        if d.get("mean") is not None and d.get("ci95"):
            parts.append(f"({m}: {d['mean']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}])")
    if not parts or len(missing) == 2:
        return {"claim": claim, "measured": "no c-score or label-noise Delta in the result",
                "verdict": "not run"}
    measured = "; ".join(parts) + (f"; not run: {', '.join(missing)}" if missing else "")
    if all(above) and not missing:
        v = "reproduced"
    elif any(above) or all(positive):
        v = "partly"
    else:
        v = "not reproduced"
    return {"claim": claim, "measured": measured, "verdict": v}


#: Runs a toy cell (toy x extra dims x level) needs to be judged: the lazy runs that never reach
#: a level in 25,000 steps drop out, and an interval resampled from a handful of runs means little.
TOY_MIN_RUNS = 10


def _toy_verdict(result: dict) -> dict:
    from deepscope.dynamics.difficulty import PAPER_TOYS

    claim = ("George, Lajoie & Baratin 2022 (arXiv 2209.09658), 2-D toys: at equal training loss "
             "feature learning has the higher loss near the boundary and the lower far from it: on "
             "the mean Delta map over runs (Delta = loss(alpha=1) - loss(alpha=100)), mean Delta "
             "in the nearest fifth of the grid minus the farthest fifth > 0")
    parts, holds = [], []
    for name, per in (result.get("toy") or {}).items():
        if name not in PAPER_TOYS or not isinstance(per, dict):
            continue
        for e, levels in per.items():
            if not e.startswith("extra") or not isinstance(levels, dict):
                continue  # a result of the earlier per-seed protocol: not judged here
            few = [f"{lv} (n={st.get('n_runs', 0)})" for lv, st in levels.items()
                   if 0 < st.get("n_runs", 0) < TOY_MIN_RUNS]
            cells = [(lv, st) for lv, st in levels.items()
                     if "contrast" in st and st["n_runs"] >= TOY_MIN_RUNS]
            if not cells:
                parts.append(f"{name} +{e[5:]}d: no level reached by both regimes in "
                             f"{TOY_MIN_RUNS} runs or more" + (f" (too few: {', '.join(few)})" if few else ""))
                continue
            ok = [lv for lv, st in cells if st["holds"]]
            holds += [st["holds"] for _, st in cells]
            vals = "/".join(f"{st['contrast']:+.4f}" for _, st in cells)
            parts.append(f"{name} +{e[5:]}d: contrast {vals} at loss {'/'.join(lv for lv, _ in cells)} "
                         f"(n={min(st['n_runs'] for _, st in cells)}), holds at "
                         f"{', '.join(ok) if ok else 'none'}"
                         + (f"; too few runs at {', '.join(few)}" if few else ""))
    if not holds:
        return {"claim": claim, "measured": "; ".join(parts) or "no paper toy was run",
                "verdict": "not run"}
    v = "reproduced" if all(holds) else "partly" if any(holds) else "not reproduced"
    return {"claim": claim, "measured": f"{sum(holds)} of {len(holds)} cells hold; " + "; ".join(parts),
            "verdict": v}
