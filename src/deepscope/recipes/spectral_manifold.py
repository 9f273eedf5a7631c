"""Spectral bias on a manifold: the flower curve makes high frequencies easier to learn (arXiv 1806.08734).

    deepscope run spectral-manifold --threads 1 --steps 6000
    deepscope run spectral-manifold --quick         # 200 points, k = 5..40, L in (0, 8), 200 steps

The data are 1000 points of ``gamma_L(phi) = (1 + sin(L phi) / 2)(cos phi, sin phi)``; the
target is ``sum_i sin(k_i phi + phi_i)`` with k = 20, 40, ..., 200 and random phases; the MLP
sees the 2-D point, and the spectrum is taken along ``phi``. One network per L (same
initialisation and phases for all L; named ``L0``, ``L4``, ...) is trained full-batch with
Adam. The paper's claim: the larger L, the more the curve fills the plane and the more of the
high frequencies (along ``phi``) the network learns for the same budget. result.json: the
final normalised magnitude per L and frequency, the mean over the upper half of the
frequencies per L, and the Spearman correlation between L and that mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deepscope.dynamics.spectral_config import SinusoidsConfig
from deepscope.recipes import System
from deepscope.train.config import require

PAPER = (
    "Rahaman et al. 2019, manifold experiment: larger L lets the network learn the higher frequencies "
    "faster; the paper shows heatmaps per L, no table"
)


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("spectral", "Spectral bias", order=2)

@dataclass(frozen=True)
class Config(SinusoidsConfig):
    """Options of the flower-curve experiment."""

    steps: int = 20000  # not a paper number

    freqs: tuple[int, ...] = (20, 40, 60, 80, 100, 120, 140, 160, 180, 200)
    """Frequencies k_i of the target along phi (the paper: 20, 40, ..., 200; < n_points / 2)."""

    n_points: int = 1000
    """Points phi_j = 2 pi j / n_points on the curve (the paper: 1000; one full batch)."""

    Ls: tuple[float, ...] = (0.0, 4.0, 10.0, 16.0)
    """Petal counts L of the curve (0: the unit circle); distinct values >= 0."""

    QUICK: ClassVar[dict] = {"Ls": (0.0, 8.0), "freqs": (5, 10, 20, 40), "n_points": 200,
                             "steps": 200, "width": 64, "depth": 4, "record_every": 20,
                             "checkpoint_every": 100}

    def validate(self) -> None:
        super().validate()
        distinct = len({f"{v:g}" for v in self.Ls}) == len(self.Ls)  # they name the networks
        require(bool(self.Ls) and min(self.Ls) >= 0 and distinct, "Ls", self.Ls,
                "a non-empty tuple of distinct values >= 0")


def run(cfg: Config, run) -> dict:
    import numpy as np
    import torch

    from deepscope.dynamics import spectral, spectral_train
    from deepscope.report.figures import plt, save

    freqs = np.asarray(cfg.freqs)
    amps = np.ones(len(freqs))
    phi = 2 * np.pi * torch.arange(cfg.n_points, dtype=torch.float32) / cfg.n_points
    phases = np.random.default_rng(cfg.seed).uniform(0, 2 * np.pi, size=len(freqs))
    target = spectral.sum_of_sinusoids(phi, freqs, amps, phases, period=2 * np.pi)
    # one network per L, all from one initialisation; each sees its own curve
    inputs = {f"L{L:g}": spectral.flower_curve(phi, L).to(run.device) for L in cfg.Ls}
    names = list(inputs)
    spectral_train.train_lockstep(
        inputs, dict.fromkeys(names, target), generator=run.generator("init"), run=run,
        record=spectral_train.log_spectra(inputs, dict.fromkeys(names, amps), freqs=freqs),
        desc="spectral-manifold",
        **cfg.lockstep_options(checkpoint_every=1000),
    )

    final, high_mean = {}, {}
    upper = freqs >= np.median(freqs)
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        steps, spectra, _ = spectral_train.read_spectra(run.metrics(), [name])
        final[name] = np.round(spectra[-1, 0], 4).tolist()
        high_mean[name] = round(float(spectra[-1, 0][upper].mean()), 4)
        spectral.plot_spectrum_heatmap(spectra[:, 0], steps, freqs, ax=ax,
                                       title=f"L = {name[1:]}", colorbar=name == names[-1])
    save(fig, run.figure_path("heatmaps"))

    fig, ax = plt.subplots(figsize=(4.4, 3.3))
    for name in names:
        ax.plot(freqs, final[name], marker="o", label=f"L = {name[1:]}")
    ax.set_xlabel("frequency k along phi")
    ax.set_ylabel(f"normalised magnitude at step {cfg.steps}")
    ax.set_ylim(0, None)
    ax.legend()
    save(fig, run.figure_path("magnitude_per_L"))

    rho = spectral.spearman(cfg.Ls, [high_mean[n] for n in names], missing=0.0)
    rows = [f"{'k':>4} " + " ".join(f"{n:>7}" for n in names)]
    for i, k in enumerate(freqs):
        rows.append(f"{k:>4} " + " ".join(f"{final[n][i]:>7.3f}" for n in names))
    rows.append(
        f"mean over k >= {np.median(freqs):g}: "
        + ", ".join(f"{n}={high_mean[n]:.3f}" for n in names)
        + f"; Spearman rho(L, that mean) = {rho['rho']:.3f}"
    )
    settings = {**cfg.settings(checkpoint_every=1000), "n_seeds": 1}
    return {
        "freqs": freqs.tolist(), "Ls": settings["Ls"], "final_normalised_magnitude": final,
        "upper_half_mean": high_mean, "spearman_L_vs_upper_half_mean": rho,
        "settings": settings, "paper": PAPER, "summary": "\n".join(rows),
    }
