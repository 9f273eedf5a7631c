"""Spectral bias, robustness: perturbed parameters lose the high frequencies first (arXiv 1806.08734).

    deepscope run spectral-robustness --threads 1 --from-run runs/spectral-sinusoids/<id>
    deepscope run spectral-robustness --quick       # trains 600 steps, 11 eps x 5 directions

Trains the 1-D sinusoid MLP (equal amplitudes, k = 5..50) as in ``spectral-sinusoids`` (or
takes that recipe's network ``equal_s0`` with ``--from-run``), then moves its parameters along
random unit-norm Gaussian directions, ``theta + eps delta``, and measures each frequency's
amplitude divided by the unperturbed model's amplitude (averaged over directions).
result.json lists per frequency the smallest eps where that ratio falls below ``threshold``
and its Spearman correlation with frequency (the paper: negative, high frequencies are the
fragile ones); the figure is the eps x frequency heatmap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from deepscope.dynamics.spectral_config import SinusoidsConfig
from deepscope.recipes import System
from deepscope.train.config import require

PAPER = (
    "Rahaman et al. 2019, robustness experiment: the higher the frequency, the smaller the perturbation at "
    "which its magnitude collapses; the paper shows heatmaps, no table"
)
FROM_RUN_MODEL = "equal_s0"  # the seed-0 equal-amplitude network of a spectral-sinusoids run


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("spectral", "Spectral bias", order=2)

@dataclass(frozen=True)
class Config(SinusoidsConfig):
    """Options of the parameter-perturbation experiment (defaults: the paper's settings)."""

    record_every: int = 1000  # the training spectrum is only a by-product here

    eps_max: float = 5.0
    """Largest perturbation size; eps takes n_eps values in [0, eps_max] (the paper: [0, 5])."""

    n_eps: int = 21
    """Number of eps values, equally spaced from 0 to eps_max inclusive."""

    n_directions: int = 50
    """Random unit-norm directions per eps; the ratios are averaged over them."""

    threshold: float = 0.5
    """A frequency has collapsed at the first eps where its normalised magnitude is below this."""

    from_run: Path | None = None
    """A finished spectral-sinusoids run directory: perturb its network equal_s0 instead of
    training one here (freqs, n_points, width, depth, seed must match; steps is ignored)."""

    QUICK: ClassVar[dict] = {"steps": 600, "lr": 2e-3, "width": 64, "depth": 4, "n_eps": 11,
                             "n_directions": 5, "record_every": 100, "checkpoint_every": 200}

    def validate(self) -> None:
        super().validate()
        require(self.eps_max > 0, "eps_max", self.eps_max, "> 0")
        require(self.n_eps >= 2, "n_eps", self.n_eps, ">= 2 (eps = 0 and eps_max at least)")
        require(self.n_directions >= 1, "n_directions", self.n_directions, ">= 1")
        if self.from_run is not None:
            self._check_from_run(Path(self.from_run))

    def _check_from_run(self, path: Path) -> None:
        conf = path / "config.json"
        require((path / "checkpoint.pt").exists() and conf.exists(), "from_run", str(path),
                "a spectral-sinusoids run directory holding checkpoint.pt and config.json")
        require((path / "result.json").exists() and (path / "metrics.jsonl").exists(),
                "from_run", str(path),
                f"a finished run; finish it first (rerun its command with --out {path})")
        with open(path / "metrics.jsonl") as f:  # named networks log spectrum_equal_s0
            named = f"spectrum_{FROM_RUN_MODEL}" in json.loads(f.readline() or "{}")
        require(named, "from_run", str(path), "a run whose networks are named (equal_s0, ...); "
                "this one predates the names: rerun it with the current deepscope")
        c = json.loads(conf.read_text())
        # config.json holds the effective values (--quick applied), so compare effective ones
        mine = {k: getattr(self, k) for k in ("freqs", "n_points", "width", "depth", "seed")}
        mine.update({k: v for k, v in self.QUICK.items() if self.quick and k in mine})
        want = {"recipe": "spectral-sinusoids", **mine, "freqs": list(mine["freqs"])}
        diff = {k: c.get(k) for k, v in want.items() if c.get(k) != v}
        require(not diff, "from_run", str(path),
                f"a run with this config, but it differs in {diff}; pass matching --freqs, "
                f"--n-points, --width, --depth, --seed")


def run(cfg: Config, run) -> dict:
    import numpy as np
    import torch

    from deepscope.dynamics import spectral, spectral_train
    from deepscope.report.figures import plt, save

    freqs = np.asarray(cfg.freqs)
    amps = np.ones(len(freqs))
    z = torch.arange(cfg.n_points, dtype=torch.float32) / cfg.n_points
    x = z[:, None].to(run.device)
    phases = np.random.default_rng(cfg.seed).uniform(0, 2 * np.pi, size=len(freqs))
    target = spectral.sum_of_sinusoids(z, freqs, amps, phases).to(run.device)
    settings = {**cfg.settings(checkpoint_every=2000), "n_seeds": 1}
    if cfg.from_run is None:
        net = spectral_train.train_lockstep(
            x, {"train": target}, generator=run.generator("init"), run=run,
            record=spectral_train.log_spectra(x, {"train": amps}, freqs=freqs),
            desc="spectral-robustness (training)",
            **cfg.lockstep_options(checkpoint_every=2000),
        )["train"]
        losses = spectral_train.read_spectra(run.metrics(), ["train"])[2]
        final_loss = float(losses[-1, 0])  # logged at the last step
    else:
        net = spectral_train.build_mlp(1, width=cfg.width, depth=cfg.depth,
                                       generator=run.generator("init"))
        settings["steps"] = spectral_train.load_lockstep_model(cfg.from_run, FROM_RUN_MODEL, net)
        net = net.to(run.device)
        with torch.no_grad():
            final_loss = float(((net(x).squeeze(-1) - target) ** 2).mean())
    trained = spectral.SpectrumRecorder(x, freqs=freqs, scale=amps).spectrum(net).numpy()

    eps = np.linspace(0.0, cfg.eps_max, cfg.n_eps)
    ratio = spectral.perturbation_spectrum(
        net, x, eps=eps, n_directions=cfg.n_directions, seed=cfg.seed, freqs=freqs
    ).numpy()  # (E, F)
    collapse = spectral.first_crossing(ratio, eps, threshold=cfg.threshold, above=False)
    rho = spectral.spearman(freqs, collapse, missing=cfg.eps_max + (eps[1] - eps[0]))

    spectral.plot_spectrum_heatmap(ratio, eps, freqs, ylabel="perturbation size eps",
                                   title="magnitude / unperturbed magnitude",
                                   path=run.figure_path("heatmap_eps"))
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.plot(freqs, collapse, marker="o")
    ax.set_xlabel("frequency k")
    ax.set_ylabel(f"eps where magnitude < {cfg.threshold}")
    ax.set_title(f"Spearman rho = {rho['rho']:.2f}")
    save(fig, run.figure_path("collapse_eps"))

    rows = [f"{'k':>4} {'learned':>8} {'collapse eps':>13}"]
    for k, t, c in zip(freqs, trained, collapse):
        rows.append(f"{k:>4} {t:>8.3f} {'-' if np.isnan(c) else f'{c:.2f}':>13}")
    rows.append(
        f"Spearman rho(k, collapse eps) = {rho['rho']:.3f} ('-': never below "
        f"{cfg.threshold} up to eps {cfg.eps_max}, ranked last)"
    )
    return {
        "freqs": freqs.tolist(),
        "eps": np.round(eps, 6).tolist(),
        "collapse_eps": [None if np.isnan(c) else round(float(c), 6) for c in collapse],
        "spearman": rho,
        "normalised_magnitude": np.round(ratio, 5).tolist(),
        "trained_normalised_magnitude": np.round(trained, 4).tolist(),
        "final_train_loss": final_loss,
        "settings": settings,
        "paper": PAPER,
        "summary": "\n".join(rows),
    }
