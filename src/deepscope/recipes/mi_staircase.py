"""Song & Ermon's MI staircase: MINE, NWJ, InfoNCE and SMILE tracking a stepped true MI.

d = 20 correlated Gaussians (and the cubic variant y -> y^3, same MI); the true MI
steps through 2, 4, 6, 8, 10 nats, 4,000 steps each; fresh batches of 64 every step;
Adam lr 5e-4; critic MLPs of width 256 with 3 hidden layers, separable with a
32-d embedding by default (all 64 x 64 pairs of a batch score in one matmul).
Song & Ermon, "Understanding the Limitations of Variational MI Estimators", ICLR 2020, arXiv 1910.06222.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepscope.train.config import RunConfig


@dataclass(frozen=True)
class Config(RunConfig):
    """MI staircase (Song & Ermon 2020, Figure 1)."""

    estimators: tuple[str, ...] = ("mine", "nwj", "infonce", "smile")
    """Bounds to train, each with its own critic."""
    variants: tuple[str, ...] = ("gaussian", "cubic")
    """gaussian, and cubic (y -> y^3: same MI, harder critic)."""
    levels: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0)
    """True MI of each stair (nats)."""
    steps_per_level: int = 4000
    """Training steps per stair."""
    d: int = 20
    """Dimension of X and of Y."""
    batch_size: int = 64
    """Pairs per step (InfoNCE cannot exceed log of this)."""
    lr: float = 5e-4
    """Adam learning rate."""
    critic: str = "separable"
    """separable (g(x)^T h(y), embed 32) or concat (MLP on [x, y], K^2 pairs per step: slow on CPU)."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the critic networks."""
    tau: float = 5.0
    """SMILE clipping."""
    ema_alpha: float = 0.01
    """MINE moving-average weight."""
    quick: bool = False
    """Tiny budget (2 stairs x 150 steps, width 64) for tests and demos."""


def _effective(cfg: Config) -> Config:
    from dataclasses import replace

    if cfg.quick:
        return replace(cfg, levels=(2.0, 4.0), steps_per_level=150, hidden=(64, 64))
    return cfg


