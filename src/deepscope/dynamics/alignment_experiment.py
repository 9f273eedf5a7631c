"""The feature-alignment experiment: settings, their data, one training cell, the grid's summary.

Baratin et al. (arXiv 2008.00938) train several data-network pairs at several fractions of
random labels and seeds. A *setting* here is one data-network pair with its training budget
(:data:`SETTINGS`); :func:`train_cell` trains one (setting, fraction, seed) with
:func:`~deepscope.dynamics.feature_alignment.train_feature_alignment`, and
:func:`summarise_setting` turns a :class:`~deepscope.train.grid.Grid` of such cells into the
headline numbers (intervals over seeds). This module imports torch only inside its functions,
so a recipe may read :data:`SETTINGS` at import time.

Cookbook::

    from deepscope.dynamics.alignment_experiment import (
        cell_name, setting_data, setting_options, summarise_setting, train_cell,
    )
    from deepscope.train import Run

    run = Run("runs/fa", seed=0)
    opts = setting_options("digits-mlp", epochs=5)
    data = setting_data(run, opts["dataset"])
    grid = run.grid([cell_name("digits-mlp", f) for f in (0.0, 0.5)], [0, 1],
                    lambda sub, s, seed: train_cell(sub, data, opts, fraction=0.5 if s[1] ==
                                                    "random50" else 0.0, seed=seed))
    summarise_setting(grid, "digits-mlp", fractions=(0.0, 0.5), seeds=[0, 1])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["SETTINGS", "FIT_THRESHOLD", "setting_options", "setting_data", "cell_name",
           "train_cell", "readout", "record_value", "per_run", "spearman_interval", "summarise_setting"]

#: Per setting: data, network and the training budget (fields a caller leaves at 0/"" take these).
#: Every setting trains until its training accuracy on the labels trained on reaches
#: ``fit_threshold`` (0.99), random labels included, then ``epochs_after_fit`` more epochs (the
#: paper compares runs trained past fitting; its code stops at a training loss < 0.01), with
#: ``epochs`` as the cap. CPU scale: the digits CNN has (16, 32) channels and a 256-wide hidden
#: layer, Kaiming-normal weights and lr 0.01 (the authors' initialisation and one of their
#: released rates): in a trial (seed 0, 50% random labels, no tracker) it fitted in 166 epochs,
#: against 164 for the 64-wide layer at lr 0.05 with PyTorch's initialisation and 72 at lr 0.05
#: with Kaiming weights; the width is for memorising the random labels. MNIST-1D: the 1-D CNN
#: with 64 channels (the MNIST-1D paper's 25 cannot fit random labels) and the MLP. Paper scale:
#: the authors' code (github.com/tfjgeorge/ntk_alignment, commit 7132338: batch 128, momentum
#: 0.9, weight decay 5e-4, crop + flip, networks without BatchNorm, Kaiming init, 1000 epochs,
#: lr 0.01 or 0.003 in the released figures).
SETTINGS: dict[str, dict] = {
    "mnist1d-cnn1d": dict(dataset="mnist1d", net="cnn1d", net_kwargs={"channels": 64},
                          epochs=400, lr=0.05, init="kaiming", epochs_after_fit=50),
    "mnist1d-mlp": dict(dataset="mnist1d", net="mlp", net_kwargs={"hidden": (256, 256)},
                        epochs=400, lr=0.05, init="kaiming", epochs_after_fit=50),
    "digits-small-cnn": dict(dataset="digits", net="small-cnn",
                             net_kwargs={"channels": (16, 32), "hidden": 256}, epochs=400,
                             lr=0.01, init="kaiming", epochs_after_fit=50),
    "digits-mlp": dict(dataset="digits", net="mlp", net_kwargs={"hidden": (128,)}, epochs=20,
                       lr=0.05, init="default", epochs_after_fit=5),
    "cifar10-vgg19": dict(dataset="cifar10", net="vgg19", net_kwargs={"norm": "none"},
                          epochs=1000, lr=0.01, augment=True, init="kaiming", epochs_after_fit=100),
    "cifar10-resnet18": dict(dataset="cifar10", net="resnet18", net_kwargs={"norm": "none"},
                             epochs=1000, lr=0.01, augment=True, init="kaiming",
                             epochs_after_fit=100),
}

#: Training accuracy (labels trained on) at which a run counts as fitted.
FIT_THRESHOLD = 0.99


def setting_options(setting: str, *, epochs: int = 0, lr: float = 0.0, batch_size: int = 128,
                    momentum: float = 0.9, weight_decay: float = 5e-4, n_probe: int = 100,
                    n: int = 5000, data_seed: int = 0, init: str = "",
                    fit_threshold: float = FIT_THRESHOLD, epochs_after_fit: int = -1,
                    probe_augmented: bool = False, kernel_ratio: float = 1.15) -> dict:
    """One setting's training options: the arguments where set (non-zero, non-empty, >= 0 for
    ``epochs_after_fit``), else the setting's. ``kernel_ratio`` is the growth of the kernel
    checkpoint schedule ``floor(5 * ratio^k)`` (the paper's 1.15; recorded only when changed).

    The dict is the cell's sub-run config (compared on resume) and what :func:`train_cell`
    reads: ``setting, dataset, net, net_kwargs, epochs, lr, batch_size, momentum,
    weight_decay, augment, n_probe, data_seed, init, fit_threshold, epochs_after_fit,
    probe_augmented`` (and ``n`` for MNIST-1D).
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting == {setting!r}, must be one of {list(SETTINGS)}")
    d = SETTINGS[setting]
    return {"setting": setting, "dataset": d["dataset"], "net": d["net"],
            "net_kwargs": dict(d["net_kwargs"]), "epochs": epochs or d["epochs"],
            "lr": lr or d["lr"], "batch_size": batch_size, "momentum": momentum,
            "weight_decay": weight_decay, "augment": d.get("augment", False),
            "n_probe": n_probe, "data_seed": data_seed, "init": init or d["init"],
            "fit_threshold": fit_threshold,
            "epochs_after_fit": epochs_after_fit if epochs_after_fit >= 0 else d["epochs_after_fit"],
            "probe_augmented": bool(probe_augmented and d.get("augment", False)),
            **({"kernel_ratio": kernel_ratio} if kernel_ratio != 1.15 else {}),
            **({"n": n} if d["dataset"] == "mnist1d" else {})}


def setting_data(run: Any, dataset: str, *, n: int = 5000, data_seed: int = 0,
                 data_root: str | None = None) -> dict:
    """``{"x", "y", "x_test", "y_test"}`` of a setting's dataset, built once per run directory.

    MNIST-1D and the digits are cached in the run directory
    (:func:`deepscope.data.cache.cached`); CIFAR-10 is read from ``data_root`` and standardised
    per channel with the training set's statistics.
    """
    from deepscope.data import load_dataset
    from deepscope.data.cache import cached

    if dataset == "cifar10":
        ds = load_dataset("cifar10", data_root=str(data_root))
        mean = ds.x_train.mean((0, 2, 3), keepdim=True)
        std = ds.x_train.std((0, 2, 3), keepdim=True)
        return {"x": (ds.x_train - mean) / std, "y": ds.y_train,
                "x_test": (ds.x_test - mean) / std, "y_test": ds.y_test}

    def build() -> dict:
        ds = load_dataset(dataset, n=n, seed=data_seed) if dataset == "mnist1d" else \
            load_dataset(dataset, seed=data_seed)
        return {"x": ds.x_train, "y": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test}

    name = f"{dataset}_n{n}_s{data_seed}.pt" if dataset == "mnist1d" else f"{dataset}_s{data_seed}.pt"
    return cached(run, name, build)


def cell_name(setting: str, fraction: float) -> tuple[str, str]:
    """The grid setting of a (setting, random-label fraction) cell: ``(setting, 'random<pct>')``."""
    return setting, f"random{round(100 * fraction):02d}"


def train_cell(sub: Any, data: dict, opts: dict, *, fraction: float, seed: int) -> dict:
    """Train one (setting, fraction, seed) in the sub-run ``sub``; its result (with the history).

    The generator is ``(seed, setting)``: the cells of one seed share probes and initialisation
    across fractions. The trained network is saved as ``model.pt`` (:func:`deepscope.load`).
    """
    from deepscope.dynamics.feature_alignment import train_feature_alignment
    from deepscope.nets.io import save_model
    from deepscope.train.rng import make_generator

    setting = opts["setting"]
    t0 = time.time()
    augment = None
    if opts["augment"]:
        from deepscope.data.augment import ImageTransform

        augment = ImageTransform(crop_padding=4, flip=True)
    res = train_feature_alignment(
        data["x"], data["y"], data["x_test"], data["y_test"],
        net=opts["net"], net_kwargs=opts["net_kwargs"], num_classes=10,
        options={k: opts[k] for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay")},
        generator=make_generator(seed, setting), run=sub, random_labels=fraction,
        augment=augment, n_probe=opts["n_probe"], init=opts.get("init", "default"),
        fit_threshold=opts.get("fit_threshold"), epochs_after_fit=opts.get("epochs_after_fit"),
        probe_augmented=opts.get("probe_augmented", False), ratio=opts.get("kernel_ratio", 1.15),
        desc=f"{setting} random {fraction:g} seed {seed}")
    shape = tuple(data["x"].shape[1:])
    save_model(sub.dir / "model.pt", res.model, opts["net"],
               attrs={"input_bounds": (float(data["x"].min()), float(data["x"].max()))},
               input_shape=shape, num_classes=10, **opts["net_kwargs"])
    return {"setting": setting, "random_labels": fraction, "seed": seed,
            "changed_fraction": float(res.info["changed"].float().mean()),
            "final": res.info["final"], "history": res.history, "fit_epoch": res.info["fit_epoch"],
            "fit_threshold": opts.get("fit_threshold"),
            "tracker_seconds": round(res.info["tracker_seconds"], 3),
            "train_seconds": round(res.info["train_seconds"], 3),
            "seconds": round(time.time() - t0, 2)}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def readout(history: Sequence[dict], threshold: float, *, key: str = "train_acc") -> dict | None:
    """The matched-training read-out: the first record whose ``key`` reaches ``threshold``.

    Runs are compared at the point each one fits its labels (the paper's regime), not at a
    shared epoch. ``history`` is a run's list of records in step order (each with ``key``);
    returns that record, or ``None`` if the run never reaches the threshold.

    >>> readout([{"step": 0, "train_acc": 0.1}, {"step": 5, "train_acc": 0.995},
    ...          {"step": 9, "train_acc": 1.0}], 0.99)["step"]
    5
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold == {threshold}, must be in [0, 1], e.g. 0.99")
    return next((h for h in history if h[key] >= threshold), None)


#: Numbers read at the fitting point and at the end of training (``<name>_fit``, ``<name>_end``).
READ = ("complexity", "complexity_per_margin", "margin", "align_train", "align_test", "train_acc",
        "test_acc")


def record_value(rec: dict, name: str) -> Any:
    """``rec[name]`` from a history record, either way a finished run may have stored the measure.

    A record holds the complexity measure as ``complexity`` and its margin-normalised variant as
    ``complexity_per_margin``; runs finished before those names store the measure as
    ``path_sum`` and the variant as ``complexity``. A record with ``path_sum`` is read in that
    form, so result.json files of either form summarise alike without retraining.

    >>> record_value({"path_sum": 6.0, "complexity": 3.0, "margin": 2.0}, "complexity")
    6.0
    >>> record_value({"path_sum": 6.0, "complexity": 3.0, "margin": 2.0}, "complexity_per_margin")
    3.0
    """
    if "path_sum" in rec and name in ("complexity", "complexity_per_margin"):
        return rec["path_sum"] if name == "complexity" else rec.get("complexity")
    return rec.get(name)


def per_run(r: dict, threshold: float | None = None) -> dict:
    """The numbers of one cell's result that :func:`summarise_setting` aggregates.

    ``*_init`` at step 0, ``*_final`` / ``*_end`` at the last record, ``*_fit`` at the
    :func:`readout` point (first record with training accuracy >= ``threshold``, default the
    run's own ``fit_threshold``, else :data:`FIT_THRESHOLD`; NaN where the run never fits):
    the complexity measure ``complexity`` (``C = (1/n) sum_k ||Delta theta_k|| sqrt(Tr K_k)``,
    :func:`deepscope.dynamics.alignment.path_complexity`), its margin-normalised variant
    ``complexity_per_margin`` (``C / gamma``), the margin, the gap (train accuracy on the labels
    trained on minus test accuracy), the alignments, and the epoch of the read-out
    (``fit_epoch``). Histories of either stored form are read (:func:`record_value`).
    """
    h = r["history"]
    first, last = h[0], h[-1]
    thr = threshold if threshold is not None else (r.get("fit_threshold") or FIT_THRESHOLD)
    fit = readout(h, thr)
    out = {
        "align_train_init": first["align_train"], "align_train_final": last["align_train"],
        "align_test_init": first["align_test"], "align_test_final": last["align_test"],
        "align_train_max": max(x["align_train"] for x in h),
        "align_train_ratio": _ratio(last["align_train"], first["align_train"]),
        "align_test_ratio": _ratio(last["align_test"], first["align_test"]),
        "top_eig_growth": _ratio(last["top_eigenvalue"], first["top_eigenvalue"]),
        "erank_init": first["effective_rank"], "erank_final": last["effective_rank"],
        "erank_min": min(x["effective_rank"] for x in h),
        "erank_change": last["effective_rank"] - first["effective_rank"],
        "complexity": _num(record_value(last, "complexity")), "gap": r["final"]["gap"],
        "loss_gap": r["final"]["loss_gap"], "train_acc": r["final"]["train_acc"],
        "test_acc": r["final"]["test_acc"],
        "layer_align_final": last.get("layer_align_train", {}),
        "fitted": fit is not None, "fit_epoch": _num(fit["epoch"] if fit else None),
        "end_epoch": last["epoch"], "gap_end": last["train_acc"] - last["test_acc"],
        "gap_fit": _num(fit["train_acc"] - fit["test_acc"] if fit else None),
    }
    for name in READ:
        out[f"{name}_end"] = _num(record_value(last, name))
        out[f"{name}_fit"] = _num(record_value(fit, name) if fit else None)
    # baselines for the ranking: the path length alone (no kernel term) and the epochs to fit
    steps = [x["step"] for x in h]
    upto = steps.index(fit["step"]) + 1 if fit else 0
    out["path_length_fit"] = float(sum(x["norm_dw"] for x in h[:upto])) if fit else float("nan")
    out["path_length_end"] = float(sum(x["norm_dw"] for x in h))
    if "tracker_seconds" in r and r.get("train_seconds"):
        out["tracker_fraction"] = r["tracker_seconds"] / (r["tracker_seconds"] + r["train_seconds"])
        out["seconds_per_checkpoint"] = r["tracker_seconds"] / len(h)
    return out


def _spearman(x, y) -> float:
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: NaN
        return float(spearmanr(x, y).statistic)


def spearman_interval(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000,
                      seed: int = 0) -> dict:
    """Spearman correlation of paired values with a 95% percentile-bootstrap interval over pairs.

    Pairs with a NaN are dropped first (``n`` counts the rest). Resamples whose ranks are
    constant (Spearman undefined) are skipped. Returns ``{"rho", "ci95", "n"}``.
    """
    import numpy as np

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    n = len(a)
    if n < 3:
        return {"rho": float("nan"), "ci95": (float("nan"), float("nan")), "n": n}
    rng = np.random.default_rng(seed)
    boots = [_spearman(a[i], b[i]) for i in rng.integers(0, n, size=(n_boot, n))]
    boots = np.array([v for v in boots if v == v])
    ci = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if len(boots) \
        else (float("nan"), float("nan"))
    return {"rho": _spearman(a, b), "ci95": ci, "n": n}


def summarise_setting(grid: Any, setting: str, *, fractions: Sequence[float],
                      seeds: Sequence[int]) -> dict | None:
    """The headline numbers of one setting from a grid of :func:`train_cell` results.

    At the smallest fraction present: the train and test alignment (initial, final, their
    ratio), the top-eigenvalue growth, the effective rank and the per-layer final alignment,
    each summarised over seeds (:func:`deepscope.train.stats.summarise`); per fraction the
    epoch each run fits and the numbers read there and at the end (:func:`per_run`); the
    Spearman correlation of the complexity measure with the gap over every run of the setting,
    read at the fit and at the end, with a bootstrap interval (:func:`spearman_interval`)
    (``complexity_gap``: ``at_fit``, ``at_end``), the same for its margin-normalised variant
    (``per_margin_at_fit``, ``per_margin_at_end``) and for two baselines (the path length and
    the epochs to fit), and per seed over the fractions. None when no cell is present.
    """
    from deepscope.train.stats import summarise

    cells = {f: cell_name(setting, f) for f in fractions}
    fracs = [f for f in fractions if grid.results(cells[f])]
    if not fracs:
        return None

    def iv(f: float, key: str) -> dict:
        return summarise(grid.values(cells[f], lambda r: per_run(r)[key]))

    clean = min(fracs)
    by_frac = {f"{f:g}": {k: iv(f, k) for k in (
        "align_train_final", "align_test_final", "align_train_max", "top_eig_growth",
        "erank_change", "complexity", "gap", "train_acc", "test_acc", "fit_epoch", "end_epoch",
        "complexity_fit", "complexity_per_margin_fit", "margin_fit", "gap_fit", "align_train_fit",
        "align_test_fit", "complexity_end", "complexity_per_margin_end", "margin_end", "gap_end")}
        for f in fracs}
    for f in fracs:
        rows = [per_run(r) for r in grid.results(cells[f])]
        by_frac[f"{f:g}"]["fitted"] = sum(p["fitted"] for p in rows)
        by_frac[f"{f:g}"]["runs"] = len(rows)
    runs = {(f, s): per_run(grid.cells[cells[f], s]) for f in fracs for s in seeds
            if (cells[f], s) in grid.cells}
    full = [s for s in seeds if all((f, s) in runs for f in fracs)]

    def per_seed(c: str) -> dict:
        return summarise([_spearman([runs[(f, s)][c] for f in fracs],
                                    [runs[(f, s)]["gap_fit"] for f in fracs]) for s in full])

    allr = list(runs.values())
    clean_rows = [per_run(r) for r in grid.results(cells[clean])]
    layers = list(clean_rows[0]["layer_align_final"])

    def rho(c: str, g: str) -> dict:
        return spearman_interval([r[c] for r in allr], [r[g] for r in allr])

    cost = [r["tracker_fraction"] for r in allr if "tracker_fraction" in r]
    return {
        "clean_fraction": clean,
        "align_train": {"initial": iv(clean, "align_train_init"),
                        "final": iv(clean, "align_train_final"),
                        "final_over_initial": iv(clean, "align_train_ratio"),
                        "max": iv(clean, "align_train_max")},
        "align_test": {"initial": iv(clean, "align_test_init"),
                       "final": iv(clean, "align_test_final"),
                       "final_over_initial": iv(clean, "align_test_ratio")},
        "top_eigenvalue_growth": iv(clean, "top_eig_growth"),
        "effective_rank": {"initial": iv(clean, "erank_init"), "final": iv(clean, "erank_final"),
                           "change": iv(clean, "erank_change"), "min": iv(clean, "erank_min")},
        "layer_align_final": {ly: summarise(r["layer_align_final"][ly] for r in clean_rows)
                              for ly in layers},
        "by_fraction": by_frac,
        "runs": len(allr), "runs_fitted": sum(r["fitted"] for r in allr),
        # the paper's comparison: the complexity measure vs the gap over the setting's runs,
        # each read where it fits its labels; at the end of training; the margin-normalised
        # variant at both points
        "complexity_gap": {"at_fit": rho("complexity_fit", "gap_fit"),
                           "at_end": rho("complexity_end", "gap_end"),
                           "per_margin_at_fit": rho("complexity_per_margin_fit", "gap_fit"),
                           "per_margin_at_end": rho("complexity_per_margin_end", "gap_end"),
                           # baselines: anything that grows with the random fraction ranks too
                           "path_length_at_fit": rho("path_length_fit", "gap_fit"),
                           "fit_epoch_at_fit": rho("fit_epoch", "gap_fit"),
                           "per_seed_at_fit": per_seed("complexity_fit"),
                           "per_margin_per_seed_at_fit": per_seed("complexity_per_margin_fit")},
        "tracker_fraction": summarise(cost),
    }
