"""Spectral bias on real data: label noise along smooth vs rough kernel eigenvectors (arXiv 1806.08734, real-data experiment).

A binary task (classes in ``positive_classes`` -> +1, others -> -1) on sklearn's digits or
MNIST-1D. The "spectrum" of a function on the training inputs is its projection on the
eigenvectors of an RBF kernel on those inputs, largest eigenvalue (smoothest) first. Three
networks with the same initialisation regress, with MSE and full-batch Adam:

- ``clean``: the labels y;
- ``low_freq``: y + noise spanned by the ``band`` top-eigenvalue (smooth) eigenvectors;
- ``high_freq``: y + noise spanned by the ``band`` bottom-eigenvalue (rough) eigenvectors;

both noises with norm ``noise_level * ||y||``. Spectral bias predicts that the rough noise is
fitted late and barely moves the validation accuracy, while the smooth noise is fitted early
and hurts it. Logged every ``record_every`` steps: validation accuracy/MSE against the clean
test labels, the fraction of the noise fitted (the component of ``f - f_clean`` along the
noise, over the noise's norm squared), and the eigenbasis spectrum (per band of
eigen-indices, the fraction of the target's component that the network has learned).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepscope.train.config import RunConfig

PAPER = (
    "Rahaman et al. 2019, real-data experiment: the network fits the top (smooth) kernel "
    "eigenvectors before label noise made of low-eigenvalue directions; no table to compare with"
)

CASES = ("clean", "low_freq", "high_freq")
NOISE_LABEL = {"low_freq": "noise on top eigenvectors (smooth)",
               "high_freq": "noise on bottom eigenvectors (rough)"}


@dataclass(frozen=True)
class Config(RunConfig):
    """Options of the label-noise-in-the-eigenbasis experiment."""

    dataset: str = "digits"
    """'digits' (sklearn 8x8, 64 features) or 'mnist1d' (40 features, generated offline)."""

    positive_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Classes labelled +1 (the others -1)."""

    n_train: int = 1000
    """Training points (the kernel matrix is n_train x n_train)."""

    gamma: float = 0.0
    """RBF kernel gamma; 0 picks 1 / median squared distance between training points."""

    band: int = 100
    """Eigenvectors spanning each noise (top `band` for 'low_freq', bottom `band` for 'high_freq')."""

    noise_level: float = 1.0
    """Noise norm as a multiple of the label norm ||y||."""

    steps: int = 3000
    """Full-batch Adam steps."""

    lr: float = 1e-3
    """Adam learning rate."""

    width: int = 256
    """Width of every hidden layer."""

    depth: int = 4
    """Number of linear layers."""

    record_every: int = 10
    """Evaluate and record every this many steps."""

    n_bins: int = 20
    """Bands of eigen-indices in the recorded spectrum."""

    quick: bool = False
    """Tiny budget for tests and demos: 200 points, band 20, 100 steps, width 32, 3 layers, 5 bins."""


def settings(cfg: Config) -> dict:
    s = dict(
        dataset=cfg.dataset, positive_classes=list(cfg.positive_classes), n_train=cfg.n_train,
        gamma=cfg.gamma, band=cfg.band, noise_level=cfg.noise_level, steps=cfg.steps, lr=cfg.lr,
        width=cfg.width, depth=cfg.depth, record_every=cfg.record_every, n_bins=cfg.n_bins,
        checkpoint_every=cfg.checkpoint_every or 500,
    )
    if cfg.quick:
        s.update(n_train=200, band=20, steps=100, width=32, depth=3, record_every=20, n_bins=5,
                 checkpoint_every=40)
    return s


def _validate(s: dict) -> None:
    if s["dataset"] not in ("digits", "mnist1d"):
        raise ValueError(f"dataset == {s['dataset']!r}; choose 'digits' or 'mnist1d'")
    if not s["positive_classes"] or any(not 0 <= c <= 9 for c in s["positive_classes"]):
        raise ValueError(f"positive_classes == {tuple(s['positive_classes'])}, must be classes in 0..9")
    if not 2 * s["band"] <= s["n_train"]:
        raise ValueError(
            f"band == {s['band']} with n_train == {s['n_train']}: need 2 * band <= n_train so the "
            f"low and high noise bands do not overlap"
        )
    if not 1 <= s["n_bins"] <= s["n_train"]:
        raise ValueError(f"n_bins == {s['n_bins']}, must be in 1..n_train == {s['n_train']}")
    for name in ("steps", "width", "record_every", "checkpoint_every", "band"):
        if s[name] < 1:
            raise ValueError(f"{name} == {s[name]}, must be >= 1")
    if s["depth"] < 2 or s["noise_level"] < 0 or s["gamma"] < 0:
        raise ValueError(
            f"depth == {s['depth']}, noise_level == {s['noise_level']}, gamma == {s['gamma']}: "
            f"need depth >= 2, noise_level >= 0, gamma >= 0"
        )
    if s["steps"] % s["record_every"]:
        raise ValueError(f"steps == {s['steps']} is not a multiple of record_every == {s['record_every']}")


