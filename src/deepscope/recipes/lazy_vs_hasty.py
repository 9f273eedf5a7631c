"""Lazy vs hasty: which examples feature learning (alpha 1) and lazy training (alpha 100) learn first (arXiv 2209.09658).

    deepscope run lazy-vs-hasty --threads 1                               # 2-D toys, 100 seeds
    deepscope run lazy-vs-hasty --mode mnist1d --threads 1                # CPU scale, 3 seeds
    deepscope run lazy-vs-hasty --mode cifar10 --data-root ~/data \\
        --cscores cifar10-cscores-orig-order.npz --device cuda            # the paper's setting
    deepscope run lazy-vs-hasty --quick                                   # seconds

Each network is forked from one initialisation into f_alpha = alpha (h(theta) - h(theta_0)),
trained on L / alpha^2 (deepscope.dynamics.regimes.AlphaScaled), and the regimes are compared at
matched training loss on the ladder ln(C) 0.96^k. Per difficulty measure, result.json gives
Delta = gap(alpha_min) - gap(alpha_max), gap = mean loss of the hardest group minus the easiest
group's, averaged over the rungs both regimes reach, with a 95% interval over seeds (Delta > 0 is
the paper's effect), and the Spearman correlation of difficulty with learning time per alpha.

Modes: ``toy`` (disk and yin-yang, 50 points, MLP 2-60-60-60-1, full-batch GD lr 0.1, logistic
loss, 100 seeds trained as one batched model; the map of Delta loss = loss(alpha 1) - loss(alpha
100) on a grid at training losses 0.5/0.4/0.3 and its correlation with the distance to the
boundary), ``mnist1d`` (1-D CNN, the four difficulty groupings: c-score by hold-out training,
15% label noise, a spurious patch, kNN label agreement as the boundary proxy), ``cifar10``
(ResNet-18 without normalisation, first 40k training images / other 10k held out, batch 125,
SGD lr 0.01 momentum 0.9; c-scores from --cscores).
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
#: CIFAR-10: the first 40k training images train (all have c-scores), the other 10k are held out.
CIFAR_TRAIN = 40_000
# which training condition each measure is read from
CONDITION = {"cscore": "clean", "boundary": "clean", "noise": "noise", "spurious": "spurious"}
GROUP_NAMES = {"noise": ("clean labels", "noisy labels"),
               "spurious": ("majority (patch agrees)", "minority (patch misleads)")}

DEFAULTS = {  # per mode: (seeds, epochs, lr, cscore_epochs, kernel_probe)
    "toy": (100, 0, 0.1, 0, 0),
    "mnist1d": (3, 200, 0.1, 20, 64),
    "cifar10": (2, 200, 0.01, 30, 16),
}
QUICK_SIZES = {  # --quick: per mode
    "toy": {"seeds": 8, "toy_levels": (0.65, 0.6), "toy_max_steps": 800, "toy_grid": 21},
    "mnist1d": {"seeds": 2, "n": 600, "epochs": 3, "batch_size": 32, "cscore_epochs": 1,
                "cscore_folds": 2, "cscore_seeds": 2, "kernel_probe": 8, "sign_probe": 32,
                "channels": 8, "min_loss": 1.0, "linearity_every": 2},
    "cifar10": {"seeds": 2, "epochs": 1, "batch_size": 32, "cscore_epochs": 1, "cscore_folds": 2,
                "cscore_seeds": 2, "kernel_probe": 4, "sign_probe": 8, "width": 4, "probe_size": 64,
                "min_loss": 1.5, "linearity_every": 2},
}


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("lazy", "Lazy vs hasty", order=4)
REPRODUCE = Reproduce(
    smoke=("--quick",),
    quick=("--mode", "toy"),
    paper=("--mode", "cifar10"),
    paper_needs_data_root=True,
)

@dataclass(frozen=True)
class Config(RunConfig):
    """Lazy (alpha >> 1) vs feature-learning (alpha = 1) training, compared per example difficulty."""

    mode: Literal["toy", "mnist1d", "cifar10"] = "toy"
    """'toy' (2-D disk and yin-yang, the quick check), 'mnist1d' (CPU scale), 'cifar10' (paper scale, a GPU)."""

    alphas: tuple[float, ...] = (1.0, 100.0)
    """Values of alpha; Delta compares the smallest with the largest (paper: 1 and 100)."""

    seeds: int = 0
    """Seeds (initialisations); 0: the mode's default (toy 100, mnist1d 3, cifar10 2)."""

    toys: tuple[Literal["disk", "yinyang"], ...] = ("disk", "yinyang")
    """Toy datasets (mode toy)."""

    toy_points: int = 50
    """Training points per toy and seed, uniform in [-1, 1]^2 (paper: 50)."""

    toy_hidden: tuple[int, ...] = (60, 60, 60)
    """Hidden widths of the toy MLP (paper: 2-60-60-60-1)."""

    toy_levels: tuple[float, ...] = (0.5, 0.4, 0.3)
    """Training losses at which the toy's Delta-loss map is taken (paper: 0.5, 0.4, 0.3)."""

    toy_max_steps: int = 20_000
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
        require(len(self.toys) >= 1, "toys", self.toys, "at least one of 'disk', 'yinyang'")
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
        if self.cscores is not None:
            require(self.mode == "cifar10", "cscores", str(self.cscores),
                    "given with --mode cifar10 only (other modes estimate c-scores by hold-out)")
            from deepscope.dynamics.difficulty import load_cscores

            load_cscores(self.cscores, n=50_000)  # raises a one-line ValueError naming the file
        if self.mode == "cifar10":
            require(self.data_root is not None and Path(self.data_root).expanduser().is_dir(),
                    "data_root", self.data_root, "a folder holding cifar-10-batches-py (--data-root)")


