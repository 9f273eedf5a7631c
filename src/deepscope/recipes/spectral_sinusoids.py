"""Spectral bias in 1-D: an MLP fits sinusoids k=5..50 low frequencies first (arXiv 1806.08734).

The target is ``sum_i A_i sin(2 pi k_i z + phi_i)`` on ``z_j = j / 200`` with random phases,
in two cases: equal amplitudes ``A_i = 1`` and increasing amplitudes ``A_i = 0.1 i`` (the high
frequencies are the loudest). A 6-linear-layer width-256 ReLU MLP is trained full-batch with
Adam; every ``record_every`` steps the normalised spectrum ``|f^(k_i)| / A_i`` is logged.
result.json lists each frequency's learning step (first recorded step where the seed-averaged
normalised magnitude exceeds ``threshold``) and the Spearman correlation between frequency and
learning step. For every seed the two cases share the network's initialisation and the phases.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepscope.train.config import RunConfig

PAPER = (
    "Rahaman et al. 2019, 1-D sinusoids experiment: in both cases the low frequencies converge first; the paper "
    "gives the heatmaps, not a table of learning steps"
)


@dataclass(frozen=True)
class Config(RunConfig):
    """Options of the 1-D sinusoids experiment (defaults: the paper's settings)."""

    freqs: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)
    """Integer frequencies k_i of the target (each < n_points / 2)."""

    n_points: int = 200
    """Grid points z_j = j / n_points (the whole training set, one full batch)."""

    steps: int = 60000
    """Adam steps per model."""

    lr: float = 3e-4
    """Adam learning rate."""

    width: int = 256
    """Width of every hidden layer."""

    depth: int = 6
    """Number of linear layers (depth - 1 hidden ReLU layers)."""

    n_seeds: int = 3
    """Independent runs (initialisation and phases) averaged in the heatmaps and learning steps."""

    record_every: int = 100
    """Record the spectrum every this many steps."""

    threshold: float = 0.5
    """A frequency counts as learned at the first record where its normalised magnitude exceeds this."""

    quick: bool = False
    """Tiny budget for tests and demos: 600 steps at lr 2e-3, width 64, 4 layers, 1 seed, record every 20
    (about 2 s; only the lowest frequencies get learned)."""


def settings(cfg: Config) -> dict:
    """The effective settings (``quick`` replaces the budget)."""
    s = dict(
        freqs=list(cfg.freqs), n_points=cfg.n_points, steps=cfg.steps, lr=cfg.lr, width=cfg.width,
        depth=cfg.depth, n_seeds=cfg.n_seeds, record_every=cfg.record_every,
        threshold=cfg.threshold, checkpoint_every=cfg.checkpoint_every or 2000,
    )
    if cfg.quick:
        s.update(steps=600, lr=2e-3, width=64, depth=4, n_seeds=1, record_every=20,
                 checkpoint_every=100)
    return s


def validate(s: dict) -> None:
    """Check the settings once, at the boundary."""
    if any(k < 1 or k >= s["n_points"] / 2 for k in s["freqs"]):
        raise ValueError(
            f"freqs == {tuple(s['freqs'])}: every frequency must be in 1..{(s['n_points'] - 1) // 2} "
            f"for n_points == {s['n_points']}; raise --n-points or lower the frequencies"
        )
    for name in ("steps", "width", "n_seeds", "record_every", "checkpoint_every"):
        if s[name] < 1:
            raise ValueError(f"{name} == {s[name]}, must be >= 1")
    if s["depth"] < 2:
        raise ValueError(f"depth == {s['depth']}, must be >= 2 linear layers")
    if s["steps"] % s["record_every"]:
        raise ValueError(
            f"steps == {s['steps']} is not a multiple of record_every == {s['record_every']}; "
            f"pick steps = m * record_every so the last step is recorded"
        )


def train_lockstep(
    run, models: list, names: list[str], x, targets, recorders: list, *,
    steps: int, lr: float, record_every: int, checkpoint_every: int, desc: str,
) -> None:
    """Train independent models full-batch with Adam, one step each per iteration.

    Stepping the models together gives one global step counter, so one checkpoint holds all
    of them and ``Run``'s resume (which trims metric lines after the checkpoint) just works.
    Every ``record_every`` steps one metric line holds, per name, the models' losses and
    their recorded spectra: ``{"loss_<name>": [...], "spectrum_<name>": [[F floats], ...]}``.

    ``x`` is ``(N, D)`` shared by all models, or a list of M such inputs (one per model);
    ``targets`` is ``(M, N)``; one row, recorder and name per model.
    """
    import torch

    xs = list(x) if isinstance(x, (list, tuple)) else [x] * len(models)

    opts = [torch.optim.Adam(m.parameters(), lr=lr) for m in models]
    state = run.load_checkpoint()
    start = 0
    if state is not None:
        for m, o, ms, os_ in zip(models, opts, state["models"], state["opts"]):
            m.load_state_dict(ms)
            o.load_state_dict(os_)
        start = state["step"]

    def save(step: int) -> None:
        run.save_checkpoint(
            {"models": [m.state_dict() for m in models], "opts": [o.state_dict() for o in opts]},
            step=step,
        )

    losses = [0.0] * len(models)
    with run.progress(steps, desc=desc, start=start) as advance:
        for step in range(start + 1, steps + 1):
            for j, (m, o) in enumerate(zip(models, opts)):
                loss = ((m(xs[j]).squeeze(-1) - targets[j]) ** 2).mean()
                o.zero_grad(set_to_none=True)
                loss.backward()
                o.step()
                losses[j] = loss.item() if step % record_every == 0 else losses[j]
            if step % record_every == 0:
                rec: dict = {}
                for j, (m, r) in enumerate(zip(models, recorders)):
                    s = r(step, m)
                    rec.setdefault(f"loss_{names[j]}", []).append(round(losses[j], 8))
                    rec.setdefault(f"spectrum_{names[j]}", []).append([round(float(v), 6) for v in s])
                run.log(step, **rec)
                advance(record_every, loss=sum(losses) / len(losses))
            if step % checkpoint_every == 0 or step == steps:
                save(step)


