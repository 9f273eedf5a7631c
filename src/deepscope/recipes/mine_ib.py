"""Information-bottleneck classifier with MINE vs the variational IB and a plain network (arXiv 1801.04062, sec. 5.3).

Trains each method with the same encoder, decoder and budget over several seeds (the loop
is ``deepscope.mi.bottleneck.train_ib``) and reports the test error (mean ± std), then
sweeps beta for the bottlenecked methods and plots test error and a held-out estimate of
I(X;Z) (the ``MINE`` estimator fitted on every row and its code) against beta. Every
(method, beta, seed) is a sub-run under ``<out>/<method>/beta<b>/seed<s>/`` with
checkpoints; an interrupted run resumes and skips finished sub-runs.

    deepscope run mine-ib --threads 1                         # MNIST-1D, generated offline
    deepscope run mine-ib --dataset digits --epochs 50
    deepscope run mine-ib --dataset mnist --data-root ~/data --hidden 1024 1024 --code-dim 256
    deepscope run mine-ib --quick      # 2 seeds x 2 epochs, 32-32 encoder, code 8, two sweep betas
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, get_args

from deepscope.recipes import System
from deepscope.train.config import RunConfig, require

MethodName = Literal["plain", "vib", "mine"]


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("mine", "MINE", order=1)

@dataclass(frozen=True)
class Config(RunConfig):
    """MINE-IB vs VIB vs plain network; permutation-invariant MNIST is the paper's setting."""

    dataset: Literal["mnist1d", "digits", "mnist"] = "mnist1d"
    """mnist1d (generated, 40 features), digits (sklearn 8x8) or mnist (torchvision files under --data-root, flattened: permutation invariant)."""

    data_root: str | None = None
    """Folder holding MNIST/raw/... for --dataset mnist (nothing is downloaded)."""

    methods: tuple[MethodName, ...] = ("plain", "vib", "mine")
    """Methods in the table: plain (cross-entropy), vib (Gaussian encoder + KL), mine (MINE-IB)."""

    noise: Literal["gaussian", "additive", "propagated"] = "gaussian"
    """MINE-IB encoder noise: gaussian (learned mean and std), additive (fixed-std noise on the code) or propagated (noise after every hidden layer)."""

    beta_vib: float = 1e-3
    """Weight of the KL term of the VIB in the table (1e-3 as in Alemi et al. 2017)."""

    beta_mine: float = 1e-2
    """Weight of I(X;Z) for MINE-IB in the table."""

    standardize_code: bool = True
    """MINE-IB: standardise the code per dimension before the critic (stops the encoder from gaming the estimate by scale)."""

    sigma: float = 1.0
    """Noise std of the additive and propagated encoders."""

    seeds: int = 3
    """Seeds per method (seed, seed+1, ...)."""

    epochs: int = 40
    """Training epochs (the same for every method)."""

    batch_size: int = 100
    """Mini-batch size (100 in the paper)."""

    hidden: tuple[int, ...] = (256, 256)
    """Encoder hidden widths (two layers; the paper uses 1024 1024 on MNIST)."""

    code_dim: int = 64
    """Size of the stochastic code Z (the paper uses 256)."""

    lr: float = 1e-3
    """Adam learning rate of encoder and decoder."""

    critic_lr: float = 1e-4
    """Adam learning rate of MINE's statistics network."""

    sweep_betas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    """Betas of the sweep plot (one seed each); empty to skip the sweep."""

    sweep_methods: tuple[Literal["mine", "vib"], ...] = ("mine", "vib")
    """Methods swept over beta."""

    probe_steps: int = 1000
    """Most steps of the MINE estimator that measures I(X;Z) on every row after training (0: skip)."""

    mnist1d_samples: int = 5000
    """Samples generated for MNIST-1D (80% train, 20% test)."""

    QUICK: ClassVar[dict] = {"seeds": 2, "epochs": 2, "hidden": (32, 32), "code_dim": 8,
                             "sweep_betas": (1e-3, 1e-1), "probe_steps": 20, "mnist1d_samples": 500}

    def validate(self) -> None:
        super().validate()
        require(self.dataset in ("mnist1d", "digits", "mnist"), "dataset", self.dataset, "'mnist1d', 'digits' or 'mnist'")
        require(self.dataset != "mnist" or (self.data_root is not None and Path(self.data_root).is_dir()),
                "data_root", self.data_root, "an existing folder holding MNIST/raw/ with --dataset mnist")
        require(len(self.methods) >= 1 and set(self.methods) <= set(get_args(MethodName)), "methods",
                self.methods, f"one or more of {get_args(MethodName)}")
        require(set(self.sweep_methods) <= {"mine", "vib"}, "sweep_methods", self.sweep_methods,
                "a subset of ('mine', 'vib') (plain has no beta)")
        require(self.noise in ("gaussian", "additive", "propagated"), "noise", self.noise,
                "'gaussian', 'additive' or 'propagated'")
        for name, low in {"seeds": 1, "epochs": 1, "batch_size": 2, "code_dim": 1, "probe_steps": 0,
                          "mnist1d_samples": 100}.items():
            require(getattr(self, name) >= low, name, getattr(self, name), f">= {low}")
        betas = (self.beta_vib, self.beta_mine, *self.sweep_betas)
        require(min(betas) >= 0, "beta_vib, beta_mine, sweep_betas", betas, ">= 0")
        require(min(self.sigma, self.lr, self.critic_lr) > 0, "sigma, lr, critic_lr",
                (self.sigma, self.lr, self.critic_lr), "> 0")
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden", self.hidden, "non-empty, each >= 1")

