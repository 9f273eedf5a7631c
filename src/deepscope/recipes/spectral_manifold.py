"""Spectral bias on a manifold: the flower curve makes high frequencies easier to learn (arXiv 1806.08734).

The data are 1000 points of ``gamma_L(phi) = (1 + sin(L phi) / 2)(cos phi, sin phi)``; the
target is ``sum_i sin(k_i phi + phi_i)`` with k = 20, 40, ..., 200 and random phases; the MLP
sees the 2-D point, and the spectrum is taken along ``phi``. One network per L (same
initialisation and phases for all L) is trained full-batch with Adam. The paper's claim: the
larger L, the more the curve fills the plane and the more of the high frequencies (along
``phi``) the network learns for the same budget. result.json: the final normalised
magnitude per L and frequency, the mean over the upper half of the frequencies per L, and
the Spearman correlation between L and that mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepscope.train.config import RunConfig

PAPER = (
    "Rahaman et al. 2019, manifold experiment: larger L lets the network learn the higher frequencies "
    "faster; the paper shows heatmaps per L, no table"
)


@dataclass(frozen=True)
class Config(RunConfig):
    """Options of the flower-curve experiment."""

    Ls: tuple[float, ...] = (0.0, 4.0, 10.0, 16.0)
    """Petal counts L of the curve (0: the unit circle)."""

    freqs: tuple[int, ...] = (20, 40, 60, 80, 100, 120, 140, 160, 180, 200)
    """Frequencies k_i of the target along phi (each < n_points / 2)."""

    n_points: int = 1000
    """Points phi_j = 2 pi j / n_points on the curve (one full batch)."""

    steps: int = 20000
    """Adam steps per network."""

    lr: float = 3e-4
    """Adam learning rate."""

    width: int = 256
    """Width of every hidden layer."""

    depth: int = 6
    """Number of linear layers."""

    record_every: int = 100
    """Record the spectrum every this many steps."""

    quick: bool = False
    """Tiny budget for tests and demos: 200 points, k = 5..40, L in (0, 8), 200 steps, width 64, 4 layers."""


def settings(cfg: Config) -> dict:
    s = dict(
        Ls=[float(v) for v in cfg.Ls], freqs=list(cfg.freqs), n_points=cfg.n_points,
        steps=cfg.steps, lr=cfg.lr, width=cfg.width, depth=cfg.depth, n_seeds=1,
        record_every=cfg.record_every, checkpoint_every=cfg.checkpoint_every or 1000,
    )
    if cfg.quick:
        s.update(Ls=[0.0, 8.0], freqs=[5, 10, 20, 40], n_points=200, steps=200, width=64, depth=4,
                 record_every=20, checkpoint_every=100)
    return s


def run(cfg: Config, run) -> dict:
    import copy

    import numpy as np
    import torch

    from deepscope.dynamics.spectral import (
        SpectrumRecorder,
        flower_curve,
        plot_spectrum_heatmap,
        sum_of_sinusoids,
    )
    from deepscope.nets import MLP
    from deepscope.recipes.spectral_sinusoids import (
        read_spectra,
        spearman,
        train_lockstep,
        validate,
    )
    from deepscope.report.figures import plt, save

    s = settings(cfg)
    validate(s)
    if not s["Ls"] or any(v < 0 for v in s["Ls"]):
        raise ValueError(f"Ls == {tuple(s['Ls'])}, must be a non-empty tuple of values >= 0")
    dev = run.device
    freqs = np.asarray(s["freqs"])
    amps = np.ones(len(freqs))
    phi = 2 * np.pi * torch.arange(s["n_points"], dtype=torch.float32) / s["n_points"]
    phases = np.random.default_rng(run.seed).uniform(0, 2 * np.pi, size=len(freqs))
    target = sum_of_sinusoids(phi, freqs, amps, phases, period=2 * np.pi).to(dev)
    net = MLP(2, [s["width"]] * (s["depth"] - 1), 1).to(dev)

    # one network per L; each sees its own curve, so each gets its own input tensor
    models, names, recorders, inputs = [], [], [], []
    for L in s["Ls"]:
        xL = flower_curve(phi, L).to(dev)
        models.append(copy.deepcopy(net))
        names.append(f"L{L:g}")
        inputs.append(xL)
        recorders.append(SpectrumRecorder(xL, every=s["record_every"], freqs=freqs, scale=amps))
    train_lockstep(
        run, models, names, inputs, target[None].expand(len(models), -1), recorders,
        steps=s["steps"], lr=s["lr"], record_every=s["record_every"],
        checkpoint_every=s["checkpoint_every"], desc="spectral-manifold",
    )

    final, high_mean, curves = {}, {}, {}
    upper = freqs >= np.median(freqs)
    ncol = len(names)
    fig, axes = plt.subplots(1, ncol, figsize=(3.3 * ncol, 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        steps, spectra, _ = read_spectra(run, name)
        curves[name] = spectra[:, 0]
        final[name] = np.round(spectra[-1, 0], 4).tolist()
        high_mean[name] = round(float(spectra[-1, 0][upper].mean()), 4)
        plot_spectrum_heatmap(spectra[:, 0], steps, freqs, ax=ax, title=f"L = {name[1:]}",
                              colorbar=name == names[-1])
    save(fig, run.figure_path("heatmaps"))

    fig, ax = plt.subplots(figsize=(4.4, 3.3))
    for name in names:
        ax.plot(freqs, final[name], marker="o", label=f"L = {name[1:]}")
    ax.set_xlabel("frequency k along phi")
    ax.set_ylabel(f"normalised magnitude at step {s['steps']}")
    ax.set_ylim(0, None)
    ax.legend()
    save(fig, run.figure_path("magnitude_per_L"))

    rho = spearman(np.asarray(s["Ls"]), np.asarray([high_mean[n] for n in names]), missing=0.0)
    rows = [f"{'k':>4} " + " ".join(f"{n:>7}" for n in names)]
    for i, k in enumerate(freqs):
        rows.append(f"{k:>4} " + " ".join(f"{final[n][i]:>7.3f}" for n in names))
    rows.append(
        f"mean over k >= {np.median(freqs):g}: "
        + ", ".join(f"{n}={high_mean[n]:.3f}" for n in names)
        + f"; Spearman rho(L, that mean) = {rho['rho']:.3f}"
    )
    return {
        "freqs": freqs.tolist(),
        "Ls": s["Ls"],
        "final_normalised_magnitude": final,
        "upper_half_mean": high_mean,
        "spearman_L_vs_upper_half_mean": rho,
        "settings": s,
        "paper": PAPER,
        "summary": "\n".join(rows),
    }