def read_spectra(run, name: str):
    """``(steps (T,), spectra (T, S, F), losses (T, S))`` of one name from metrics.jsonl."""
    import numpy as np

    recs = [r for r in run.metrics() if f"spectrum_{name}" in r]
    steps = np.asarray([r["step"] for r in recs], dtype=np.int64)
    spectra = np.asarray([r[f"spectrum_{name}"] for r in recs], dtype=np.float64)
    losses = np.asarray([r[f"loss_{name}"] for r in recs], dtype=np.float64)
    return steps, spectra, losses


def spearman(freqs, values, *, missing: float) -> dict:
    """Spearman rho (scipy) between frequency and a per-frequency value; NaN -> ``missing``."""
    import warnings

    import numpy as np
    from scipy.stats import spearmanr

    v = np.where(np.isnan(values), missing, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: rho is NaN, reported as null
        res = spearmanr(freqs, v)
    return {"rho": float(res.statistic), "p": float(res.pvalue)}


def run(cfg: Config, run) -> dict:
    import copy

    import numpy as np
    import torch

    from deepscope.dynamics.spectral import (
        SpectrumRecorder,
        first_crossing,
        plot_spectrum_heatmap,
        sum_of_sinusoids,
    )
    from deepscope.nets import MLP
    from deepscope.report.figures import plt, save

    s = settings(cfg)
    validate(s)
    dev = run.device
    freqs = np.asarray(s["freqs"])
    nf = len(freqs)
    cases = {"equal": np.ones(nf), "increasing": 0.1 * np.arange(1, nf + 1)}
    z = torch.arange(s["n_points"], dtype=torch.float32) / s["n_points"]
    x = z[:, None].to(dev)

    # per seed: one initialisation and one set of phases, shared by both amplitude cases
    rng = np.random.default_rng(run.seed)
    models, names, targets, recorders = [], [], [], []
    for _ in range(s["n_seeds"]):
        phases = rng.uniform(0, 2 * np.pi, size=nf)
        net = MLP(1, [s["width"]] * (s["depth"] - 1), 1).to(dev)
        for case, amps in cases.items():
            models.append(copy.deepcopy(net))
            names.append(case)
            targets.append(sum_of_sinusoids(z, freqs, amps, phases).to(dev))
            recorders.append(SpectrumRecorder(x, every=s["record_every"], freqs=freqs, scale=amps))
    train_lockstep(
        run, models, names, x, torch.stack(targets), recorders,
        steps=s["steps"], lr=s["lr"], record_every=s["record_every"],
        checkpoint_every=s["checkpoint_every"], desc="spectral-sinusoids",
    )

    result: dict = {"freqs": freqs.tolist(), "learning_step": {}, "learning_step_per_seed": {},
                    "spearman": {},
                    "final_normalised_magnitude": {}, "final_loss": {}}
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for ax, case in zip(axes, cases):
        steps, spectra, losses = read_spectra(run, case)
        mean = spectra.mean(1)  # average over seeds: (T, F)
        learned = first_crossing(mean, steps, threshold=s["threshold"])
        result["learning_step"][case] = [None if np.isnan(v) else int(v) for v in learned]
        per_seed = [first_crossing(spectra[:, i], steps, threshold=s["threshold"])
                    for i in range(spectra.shape[1])]
        result["learning_step_per_seed"][case] = [
            [None if np.isnan(v) else int(v) for v in ls] for ls in per_seed
        ]
        result["spearman"][case] = spearman(freqs, learned, missing=s["steps"] + s["record_every"])
        result["final_normalised_magnitude"][case] = np.round(mean[-1], 4).tolist()
        result["final_loss"][case] = float(losses[-1].mean())
        title = "A_i = 1" if case == "equal" else "A_i = 0.1 i"
        plot_spectrum_heatmap(mean, steps, freqs, ax=ax, title=title)
        plot_spectrum_heatmap(mean, steps, freqs, title=title, path=run.figure_path(f"heatmap_{case}"))
    save(fig, run.figure_path("heatmaps"))

    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for case, marker in (("equal", "o"), ("increasing", "s")):
        ls = [np.nan if v is None else v for v in result["learning_step"][case]]
        ax.plot(freqs, ls, marker=marker, label=f"{case} (rho={result['spearman'][case]['rho']:.2f})")
    ax.set_xlabel("frequency k")
    ax.set_ylabel(f"learning step (magnitude > {s['threshold']})")
    ax.legend()
    save(fig, run.figure_path("learning_steps"))

    result["settings"] = s
    result["paper"] = PAPER
    rows = [f"{'k':>4} {'step (A=1)':>11} {'step (A=0.1i)':>14}"]
    for i, k in enumerate(freqs):
        a, b = result["learning_step"]["equal"][i], result["learning_step"]["increasing"][i]
        rows.append(f"{k:>4} {a if a is not None else '-':>11} {b if b is not None else '-':>14}")
    rows.append(
        f"Spearman rho(k, learning step): equal {result['spearman']['equal']['rho']:.3f}, "
        f"increasing {result['spearman']['increasing']['rho']:.3f}  ('-': not learned in "
        f"{s['steps']} steps, ranked last)"
    )
    result["summary"] = "\n".join(rows)
    return result
