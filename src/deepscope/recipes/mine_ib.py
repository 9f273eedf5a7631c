"""Information-bottleneck classifier with MINE vs the variational IB and a plain network (arXiv 1801.04062, sec. 5.3).

Trains each method with the same encoder, decoder and budget over several seeds and
reports the test error (mean ± std), then sweeps beta for the bottlenecked methods and
plots test error and a held-out MINE estimate of I(X;Z) against beta. Every
(method, beta, seed) is a sub-run under ``<out>/<method>/beta<b>/seed<s>/`` with
checkpoints; an interrupted run resumes and skips finished sub-runs.

    deepscope run mine-ib --threads 1                         # MNIST-1D, generated offline
    deepscope run mine-ib --dataset digits --epochs 50
    deepscope run mine-ib --dataset mnist --data-root ~/data --hidden 1024 1024 --code-dim 256
    deepscope run mine-ib --quick                             # seconds: a smoke test
"""

from __future__ import annotations

from dataclasses import dataclass

from deepscope.train.config import RunConfig

_DATASETS = ("mnist1d", "digits", "mnist")


@dataclass(frozen=True)
class Config(RunConfig):
    """MINE-IB vs VIB vs plain network; permutation-invariant MNIST is the paper's setting."""

    dataset: str = "mnist1d"
    """'mnist1d' (generated, 40 features), 'digits' (sklearn 8x8) or 'mnist' (torchvision files under --data-root, flattened: permutation invariant)."""

    data_root: str | None = None
    """Folder holding MNIST/raw/... for --dataset mnist (nothing is downloaded)."""

    methods: tuple[str, ...] = ("plain", "vib", "mine")
    """Methods in the table: 'plain' (cross-entropy), 'vib' (Gaussian encoder + KL), 'mine' (MINE-IB)."""

    noise: str = "gaussian"
    """MINE-IB encoder noise: 'gaussian' (learned mean and std), 'additive' (fixed-std noise on the code) or 'propagated' (noise after every hidden layer)."""

    beta_vib: float = 1e-3
    """Weight of the KL term of the VIB in the table (1e-3 as in Alemi et al. 2017)."""

    beta_mine: float = 1e-2
    """Weight of I(X;Z) for MINE-IB in the table."""

    standardize_code: bool = True
    """MINE-IB: standardise the code per dimension before the critic (stops the encoder from gaming the estimate by scale)."""

    sigma: float = 1.0
    """Noise std of the 'additive' and 'propagated' encoders."""

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

    sweep_methods: tuple[str, ...] = ("mine", "vib")
    """Methods swept over beta."""

    probe_steps: int = 1000
    """Steps of the fresh MINE critic that estimates I(X;Z) on held-out data after training (0: skip)."""

    mnist1d_samples: int = 5000
    """Samples generated for MNIST-1D (80% train, 20% test)."""

    quick: bool = False
    """A tiny budget (digits-sized nets, 2 epochs, 2 seeds, two sweep betas) for tests and demos."""


def _sizes(cfg: Config) -> dict:
    s = dict(
        seeds=cfg.seeds, epochs=cfg.epochs, hidden=tuple(cfg.hidden), code_dim=cfg.code_dim,
        sweep_betas=tuple(cfg.sweep_betas), probe_steps=cfg.probe_steps,
        mnist1d_samples=cfg.mnist1d_samples,
    )
    if cfg.quick:
        s.update(seeds=2, epochs=2, hidden=(32, 32), code_dim=8, sweep_betas=(1e-3, 1e-1),
                 probe_steps=20, mnist1d_samples=500)
    return s


def _mean_std(values):
    import numpy as np

    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else 0.0)