def settings(cfg: Config) -> dict:
    """The resolved budget: mode defaults for the 0-valued options, then --quick sizes."""
    seeds, epochs, lr, cs_epochs, kprobe = DEFAULTS[cfg.mode]
    s = {
        "mode": cfg.mode, "alphas": sorted(cfg.alphas), "seeds": cfg.seeds or seeds,
        "toys": list(cfg.toys), "toy_points": cfg.toy_points, "toy_hidden": list(cfg.toy_hidden),
        "toy_levels": list(cfg.toy_levels), "toy_max_steps": cfg.toy_max_steps,
        "toy_grid": cfg.toy_grid, "measures": list(cfg.measures), "n": cfg.n,
        "epochs": cfg.epochs or epochs, "batch_size": cfg.batch_size, "lr": cfg.lr or lr,
        "momentum": cfg.momentum, "ratio": cfg.ratio, "min_loss": cfg.min_loss,
        "groups": cfg.groups, "noise_fraction": cfg.noise_fraction,
        "spurious_majority": cfg.spurious_majority, "patch_size": cfg.patch_size,
        "cscore_folds": cfg.cscore_folds, "cscore_seeds": cfg.cscore_seeds,
        "cscore_epochs": cfg.cscore_epochs or cs_epochs, "knn": cfg.knn, "channels": cfg.channels,
        "width": cfg.width, "probe_size": cfg.probe_size, "sign_probe": cfg.sign_probe,
        "kernel_probe": cfg.kernel_probe or kprobe, "linearity_every": cfg.linearity_every,
    }
    return s


def run(cfg: Config, run) -> dict:
    s = settings(cfg)
    done = _Finished(run)
    if s["mode"] == "toy":
        # how often the toy checkpoints changes nothing it computes: not in the settings
        return _run_toy(s, run, done, checkpoint_every=cfg.checkpoint_every or 2500)
    return _run_real(s, cfg, run, done)


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
# The 2-D toy
# ----------------------------------------------------------------------------------------------
def toy_setup(name: str, seeds: int, *, points: int, hidden, base_seed: int = 0):
    """Per seed: training points ``(K, N, 2)``, labels ``(K, N)`` and the initial MLPs (one per seed)."""
    import torch

    from deepscope.dynamics.difficulty import sample_toy
    from deepscope.nets import MLP
    from deepscope.train.rng import fork_seeded, make_generator

    xs, ys, nets = [], [], []
    for k in range(seeds):
        x, y = sample_toy(name, points, generator=make_generator(base_seed, f"toy-{name}-data-{k}"))
        xs.append(x)
        ys.append(y)
        with fork_seeded(make_generator(base_seed, f"toy-init-{k}")):
            nets.append(MLP(2, list(hidden), 1))
    return torch.stack(xs), torch.stack(ys), nets


