"""Song & Ermon's MI staircase: MINE, NWJ, InfoNCE and SMILE tracking a stepped true MI (arXiv 1910.06222).

d = 20 correlated Gaussians (and the cubic variant y -> y^3, same MI); the true MI
steps through 2, 4, 6, 8, 10 nats, 4,000 steps each; fresh batches of 64 every step;
Adam lr 5e-4; critic MLPs of width 256 with 3 hidden layers, separable with a
32-d embedding by default (all 64 x 64 pairs of a batch score in one matmul).
The loop is ``deepscope.mi.staircase.train_staircase``.

    deepscope run mi-staircase --threads 1
    deepscope run mi-staircase --quick          # 2 stairs x 150 steps, width 64: seconds
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from deepscope.recipes import System
from deepscope.train.config import RunConfig, require

BoundName = Literal["mine", "dv", "nwj", "infonce", "smile"]
VariantName = Literal["gaussian", "cubic"]


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("mine", "MINE", order=1)

@dataclass(frozen=True)
class Config(RunConfig):
    """MI staircase (Song & Ermon 2020, Figure 1)."""

    estimators: tuple[BoundName, ...] = ("mine", "nwj", "infonce", "smile")
    """Bounds to train, each with its own critic."""
    variants: tuple[VariantName, ...] = ("gaussian", "cubic")
    """gaussian, and cubic (y -> y^3: same MI, harder critic)."""
    levels: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0)
    """True MI of each stair (nats; the paper's)."""
    steps_per_level: int = 4000
    """Training steps per stair (the paper's)."""
    d: int = 20
    """Dimension of X and of Y."""
    batch_size: int = 64
    """Pairs per step (InfoNCE cannot exceed log of this)."""
    lr: float = 5e-4
    """Adam learning rate."""
    critic: Literal["separable", "concat"] = "separable"
    """separable (g(x)^T h(y), embed 32) or concat (MLP on [x, y], K^2 pairs per step: slow on CPU)."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the critic networks."""
    tau: float = 5.0
    """SMILE clipping."""
    ema_alpha: float = 0.01
    """MINE moving-average weight."""

    QUICK: ClassVar[dict] = {"levels": (2.0, 4.0), "steps_per_level": 150, "hidden": (64, 64)}

    def validate(self) -> None:
        super().validate()
        for name, allowed in (("estimators", get_args(BoundName)), ("variants", get_args(VariantName))):
            value = getattr(self, name)
            require(len(value) >= 1 and set(value) <= set(allowed), name, value, f"one or more of {allowed}")
        require(self.critic in ("separable", "concat"), "critic", self.critic, "'separable' or 'concat'")
        for name, low in {"steps_per_level": 2, "d": 1, "batch_size": 2}.items():
            require(getattr(self, name) >= low, name, getattr(self, name), f">= {low}")
        require(len(self.levels) >= 1 and min(self.levels) >= 0, "levels", self.levels, "non-empty, each >= 0 nats")
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden", self.hidden, "non-empty, each >= 1")
        require(min(self.lr, self.tau) > 0, "lr, tau", (self.lr, self.tau), "> 0")
        require(0 < self.ema_alpha <= 1, "ema_alpha", self.ema_alpha, "in (0, 1]")

def run(cfg: Config, run) -> dict:
    import math

    import numpy as np

    from deepscope.mi import tasks
    from deepscope.mi.staircase import train_staircase

    estimates = train_staircase(
        generator=run.generator("staircase"), run=run, estimators=cfg.estimators,
        variants=cfg.variants, levels=cfg.levels, steps_per_level=cfg.steps_per_level, d=cfg.d,
        batch_size=cfg.batch_size, lr=cfg.lr, critic=cfg.critic, hidden=cfg.hidden, tau=cfg.tau,
        ema_alpha=cfg.ema_alpha, checkpoint_every=cfg.checkpoint_every or 1000,
    )
    _, truth = tasks.staircase_schedule(cfg.levels, cfg.steps_per_level)
    run.save_file("estimates.npz", {"truth": truth,
                                    **{n.replace("/", "__"): a for n, a in estimates.items()}})
    _figure(estimates, truth, cfg, run.figure_path("mi_staircase"))
    # Per stair: mean and variance of the estimate over the second half of the stair.
    table = {}
    for name, a in estimates.items():
        per = []
        for i, lvl in enumerate(cfg.levels):
            seg = a[i * cfg.steps_per_level + cfg.steps_per_level // 2 : (i + 1) * cfg.steps_per_level]
            per.append({"truth": lvl, "mean": float(np.mean(seg)), "var": float(np.var(seg))})
        table[name] = per
    ceiling = math.log(cfg.batch_size)
    infonce_max = {n: float(np.max(a)) for n, a in estimates.items() if n.endswith("/infonce")}
    lines = [f"{'estimator':>18} " + " ".join(f"{f'I={lvl:g}':>13}" for lvl in cfg.levels)]
    for name, per in table.items():
        lines.append(f"{name:>18} " + " ".join(f"{p['mean']:6.2f} ({p['var']:4.2f})" for p in per))
    lines.append("mean (variance) over the second half of each stair; InfoNCE is capped at "
                 f"log {cfg.batch_size} = {ceiling:.2f}")
    return {
        "stairs": table,
        "infonce_ceiling": ceiling,
        "infonce_max": infonce_max,
        "paper": "Song & Ermon 2020 Fig. 1: InfoNCE saturates at log(batch); NWJ/MINE variance grows with MI; SMILE (tau=5) tracks with low variance.",
        "summary": "\n".join(lines),
    }


def _figure(estimates, truth, cfg, path) -> None:
    import numpy as np

    from deepscope.report.figures import plt, save

    ncol, nrow = len(cfg.estimators), len(cfg.variants)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False, sharey=True)
    w = max(1, cfg.steps_per_level // 20)
    for name, a in estimates.items():
        v, e = name.split("/")
        ax = axes[cfg.variants.index(v)][cfg.estimators.index(e)]
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