def run(cfg: Config, run) -> dict:
    import math

    import numpy as np
    import torch

    from deepscope.mi import bounds, tasks
    from deepscope.mi.critics import make_critic, pairwise_scores

    cfg = _effective(cfg)
    bad = [e for e in cfg.estimators if e not in ("mine", "dv", "nwj", "infonce", "smile")]
    if bad:
        raise ValueError(f"estimators contains {bad}; choose from mine, dv, nwj, infonce, smile")
    bad = [v for v in cfg.variants if v not in ("gaussian", "cubic")]
    if bad:
        raise ValueError(f"variants contains {bad}; choose gaussian and/or cubic")
    dev = run.device
    total = len(cfg.levels) * cfg.steps_per_level
    _, truth = tasks.staircase_schedule(cfg.levels, cfg.steps_per_level)
    rhos = [tasks.rho_for_mi(m, cfg.d) for m in cfg.levels]
    keys = [(v, e) for v in cfg.variants for e in cfg.estimators]
    critics = {k: make_critic(cfg.critic, cfg.d, cfg.d, hidden=cfg.hidden).to(dev) for k in keys}
    opts = {k: torch.optim.Adam(critics[k].parameters(), lr=cfg.lr) for k in keys}
    log_ema = {k: None for k in keys}
    estimates = {f"{v}/{e}": np.full(total, np.nan) for v, e in keys}
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    start = 0
    state = run.load_checkpoint()
    if state:
        for k in keys:
            critics[k].load_state_dict(state["critics"][f"{k[0]}/{k[1]}"])
            opts[k].load_state_dict(state["opts"][f"{k[0]}/{k[1]}"])
            ema = state["log_ema"][f"{k[0]}/{k[1]}"]
            log_ema[k] = None if ema is None else torch.tensor(ema)
        estimates = {name: np.asarray(a) for name, a in state["estimates"].items()}
        gen.set_state(state["gen"])
        start = state["step"]
    every = cfg.checkpoint_every or 1000

    def batch(level: int):
        rho = rhos[level]
        x = torch.randn(cfg.batch_size, cfg.d, generator=gen)
        y = rho * x + math.sqrt(1 - rho * rho) * torch.randn(cfg.batch_size, cfg.d, generator=gen)
        return x.to(dev), y.to(dev)

    with run.progress(total, desc="mi-staircase", start=start) as advance:
        for step in range(start, total):
            level = step // cfg.steps_per_level
            x, y = batch(level)
            for v, e in keys:
                yy = y**3 if v == "cubic" else y
                s = pairwise_scores(critics[(v, e)], x, yy)
                if e == "infonce":
                    value = bounds.infonce(s)
                else:
                    tj, tm = bounds.split_scores(s)
                    if e == "mine":
                        value, log_ema[(v, e)] = bounds.mine_ema(tj, tm, log_ema=log_ema[(v, e)], alpha=cfg.ema_alpha)
                    elif e == "smile":
                        value = bounds.smile(tj, tm, tau=cfg.tau)
                    else:
                        value = bounds.evaluate(e, tj, tm)
                opts[(v, e)].zero_grad(set_to_none=True)
                (-value).backward()
                opts[(v, e)].step()
                estimates[f"{v}/{e}"][step] = value.item()
            if (step + 1) % 100 == 0:
                lo = step - 99
                run.log(step + 1, truth=float(truth[step]),
                        **{n: float(np.mean(a[lo : step + 1])) for n, a in estimates.items()})
            if (step + 1) % every == 0 or step + 1 == total:
                run.save_checkpoint({
                    "critics": {f"{v}/{e}": critics[(v, e)].state_dict() for v, e in keys},
                    "opts": {f"{v}/{e}": opts[(v, e)].state_dict() for v, e in keys},
                    "log_ema": {f"{v}/{e}": None if log_ema[(v, e)] is None else float(log_ema[(v, e)]) for v, e in keys},
                    "estimates": {n: a.tolist() for n, a in estimates.items()},
                    "gen": gen.get_state(),
                }, step=step + 1)
            advance(1)

    np.savez_compressed(run.dir / "estimates.npz", truth=truth, **{n.replace("/", "__"): a for n, a in estimates.items()})
    _figure(estimates, truth, cfg, run.figure_path("mi_staircase"))
    # Per stair: mean and variance of the estimate over the second half of the stair.
    table = {}
    for name, a in estimates.items():
        per = []
        for i, lvl in enumerate(cfg.levels):
            seg = a[i * cfg.steps_per_level + cfg.steps_per_level // 2 : (i + 1) * cfg.steps_per_level]
            per.append({"truth": lvl, "mean": float(np.mean(seg)), "var": float(np.var(seg))})
        table[name] = per
    lines = [f"{'estimator':>18} " + " ".join(f"{f'I={lvl:g}':>13}" for lvl in cfg.levels)]
    for name, per in table.items():
        lines.append(f"{name:>18} " + " ".join(f"{p['mean']:6.2f} ({p['var']:4.2f})" for p in per))
    lines.append("mean (variance) over the second half of each stair; InfoNCE is capped at "
                 f"log {cfg.batch_size} = {math.log(cfg.batch_size):.2f}")
    return {
        "stairs": table,
        "infonce_ceiling": math.log(cfg.batch_size),
        "paper": "Song & Ermon 2020 Fig. 1: InfoNCE saturates at log(batch); NWJ/MINE variance grows with MI; SMILE (tau=5) tracks with low variance.",
        "summary": "\n".join(lines),
    }


def _figure(estimates, truth, cfg, path) -> None:
    import numpy as np

    from deepscope.report.figures import plt, save

    names = list(estimates)
    ncol = len(cfg.estimators)
    nrow = len(cfg.variants)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False, sharey=True)
    w = max(1, cfg.steps_per_level // 20)
    for name in names:
        v, e = name.split("/")
        ax = axes[cfg.variants.index(v)][cfg.estimators.index(e)]
        a = estimates[name]
        smooth = np.convolve(a, np.ones(w) / w, mode="valid")
        ax.plot(a, lw=0.3, alpha=0.4)
        ax.plot(np.arange(len(smooth)) + w // 2, smooth, lw=1.2)
        ax.plot(truth, "k", lw=1)
        if e == "infonce":
            ax.axhline(np.log(cfg.batch_size), color="r", ls=":", lw=1, label="log K")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{e} ({v})", fontsize=9)
        ax.set_ylim(-1, max(cfg.levels) + 3)
        ax.set_xlabel("step", fontsize=8)
    axes[0][0].set_ylabel("MI (nats)")
    save(fig, path)