def _train_one(cfg: Config, sub, ds, method: str, beta: float, seed: int) -> dict:
    """One (method, beta, seed) sub-run: train, test error, held-out I(X;Z) by MINE."""
    import torch

    from deepscope.mi.bottleneck import error_rate, estimate_mi_xz, train_ib

    model = train_ib(
        ds, generator=sub.generator("ib"), run=sub, method=method,
        noise=cfg.noise if method == "mine" else None, beta=beta, hidden=cfg.hidden,
        code_dim=cfg.code_dim, sigma=cfg.sigma, critic_lr=cfg.critic_lr,
        options={"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
                 "checkpoint_every": cfg.checkpoint_every or 1},
        standardize_code=cfg.standardize_code, desc=f"{method} beta={beta:g} seed={seed}",
    ).model
    g = sub.generator("evaluate")
    res = {"method": method, "noise": model.noise, "beta": beta, "seed": seed,
           "test_error": error_rate(model, ds.x_test, ds.y_test, generator=g)}
    if cfg.probe_steps > 0:
        x = torch.cat([ds.x_train, ds.x_test])
        res["mi_xz"] = estimate_mi_xz(model, x, generator=g, max_steps=cfg.probe_steps, n_bootstrap=0).mi_
    return res


def run(cfg: Config, run) -> dict:
    from deepscope.data import load_dataset

    extra = {"n": cfg.mnist1d_samples} if cfg.dataset == "mnist1d" else {"data_root": cfg.data_root}
    ds = load_dataset(cfg.dataset, seed=0, **extra)
    beta_of = {"plain": 0.0, "vib": cfg.beta_vib, "mine": cfg.beta_mine}
    sub_cfg = {k: v for k, v in vars(cfg).items()
               if k not in ("out", "seed", "seeds", "methods", "sweep_betas", "sweep_methods", "quick")}

    def grid(settings, seeds):
        """Sub-runs ``<method>/beta<b>/seed<s>`` for (method, beta) settings."""
        keys = {(m, f"beta{b:g}"): (m, b) for m, b in settings}
        return run.grid(keys, seeds, lambda sub, key, seed: _train_one(cfg, sub, ds, *keys[key], seed),
                        config=lambda key, seed: {**sub_cfg, "method": keys[key][0], "beta": keys[key][1],
                                                  "seed": seed}), keys

    table = []
    runs: dict[str, list[dict]] = {}
    main, keys = grid([(m, beta_of[m]) for m in cfg.methods], range(cfg.seed, cfg.seed + cfg.seeds))
    err = main.summary("test_error", scale=100)
    mi = main.summary("mi_xz") if cfg.probe_steps > 0 else {}
    for key, (method, beta) in keys.items():
        rows = runs[method] = main.results(key)
        entry = {"method": method, "noise": rows[0]["noise"], "beta": beta, "runs": len(rows),
                 "test_error_pct": err[key]["mean"], "test_error_pct_std": err[key]["std"],
                 "test_error_pct_ci95": err[key]["ci95"]}
        if "mi_xz" in rows[0]:
            entry.update(mi_xz=mi[key]["mean"], mi_xz_std=mi[key]["std"], mi_xz_ci95=mi[key]["ci95"])
        table.append(entry)

    sweep = []
    swept, _ = grid([(m, b) for m in cfg.sweep_methods for b in cfg.sweep_betas], [cfg.seed])
    for (method, _), r in zip(swept.settings, (swept.results(k)[0] for k in swept.settings)):
        sweep.append({"method": method, "beta": r["beta"], "test_error": r["test_error"], "mi_xz": r.get("mi_xz")})
    fig = _figure(cfg, run, sweep, runs) if sweep else None

    lines = [f"Information bottleneck on {cfg.dataset}: {cfg.seeds} seeds x {cfg.epochs} epochs, "
             f"encoder {list(cfg.hidden)} -> code {cfg.code_dim}; test error in %"]
    lines.append(f"{'method':<8} {'noise':<11} {'beta':>7}  {'test error %':>15}  {'I(X;Z) held-out, nats':>22}")
    for e in table:
        mi_txt = f"{e['mi_xz']:8.2f} ± {e['mi_xz_std']:<5.2f}" if "mi_xz" in e else ""
        lines.append(f"{e['method']:<8} {e['noise']:<11} {e['beta']:>7g}  "
                     f"{e['test_error_pct']:7.2f} ± {e['test_error_pct_std']:<5.2f}  {mi_txt:>22}")
    lines.append("mean ± std over seeds; 95% intervals of the means in result.json")
    return {
        "dataset": cfg.dataset,
        "table": table,
        "sweep": sweep,
        "runs": runs,
        "figure": str(fig) if fig else None,
        "paper": "PI-MNIST test error (%): MINE-IB 1.10-1.26 (by encoder noise), VIB 1.37, plain 1.38 "
                 "(Belghazi et al. 2018, table 3; 1024-1024 encoder, 256-d code)",
        "summary": "\n".join(lines),
    }