def run(cfg: Config, run) -> dict:
    import copy

    import numpy as np
    import torch
    from scipy.spatial.distance import pdist

    from deepscope.data import load_dataset
    from deepscope.dynamics.spectral import (
        eigenbasis_spectrum,
        kernel_eigenbasis,
        plot_spectrum_heatmap,
    )
    from deepscope.nets import MLP
    from deepscope.report.figures import plt, save

    s = settings(cfg)
    _validate(s)
    dev = run.device
    ds = load_dataset(s["dataset"], seed=run.seed) if s["dataset"] == "digits" else load_dataset(
        "mnist1d", n=max(5000, int(s["n_train"] / 0.8) + 1), seed=run.seed)
    if ds.x_train.shape[0] < s["n_train"]:
        raise ValueError(
            f"n_train == {s['n_train']} but {s['dataset']} has {ds.x_train.shape[0]} training points"
        )
    pos = torch.tensor(s["positive_classes"])
    xtr = ds.x_train[: s["n_train"]].reshape(s["n_train"], -1).double()
    ytr = torch.where(torch.isin(ds.y_train[: s["n_train"]], pos), 1.0, -1.0).double()
    xte = ds.x_test.reshape(ds.x_test.shape[0], -1).double()
    yte = torch.where(torch.isin(ds.y_test, pos), 1.0, -1.0).double()

    gamma = s["gamma"] or 1.0 / float(np.median(pdist(xtr.numpy(), "sqeuclidean")))
    evals, evecs = kernel_eigenbasis(xtr, kernel="rbf", gamma=gamma)  # (N,), (N, N)
    basis = (evals, evecs)
    n, band = s["n_train"], s["band"]
    rng = np.random.default_rng(run.seed)
    y = ytr.numpy()
    noise = {"clean": np.zeros(n)}
    for case, cols in (("low_freq", slice(0, band)), ("high_freq", slice(n - band, n))):
        c = evecs[:, cols] @ rng.normal(size=band)
        noise[case] = c / np.linalg.norm(c) * s["noise_level"] * np.linalg.norm(y)
    targets = {case: y + noise[case] for case in CASES}
    target_coef = {case: eigenbasis_spectrum(targets[case], basis=basis) for case in CASES}
    bins = np.array_split(np.arange(n), s["n_bins"])

    def band_spectrum(coef: np.ndarray, case: str) -> list[float]:
        # per band: the share of the target's component in that band that f has learned
        t = target_coef[case]
        return [round(float(coef[b] @ t[b] / max(t[b] @ t[b], 1e-300)), 5) for b in bins]

    x_train = xtr.float().to(dev)
    x_test = xte.float().to(dev)
    y_test = yte.float().to(dev)
    t_train = {case: torch.as_tensor(targets[case], dtype=torch.float32, device=dev) for case in CASES}
    net = MLP(x_train.shape[1], [s["width"]] * (s["depth"] - 1), 1).to(dev)
    models = {case: copy.deepcopy(net) for case in CASES}
    opts = {case: torch.optim.Adam(models[case].parameters(), lr=s["lr"]) for case in CASES}

    state = run.load_checkpoint()
    start = 0
    if state is not None:
        for case in CASES:
            models[case].load_state_dict(state["models"][case])
            opts[case].load_state_dict(state["opts"][case])
        start = state["step"]

    with run.progress(s["steps"], desc="spectral-noise", start=start) as advance:
        for step in range(start + 1, s["steps"] + 1):
            losses = {}
            for case in CASES:
                loss = ((models[case](x_train).squeeze(-1) - t_train[case]) ** 2).mean()
                opts[case].zero_grad(set_to_none=True)
                loss.backward()
                opts[case].step()
                losses[case] = loss
            if step % s["record_every"] == 0:
                rec = {}
                with torch.no_grad():
                    for case in CASES:
                        f_tr = models[case](x_train).squeeze(-1).double().cpu().numpy()
                        f_te = models[case](x_test).squeeze(-1)
                        rec[f"train_mse_{case}"] = round(losses[case].item(), 6)
                        rec[f"val_acc_{case}"] = round((torch.sign(f_te) == y_test).float().mean().item(), 5)
                        rec[f"val_mse_{case}"] = round(((f_te - y_test) ** 2).mean().item(), 6)
                        if case == "clean":
                            f_clean = f_tr
                        else:  # share of the noise vector in f, beyond what the clean net has
                            nz = noise[case]
                            rec[f"noise_fit_{case}"] = round(float((f_tr - f_clean) @ nz / (nz @ nz)), 5)
                        rec[f"spectrum_{case}"] = band_spectrum(
                            eigenbasis_spectrum(f_tr, basis=basis), case)
                run.log(step, **rec)
                advance(s["record_every"], **{f"acc_{c}": rec[f"val_acc_{c}"] for c in CASES})
            if step % s["checkpoint_every"] == 0 or step == s["steps"]:
                run.save_checkpoint(
                    {"models": {c: m.state_dict() for c, m in models.items()},
                     "opts": {c: o.state_dict() for c, o in opts.items()}},
                    step=step,
                )

    recs = [r for r in run.metrics() if "val_acc_clean" in r]
    steps = np.asarray([r["step"] for r in recs])
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3))
    for case in CASES:
        axes[0].plot(steps, [r[f"val_acc_{case}"] for r in recs], label=case)
        if case != "clean":
            axes[1].plot(steps, [r[f"noise_fit_{case}"] for r in recs], label=NOISE_LABEL[case])
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("validation accuracy (clean labels)")
    axes[0].legend()
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("fraction of the noise fitted")
    axes[1].legend()
    save(fig, run.figure_path("validation"))

    bin_centres = [int(np.mean(b)) for b in bins]
    # the whole run, and its first tenth, where the ordering in eigen-index is visible
    early = steps <= max(10 * s["record_every"], s["steps"] // 10)
    for name, keep in (("eigenbasis_spectra", np.ones_like(early)), ("eigenbasis_spectra_early", early)):
        fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.3))
        for ax, case in zip(axes, CASES):
            spec = np.asarray([r[f"spectrum_{case}"] for r in recs])[keep]
            plot_spectrum_heatmap(spec, steps[keep], bin_centres, ax=ax, title=f"target: {case}",
                                  xlabel="eigen-index (large eigenvalue first)",
                                  colorbar=case == CASES[-1])
        save(fig, run.figure_path(name))

    def first_step(key: str, value: float) -> int | None:
        hit = [r["step"] for r in recs if r[key] > value]
        return hit[0] if hit else None

    out = {"gamma": gamma, "n_val": int(yte.shape[0]),
           "top_eigenvalues": np.round(evals[:5], 5).tolist(),
           "band_eigenvalues": {"low_freq": [float(evals[band - 1]), float(evals[0])],
                                "high_freq": [float(evals[-1]), float(evals[n - band])]}}
    for case in CASES:
        acc = np.asarray([r[f"val_acc_{case}"] for r in recs])
        out[case] = {
            "final_val_acc": float(acc[-1]),
            "best_val_acc": float(acc.max()),
            "best_step": int(steps[acc.argmax()]),
            "final_val_mse": recs[-1][f"val_mse_{case}"],
            "final_train_mse": recs[-1][f"train_mse_{case}"],
        }
        if case != "clean":
            out[case]["final_noise_fit"] = recs[-1][f"noise_fit_{case}"]
            out[case]["step_noise_fit_above_half"] = first_step(f"noise_fit_{case}", 0.5)
    out["settings"] = s
    out["paper"] = PAPER
    rows = [f"{'target':>9} {'final acc':>9} {'best acc':>8} {'noise fitted':>12} {'half fitted at':>14}"]
    for case in CASES:
        o = out[case]
        nf = f"{o['final_noise_fit']:.3f}" if case != "clean" else "-"
        hs = o.get("step_noise_fit_above_half")
        rows.append(f"{case:>9} {o['final_val_acc']:>9.3f} {o['best_val_acc']:>8.3f} {nf:>12} "
                    f"{'-' if hs is None else hs:>14}")
    out["summary"] = "\n".join(rows)
    return out
