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
by uniformly random ones, trained until its training accuracy on the labels trained on reaches
--fit-threshold (0.99), random labels included, then --epochs-after-fit more epochs (--epochs is
the cap); at steps 0 and ``floor(5 * 1.15^k)``, at the fitting epoch and at the end, the full
tangent kernel of fixed probe sets (100 training examples with the labels trained on, 100 test
examples): its centred alignment with the labels (whole network and per layer), the spectrum of
the centred train kernel and the path complexity measure C = (1/n) sum_k ||Delta theta_k||
sqrt(Tr K_k) (with its margin-normalised variant C / gamma beside it).
Finished sub-runs are skipped, killed ones resume from their last epoch, so a grid can be filled
in by several short invocations into one --out. result.json aggregates the grid of the config:
95% intervals over seeds of the final/initial alignment, the top-eigenvalue growth, the change
in effective rank, per fraction the epoch each run fits and the gap, complexity and alignment read
there and at the end, and the Spearman correlation of the complexity C with the gap over the
setting's runs (at the fit and at the end; C / gamma beside it) with a bootstrap interval. The
verdict judges every setting that ran (the complexity claim on C, not on C / gamma) and names
the claims that hold on each; a run of some settings only is never "reproduced".
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
    quick=("--settings", "digits-small-cnn", "--fractions", "0", "0.2", "0.5", "--seeds", "3"),
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
RHO = 0.5             # Spearman(complexity C, gap) over the setting's runs


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
    """Epoch cap (0: the setting's: 400 at CPU scale, 1000 on CIFAR-10, 20 digits-mlp); runs stop
    earlier, --epochs-after-fit epochs after they fit."""

    lr: float = 0.0
    """SGD learning rate (0: the setting's: 0.01 digits CNN, 0.05 MNIST-1D, 0.01 CIFAR-10; the
    authors' released figures use 0.01 and 0.003)."""

    init: Literal["", "default", "kaiming"] = ""
    """Initialisation ('': the setting's, Kaiming-normal weights with zero biases as the authors'
    code, except digits-mlp; 'default': PyTorch's)."""

    fit_threshold: float = 0.99
    """Training accuracy (labels trained on, whole training set) at which a run counts as fitted;
    the complexity, gap and alignment are read there (and at the end)."""

    epochs_after_fit: int = -1
    """Epochs trained after a run fits (-1: the setting's, 50 at CPU scale)."""

    probe_augmented: bool = False
    """Draw the training probes through the augmentation once (the authors' probes come from the
    augmented loader); settings with augmentation only (CIFAR-10)."""

    kernel_ratio: float = 1.15
    """Growth of the kernel checkpoints, at steps 0 and floor(5 * ratio^k) (the paper's 1.15);
    larger: fewer checkpoints, a cheaper tracker and a coarser complexity sum."""

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
        require(self.kernel_ratio > 1.0, "kernel_ratio", self.kernel_ratio,
                "> 1 (the paper's 1.15): the growth of the kernel checkpoint schedule")
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
        require(0.0 < self.fit_threshold <= 1.0, "fit_threshold", self.fit_threshold,
                "in (0, 1], e.g. 0.99")
        require(self.epochs_after_fit >= -1, "epochs_after_fit", self.epochs_after_fit,
                ">= 0 (-1: the setting's)")
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
                           n_probe=cfg.n_probe, n=cfg.n, data_seed=cfg.data_seed, init=cfg.init,
                           fit_threshold=cfg.fit_threshold, epochs_after_fit=cfg.epochs_after_fit,
                           probe_augmented=cfg.probe_augmented, kernel_ratio=cfg.kernel_ratio)


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