def _rowwise_corr(rows, v, *, rank: bool):
    """Pearson (or, ``rank=True``, Spearman with average ranks) of each row of ``rows`` (S, G)
    with ``v`` (G,): what ``scipy.stats.pearsonr`` / ``spearmanr`` give row by row, at once."""
    import numpy as np
    from scipy.stats import rankdata

    a = rankdata(rows, axis=1) if rank else np.asarray(rows, dtype=np.float64)
    b = rankdata(v) if rank else np.asarray(v, dtype=np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a @ b) / (np.sqrt((a * a).sum(1)) * np.sqrt((b * b).sum()))


def _train_toys(s: dict, run, done, data: dict, grid, checkpoint_every: int):
    """Every (toy, alpha) pair's 100 seeds as ONE stack (per-network alpha and data): one
    training sub-run ``toy/batched``, then each pair's grid losses in ``toy/<name>/alpha<a>``.

    One stack instead of one per pair: the slow lazy seeds of both toys share their last
    thousands of steps (the tail where few networks are left and a step is mostly overhead),
    and each step's products are larger. Each network still trains exactly as it would alone
    (tested in tests/dynamics/test_regimes.py).
    """
    import torch

    from deepscope.dynamics.difficulty import toy_labels
    from deepscope.dynamics.regimes import (
        AlphaScaled,
        example_losses,
        snapshot_outputs,
        train_full_batch,
    )
    from deepscope.nets.batched import BatchedMLP

    pairs = [(name, a) for name in s["toys"] for a in s["alphas"]]
    subs = {(name, a): run.child(f"toy/{name}/alpha{a:g}", config={**s, "toy": name, "alpha": a})
            for name, a in pairs}
    if all(sub.finished for sub in subs.values()):
        return subs
    k = s["seeds"]
    nets = [net for name, _ in pairs for net in data[name][2]]
    x = torch.cat([data[name][0] for name, _ in pairs])
    y = torch.cat([data[name][1] for name, _ in pairs])
    alpha = [a for _, a in pairs for _ in range(k)]
    model = AlphaScaled(BatchedMLP.stack(nets), 1.0)   # alpha per network below
    train = run.child("toy/batched", config={**s, "pairs": [list(p) for p in pairs]})
    res = train_full_batch(model, x, y, levels=s["toy_levels"], lr=s["lr"], alpha=alpha,
                           max_steps=s["toy_max_steps"], run=train,
                           checkpoint_every=checkpoint_every,
                           desc=f"toy: {len(pairs)} x {k} networks")
    if not train.finished:
        train.write_result({"steps": res.steps.tolist()})
    for j, (name, a) in enumerate(pairs):
        sub = subs[name, a]
        if sub.finished:
            continue
        part = slice(j * k, (j + 1) * k)
        pair = AlphaScaled(BatchedMLP.stack(data[name][2]), a)  # this pair's initial networks
        with torch.no_grad():  # h(theta_0) on the grid, shared by the levels; in cache-sized chunks
            h0_grid = torch.cat([pair.init(grid[i:i + 512]) for i in range(0, len(grid), 512)], 1)
        grid_losses = torch.stack([
            example_losses(snapshot_outputs(pair, {n: v[part].cpu() for n, v in snap.items()},
                                            grid, init_output=h0_grid, batch=512),
                           toy_labels(grid, name))[0]
            for snap in res.snapshots])      # (L, K, G)
        steps = res.steps[:, part]
        sub.save_file("grid_losses.pt", {"losses": grid_losses, "steps": steps})
        sub.write_result({"steps": steps.tolist(), "reached": [int((r >= 0).sum()) for r in steps]})
        done(str(sub.dir.relative_to(run.dir)))
    return subs


