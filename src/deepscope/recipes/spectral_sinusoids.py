"""Spectral bias in 1-D: an MLP fits sinusoids k=5..50 low frequencies first (arXiv 1806.08734).

    deepscope run spectral-sinusoids --threads 1 --n-seeds 1
    deepscope run spectral-sinusoids --quick        # 600 steps, width 64, 4 layers, 1 seed (~2 s)

The target is ``sum_i A_i sin(2 pi k_i z + phi_i)`` on ``z_j = j / 200`` with random phases,
in two cases: equal amplitudes ``A_i = 1`` and increasing amplitudes ``A_i = 0.1 i`` (the high
frequencies are the loudest). A 6-linear-layer width-256 ReLU MLP is trained full-batch with
Adam; every ``record_every`` steps the normalised spectrum ``|f^(k_i)| / A_i`` is logged.
result.json lists each frequency's learning step (first recorded step where the seed-averaged
normalised magnitude exceeds ``threshold``) and the Spearman correlation between frequency and
learning step. For every seed the two cases share the network's initialisation and the phases;
the checkpoint names the networks ``equal_s0``, ``increasing_s0``, ``equal_s1``, ...
All seeds and cases train as one stacked model (``spectral_train.train_lockstep(implementation="stacked")``; equal to
separate runs to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deepscope.dynamics.spectral_config import SinusoidsConfig
from deepscope.recipes import Reproduce, System
from deepscope.train.config import require

PAPER = (
    "Rahaman et al. 2019, 1-D sinusoids experiment: in both cases the low frequencies converge first; the paper "
    "gives the heatmaps, not a table of learning steps"
)


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("spectral", "Spectral bias", order=2)
REPRODUCE = Reproduce(
    smoke=("--quick",),
    quick=("--steps", "10000", "--n-seeds", "1"),
    paper=(),
)

@dataclass(frozen=True)
class Config(SinusoidsConfig):
    """Options of the 1-D sinusoids experiment (defaults: the paper's settings)."""

    n_seeds: int = 3
    """Independent runs (initialisation and phases) averaged in the heatmaps and learning steps."""

    threshold: float = 0.5
    """A frequency is learned at the first record where its normalised magnitude exceeds this."""

    QUICK: ClassVar[dict] = {"steps": 600, "lr": 2e-3, "width": 64, "depth": 4, "n_seeds": 1,
                             "record_every": 20, "checkpoint_every": 100}

    def validate(self) -> None:
        super().validate()
        require(self.n_seeds >= 1, "n_seeds", self.n_seeds, ">= 1")


def run(cfg: Config, run) -> dict:
    import numpy as np
    import torch

    from deepscope.dynamics import spectral, spectral_train
    from deepscope.report.figures import plt, save

    freqs = np.asarray(cfg.freqs)
    cases = {"equal": np.ones(len(freqs)), "increasing": 0.1 * np.arange(1, len(freqs) + 1)}
    z = torch.arange(cfg.n_points, dtype=torch.float32) / cfg.n_points
    x = z[:, None].to(run.device)
    rng = np.random.default_rng(cfg.seed)  # the phases; the networks draw from run.generator
    names = {case: [f"{case}_s{s}" for s in range(cfg.n_seeds)] for case in cases}
    targets, scale = {}, {}
    for s in range(cfg.n_seeds):
        phases = rng.uniform(0, 2 * np.pi, size=len(freqs))
        for case, amps in cases.items():
            targets[names[case][s]] = spectral.sum_of_sinusoids(z, freqs, amps, phases)
            scale[names[case][s]] = amps
    # all seeds x cases as one stacked model (equal to separate runs to float rounding)
    spectral_train.train_lockstep(
        x, targets, generator=run.generator("init"), run=run, desc="spectral-sinusoids",
        share_init=list(zip(*names.values())),  # per seed, both cases start from one network
        record=spectral_train.log_spectra(x, scale, freqs=freqs),
        **cfg.lockstep_options(checkpoint_every=2000), implementation="stacked",
    )

    def learned_at(curves, steps):  # first recorded step above threshold (NaN: never)
        return spectral.first_crossing(curves, steps, threshold=cfg.threshold)

    def as_steps(values):
        return [None if np.isnan(v) else int(v) for v in values]

    out: dict = {"freqs": freqs.tolist(), "learning_step": {}, "learning_step_per_seed": {},
                 "spearman": {}, "final_normalised_magnitude": {}, "final_loss": {}}
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for ax, case in zip(axes, cases):
        steps, spectra, losses = spectral_train.read_spectra(run.metrics(), names[case])
        mean = spectra.mean(1)  # average over seeds: (T, F)
        learned = learned_at(mean, steps)
        out["learning_step"][case] = as_steps(learned)
        out["learning_step_per_seed"][case] = [
            as_steps(learned_at(spectra[:, i], steps)) for i in range(cfg.n_seeds)]
        out["spearman"][case] = spectral.spearman(  # never learned: ranked last
            freqs, learned, missing=cfg.steps + cfg.record_every)
        out["final_normalised_magnitude"][case] = np.round(mean[-1], 4).tolist()
        out["final_loss"][case] = float(losses[-1].mean())
        title = "A_i = 1" if case == "equal" else "A_i = 0.1 i"
        spectral.plot_spectrum_heatmap(mean, steps, freqs, ax=ax, title=title)
        spectral.plot_spectrum_heatmap(mean, steps, freqs, title=title,
                                       path=run.figure_path(f"heatmap_{case}"))
    save(fig, run.figure_path("heatmaps"))

    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for case, marker in (("equal", "o"), ("increasing", "s")):
        ls = [np.nan if v is None else v for v in out["learning_step"][case]]
        ax.plot(freqs, ls, marker=marker, label=f"{case} (rho={out['spearman'][case]['rho']:.2f})")
    ax.set_xlabel("frequency k")
    ax.set_ylabel(f"learning step (magnitude > {cfg.threshold})")
    ax.legend()
    save(fig, run.figure_path("learning_steps"))

    rows = [f"{'k':>4} {'step (A=1)':>11} {'step (A=0.1i)':>14}"]
    for k, a, b in zip(freqs, out["learning_step"]["equal"], out["learning_step"]["increasing"]):
        rows.append(f"{k:>4} {'-' if a is None else a:>11} {'-' if b is None else b:>14}")
    rows.append(
        f"Spearman rho(k, learning step): equal {out['spearman']['equal']['rho']:.3f}, "
        f"increasing {out['spearman']['increasing']['rho']:.3f}  ('-': not learned in "
        f"{cfg.steps} steps, ranked last)"
    )
    out["settings"] = cfg.settings(checkpoint_every=2000)
    return {**out, "paper": PAPER, "summary": "\n".join(rows)}


#: Spearman's rho(frequency, learning step) that counts as "low frequencies first" (docs/spectral.md).
RHO_TARGET = 0.9


def verdict(result: dict) -> dict:
    """Low frequencies learned first: rho(k, learning step) >= 0.9 in both amplitude cases.

    reproduced: rho >= 0.9 with p < 0.05 in both cases and at least half of the frequencies
    learned in each; partly: rho > 0 with p < 0.05 in both, or >= 0.9 in one, or, in a run
    too short to test the order, only the lowest frequencies learned (consistent, not a
    test); not reproduced: otherwise; not run: no learning steps.
    The interval is over seeds (per-seed rho, Student t) when there are two or more.
    """
    import math

    claim = ("Rahaman et al. 2019 (arXiv 1806.08734), 1-D sinusoids k = 5..50: the low "
             "frequencies are learned first, with equal and with increasing amplitudes "
             f"(our target: Spearman rho(k, learning step) >= {RHO_TARGET:g})")
    cases = [c for c in ("equal", "increasing")
             if (result.get("spearman") or {}).get(c) and (result.get("learning_step") or {}).get(c)]
    if not cases:
        return {"claim": claim, "measured": "no learning steps in the result", "verdict": "not run"}
    st = result.get("settings", {})
    freqs = result.get("freqs", [])
    parts, strong, ordered, enough, lowest = [], [], [], [], []
    for c in cases:
        rho = result["spearman"][c]["rho"]
        p = result["spearman"][c]["p"]
        rho = float("nan") if rho is None else rho
        p = float("nan") if p is None else p
        steps = result["learning_step"][c]
        learned = sum(s is not None for s in steps)
        text = f"{c}: rho {rho:.3f} (p = {p:.2g}), {learned}/{len(steps)} learned"
        per_seed = (result.get("learning_step_per_seed") or {}).get(c) or []
        if len(per_seed) >= 2 and "steps" in st and "record_every" in st:
            from deepscope.dynamics.spectral import spearman
            from deepscope.train.stats import summarise

            miss = st["steps"] + st["record_every"]
            rhos = [spearman(freqs, [math.nan if s is None else s for s in ls], missing=miss)["rho"]
                    for ls in per_seed]
            iv = summarise(rhos)  # a seed without a rho (NaN) is dropped and not counted
            text += (f", per seed {iv['mean']:.3f} [95% CI {iv['ci95'][0]:.3f}, "
                     f"{iv['ci95'][1]:.3f}], n={iv['n']}")
        parts.append(text)
        strong.append(rho >= RHO_TARGET and p < 0.05)
        ordered.append(rho > 0 and p < 0.05)
        enough.append(learned >= len(steps) / 2)
        by_freq = [s for _, s in sorted(zip(freqs, steps))] if len(freqs) == len(steps) else steps
        lowest.append(0 < learned and all(s is not None for s in by_freq[:learned]))
    measured = "; ".join(parts) + f" ({st.get('steps', '?')} steps)"
    missing = [c for c in ("equal", "increasing") if c not in cases]
    if missing:
        measured += f"; not run: {', '.join(missing)}"
    if all(strong) and all(enough) and not missing:
        v = "reproduced"
    elif all(ordered) or any(strong) or all(o or (lo and not e)
                                             for o, lo, e in zip(ordered, lowest, enough)):
        v = "partly"
        if not all(enough):
            measured += ("; fewer than half the frequencies learned (only the lowest ones: "
                         "consistent, too few to test the order): more steps needed"
                         if all(lowest) else "; fewer than half the frequencies learned")
    else:
        v = "not reproduced"
    return {"claim": claim, "measured": measured, "verdict": v}
