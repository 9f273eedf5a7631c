"""MINE-regularised GAN vs plain GAN on 2-D mixtures: modes covered, sample quality, mode KL (arXiv 1801.04062, sec. 5.1).

Trains one GAN per (beta, seed) with the same networks and budget (the loop is
``deepscope.mi.gan.train_gan``); beta = 0 is the plain GAN. Each (beta, seed) is its own
sub-run under ``<out>/beta<b>/seed<s>/`` with checkpoints, so an interrupted sweep picks up
where it stopped and skips finished runs.

    deepscope run mine-gan --threads 1
    deepscope run mine-gan --dataset ring --betas 0 1
    deepscope run mine-gan --quick          # 2 seeds x 200 steps, 32-32 nets: a smoke test in seconds
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from deepscope.recipes import System
from deepscope.train.config import RunConfig, require

ToyName = Literal["grid", "ring", "swissroll"]


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("mine", "MINE", order=1)

@dataclass(frozen=True)
class Config(RunConfig):
    """MINE-GAN on the 25-Gaussian grid (or the ring of 8, or the Swiss roll for pictures)."""

    dataset: ToyName = "grid"
    """grid (25 Gaussians on a 5x5 grid, sigma 0.05), ring (8 Gaussians) or swissroll (pictures only)."""

    betas: tuple[float, ...] = (0.0, 1.0)
    """Weights of the MI term; 0 is the plain GAN baseline."""

    seeds: int = 5
    """Seeds per beta (seed, seed+1, ...)."""

    steps: int = 12_000
    """Generator steps per run."""

    d_steps: int = 1
    """Discriminator steps per generator step (fewer steps make mode dropping more likely)."""

    batch_size: int = 256
    """Batch size of real and generated samples."""

    latent_dim: int = 2
    """Size of the Gaussian noise z (a small latent makes mode dropping more likely)."""

    code_dim: int = 0
    """Size of a uniform code c concatenated to z (needed for --mi-target code)."""

    mi_target: Literal["z", "code"] = "z"
    """z: maximise I(G(z); z); code: maximise I(G(z, c); c)."""

    hidden: tuple[int, ...] = (128, 128, 128)
    """Hidden widths of the generator and of the discriminator."""

    lr: float = 1e-3
    """Adam learning rate of generator and discriminator (beta1 = 0.5)."""

    critic_lr: float = 1e-4
    """Adam learning rate of the MINE statistics network."""

    lr_decay: bool = True
    """Decay the GAN learning rates linearly to 0 over the run (sharper modes at the end)."""

    n_eval: int = 10_000
    """Generated samples on which the mode metrics are computed."""

    QUICK: ClassVar[dict] = {"seeds": 2, "steps": 200, "hidden": (32, 32), "n_eval": 2000, "batch_size": 64}

    def validate(self) -> None:
        super().validate()
        require(self.dataset in get_args(ToyName), "dataset", self.dataset, f"one of {get_args(ToyName)}")
        require(self.mi_target in ("z", "code"), "mi_target", self.mi_target, "'z' or 'code'")
        for name, low in {"seeds": 1, "steps": 1, "d_steps": 1, "batch_size": 2, "latent_dim": 1, "n_eval": 1,
                          "code_dim": 1 if self.mi_target == "code" else 0}.items():
            value = getattr(self, name)
            require(value >= low, name, value, f">= {low}" + (" with --mi-target code" if name == "code_dim" else ""))
        require(len(self.betas) >= 1 and min(self.betas) >= 0, "betas", self.betas,
                "one or more weights, each >= 0 (e.g. --betas 0 1)")
        require(len(self.hidden) >= 1 and min(self.hidden) >= 1, "hidden", self.hidden, "non-empty, each >= 1")
        require(min(self.lr, self.critic_lr) > 0, "lr, critic_lr", (self.lr, self.critic_lr), "> 0")

def _train_one(cfg: Config, sub, data, beta: float, seed: int) -> tuple[dict, object]:
    """One (beta, seed) sub-run: train, keep 2,000 samples for the figure, mode metrics."""
    import torch

    from deepscope.mi.gan import evaluate_generator, train_gan

    gen = train_gan(
        data, generator=sub.generator("gan"), run=sub, steps=cfg.steps, beta=beta,
        mi_target=cfg.mi_target, latent_dim=cfg.latent_dim, code_dim=cfg.code_dim, hidden=cfg.hidden,
        d_steps=cfg.d_steps, batch_size=cfg.batch_size, lr=cfg.lr, critic_lr=cfg.critic_lr,
        lr_decay=cfg.lr_decay, checkpoint_every=cfg.checkpoint_every or max(1, cfg.steps // 10),
        log_every=max(1, cfg.steps // 50), desc=f"beta={beta:g} seed={seed}",
    ).model
    samples = gen.sample(2000, generator=torch.Generator().manual_seed(seed))
    sub.save_file("samples.pt", samples)
    metrics = {"beta": beta, "seed": seed}
    if data.centers is not None:
        metrics.update(evaluate_generator(gen, data, n=cfg.n_eval, seed=seed))
    return metrics, samples


def run(cfg: Config, run) -> dict:
    import torch

    from deepscope.mi.gan import make_toy

    data = make_toy(cfg.dataset)
    sub_cfg = {k: v for k, v in vars(cfg).items() if k not in ("out", "seed", "seeds", "betas", "quick")}
    beta_of = {f"beta{b:g}": b for b in cfg.betas}  # setting (sub-run folder) -> beta
    samples = {}  # the first seed's samples per beta, for the figure

    def one(sub, setting, seed):
        metrics, x = _train_one(cfg, sub, data, beta_of[setting], seed)
        if seed == cfg.seed:
            samples[beta_of[setting]] = x
        return metrics

    grid = run.grid(beta_of, range(cfg.seed, cfg.seed + cfg.seeds), one,
                    config=lambda setting, seed: {**sub_cfg, "beta": beta_of[setting], "seed": seed})
    for setting, beta in beta_of.items():  # sub-runs finished by an earlier, interrupted run
        if beta not in samples:
            samples[beta] = torch.load(grid.dirs[(setting, cfg.seed)] / "samples.pt")
    samples = {b: samples[b] for b in cfg.betas}
    per_run = {beta: grid.results(setting) for setting, beta in beta_of.items()}

    table = []
    for setting, beta in beta_of.items():
        entry = {"beta": beta, "runs": len(per_run[beta])}
        for key in ("modes", "high_quality", "kl") if data.centers is not None else ():
            st = grid.summary(key)[setting]
            entry.update({key: st["mean"], f"{key}_std": st["std"], f"{key}_ci95": st["ci95"]})
        table.append(entry)
    fig_path = _figure(cfg, run, data, samples, per_run)

    k = 0 if data.centers is None else len(data.centers)
    lines = [f"MINE-GAN on {cfg.dataset} ({k} modes), {cfg.seeds} seeds x {cfg.steps} steps, "
             f"d_steps={cfg.d_steps}, latent={cfg.latent_dim}, metrics on {cfg.n_eval} samples"]
    if data.centers is not None:
        lines.append(f"{'beta':>6}  {'modes covered':>15}  {'high-quality':>15}  {'KL(modes||unif)':>17}")
        for e in table:
            lines.append(
                f"{e['beta']:>6g}  {e['modes']:>7.1f} ± {e['modes_std']:<5.1f}  "
                f"{e['high_quality']:>7.3f} ± {e['high_quality_std']:<5.3f}  "
                f"{e['kl']:>8.3f} ± {e['kl_std']:<6.3f}"
            )
        lines.append("mean ± std over seeds; 95% intervals of the means in result.json")
    return {
        "dataset": cfg.dataset,
        "num_modes": k,
        "table": table,
        "runs": {f"{b:g}": rows for b, rows in per_run.items()},
        "figure": str(fig_path),
        "paper": "Belghazi et al. 2018, fig. 3: GAN+MINE covers the 25 modes a plain GAN drops "
                 "(qualitative); Stacked MNIST 1000/1000 modes, KL 0.05 vs DCGAN 99 modes, KL 3.4",
        "summary": "\n".join(lines),
    }


def _figure(cfg, run, data, samples, per_run):
    import torch

    from deepscope.report.figures import plt, save

    n = len(samples)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.3), squeeze=False)
    ref = data.sample(2000, generator=torch.Generator().manual_seed(0)) if data.centers is None else None
    for ax, (beta, x) in zip(axes[0], samples.items()):
        if ref is not None:  # the true Swiss roll underneath, in grey
            ax.scatter(ref[:, 0], ref[:, 1], s=1, alpha=0.3, color="0.6", rasterized=True)
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.35, color="tab:blue", rasterized=True)
        if data.centers is not None:
            c = data.centers
            ax.scatter(c[:, 0], c[:, 1], s=18, marker="x", color="tab:red", linewidths=1)
            m = per_run[beta][0]["modes"]
            ax.set_title(f"{'GAN' if beta == 0 else 'GAN+MINE'} β={beta:g}: {m}/{len(c)} modes", fontsize=9)
        else:
            ax.set_title(f"{'GAN' if beta == 0 else 'GAN+MINE'} β={beta:g}", fontsize=9)
        lim = 3.0 if cfg.dataset == "ring" else 5.5
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, run.figure_path(f"samples_{cfg.dataset}"), dpi=90)