def _run_toy(s: dict, run, done, *, checkpoint_every: int) -> dict:
    import numpy as np
    import torch

    from deepscope.dynamics.difficulty import distance_to_boundary, toy_labels
    from deepscope.mi.stats import over_seeds
    from deepscope.report.figures import plt, save

    a_lo, a_hi = s["alphas"][0], s["alphas"][-1]
    side = torch.linspace(-1, 1, s["toy_grid"])
    grid = torch.cartesian_prod(side, side).flip(1)  # (x, y) with x varying fastest
    out = {"settings": s, "paper": PAPER, "toy": {}}
    maps = {}
    data = {name: toy_setup(name, s["seeds"], points=s["toy_points"], hidden=s["toy_hidden"],
                            base_seed=run.seed) for name in s["toys"]}
    subs = _train_toys(s, run, done, data, grid, checkpoint_every)
    for name in s["toys"]:
        dist = distance_to_boundary(grid, name).numpy()
        losses, reached = {}, {}
        for a in s["alphas"]:
            blob = torch.load(subs[name, a].dir / "grid_losses.pt", weights_only=True)
            losses[a], reached[a] = blob["losses"].numpy(), blob["steps"].numpy() >= 0
        per_level = {}
        maps[name] = []
        for li, lv in enumerate(s["toy_levels"]):
            ok = reached[a_lo][li] & reached[a_hi][li]          # seeds that reached it in both
            delta = losses[a_lo][li][ok] - losses[a_hi][li][ok]  # (k, G)
            entry = {"n_seeds": int(ok.sum()),
                     "reached": {f"{a:g}": int(reached[a][li].sum()) for a in s["alphas"]}}
            if ok.sum() >= 1:
                mean = delta.mean(0)
                maps[name].append((lv, mean))
                near, far = dist <= np.quantile(dist, 0.2), dist >= np.quantile(dist, 0.8)
                rho = _rowwise_corr(np.vstack([mean, delta]), dist, rank=True)
                r = _rowwise_corr(np.vstack([mean, delta]), dist, rank=False)
                entry.update({
                    "spearman_delta_vs_distance": float(rho[0]),
                    "per_seed_spearman": over_seeds(rho[1:]),
                    "pearson_delta_vs_distance": float(r[0]),
                    "per_seed_pearson": over_seeds(r[1:]),
                    "mean_delta_near_boundary": float(mean[near].mean()),
                    "mean_delta_far_from_boundary": float(mean[far].mean()),
                })
            else:
                maps[name].append((lv, None))
            per_level[f"{lv:g}"] = entry
        out["toy"][name] = per_level

    # figure: the Delta-loss maps, one row per toy, one column per level
    rows, cols = len(s["toys"]), len(s["toy_levels"])
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows), squeeze=False)
    fine = torch.linspace(-1, 1, 301)
    fg = torch.cartesian_prod(fine, fine).flip(1)
    for r, name in enumerate(s["toys"]):
        vmax = max([float(np.abs(m).max()) for _, m in maps[name] if m is not None] or [1.0])
        for c, (lv, m) in enumerate(maps[name]):
            ax = axes[r, c]
            if m is not None:
                im = ax.imshow(m.reshape(s["toy_grid"], s["toy_grid"]), origin="lower",
                               extent=(-1, 1, -1, 1), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
                fig.colorbar(im, ax=ax, fraction=0.046)
            ax.contour(fine, fine, toy_labels(fg, name).reshape(301, 301).numpy(), levels=[0.5],
                       colors="k", linewidths=0.8)
            e = out["toy"][name][f"{lv:g}"]
            rho = e.get("spearman_delta_vs_distance", float("nan"))
            ax.set_title(f"{name}, train loss {lv:g}\nrho(delta, dist) = {rho:.2f}, n = {e['n_seeds']}",
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"loss(alpha={a_lo:g}) - loss(alpha={a_hi:g}) at equal training loss "
                 "(red: feature learning behind)", fontsize=10)
    save(fig, run.figure_path("toy_delta_maps"))

    last = f"{s['toy_levels'][-1]:g}"
    heads = {name: out["toy"][name][last].get("per_seed_spearman") for name in s["toys"]}
    out["headline"] = {name: h for name, h in heads.items()}
    lines = [f"toy: correlation of delta loss with the distance to the boundary on a {s['toy_grid']}^2 "
             f"grid; delta = loss(alpha={a_lo:g}) - loss(alpha={a_hi:g}); < 0 is the paper's effect; "
             f"near / far: mean delta on the 20% of grid points nearest to / farthest from it",
             f"{'toy':>8} {'level':>6} {'n':>4} {'rho(mean map)':>13} {'rho per seed [95% CI]':>28} "
             f"{'Pearson r per seed [95% CI]':>28} {'near':>7} {'far':>7}"]
    for name in s["toys"]:
        for lv in s["toy_levels"]:
            e = out["toy"][name][f"{lv:g}"]
            if "per_seed_spearman" not in e:
                lines.append(f"{name:>8} {lv:>6g} {e['n_seeds']:>4} (no seed reached it in both regimes)")
                continue
            ps, pp = e["per_seed_spearman"], e["per_seed_pearson"]
            lines.append(f"{name:>8} {lv:>6g} {e['n_seeds']:>4} {e['spearman_delta_vs_distance']:>13.3f} "
                         f"{ps['mean']:>9.3f} [{ps['ci95'][0]:.3f}, {ps['ci95'][1]:.3f}]   "
                         f"{pp['mean']:>9.3f} [{pp['ci95'][0]:.3f}, {pp['ci95'][1]:.3f}]   "
                         f"{e['mean_delta_near_boundary']:>7.3f} {e['mean_delta_far_from_boundary']:>7.3f}")
    out["summary"] = "\n".join(lines)
    return out


# ----------------------------------------------------------------------------------------------
# MNIST-1D and CIFAR-10
# ----------------------------------------------------------------------------------------------
def _load(s: dict, cfg: Config, seed: int):
    """Training and held-out data, the network builder and the spurious patch's values."""

    from deepscope.data import load_dataset
    from deepscope.nets import build_net

    if s["mode"] == "mnist1d":
        ds = load_dataset("mnist1d", n=s["n"], seed=seed)
        x, y, xt, yt = ds.x_train, ds.y_train, ds.x_test, ds.y_test

        def build():
            return build_net("cnn1d", input_shape=(40,), num_classes=10, channels=s["channels"])

        return x, y, xt, yt, build, (-1.0, 1.0), (lambda v: v)
    ds = _load_cifar(cfg.data_root)
    x, y = ds.x_train[:CIFAR_TRAIN], ds.y_train[:CIFAR_TRAIN]
    xt, yt = ds.x_train[CIFAR_TRAIN:], ds.y_train[CIFAR_TRAIN:]
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)

    def build():
        return build_net("resnet18", input_shape=tuple(x.shape[1:]), num_classes=10, norm="none",
                         width=s["width"])

    # the patch is drawn on raw pixels (values 0/1), then everything is standardised
    return x, y, xt, yt, build, (0.0, 1.0), (lambda v: (v - mean) / std)


