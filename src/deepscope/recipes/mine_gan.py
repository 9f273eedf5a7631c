"""MINE-regularised GAN vs plain GAN on 2-D mixtures: modes covered, sample quality, mode KL (arXiv 1801.04062, sec. 5.1).

Trains one GAN per (beta, seed) with the same networks and budget; beta = 0 is the
plain GAN. Each (beta, seed) is its own sub-run under ``<out>/beta<b>/seed<s>/`` with
checkpoints, so an interrupted sweep picks up where it stopped and skips finished runs.

    deepscope run mine-gan --threads 1
    deepscope run mine-gan --dataset ring --betas 0 1
    deepscope run mine-gan --quick          # seconds: a smoke test
"""

from __future__ import annotations

from dataclasses import dataclass

from deepscope.train.config import RunConfig


@dataclass(frozen=True)
class Config(RunConfig):
    """MINE-GAN on the 25-Gaussian grid (or the ring of 8, or the Swiss roll for pictures)."""

    dataset: str = "grid"
    """'grid' (25 Gaussians on a 5x5 grid, sigma 0.05), 'ring' (8 Gaussians) or 'swissroll' (pictures only)."""

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

    mi_target: str = "z"
    """'z': maximise I(G(z); z); 'code': maximise I(G(z, c); c)."""

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

    quick: bool = False
    """A tiny budget (2 seeds, 200 steps, small nets) for tests and demos; overrides the sizes above."""


def _effective(cfg: Config) -> dict:
    sizes = dict(
        seeds=cfg.seeds, steps=cfg.steps, hidden=tuple(cfg.hidden), n_eval=cfg.n_eval,
        batch_size=cfg.batch_size,
    )
    if cfg.quick:
        sizes.update(seeds=2, steps=200, hidden=(32, 32), n_eval=2000, batch_size=64)
    return sizes


def _mean_std(values: list[float]) -> tuple[float, float]:
    import numpy as np

    # float(): a KL of inf comes back from result.json as the string "inf"
    a = np.asarray([float(v) for v in values], dtype=float)
    if len(a) < 2:
        return float(a.mean()), 0.0
    with np.errstate(invalid="ignore"):
        return float(a.mean()), float(a.std(ddof=1))


def run(cfg: Config, run) -> dict:
    import json

    import torch

    from deepscope.mi.gan import TOYS, evaluate_generator, make_toy, train_gan
    from deepscope.train import Run

    if cfg.dataset not in TOYS:
        raise ValueError(f"dataset == {cfg.dataset!r}; choose one of {', '.join(TOYS)}")
    if not cfg.betas:
        raise ValueError("betas == (); give at least one weight, e.g. --betas 0 1")
    if any(not b >= 0 for b in cfg.betas):
        raise ValueError(f"betas == {cfg.betas}; every beta must be >= 0")
    if cfg.seeds < 1:
        raise ValueError(f"seeds == {cfg.seeds}, must be >= 1")
    size = _effective(cfg)
    data = make_toy(cfg.dataset)
    every = cfg.checkpoint_every or max(1, size["steps"] // 10)

    per_run: dict[float, list[dict]] = {}
    samples: dict[float, torch.Tensor] = {}
    for beta in cfg.betas:
        per_run[beta] = []
        for i in range(size["seeds"]):
            seed = cfg.seed + i
            sub_dir = run.dir / f"beta{beta:g}" / f"seed{seed}"
            done = sub_dir / "result.json"
            if done.exists():  # finished before an interruption of the sweep
                per_run[beta].append(json.loads(done.read_text()))
            else:
                sub_cfg = {
                    "dataset": cfg.dataset, "beta": beta, "seed": seed, "d_steps": cfg.d_steps,
                    "latent_dim": cfg.latent_dim, "code_dim": cfg.code_dim, "mi_target": cfg.mi_target,
                    "lr": cfg.lr, "critic_lr": cfg.critic_lr, "lr_decay": cfg.lr_decay, **size,
                }
                sub = Run(sub_dir, config=sub_cfg, seed=seed, device=cfg.device, progress=cfg.progress)
                gen = train_gan(
                    sub, data, steps=size["steps"], beta=beta, mi_target=cfg.mi_target,
                    latent_dim=cfg.latent_dim, code_dim=cfg.code_dim, hidden=size["hidden"],
                    d_steps=cfg.d_steps, batch_size=size["batch_size"], lr=cfg.lr,
                    critic_lr=cfg.critic_lr, lr_decay=cfg.lr_decay, checkpoint_every=every,
                    log_every=max(1, size["steps"] // 50), desc=f"beta={beta:g} seed={seed}",
                )
                x = gen.sample(2000, generator=torch.Generator().manual_seed(seed))
                torch.save(x, sub_dir / "samples.pt")
                metrics = {"beta": beta, "seed": seed}
                if data.centers is not None:
                    metrics.update(evaluate_generator(gen, data, n=size["n_eval"], seed=seed))
                sub.write_result(metrics)
                per_run[beta].append(metrics)
            if i == 0:
                samples[beta] = torch.load(sub_dir / "samples.pt")

    table = []
    for beta, rows in per_run.items():
        entry = {"beta": beta, "runs": len(rows)}
        if data.centers is not None:
            for key in ("modes", "high_quality", "kl"):
                m, s = _mean_std([r[key] for r in rows])
                entry[key] = m
                entry[key + "_std"] = s
        table.append(entry)
    fig_path = _figure(cfg, run, data, samples, per_run)

    k = 0 if data.centers is None else len(data.centers)
    lines = [f"MINE-GAN on {cfg.dataset} ({k} modes), {size['seeds']} seeds x {size['steps']} steps, "
             f"d_steps={cfg.d_steps}, latent={cfg.latent_dim}, metrics on {size['n_eval']} samples"]
    if data.centers is not None:
        lines.append(f"{'beta':>6}  {'modes covered':>15}  {'high-quality':>15}  {'KL(modes||unif)':>17}")
        for e in table:
            lines.append(
                f"{e['beta']:>6g}  {e['modes']:>7.1f} ± {e['modes_std']:<5.1f}  "
                f"{e['high_quality']:>7.3f} ± {e['high_quality_std']:<5.3f}  "
                f"{e['kl']:>8.3f} ± {e['kl_std']:<6.3f}"
            )
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