def _fmt_rho(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{r['rho']:+.2f} [{lo:+.2f}, {hi:+.2f}] ({r['n']} runs)"


def _table(cfg: Config, out: dict) -> str:
    fr = [f"{f:g}" for f in cfg.fractions]
    rows = []
    for s, r in out.items():
        a, t, e = r["align_train"], r["align_test"], r["effective_rank"]
        rows.append(f"{s}: train alignment {a['initial']['mean']:.3f} -> {a['final']['mean']:.3f} "
                    f"(x{a['final_over_initial']['mean']:.1f}), test {t['initial']['mean']:.3f} -> "
                    f"{t['final']['mean']:.3f}, top eigenvalue x{r['top_eigenvalue_growth']['mean']:.3g}, "
                    f"effective rank {e['initial']['mean']:.0f} -> {e['final']['mean']:.0f}")
        rows.append("  random  fitted  fit epoch   gap@fit  C@fit     C/gamma@fit  gap@end  C@end     "
                    "A_train@fit  A_test@end")
        for f in fr:
            b = r["by_fraction"].get(f)
            if b is None:
                continue
            m = {k: b[k]["mean"] for k in b if isinstance(b[k], dict)}
            rows.append(f"  {f:<6}  {b['fitted']}/{b['runs']}     {m['fit_epoch']:7.1f}   "
                        f"{m['gap_fit']:+.3f}   {m['complexity_fit']:8.3g}  "
                        f"{m['complexity_per_margin_fit']:8.3g}     {m['gap_end']:+.3f}   "
                        f"{m['complexity_end']:8.3g}  {m['align_train_fit']:.3f}        "
                        f"{m['align_test_final']:.3f}")
        cg = r["complexity_gap"]
        rows.append(f"  Spearman(C, gap) at fit {_fmt_rho(cg['at_fit'])}; at end {_fmt_rho(cg['at_end'])}; "
                    f"Spearman(C/gamma, gap) at fit {_fmt_rho(cg['per_margin_at_fit'])}")
    rows.append("(means over seeds; C: the complexity (1/n) sum_k ||dtheta_k|| sqrt(Tr K_k); "
                "C/gamma: C over the training margin gamma; gap: train accuracy on the labels "
                "trained on - test accuracy; [95% bootstrap interval over runs])")
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

    fracs = [f for f in cfg.fractions if any(has(s, f) for s in settings)]
    fig, axes = plt.subplots(len(fracs), ns, figsize=(3.6 * ns, 2.8 * len(fracs)), squeeze=False)
    for i, f in enumerate(fracs):
        for j, s in enumerate(settings):
            ax = axes[i][j]
            if not has(s, f):
                ax.set_visible(False)
                continue
            first = grid.results(cell_name(s, f))[0]
            layers = list(first["history"][0]["layer_align_train"])
            lc = plt.cm.plasma(np.linspace(0, 0.85, len(layers)))
            for c, (k, ly) in zip(lc, enumerate(layers)):
                st, m, lo, hi = _mean_curves(grid, s, f, f"layer:{ly}")
                ax.plot(st + 1, m, color=c, label=f"{k + 1}: {ly}")
                ax.fill_between(st + 1, lo, hi, color=c, alpha=0.15)
            fits = [per_run(r)["fit_epoch"] for r in grid.results(cell_name(s, f))]
            steps_fit = [next((h["step"] for h in r["history"] if h["epoch"] >= e), None)
                         for r, e in zip(grid.results(cell_name(s, f)), fits) if e == e]
            for sf in steps_fit:
                if sf is not None:
                    ax.axvline(sf + 1, color="grey", lw=0.6, ls="--")
            ax.set_xscale("log")
            ax.set_title(f"{LABELS[s]}, random {f:g} (dashed: fit)", fontsize=8)
            ax.set_xlabel("step + 1")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.legend(fontsize=6)
        axes[i][0].set_ylabel("per-layer alignment (train)")
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
            ax.scatter([p["complexity_fit"] for p in pts], [p["gap_fit"] for p in pts], color=c,
                       label=f"random {f:g}")
        rho = out[s]["complexity_gap"]["at_fit"]["rho"]
        ax.set_title(f"{LABELS[s]} (Spearman {rho:+.2f})", fontsize=9)
        ax.set_xlabel("complexity C = (1/n) Σ‖Δθ‖√Tr K at the fit")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("generalisation gap (train - test accuracy)")
    save(fig, run.figure_path("complexity_gap"))


#: The settings a full CPU-scale run covers (a verdict names the ones it did not run).
CPU_SETTINGS = ("mnist1d-cnn1d", "mnist1d-mlp", "digits-small-cnn")

CHECKS = {"rise": "alignment rises", "eig": "top eigenvalue grows", "rank": "effective rank falls",
          "random": "random labels align less", "complexity": "complexity ranks runs like their gap"}


def setting_checks(r: dict) -> dict[str, bool | None]:
    """Each claim of the paper on one setting's summary: True (holds), False, None (not judged).

    The complexity claim is judged on the Spearman of the complexity measure
    ``C = (1/n) sum_k ||Delta theta_k|| sqrt(Tr K_k)`` (not its margin-normalised variant) with
    the gap, both read where each run fits its labels, over every run of the setting: it holds when
    rho >= RHO and the bootstrap interval excludes 0; it is not judged (None) unless every run
    fitted and there are >= 2 fractions.
    """
    fr = list(r["by_fraction"])
    hi = max(fr, key=float)
    c: dict[str, bool | None] = {
        "rise": r["align_train"]["final_over_initial"]["mean"] >= RISE,
        "eig": r["top_eigenvalue_growth"]["mean"] >= EIG_GROWTH,
        "rank": r["effective_rank"]["change"]["mean"] < 0}
    if len(fr) > 1:
        a0 = r["by_fraction"][min(fr, key=float)]["align_test_final"]["mean"]
        c["random"] = r["by_fraction"][hi]["align_test_final"]["mean"] < a0
        cg = r["complexity_gap"]["at_fit"]
        if r["runs_fitted"] < r["runs"] or cg["rho"] != cg["rho"]:
            c["complexity"] = None
        else:
            c["complexity"] = cg["rho"] >= RHO and cg["ci95"][0] > 0
    return c


def verdict(result: dict) -> dict:
    """The paper's claims judged on every setting that ran; says which hold where.

    "reproduced" only when every claim holds on every setting run and every CPU-scale setting
    ran (or the paper-scale ones did); "partly" when some hold; "not reproduced" when none of
    the judged claims holds anywhere.
    """
    res = result.get("results", {})
    claim = (f"alignment rises (final/initial train alignment >= {RISE:g} on clean labels), the top "
             f"eigenvalue grows >= {EIG_GROWTH:g}x, the effective rank falls, random labels align "
             f"less (final test alignment at the largest fraction < at 0) and the complexity C = (1/n) "
             f"sum_k ||Delta theta_k|| sqrt(Tr K_k), read where each run fits its labels, orders "
             f"the runs like their gap (Spearman >= {RHO:g}, bootstrap interval above 0)")
    if not res:
        return {"claim": claim, "measured": "no setting was run", "verdict": "not run"}
    parts, flags = [], []
    for s, r in res.items():
        c = setting_checks(r)
        flags += [v for v in c.values() if v is not None]
        holds = [CHECKS[k] for k, v in c.items() if v]
        fails = [CHECKS[k] for k, v in c.items() if v is False]
        unjudged = [CHECKS[k] for k, v in c.items() if v is None]
        cg = r["complexity_gap"]
        per_margin = cg.get("per_margin_at_fit")
        text = (f"{s}: x{r['align_train']['final_over_initial']['mean']:.1f} alignment, "
                f"x{r['top_eigenvalue_growth']['mean']:.3g} top eig, "
                f"{r['runs_fitted']}/{r['runs']} runs fit, rho(C, gap) at fit {_fmt_rho(cg['at_fit'])}"
                + (f" (margin-normalised variant rho(C/gamma, gap) {_fmt_rho(per_margin)})"
                   if per_margin else "")
                + f" -- holds: {', '.join(holds) or 'none'}")
        if fails:
            text += f"; fails: {', '.join(fails)}"
        if unjudged:
            text += f"; not judged: {', '.join(unjudged)} (runs that did not fit, or one fraction)"
        parts.append(text)
    ran = set(res)
    missing = [s for s in CPU_SETTINGS if s not in ran]
    paper_scale = any(SETTINGS[s]["dataset"] == "cifar10" for s in ran)
    if flags and all(flags) and (paper_scale or not missing):
        v = "reproduced"
    elif any(flags):
        v = "partly"
    else:
        v = "not reproduced"
    measured = "; ".join(parts)
    if missing and not paper_scale:
        measured += f" (settings not run here: {', '.join(missing)})"
    return {"claim": claim, "measured": measured, "verdict": v}