def _figure(cfg, run, sweep, runs):
    from matplotlib.ticker import FuncFormatter

    from deepscope.report.figures import plt, save

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2))
    colors = {"mine": "tab:blue", "vib": "tab:orange", "plain": "tab:gray"}
    for method in dict.fromkeys(r["method"] for r in sweep):
        pts = sorted((r["beta"], r["test_error"], r["mi_xz"]) for r in sweep if r["method"] == method)
        b = [p[0] for p in pts]
        label = "MINE-IB" if method == "mine" else "VIB"
        ax1.plot(b, [100 * p[1] for p in pts], "o-", color=colors[method], label=label)
        if all(p[2] is not None for p in pts):
            ax2.plot(b, [p[2] for p in pts], "o-", color=colors[method], label=label)
    if "plain" in runs:
        err = sum(r["test_error"] for r in runs["plain"]) / len(runs["plain"])
        ax1.axhline(100 * err, ls="--", color=colors["plain"], label="plain")
        mis = [r["mi_xz"] for r in runs["plain"] if r.get("mi_xz") is not None]
        if mis:
            ax2.axhline(sum(mis) / len(mis), ls="--", color=colors["plain"], label="plain")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("β")
        ax.legend(fontsize=8)
    ax1.set_yscale("log")  # a collapsed code (error ~ 90 %) would flatten the rest
    plain_numbers = FuncFormatter(lambda v, _: f"{v:g}")
    ax1.yaxis.set_major_formatter(plain_numbers)
    ax1.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    ax1.set_ylabel("test error (%, log scale)")
    ax2.set_ylabel("I(X;Z), held-out MINE (nats)")
    fig.suptitle(f"Information bottleneck on {cfg.dataset}", fontsize=10)
    return save(fig, run.figure_path(f"beta_sweep_{cfg.dataset}"), dpi=90)
