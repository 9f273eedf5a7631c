"""Spectral bias, robustness: perturbed parameters lose the high frequencies first (arXiv 1806.08734).

Trains the 1-D sinusoid MLP (equal amplitudes, k = 5..50) as in ``spectral-sinusoids``, then
moves its parameters along random unit-norm Gaussian directions, ``theta + eps delta``, and
measures each frequency's amplitude divided by the unperturbed model's amplitude (averaged
over directions). result.json lists per frequency the smallest eps where that ratio falls
below ``threshold`` and its Spearman correlation with frequency (the paper: negative, high
frequencies are the fragile ones); the figure is the eps x frequency heatmap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepscope.train.config import RunConfig

PAPER = (
    "Rahaman et al. 2019, robustness experiment: the higher the frequency, the smaller the perturbation at "
    "which its magnitude collapses; the paper shows heatmaps, no table"
)


@dataclass(frozen=True)
class Config(RunConfig):
    """Options of the parameter-perturbation experiment (defaults: the paper's settings)."""

    freqs: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)
    """Frequencies of the target (equal amplitudes, random phases)."""

    n_points: int = 200
    """Grid points z_j = j / n_points."""

    train_steps: int = 60000
    """Full-batch Adam steps to train the model before perturbing it."""

    lr: float = 3e-4
    """Adam learning rate."""

    width: int = 256
    """Width of every hidden layer."""

    depth: int = 6
    """Number of linear layers."""

    eps_max: float = 5.0
    """Largest perturbation size (the paper: eps in [0, 5])."""

    n_eps: int = 21
    """Number of eps values, equally spaced in [0, eps_max]."""

    n_directions: int = 50
    """Random unit-norm directions per eps (averaged)."""

    threshold: float = 0.5
    """A frequency has collapsed at the first eps where its normalised magnitude drops below this."""

    record_every: int = 1000
    """Record the training spectrum every this many steps."""

    from_run: Path | None = None
    """A finished spectral-sinusoids run directory: perturb its seed-0 equal-amplitude network
    instead of training one here (freqs, n_points, width, depth must match; train_steps is ignored)."""

    quick: bool = False
    """Tiny budget for tests and demos: 600 training steps at lr 2e-3, width 64, 4 layers, 11 eps,
    5 directions."""


def settings(cfg: Config) -> dict:
    s = dict(
        freqs=list(cfg.freqs), n_points=cfg.n_points, steps=cfg.train_steps, lr=cfg.lr,
        width=cfg.width, depth=cfg.depth, eps_max=cfg.eps_max, n_eps=cfg.n_eps,
        n_directions=cfg.n_directions, threshold=cfg.threshold, record_every=cfg.record_every,
        checkpoint_every=cfg.checkpoint_every or 2000, n_seeds=1,
    )
    if cfg.quick:
        s.update(steps=600, lr=2e-3, width=64, depth=4, n_eps=11, n_directions=5,
                 record_every=100, checkpoint_every=200)
    return s