def run(cfg: Config, run) -> dict:
    import json

    from deepscope.data import load_dataset
    from deepscope.mi.bottleneck import METHODS, NOISES, estimate_mi_xz, test_error, train_ib
    from deepscope.train import Run

    if cfg.dataset not in _DATASETS:
        raise ValueError(f"dataset == {cfg.dataset!r}; choose one of {', '.join(_DATASETS)}")
    for m in (*cfg.methods, *cfg.sweep_methods):
        if m not in METHODS:
            raise ValueError(f"method {m!r} in --methods/--sweep-methods; choose from {', '.join(METHODS)}")
    if not cfg.methods:
        raise ValueError("methods == (); name at least one of plain, vib, mine")
    if cfg.noise not in NOISES or cfg.noise == "none":
        raise ValueError(f"noise == {cfg.noise!r}; choose 'gaussian', 'additive' or 'propagated'")
    if cfg.seeds < 1:
        raise ValueError(f"seeds == {cfg.seeds}, must be >= 1")
    size = _sizes(cfg)
    if cfg.dataset == "mnist1d":
        ds = load_dataset("mnist1d", n=size["mnist1d_samples"], seed=0)
    elif cfg.dataset == "digits":
        ds = load_dataset("digits", seed=0)
    else:
        ds = load_dataset("mnist", data_root=cfg.data_root)

    beta_of = {"plain": 0.0, "vib": cfg.beta_vib, "mine": cfg.beta_mine}
    every = cfg.checkpoint_every or 1

    def one(method: str, beta: float, seed: int) -> dict:
        sub_dir = run.dir / method / f"beta{beta:g}" / f"seed{seed}"
        done = sub_dir / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        noise = cfg.noise if method == "mine" else None
        sub_cfg = {
            "dataset": cfg.dataset, "method": method, "noise": noise, "beta": beta, "seed": seed,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "critic_lr": cfg.critic_lr,
            "sigma": cfg.sigma, "standardize_code": cfg.standardize_code, **{k: v for k, v in size.items() if k not in ("seeds", "sweep_betas")},
        }
        sub = Run(sub_dir, config=sub_cfg, seed=seed, device=cfg.device, progress=cfg.progress)
        model, _ = train_ib(
            sub, ds, method=method, noise=noise, beta=beta, hidden=size["hidden"],
            code_dim=size["code_dim"], sigma=cfg.sigma, epochs=size["epochs"],
            batch_size=cfg.batch_size, lr=cfg.lr, critic_lr=cfg.critic_lr,
            standardize_code=cfg.standardize_code, checkpoint_every=every, desc=f"{method} beta={beta:g} seed={seed}",
        )
        res = {"method": method, "noise": model.noise, "beta": beta, "seed": seed,
               "test_error": test_error(model, ds.x_test, ds.y_test)}
        if size["probe_steps"] > 0:
            res["mi_xz"] = estimate_mi_xz(model, ds.x_train, ds.x_test, steps=size["probe_steps"])
        sub.write_result(res)
        return res

    table = []
    runs: dict[str, list[dict]] = {}
    for method in cfg.methods:
        beta = beta_of[method]
        rows = [one(method, beta, cfg.seed + i) for i in range(size["seeds"])]
        runs[method] = rows
        err_m, err_s = _mean_std([100 * r["test_error"] for r in rows])
        entry = {"method": method, "noise": rows[0]["noise"], "beta": beta, "runs": len(rows),
                 "test_error_pct": err_m, "test_error_pct_std": err_s}
        if "mi_xz" in rows[0]:
            entry["mi_xz"], entry["mi_xz_std"] = _mean_std([r["mi_xz"] for r in rows])
        table.append(entry)

    sweep = []
    for method in cfg.sweep_methods:
        if method == "plain":
            continue  # plain has no beta; it is drawn as a line
        for beta in size["sweep_betas"]:
            r = one(method, beta, cfg.seed)
            sweep.append({k: r[k] for k in ("method", "beta", "test_error") if k in r} | {"mi_xz": r.get("mi_xz")})
    fig = _figure(cfg, run, sweep, runs) if sweep else None

    lines = [f"Information bottleneck on {cfg.dataset}: {size['seeds']} seeds x {size['epochs']} epochs, "
             f"encoder {list(size['hidden'])} -> code {size['code_dim']}; test error in %"]
    lines.append(f"{'method':<8} {'noise':<11} {'beta':>7}  {'test error %':>15}  {'I(X;Z) held-out, nats':>22}")
    for e in table:
        mi_txt = f"{e['mi_xz']:8.2f} ± {e['mi_xz_std']:<5.2f}" if "mi_xz" in e else ""
        lines.append(f"{e['method']:<8} {e['noise']:<11} {e['beta']:>7g}  "
                     f"{e['test_error_pct']:7.2f} ± {e['test_error_pct_std']:<5.2f}  {mi_txt:>22}")
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