def _load_cifar(data_root):
    from deepscope.data import load_dataset

    return load_dataset("cifar10", data_root=data_root)


def _run_real(s: dict, cfg: Config, run, done) -> dict:
    import numpy as np
    import torch

    from deepscope.dynamics.difficulty import (
        holdout_consistency,
        inject_label_noise,
        knn_agreement,
        load_cscores,
        quantile_groups,
        spurious_patch,
    )
    from deepscope.dynamics.regimes import (
        AlphaScaled,
        LossLadder,
        example_losses,
        ladder_levels,
        learning_time_spearman,
        learning_times,
        regime_delta,
        train_alpha,
    )
    from deepscope.mi.stats import over_seeds
    from deepscope.train.rng import fork_seeded, make_generator

    dev = run.device
    x_raw, y, xt_raw, yt, build, patch_values, prep = _load(s, cfg, run.seed)
    x, xt = prep(x_raw), prep(xt_raw)
    n = x.shape[0]
    per_epoch = -(-n // s["batch_size"])
    probe = (torch.arange(n) if not s["probe_size"] or s["probe_size"] >= n else
             torch.randperm(n, generator=make_generator(run.seed, "probe"))[:s["probe_size"]].sort().values)
    levels = ladder_levels(10, ratio=s["ratio"], min_loss=min(s["min_loss"], np.log(10)))
    lin_x = x[: s["sign_probe"]]
    ker_x = x[: s["kernel_probe"]]

    def train(sub, model, xs, ys, order, epochs, ladder=None):
        return train_alpha(model, xs, ys, generator=order, ladder=ladder, run=sub, epochs=epochs,
                           batch_size=s["batch_size"], lr=s["lr"], momentum=s["momentum"],
                           probe_x=xs[probe] if ladder is not None else None,
                           probe_y=ys[probe] if ladder is not None else None,
                           linearity_x=lin_x if ladder is not None else None,
                           kernel_x=ker_x if ladder is not None and len(ker_x) else None,
                           linearity_every=s["linearity_every"], desc=sub.dir.name)

    # ---- difficulty scores that do not depend on the seed: c-score, kNN agreement ----
    scores = {}
    out = {"settings": s, "paper": PAPER, "n_train": n, "n_probe": int(len(probe))}
    if "cscore" in s["measures"]:
        if cfg.cscores is not None:
            cs, lab = load_cscores(cfg.cscores)  # 50,000 scores: checked by Config.validate
            if lab is not None and not np.array_equal(lab[:n], y.numpy()):
                raise ValueError(f"cscores == '{cfg.cscores}' has labels that differ from CIFAR-10's "
                                 "training labels; pass the file in the original training order")
            scores["cscore"] = cs[:n]
            out["cscore_source"] = str(cfg.cscores)
        else:
            def fit_predict(train_idx, test_idx, seed, fold):
                sub = run.child(f"cscore/seed{seed}/fold{fold}", config={**s, "seed": seed, "fold": fold})
                if not sub.finished:
                    with fork_seeded(make_generator(run.seed, f"cscore-init-{seed}-{fold}")):
                        model = AlphaScaled(build(), 1.0)
                    train(sub, model, x[train_idx], y[train_idx],
                          make_generator(run.seed, f"cscore-order-{seed}-{fold}"), s["cscore_epochs"])
                    with torch.no_grad():
                        model.eval()
                        logits = torch.cat([model(x[test_idx][i:i + 1000].to(dev)).cpu()
                                            for i in range(0, len(test_idx), 1000)])
                    p = logits.softmax(1)[torch.arange(len(test_idx)), y[test_idx]]
                    sub.write_result({"p_true": p.tolist()})
                    done(str(sub.dir.relative_to(run.dir)))
                return torch.tensor(sub.read_result()["p_true"])

            c = holdout_consistency(n, fit_predict, folds=s["cscore_folds"], seeds=s["cscore_seeds"],
                                    generator=make_generator(run.seed, "cscore-splits"))
            scores["cscore"] = c.score
            out["cscore_reliability"] = c.reliability
    if "boundary" in s["measures"]:
        scores["boundary"] = knn_agreement(x.to(dev), y.to(dev), k=s["knn"]).cpu().numpy()

    # ---- training runs: per seed, condition and alpha, from one initialisation per seed ----
    conditions = sorted({CONDITION[m] for m in s["measures"]}, key=["clean", "noise", "spurious"].index)
    records = {}  # (condition, alpha, seed) -> dict
    masks = {}    # (condition, seed) -> per-example hard indicator for the binary measures
    for k in range(s["seeds"]):
        for cond in conditions:
            xs, ys = x, y
            if cond == "noise":
                ys, flipped = inject_label_noise(y, 10, s["noise_fraction"],
                                                 generator=make_generator(run.seed, f"noise-{k}"))
                masks[cond, k] = flipped.numpy()
            elif cond == "spurious":
                xp, agrees = spurious_patch(x_raw, y, 10, majority=s["spurious_majority"],
                                            size=s["patch_size"], values=patch_values,
                                            generator=make_generator(run.seed, f"spurious-{k}"))
                xs = prep(xp)
                masks[cond, k] = (~agrees).numpy()
            for a in s["alphas"]:
                sub = run.child(f"{cond}/alpha{a:g}/seed{k}", config={**s, "alpha": a, "seed_index": k})
                path = sub.dir / "ladder.pt"
                if not sub.finished:
                    with fork_seeded(make_generator(run.seed, f"init-{k}")):
                        model = AlphaScaled(build(), a)  # the same initial network for every alpha
                    ladder = LossLadder(levels, window=per_epoch)
                    train(sub, model, xs, ys, make_generator(run.seed, f"order-{k}"), s["epochs"], ladder)
                    model.eval()
                    with torch.no_grad():
                        lo, co = [], []
                        for i in range(0, len(xt), 1000):
                            ll, cc = example_losses(model(xt[i:i + 1000].to(dev)), yt[i:i + 1000].to(dev))
                            lo.append(ll.cpu())
                            co.append(cc.cpu())
                    probes = [r for r in sub.metrics() if "sign_agreement" in r or "kernel_alignment" in r]
                    final = _final_linearity(model, lin_x.to(dev), ker_x.to(dev) if len(ker_x) else None)
                    sub.save_file(path.name, {  # no rung crossed: empty (0, probes) records
                        "loss": ladder.stack("loss") if ladder.next_ else torch.zeros(0, len(probe)),
                        "correct": ladder.stack("correct") if ladder.next_
                        else torch.zeros(0, len(probe), dtype=torch.bool)})
                    epochs_run = max([r["epoch"] for r in sub.metrics() if "epoch" in r] or [0])
                    sub.write_result({
                        "rungs": ladder.next_, "lowest_level": ladder.levels[ladder.next_ - 1] if ladder.next_ else None,
                        "epochs": epochs_run,
                        "test_loss": float(torch.cat(lo).mean()), "test_acc": float(torch.cat(co).float().mean()),
                        **final,
                        "sign_agreement": [r.get("sign_agreement") for r in probes],
                        "kernel_alignment": [r.get("kernel_alignment") for r in probes],
                        "probe_rungs": [r["rung"] for r in probes],
                    })
                    done(str(sub.dir.relative_to(run.dir)))
                blob = torch.load(path, weights_only=True)
                records[cond, a, k] = {**sub.read_result(), "loss": blob["loss"].numpy(),
                                       "correct": blob["correct"].numpy()}

    # ---- analysis: per measure, groups, Delta, learning-time correlations ----
    a_lo, a_hi = s["alphas"][0], s["alphas"][-1]
    out["delta"], out["spearman"], out["spearman_full_ladder"], out["groups"] = {}, {}, {}, {}
    curves = {}
    for m in s["measures"]:
        cond = CONDITION[m]
        deltas, rungs = [], []
        rho, rho_full = {a: [] for a in s["alphas"]}, {a: [] for a in s["alphas"]}
        curves[m] = {}
        for k in range(s["seeds"]):
            if m in scores:  # continuous: high score = easy; group 0 = easiest
                sc = np.asarray(scores[m])[probe.numpy()]
                g = s["groups"] - 1 - quantile_groups(sc, s["groups"])
                difficulty = -sc
            else:
                hard = masks[cond, k][probe.numpy()]
                g, difficulty = hard.astype(int), hard.astype(float)
            n_groups = int(g.max()) + 1
            hard_m, easy_m = g == n_groups - 1, g == 0
            d, r = regime_delta(records[cond, a_lo, k]["loss"], records[cond, a_hi, k]["loss"], hard_m, easy_m)
            deltas.append(d)
            rungs.append(r)
            # learning times on the rungs every alpha reached (matched training loss), and on
            # each alpha's own full ladder (a shorter ladder caps more examples at "not learned")
            shared = min(len(records[cond, a, k]["correct"]) for a in s["alphas"])
            for a in s["alphas"]:
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
        out["delta"][m] = {**(over_seeds(ok) if ok else {"mean": None, "n": 0}),
                           "per_seed": deltas, "shared_rungs": rungs,
                           "lowest_shared_level": levels[min(rungs) - 1] if min(rungs) else None}
        out["spearman"][m] = {f"{a:g}": over_seeds(v) if v else None for a, v in rho.items()}
        out["spearman_full_ladder"][m] = {f"{a:g}": over_seeds(v) if v else None for a, v in rho_full.items()}
        out["groups"][m] = (list(GROUP_NAMES[m]) if m in GROUP_NAMES else
                            [f"quantile {j + 1} of {s['groups']} ({'easiest' if j == 0 else 'hardest' if j == s['groups'] - 1 else ''})".replace(" ()", "")
                             for j in range(s["groups"])])
    out["conditions"] = {}
    for cond in conditions:
        out["conditions"][cond] = {}
        for a in s["alphas"]:
            recs = [records[cond, a, k] for k in range(s["seeds"])]
            out["conditions"][cond][f"{a:g}"] = {
                "test_acc": over_seeds([r["test_acc"] for r in recs]),
                "rungs_reached": [r["rungs"] for r in recs],
                "lowest_level": [r["lowest_level"] for r in recs],
                "epochs": [r["epochs"] for r in recs],
                "final_sign_agreement": [r["final_sign_agreement"] for r in recs],
                "final_kernel_alignment": [r["final_kernel_alignment"] for r in recs],
            }
    _figures(s, out, curves, run)
    out["headline"] = {m: {k: out["delta"][m].get(k) for k in ("mean", "ci95", "n")} for m in s["measures"]}
    out["summary"] = _summary(s, out)
    return out


def _final_linearity(model, lin_x, ker_x) -> dict:
    """Sign agreement and kernel alignment with initialisation of the trained model."""
    import copy

    from deepscope.dynamics.regimes import kernel_alignment, relu_sign_agreement, tangent_kernel

    out = {"final_sign_agreement": relu_sign_agreement(model, lin_x), "final_kernel_alignment": None}
    if ker_x is not None:
        k0 = tangent_kernel(copy.deepcopy(model.init).requires_grad_(True), ker_x)
        out["final_kernel_alignment"] = kernel_alignment(k0, tangent_kernel(model, ker_x))
    return out


def _figures(s: dict, out: dict, curves: dict, run) -> None:
    import numpy as np

    from deepscope.report.figures import plt, save

    a_lo, a_hi = s["alphas"][0], s["alphas"][-1]
    ms = s["measures"]
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


def _summary(s: dict, out: dict) -> str:
    a_lo, a_hi = s["alphas"][0], s["alphas"][-1]
    lines = [f"Delta = gap(alpha={a_lo:g}) - gap(alpha={a_hi:g}), gap = hardest - easiest group's mean "
             f"loss at equal training loss, averaged over shared rungs; > 0 is the paper's effect",
             f"{'measure':>9} {'Delta':>8} {'95% CI':>20} {'n':>3} {'rungs':>6}  "
             f"Spearman(difficulty, learning time on the shared rungs) alpha={a_lo:g} / {a_hi:g}"]
    for m in s["measures"]:
        d = out["delta"][m]
        ci = d.get("ci95")
        rho = out["spearman"][m]
        fmt = lambda v: f"{v['mean']:.3f}" if v else "n/a"  # noqa: E731
        mean = f"{d['mean']:8.4f}" if d.get("mean") is not None else "     n/a"
        cis = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
        lines.append(f"{m:>9} {mean} {cis:>20} {d.get('n', 0):>3} {min(d['shared_rungs']):>6}  "
                     f"{fmt(rho[f'{a_lo:g}'])} / {fmt(rho[f'{a_hi:g}'])}")
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
    if "cscore_reliability" in out:
        r = out["cscore_reliability"]
        lines.append(f"c-score reliability: pairwise Spearman {r['pairwise']:.3f}, "
                     f"split-half (Spearman-Brown) {r['spearman_brown']:.3f} over {r['n_seeds']} repetitions")
    return "\n".join(lines)


def verdict(result: dict) -> dict:
    """The paper's effect from result.json: Delta > 0 with a 95% interval above 0.

    Real data (mnist1d, cifar10): Delta = gap(alpha=1) - gap(alpha=100) for the c-score and
    label-noise groupings; reproduced when both intervals lie above 0, partly when one does
    or both means are > 0 (or one of the two was not run), not reproduced otherwise. Toy:
    the per-seed Spearman correlation of Delta loss with the distance to the boundary at the
    lowest level, < 0 with its interval below 0 for every toy (reproduced), for some
    (partly), for none (not reproduced). Not run: no such number in the result.
    """
    if "toy" in result:
        return _toy_verdict(result)
    claim = ("George, Lajoie & Baratin 2022 (arXiv 2209.09658): at equal training loss, feature "
             "learning (alpha = 1) separates hard from easy examples more than lazy training "
             "(alpha = 100): Delta = gap(1) - gap(100) > 0 for c-score and label-noise groups")
    deltas = result.get("delta") or {}
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


def _toy_verdict(result: dict) -> dict:
    claim = ("George, Lajoie & Baratin 2022 (arXiv 2209.09658), 2-D toys: at equal training loss "
             "feature learning has the higher loss near the boundary and the lower far from it "
             "(Delta = loss(alpha=1) - loss(alpha=100) falls with the distance: Spearman < 0)")
    parts, below, negative = [], [], []
    for name, levels in (result.get("toy") or {}).items():
        reached = [(float(lv), e) for lv, e in levels.items() if "per_seed_spearman" in e]
        if not reached:
            parts.append(f"{name}: no level reached by both regimes")
            continue
        lv, e = min(reached, key=lambda t: t[0])
        ps = e["per_seed_spearman"]
        ci = ps.get("ci95") or (ps["mean"], ps["mean"])
        parts.append(f"{name} at loss {lv:g}: per-seed Spearman {ps['mean']:.3f} "
                     f"[95% CI {ci[0]:.3f}, {ci[1]:.3f}], n={ps['n']}")
        below.append(ps["n"] >= 2 and ci[1] < 0)
        negative.append(ps["mean"] < 0)
    if not below:
        return {"claim": claim, "measured": "; ".join(parts) or "no toy was run",
                "verdict": "not run"}
    measured = "; ".join(parts)
    if all(below) and len(below) == len(parts):
        v = "reproduced"
    elif any(below) or any(negative):
        v = "partly"
    else:
        v = "not reproduced"
    return {"claim": claim, "measured": measured, "verdict": v}