def run(cfg: Config, run) -> dict:
    import numpy as np
    import torch

    from deepscope.dynamics.spectral import (
        SpectrumRecorder,
        first_crossing,
        perturbation_spectrum,
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
    if not s["eps_max"] > 0 or s["n_eps"] < 2:
        raise ValueError(
            f"eps_max == {s['eps_max']} and n_eps == {s['n_eps']}: need eps_max > 0 and n_eps >= 2"
        )
    dev = run.device
    freqs = np.asarray(s["freqs"])
    amps = np.ones(len(freqs))
    z = torch.arange(s["n_points"], dtype=torch.float32) / s["n_points"]
    x = z[:, None].to(dev)
    phases = np.random.default_rng(run.seed).uniform(0, 2 * np.pi, size=len(freqs))
    target = sum_of_sinusoids(z, freqs, amps, phases).to(dev)
    net = MLP(1, [s["width"]] * (s["depth"] - 1), 1).to(dev)
    rec = SpectrumRecorder(x, every=s["record_every"], freqs=freqs, scale=amps)
    if cfg.from_run is None:
        train_lockstep(
            run, [net], ["train"], x, target[None], [rec],
            steps=s["steps"], lr=s["lr"], record_every=s["record_every"],
            checkpoint_every=s["checkpoint_every"], desc="spectral-robustness (training)",
        )
        _, spectra, losses = read_spectra(run, "train")
        final_loss = float(losses[-1, 0])
    else:
        s["steps"] = _load_sinusoids_net(Path(cfg.from_run), s, net, seed=run.seed)
        with torch.no_grad():
            final_loss = float(((net(x).squeeze(-1) - target) ** 2).mean())
        s["from_run"] = str(cfg.from_run)
    trained = rec.spectrum(net).numpy()

    eps = np.linspace(0.0, s["eps_max"], s["n_eps"])
    ratio = perturbation_spectrum(
        net, x, eps=eps, n_directions=s["n_directions"], seed=run.seed, freqs=freqs
    ).numpy()  # (E, F)
    collapse = first_crossing(ratio, eps, threshold=s["threshold"], above=False)
    rho = spearman(freqs, collapse, missing=s["eps_max"] + (eps[1] - eps[0]))

    plot_spectrum_heatmap(ratio, eps, freqs, ylabel="perturbation size eps",
                          title="magnitude / unperturbed magnitude", path=run.figure_path("heatmap_eps"))
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.plot(freqs, collapse, marker="o")
    ax.set_xlabel("frequency k")
    ax.set_ylabel(f"eps where magnitude < {s['threshold']}")
    ax.set_title(f"Spearman rho = {rho['rho']:.2f}")
    save(fig, run.figure_path("collapse_eps"))

    rows = [f"{'k':>4} {'learned':>8} {'collapse eps':>13}"]
    for k, t, c in zip(freqs, trained, collapse):
        rows.append(f"{k:>4} {t:>8.3f} {'-' if np.isnan(c) else f'{c:.2f}':>13}")
    rows.append(
        f"Spearman rho(k, collapse eps) = {rho['rho']:.3f} ('-': never below "
        f"{s['threshold']} up to eps {s['eps_max']}, ranked last)"
    )
    return {
        "freqs": freqs.tolist(),
        "eps": np.round(eps, 6).tolist(),
        "collapse_eps": [None if np.isnan(c) else round(float(c), 6) for c in collapse],
        "spearman": rho,
        "normalised_magnitude": np.round(ratio, 5).tolist(),
        "trained_normalised_magnitude": np.round(trained, 4).tolist(),
        "final_train_loss": final_loss,
        "settings": s,
        "paper": PAPER,
        "summary": "\n".join(rows),
    }


def _load_sinusoids_net(path: Path, s: dict, net, *, seed: int) -> int:
    """Load the seed-0 equal-amplitude network of a spectral-sinusoids run into ``net``."""
    import json

    import torch

    ck, conf = path / "checkpoint.pt", path / "config.json"
    if not ck.exists() or not conf.exists():
        raise ValueError(
            f"from_run == '{path}' holds no checkpoint.pt/config.json; pass the directory of a "
            f"spectral-sinusoids run (runs/spectral-sinusoids/<id>)"
        )
    c = json.loads(conf.read_text())
    want = {"recipe": "spectral-sinusoids", "freqs": s["freqs"], "n_points": s["n_points"],
            "width": s["width"], "depth": s["depth"], "quick": False, "seed": seed}
    diff = {k: c.get(k) for k, v in want.items() if c.get(k) != v}
    if diff:
        raise ValueError(
            f"from_run == '{path}' differs from this config in {diff}; pass matching --freqs, "
            f"--n-points, --width, --depth, --seed (the phases come from the seed; quick runs cannot "
            f"be reused)"
        )
    blob = torch.load(ck, map_location="cpu", weights_only=False)
    if blob["step"] != c["steps"]:
        raise ValueError(
            f"from_run == '{path}' stopped at step {blob['step']} of {c['steps']}; finish it first "
            f"(rerun its command with --out {path})"
        )
    net.load_state_dict(blob["models"][0])  # model order: seed 0 equal, seed 0 increasing, ...
    return int(blob["step"])
