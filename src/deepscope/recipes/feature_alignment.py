"""Neural feature alignment: tangent kernels align with the labels during SGD (arXiv 2008.00938).

    deepscope run feature-alignment --threads 1 --out runs/fa          # CPU scale, 3 settings x 3 fractions x 3 seeds
    deepscope run feature-alignment --settings mnist1d-mlp --seeds 1 --seed 2 \\
        --threads 1 --out runs/fa                                      # one part; rerun to fill in
    deepscope run feature-alignment --settings cifar10-vgg19 cifar10-resnet18 \\
        --data-root ~/data --device cuda --out runs/fa-cifar           # paper scale (a GPU)
    deepscope run feature-alignment --quick

Each (setting, random-label fraction, seed) is a sub-run ``<out>/<setting>/random<pct>/seed<s>``
trained by :func:`deepscope.dynamics.feature_alignment.train_feature_alignment`: SGD with
momentum 0.9 and weight decay 5e-4 on cross-entropy, a fraction of the training labels replaced
by uniformly random ones, and at steps 0 and ``floor(5 * 1.15^k)`` the full tangent kernel of
fixed probe sets (100 training examples with the labels trained on, 100 test examples): its
centred alignment with the labels (whole network and per layer), the spectrum of the centred
train kernel and the path complexity measure. Finished sub-runs are skipped, killed ones resume
from their last epoch, so a grid can be filled in by several short invocations into one --out.
result.json aggregates the grid of the config: 95% intervals over seeds of the final/initial
alignment, the top-eigenvalue growth, the change in effective rank, the final alignment at
each fraction, and the Spearman correlation between the complexity and the generalisation gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from deepscope.dynamics.alignment_experiment import SETTINGS
from deepscope.recipes import Reproduce, System
from deepscope.train.config import RunConfig, require

#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("alignment", "Neural feature alignment", order=3)
REPRODUCE = Reproduce(
    smoke=("--quick",),
    quick=("--settings", "digits-small-cnn", "--fractions", "0", "0.5", "--seeds", "3"),
    paper=("--settings", "cifar10-vgg19", "cifar10-resnet18"),
    paper_needs_data_root=True,
)

Setting = Literal["mnist1d-cnn1d", "mnist1d-mlp", "digits-small-cnn", "digits-mlp",
                  "cifar10-vgg19", "cifar10-resnet18"]

LABELS = {"mnist1d-cnn1d": "MNIST-1D, 1-D CNN", "mnist1d-mlp": "MNIST-1D, MLP",
          "digits-small-cnn": "digits 8x8, small CNN", "digits-mlp": "digits 8x8, MLP",
          "cifar10-vgg19": "CIFAR-10, VGG-19", "cifar10-resnet18": "CIFAR-10, ResNet-18"}

PAPER = ("Baratin et al. 2021 (arXiv 2008.00938), VGG-19 / ResNet-18 without BatchNorm on CIFAR-10 "
         "and an MLP on MNIST, SGD with momentum, 0/20/50% random labels: the train and test "
         "alignment of the tangent kernel (100 + 100 probe examples) rises from about 0, the top "
         "eigenvalue grows by orders of magnitude and the effective rank falls; layers align "
         "unequally; random labels align less; the complexity measure orders runs like their "
         "generalisation gap. The claims are qualitative (figures); no table is quoted here.")

#: Thresholds of the verdict (named, so the docs and the tests quote the same numbers).
RISE = 2.0            # final / initial train alignment on clean labels, mean over seeds
EIG_GROWTH = 100.0    # final / initial top eigenvalue: two orders of magnitude
RHO = 0.5             # Spearman(complexity, gap) over the setting's runs


@dataclass(frozen=True)
class Config(RunConfig):
    """Tangent-kernel alignment along SGD, per setting, random-label fraction and seed."""

    settings: tuple[Setting, ...] = ("mnist1d-cnn1d", "mnist1d-mlp", "digits-small-cnn")
    """Data-network pairs. CPU scale: mnist1d-cnn1d, mnist1d-mlp, digits-small-cnn (digits-mlp is
    the quick one); paper scale (--data-root, a GPU): cifar10-vgg19, cifar10-resnet18."""

    fractions: tuple[float, ...] = (0.0, 0.2, 0.5)
    """Fractions of training labels replaced by random ones (the paper: 0, 0.2, 0.5)."""

    seeds: int = 3
    """Seeds --seed .. --seed + seeds - 1 (random labels, probes, initialisation, batches)."""

    epochs: int = 0
    """Training epochs (0: the setting's: 40 mnist1d-cnn1d, 60 mnist1d-mlp and digits, 200 CIFAR)."""

    lr: float = 0.0
    """SGD learning rate (0: the setting's: 0.05 at CPU scale, 0.01 on CIFAR-10)."""

    batch_size: int = 128
    """Mini-batch size (the authors' code: 128)."""

    momentum: float = 0.9
    """SGD momentum (the authors' code: 0.9)."""

    weight_decay: float = 5e-4
    """L2 weight decay (the authors' code: 5e-4)."""

    n_probe: int = 100
    """Probe examples per set for the kernels (the paper: 100 train, 100 test)."""

    n: int = 5000
    """MNIST-1D samples generated (80% train, 20% test)."""

    data_seed: int = 0
    """Seed of the MNIST-1D generator and of the digits split (fixed across --seed)."""

    data_root: Path | None = None
    """Folder with the torchvision CIFAR-10 files (cifar-10-batches-py/), for the cifar10 settings."""

    skip_missing: bool = False
    """Train nothing: aggregate the finished sub-runs of the grid and skip the others (a partial grid)."""

    QUICK: ClassVar[dict] = {"settings": ("digits-small-cnn",), "fractions": (0.0, 0.5),
                             "seeds": 1, "epochs": 5, "n_probe": 30}

    def validate(self) -> None:
        super().validate()
        require(len(self.settings) > 0, "settings", self.settings, f"some of {list(SETTINGS)}")
        for s in self.settings:
            require(s in SETTINGS, "settings", self.settings, f"among {list(SETTINGS)}")
        require(len(set(self.settings)) == len(self.settings), "settings", self.settings,
                "without repeats")
        require(len(self.fractions) > 0 and all(0.0 <= f < 1.0 for f in self.fractions),
                "fractions", self.fractions, "fractions in [0, 1), e.g. 0 0.2 0.5")
        require(len(set(self.fractions)) == len(self.fractions), "fractions", self.fractions,
                "without repeats")
        require(self.seeds >= 1, "seeds", self.seeds, ">= 1")
        require(self.epochs >= 0, "epochs", self.epochs, ">= 0 (0: the setting's default)")
        require(self.lr >= 0, "lr", self.lr, ">= 0 (0: the setting's default)")
        require(self.batch_size >= 2, "batch_size", self.batch_size, ">= 2")
        require(0.0 <= self.momentum < 1.0, "momentum", self.momentum, "in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        require(self.n_probe >= 2, "n_probe", self.n_probe, ">= 2 (centring needs two examples)")
        require(self.n >= 200, "n", self.n, ">= 200 (MNIST-1D samples)")
        if any(SETTINGS[s]["dataset"] == "cifar10" for s in self.settings):
            ok = self.data_root is not None and (
                Path(self.data_root).expanduser() / "cifar-10-batches-py").is_dir()
            require(ok, "data_root", None if self.data_root is None else str(self.data_root),
                    "a folder holding cifar-10-batches-py/ for the cifar10 settings")


def resolved(cfg: Config, setting: str) -> dict:
    """One setting's training options, the config's where set, else the setting's defaults."""
    from deepscope.dynamics.alignment_experiment import setting_options

    return setting_options(setting, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                           momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           n_probe=cfg.n_probe, n=cfg.n, data_seed=cfg.data_seed)


def run(cfg: Config, run) -> dict:
    from deepscope.dynamics.alignment_experiment import (
        cell_name,
        setting_data,
        summarise_setting,
        train_cell,
    )
    from deepscope.train.grid import Grid, setting_path
    from deepscope.train.run import is_finished, read_result

    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    opts = {s: resolved(cfg, s) for s in cfg.settings}
    cells = {cell_name(s, f): f for s in cfg.settings for f in cfg.fractions}
    data: dict = {}  # per dataset, loaded when its first cell trains

    def cell(sub, c, seed):
        o = opts[c[0]]
        if o["dataset"] not in data:
            data[o["dataset"]] = setting_data(run, o["dataset"], n=cfg.n, data_seed=cfg.data_seed,
                                              data_root=cfg.data_root)
        return train_cell(sub, data[o["dataset"]], o, fraction=cells[c], seed=seed)

    if cfg.skip_missing:  # read the finished cells only; create nothing
        paths = {(c, sd): run.dir / setting_path(c) / f"seed{sd}" for c in cells for sd in seeds}
        grid = Grid(list(cells), seeds, {k: read_result(p) for k, p in paths.items()
                                         if is_finished(p)})
    else:
        grid = run.grid(cells, seeds, cell,
                        config=lambda c, sd: {**opts[c[0]], "random_labels": cells[c], "seed": sd})
    out = {}
    for setting in cfg.settings:
        res = summarise_setting(grid, setting, fractions=cfg.fractions, seeds=seeds)
        if res is not None:
            out[setting] = res
    if out:
        _figures(cfg, run, grid, out)
    return {"settings": {s: resolved(cfg, s) for s in cfg.settings},
            "fractions": list(cfg.fractions), "seeds": seeds, "results": out,
            "paper": PAPER, "summary": _table(cfg, out)}


# -- figures, verdict ---------------------------------------------------------------------------


def _table(cfg: Config, out: dict) -> str:
    fr = [f"{f:g}" for f in cfg.fractions]
    rows = ["setting                 A_train init->final (x)   A_test init->final   top-eig x   "
            "eff. rank init->final   | A_test final by fraction " + "/".join(fr) + " | rho(C, gap)"]
    for s, r in out.items():
        a, t, e = r["align_train"], r["align_test"], r["effective_rank"]
        byf = "/".join(f"{r['by_fraction'][f]['align_test_final']['mean']:.3f}"
                       if f in r["by_fraction"] else "-" for f in fr)
        rows.append(
            f"{s:<22} {a['initial']['mean']:.3f}->{a['final']['mean']:.3f} "
            f"({a['final_over_initial']['mean']:.1f}x)      {t['initial']['mean']:.3f}->"
            f"{t['final']['mean']:.3f}       {r['top_eigenvalue_growth']['mean']:9.3g}   "
            f"{e['initial']['mean']:6.1f}->{e['final']['mean']:6.1f}          | {byf} | "
            f"{r['complexity_gap_spearman']['pooled']:+.2f}")
    rows.append("(means over the seeds (n in result.json) at the smallest random-label fraction "
                "unless by fraction; rho: Spearman over all runs of the setting)")
    return "\n".join(rows)


def _mean_curves(grid, setting: str, frac: float, key: str):
    import numpy as np

    from deepscope.dynamics.alignment_experiment import cell_name

    hs = [r["history"] for r in grid.results(cell_name(setting, frac))]
    n = min(len(h) for h in hs)
    steps = np.array([x["step"] for x in hs[0][:n]])
    if key.startswith("layer:"):
        ly = key[6:]
        vals = np.array([[x["layer_align_train"][ly] for x in h[:n]] for h in hs])
    else:
        vals = np.array([[x[key] for x in h[:n]] for h in hs], dtype=float)
    return steps, vals.mean(0), vals.min(0), vals.max(0)


def _figures(cfg: Config, run, grid, out: dict) -> None:
    import numpy as np

    from deepscope.dynamics.alignment_experiment import cell_name, per_run
    from deepscope.report.figures import plt, save

    settings = list(out)
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(cfg.fractions)))
    ns = len(settings)

    def has(s, f):
        return bool(grid.results(cell_name(s, f)))

    def curves_by_fraction(keys, ylabels, titles, name, log_y=(False, False)):
        """Two rows of panels (one per key), one column per setting; mean and min-max band."""
        fig, axes = plt.subplots(2, ns, figsize=(3.6 * ns, 5.6), squeeze=False)
        for j, s in enumerate(settings):
            for row, key in enumerate(keys):
                ax = axes[row][j]
                for c, f in zip(colors, cfg.fractions):
                    if not has(s, f):
                        continue
                    st, m, lo, hi = _mean_curves(grid, s, f, key)
                    ax.plot(st + 1, m, color=c, label=f"random {f:g}")
                    ax.fill_between(st + 1, lo, hi, color=c, alpha=0.2)
                ax.set_xscale("log")
                if log_y[row]:
                    ax.set_yscale("log")
                ax.set_title(titles[row](s), fontsize=9)
                ax.set_xlabel("step + 1")
                ax.grid(alpha=0.3)
            axes[0][j].legend(fontsize=7)
        for row in range(2):
            axes[row][0].set_ylabel(ylabels[row])
        save(fig, run.figure_path(name))

    curves_by_fraction(("align_train", "align_test"),
                       ("alignment (train probe)", "alignment (test probe)"),
                       (lambda s: f"{LABELS[s]}: train", lambda s: f"{LABELS[s]}: test"), "alignment")

    fig, axes = plt.subplots(1, ns, figsize=(3.6 * ns, 3.0), squeeze=False)
    for j, s in enumerate(settings):
        clean = out[s]["clean_fraction"]
        first = grid.results(cell_name(s, clean))[0]
        layers = list(first["history"][0]["layer_align_train"])
        lc = plt.cm.plasma(np.linspace(0, 0.85, len(layers)))
        ax = axes[0][j]
        for c, (i, ly) in zip(lc, enumerate(layers)):
            st, m, _, _ = _mean_curves(grid, s, clean, f"layer:{ly}")
            ax.plot(st + 1, m, color=c, label=f"{i + 1}: {ly}")
        ax.set_xscale("log")
        ax.set_title(f"{LABELS[s]}, random {clean:g}", fontsize=9)
        ax.set_xlabel("step + 1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("per-layer alignment (train)")
    save(fig, run.figure_path("layers"))

    curves_by_fraction(("top_eigenvalue", "effective_rank"),
                       ("top eigenvalue (centred train kernel)", "effective rank"),
                       (lambda s: LABELS[s], lambda s: LABELS[s]), "spectrum", log_y=(True, False))

    fig, axes = plt.subplots(1, ns, figsize=(3.6 * ns, 3.2), squeeze=False)
    for j, s in enumerate(settings):
        ax = axes[0][j]
        for c, f in zip(colors, cfg.fractions):
            pts = [per_run(r) for r in grid.results(cell_name(s, f))]
            if not pts:
                continue
            ax.scatter([p["complexity"] for p in pts], [p["gap"] for p in pts], color=c,
                       label=f"random {f:g}")
        rho = out[s]["complexity_gap_spearman"]["pooled"]
        ax.set_title(f"{LABELS[s]} (Spearman {rho:+.2f})", fontsize=9)
        ax.set_xlabel("complexity measure C (end of training)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("generalisation gap (train - test accuracy)")
    save(fig, run.figure_path("complexity_gap"))


def verdict(result: dict) -> dict:
    """The paper's five qualitative claims, checked per setting on the aggregated numbers."""
    res = result.get("results", {})
    claim = (f"alignment rises (final/initial train alignment >= {RISE:g} on clean labels), the top "
             f"eigenvalue grows >= {EIG_GROWTH:g}x, the effective rank falls, random labels align "
             f"less (final test alignment at the largest fraction < at 0) and the complexity orders "
             f"runs like their gap (Spearman >= {RHO:g})")
    if not res:
        return {"claim": claim, "measured": "no setting was run", "verdict": "not run"}
    checks: dict[str, dict[str, bool]] = {}
    parts = []
    for s, r in res.items():
        fr = list(r["by_fraction"])
        hi = max(fr, key=float)
        rise = r["align_train"]["final_over_initial"]["mean"]
        eig = r["top_eigenvalue_growth"]["mean"]
        d_rank = r["effective_rank"]["change"]["mean"]
        a0 = r["by_fraction"][min(fr, key=float)]["align_test_final"]["mean"]
        a1 = r["by_fraction"][hi]["align_test_final"]["mean"]
        rho = r["complexity_gap_spearman"]["pooled"]
        c = {"rise": rise >= RISE, "eig": eig >= EIG_GROWTH, "rank": d_rank < 0}
        if len(fr) > 1:
            c["random"] = a1 < a0
            c["complexity"] = rho == rho and rho >= RHO
        checks[s] = c
        parts.append(f"{s}: x{rise:.1f} alignment, x{eig:.3g} top eig, rank {d_rank:+.0f}, "
                     f"test alignment {a0:.3f} (clean) vs {a1:.3f} (random {hi}), rho {rho:+.2f}")
    flags = [v for c in checks.values() for v in c.values()]
    if all(flags):
        v = "reproduced"
    elif all(c["rise"] for c in checks.values()) or sum(flags) >= len(flags) / 2:
        v = "partly"
    else:
        v = "not reproduced"
    failed = sorted({k for c in checks.values() for k, ok in c.items() if not ok})
    measured = "; ".join(parts) + (f" (fails: {', '.join(failed)})" if failed else "")
    return {"claim": claim, "measured": measured, "verdict": v}
