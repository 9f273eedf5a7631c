"""Does A3T's discriminator add robustness? A paired test of beta > 0 against beta = 0 (arXiv 1801.04055).

    deepscope run a3t --threads 1 --out runs/a3t                  # paired: digits + MNIST-1D
    deepscope run a3t --a3t-attack pgd --out runs/a3t-pgd         # D on PGD examples, + PGD-AT
    deepscope run a3t --encoder-loss reversal --out runs/a3t      # gradient-reversal form
    deepscope run a3t --mode methods --out runs/a3t-methods       # all methods side by side
    deepscope run a3t --datasets mnist --data-root ~/data --device cuda  # paper scale, eps 0.3
    deepscope run a3t --quick

``--mode paired`` (the default) trains A3T at beta = 0 (FGSM-AT with D watching but never
pushing back) and at each of ``--betas`` for each of ``--layers``, per seed from the same
initial weights, minibatch order and evaluation seed; the verdict judges the per-seed
difference of worst-case robust accuracy (95% paired-t interval over seeds). Each cell also
logs D's accuracy and the linear CKA of clean vs adversarial representations over training.

Every method trains the same network from the same initial weights (per seed) with the same
optimiser and epochs; each trained model is saved (``deepscope.load(run_dir)``) and attacked
at ε by FGSM, PGD-20 and PGD-100 with restarts (ours), foolbox's PGD, torchattacks' AutoAttack
and Square, and a transfer attack from an independently trained undefended network. Robust
accuracy is the per-example worst case over all of them. result.json has the table, the
ε curves and the gradient-masking checks per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from deepscope.recipes import Reproduce, System
from deepscope.robust.methods import AdversarialMethod as Method
from deepscope.train.config import RunConfig, require

Dataset = Literal["digits", "mnist1d", "mnist"]
AttackName = Literal["fgsm", "pgd20", "pgd100", "foolbox-pgd", "autoattack", "square", "transfer"]

#: Per-dataset defaults. MNIST-1D is standardised by its generator; its bounds are the
#: data's own range (train and test, rounded outward to 0.01), so attacks stay on the data's box.
DATASETS = {
    "digits": dict(eps=0.1, bounds=(0.0, 1.0), net="mlp", epochs=50, batch_size=64, eval_max=0,
                   pgd_steps=10, pgd_step_size=None),
    # eps 0.15 (0.15 std of the standardised features): chosen from a probe's eps curve on the
    # validation split, where the undefended MLP keeps ~19% and PGD-AT ~48% (at 0.3: 2% and 28%).
    "mnist1d": dict(eps=0.15, bounds=(-4.30, 4.73), net="mlp", epochs=50, batch_size=64,
                    eval_max=0, pgd_steps=10, pgd_step_size=None),
    # Madry et al.'s MNIST threat model and training attack (40 steps of 0.01); our budget.
    "mnist": dict(eps=0.3, bounds=(0.0, 1.0), net="small-cnn", epochs=20, batch_size=128,
                  eval_max=1000, pgd_steps=40, pgd_step_size=0.01),
}

PAPER = (
    "Erraqabi et al. 2017 (arXiv 1801.04055) call their experiments preliminary and claim viability "
    "against standard adversarial training, not superiority. Reference points: Madry et al. 2018, "
    "MNIST eps 0.3, PGD-AT keeps 89.6% under PGD-100 with 50 restarts; TRADES on MNIST 99.5% clean, "
    "96.1% robust. A throwaway probe on the digits (MLP 64-256-256-10, eps 0.1, PGD-20): "
    "undefended 37.5%, FGSM-AT 82.1%, untuned minimal A3T 78.1%, PGD-AT 85.1%."
)


#: Where this recipe belongs (deepscope.recipes: the registry that reproduce and report read).
SYSTEM = System("a3t", "A3T", order=6)
REPRODUCE = Reproduce(
    smoke=("--quick",),
    quick=("--datasets", "digits", "--seeds", "5", "--betas", "0.01", "0.1", "--layers", "2",
           "--attacks", "fgsm", "pgd20", "pgd100", "--restarts", "2"),
    paper=("--datasets", "mnist", "--layers", "0"),
    paper_needs_data_root=True,
)

@dataclass(frozen=True)
class Config(RunConfig):
    """A3T and its baselines on the same network and budget, attacked by several libraries."""

    datasets: tuple[Dataset, ...] = ("digits", "mnist1d")
    """Datasets: 'digits' (8x8, [0, 1], eps 0.1), 'mnist1d' (40 features, bounds [-4.30, 4.73],
    eps 0.15), 'mnist' (needs --data-root; eps 0.3, small CNN)."""

    methods: tuple[Method, ...] = ("standard", "fgsm-at", "pgd-at", "trades", "a3t")
    """Training methods."""

    seeds: int = 3
    """Seeds per method: seed, seed + 1, ... (each seed: one initial network shared by all methods)."""

    eps: float | None = None
    """Threat-model radius (training and evaluation); default per dataset: digits 0.1,
    mnist1d 0.15, mnist 0.3 (Madry et al.)."""

    norm: Literal["linf", "l2"] = "linf"
    """Threat-model norm."""

    epochs: int | None = None
    """Training epochs, the same for every method; default per dataset: 50 (digits, mnist1d), 20 (mnist)."""

    lr: float = 1e-3
    """Adam learning rate (every method, and A3T's discriminator unless --disc-lr)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the MLP (digits, mnist1d)."""

    layer: int = 0
    """A3T: where the discriminator watches: 0 = the penultimate representation (the network's
    features; chosen on a validation split), k >= 1 = the MLP's k-th hidden layer (MLPs only)."""

    alpha: float = 0.5
    """A3T: weight of the clean cross-entropy (Goodfellow et al.'s 0.5; FGSM-AT uses it too)."""

    beta: float = 0.01
    """A3T: weight of the encoder's fooling loss -log D(E(x_adv)) (chosen on a validation split
    from 0.01, 0.03, 0.1, 0.3, 1: robust accuracy fell as it grew; see docs/a3t.md)."""

    disc_hidden: tuple[int, ...] = (256, 256)
    """A3T: hidden widths of the discriminator MLP."""

    disc_lr: float | None = None
    """A3T: discriminator learning rate (default: --lr)."""

    a3t_attack: Literal["fgsm", "pgd"] = "fgsm"
    """A3T: training attack (the paper: FGSM); with 'pgd' the paired mode adds PGD-AT as a
    second reference."""

    encoder_loss: Literal["paper", "reversal"] = "paper"
    """A3T: the encoder's fooling term: 'paper' (-log D(E(x_adv))) or 'reversal' (minus D's
    loss on clean and adversarial representations, as a gradient-reversal layer)."""

    mode: Literal["paired", "methods"] = "paired"
    """'paired': does the discriminator add robustness? A3T at every --betas x --layers against
    A3T with beta = 0 (FGSM-AT with D watching but never pushing back) on the same initial
    weights, minibatch order and evaluation seeds; the verdict judges the per-seed difference.
    'methods': the --methods side by side (standard, FGSM-AT, PGD-AT, TRADES, A3T)."""

    betas: tuple[float, ...] = (0.01, 0.1, 1.0)
    """Paired mode: the values of beta > 0 set against beta = 0."""

    layers: tuple[int, ...] = (1, 2)
    """Paired mode: the layers D watches (k: the MLP's k-th hidden layer; 0: the features)."""

    pgd_steps: int | None = None
    """PGD-AT and TRADES: attack steps in training (default 10; mnist 40, as Madry et al.)."""

    trades_beta: float = 6.0
    """TRADES: weight of the KL term (Zhang et al.'s 6)."""

    attacks: tuple[AttackName, ...] = ("fgsm", "pgd20", "pgd100", "foolbox-pgd", "autoattack",
                                       "square", "transfer")
    """Evaluation attacks (the robust accuracy is their per-example worst case)."""

    restarts: int = 5
    """Restarts of our PGD-20 and PGD-100 in the evaluation."""

    eval_max: int | None = None
    """Evaluate on the first this many test examples (0: all); default all, mnist 1000."""

    validation: bool = False
    """Hold out 20% of the training set (stratified, fixed split) and evaluate there instead of on
    the test set: for choosing hyperparameters without touching the test set."""

    data_root: Path | None = None
    """Folder with the torchvision MNIST files (--datasets mnist)."""

    QUICK: ClassVar[dict] = {"datasets": ("digits",), "seeds": 2, "epochs": 2, "restarts": 1,
                             "betas": (0.1,), "layers": (2,),
                             "eval_max": 60, "attacks": ("fgsm", "pgd20", "foolbox-pgd", "autoattack",
                                                         "transfer")}

    def validate(self) -> None:
        super().validate()
        require(len(self.datasets) >= 1, "datasets", self.datasets, "at least one of digits, mnist1d, mnist")
        require(len(self.methods) >= 1, "methods", self.methods, "at least one method")
        require(self.seeds >= 1, "seeds", self.seeds, ">= 1")
        require(self.eps is None or self.eps > 0, "eps", self.eps, "> 0 (or unset for the per-dataset value)")
        require(self.epochs is None or self.epochs >= 1, "epochs", self.epochs, ">= 1")
        require(self.lr > 0, "lr", self.lr, "> 0")
        require(self.layer >= 0, "layer", self.layer, ">= 0 (0: features; k: an MLP hidden layer)")
        require(self.layer <= len(self.hidden), "layer", self.layer,
                f"<= {len(self.hidden)} (the MLP has {len(self.hidden)} hidden layers)")
        require(0.0 <= self.alpha <= 1.0, "alpha", self.alpha, "in [0, 1]")
        require(self.beta >= 0, "beta", self.beta, ">= 0")
        require(self.disc_lr is None or self.disc_lr > 0, "disc_lr", self.disc_lr, "> 0")
        require(self.pgd_steps is None or self.pgd_steps >= 1, "pgd_steps", self.pgd_steps, ">= 1")
        require(len(self.betas) >= 1 and all(b > 0 for b in self.betas), "betas", self.betas,
                "one or more values > 0 (beta = 0 is always run as the reference)")
        require(len(self.layers) >= 1 and all(0 <= k <= len(self.hidden) for k in self.layers),
                "layers", self.layers, f"one or more of 0..{len(self.hidden)} (0: features)")
        require(self.trades_beta >= 0, "trades_beta", self.trades_beta, ">= 0")
        require(len(self.attacks) >= 1, "attacks", self.attacks, "at least one attack")
        require(self.restarts >= 1, "restarts", self.restarts, ">= 1")
        require(self.eval_max is None or self.eval_max >= 0, "eval_max", self.eval_max, ">= 0 (0: all)")
        require(all(h >= 1 for h in self.hidden) and len(self.hidden) >= 1, "hidden", self.hidden,
                "one or more widths >= 1")
        if "mnist" in self.datasets:
            require(self.data_root is not None and Path(self.data_root).expanduser().is_dir(),
                    "data_root", None if self.data_root is None else str(self.data_root),
                    "a folder holding MNIST/raw/... for --datasets mnist")
        if "mnist" in self.datasets and self.mode == "paired":
            require(tuple(self.layers) == (0,), "layers", self.layers,
                    "(0,) with --datasets mnist: the small CNN is split at its features only")


def settings(cfg: Config, dataset: str) -> dict:
    """The per-dataset settings after applying the options."""
    d = dict(DATASETS[dataset])
    for k in ("eps", "epochs", "eval_max", "pgd_steps"):
        if getattr(cfg, k) is not None:
            d[k] = getattr(cfg, k)
    if cfg.pgd_steps is not None:
        d["pgd_step_size"] = None  # 2.5·eps/steps for a step count chosen on the command line
    return d


def _load(dataset: str, cfg: Config, run):
    """(x_train, y_train, x_eval, y_eval, input_shape, bounds) for ``dataset``."""
    import torch

    from deepscope.data import load_dataset
    from deepscope.data.cache import cached

    def build() -> dict:
        ds = (load_dataset("mnist", data_root=str(cfg.data_root)) if dataset == "mnist"
              else load_dataset(dataset, seed=0))
        return {"x": ds.x_train, "y": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test}

    # MNIST-1D is generated (seconds): once per run directory
    d = cached(run, "mnist1d_s0.pt", build) if dataset == "mnist1d" else build()
    xtr, ytr, xte, yte = d["x"], d["y"], d["x_test"], d["y_test"]
    if cfg.validation:
        from sklearn.model_selection import train_test_split

        itr, iva = train_test_split(range(len(ytr)), test_size=0.2, random_state=0,
                                    stratify=ytr.numpy())
        itr, iva = torch.tensor(itr), torch.tensor(iva)
        xtr, ytr, xte, yte = xtr[itr], ytr[itr], xtr[iva], ytr[iva]
    s = settings(cfg, dataset)
    if s["eval_max"]:
        xte, yte = xte[:s["eval_max"]], yte[:s["eval_max"]]
    lo, hi = s["bounds"]
    for name, t in (("train", xtr), ("evaluation", xte)):
        if t.min() < lo - 1e-6 or t.max() > hi + 1e-6:
            raise ValueError(f"{dataset} {name} inputs span [{t.min():.4g}, {t.max():.4g}], outside "
                             f"the bounds ({lo}, {hi}); the bounds table in deepscope/recipes/a3t.py "
                             "must cover the data")
    return xtr, ytr, xte, yte, tuple(d["x"].shape[1:]), (lo, hi)


def _net(cfg: Config, dataset: str, shape, num_classes: int):
    """(net name, build kwargs, A3T layer) for ``dataset``."""
    name = DATASETS[dataset]["net"]
    kw = dict(input_shape=tuple(shape), num_classes=num_classes)
    if name == "mlp":
        kw["hidden"] = tuple(cfg.hidden)
        return name, kw, cfg.layer or "features"
    if cfg.layer:
        raise ValueError(f"layer == {cfg.layer}, but {dataset} uses a {name}: only 0 (its features) "
                         "applies; pass --layer 0")
    return name, kw, "features"


def _train_one(cfg: Config, sub, dataset: str, method: str, data, *, evaluate_it: bool = True,
               surrogate=None, a3t: dict | None = None) -> tuple:
    """Train (or resume) one model in sub-run ``sub``, save it, evaluate it.

    ``a3t`` overrides A3T's options (``layer``, ``beta``, ...) for the paired cells. Returns
    (model, report or None, the objective, the training history).
    """
    import time

    from deepscope.nets.io import save_model
    from deepscope.robust import evaluate, make_objective, train_robust

    xtr, ytr, xte, yte, shape, bounds = data
    s = settings(cfg, dataset)
    net_name, kw, layer = _net(cfg, dataset, shape, int(ytr.max()) + 1)
    common = dict(eps=s["eps"], norm=cfg.norm, bounds=bounds)
    pgd = dict(steps=s["pgd_steps"], step_size=s["pgd_step_size"])
    options = {  # which Config field feeds which keyword of each objective
        "standard": {},
        "fgsm-at": dict(common, alpha=0.5),
        "pgd-at": dict(common, **pgd),
        "trades": dict(common, beta=cfg.trades_beta, **pgd),
        "a3t": {**dict(common, layer=layer, alpha=cfg.alpha, beta=cfg.beta,
                       disc_hidden=cfg.disc_hidden, disc_lr=cfg.disc_lr or cfg.lr,
                       attack=cfg.a3t_attack, pgd_steps=s["pgd_steps"],
                       encoder_loss=cfg.encoder_loss), **(a3t or {})},
    }[method]
    objective = make_objective(method, **options)
    t0 = time.time()
    # the network is built from the "train" generator: the same initial weights for every method
    res = train_robust(net_name, xtr, ytr, objective,
                       num_classes=kw["num_classes"], net_kwargs={"hidden": kw["hidden"]}
                       if "hidden" in kw else None, generator=sub.generator("train"), run=sub,
                       options={"epochs": s["epochs"], "batch_size": s["batch_size"], "lr": cfg.lr},
                       log_every=20, desc=f"{dataset}/{method}/seed{sub.seed}")
    model = res.model
    train_s = time.time() - t0
    save_model(sub.dir / "model.pt", model, net_name,
               attrs={"input_bounds": bounds, "eps": s["eps"], "norm": cfg.norm, "method": method,
                      "dataset": dataset}, **kw)
    if not evaluate_it:
        return model, None, objective, res.history
    t0 = time.time()
    dev = sub.device
    rep = evaluate(model, xte.to(dev), yte.to(dev), eps=s["eps"], bounds=bounds, norm=cfg.norm,
                   generator=sub.generator("eval"), attacks=cfg.attacks, restarts=cfg.restarts,
                   surrogate=surrogate)
    rep.update(train_seconds=round(train_s, 1), eval_seconds=round(time.time() - t0, 1))
    return model, rep, objective, res.history


def _paired_settings(cfg: Config) -> list[tuple]:
    """The paired mode's cells: per dataset, A3T at beta = 0 (once: with beta = 0 the classifier
    does not depend on the layer D watches, whose initialisation takes one draw of the
    generator whatever its width) and at each beta > 0 per layer (and PGD-AT when the training
    attack is PGD)."""
    rev = "-reversal" if cfg.encoder_loss == "reversal" else ""
    out = []
    for dataset in cfg.datasets:
        out.append((dataset, "paired", cfg.a3t_attack, f"layer{max(cfg.layers)}", "beta0"))
        for k in cfg.layers:
            out.extend((dataset, "paired", cfg.a3t_attack, f"layer{k}", f"beta{b:g}{rev}")
                       for b in cfg.betas)
        if cfg.a3t_attack == "pgd":
            out.append((dataset, "paired", "pgd-at"))
    return out


def _paired_cell(cfg: Config, sub, setting: tuple, data, surrogate=None) -> dict:
    """Train and evaluate one paired cell; add what tells whether invariance was reached."""
    from deepscope.robust.a3t import representation_gap, split_model
    from deepscope.robust.attacks import FGSM, PGD

    dataset = setting[0]
    if setting[2] == "pgd-at":
        model, rep, obj, hist = _train_one(cfg, sub, dataset, "pgd-at", data, surrogate=surrogate)
    else:
        k, beta = int(setting[3][5:]), float(setting[4][4:].split("-")[0])
        model, rep, obj, hist = _train_one(cfg, sub, dataset, "a3t", data, surrogate=surrogate,
                                           a3t=dict(layer=k or "features", beta=beta))
    rep["train_curve"] = {key: [h.get(key) for h in hist] for key in ("step", "disc_acc", "cka", "shift")
                          if any(key in h for h in hist)}
    # the held-out representations: clean vs FGSM (the training attack) and vs PGD-20
    _, _, xte, yte, _, bounds = data
    s, dev = settings(cfg, dataset), sub.device
    x, y = xte.to(dev), yte.to(dev)
    advs = {"fgsm": FGSM(model, eps=s["eps"], norm=cfg.norm, bounds=bounds)(x, y),
            "pgd20": PGD(model, eps=s["eps"], norm=cfg.norm, bounds=bounds, steps=20)(
                x, y, generator=sub.generator("gap"))}
    layers = (range(1, len(cfg.hidden) + 1) if DATASETS[dataset]["net"] == "mlp" else ["features"])
    watched = getattr(obj, "layer", None)
    watched = len(cfg.hidden) if watched == "features" and DATASETS[dataset]["net"] == "mlp" else watched
    gap = {}
    for k in layers:
        enc, _ = split_model(model, k)
        disc = obj.disc_.eval() if k == watched else None
        gap[f"layer{k}"] = {a: representation_gap(enc, x, xa, disc=disc) for a, xa in advs.items()}
    rep["test_gap"] = gap
    rep["watched_layer"] = watched
    return rep


def _paired_summary(grid, cfg: Config) -> dict:
    """Per dataset: each beta > 0 cell minus its beta = 0 cell (and A3T-PGD minus PGD-AT), seed by seed."""
    import numpy as np

    from deepscope.robust.evaluation import paired_difference
    from deepscope.train.stats import summarise

    def robust(setting) -> dict:
        return {s: grid.cells[(setting, s)]["robust"] for s in grid.seeds if (setting, s) in grid.cells}

    def curve(setting) -> dict:
        reps = grid.results(setting)
        out = {}
        for key in ("disc_acc", "cka", "shift"):
            rows = [r["train_curve"][key] for r in reps if key in r.get("train_curve", {})]
            if rows:
                out[key] = np.mean(np.asarray(rows, dtype=float), 0).round(4).tolist()
        if reps and "step" in reps[0].get("train_curve", {}):
            out["step"] = reps[0]["train_curve"]["step"]
        return out

    def gap(setting) -> dict:
        reps = grid.results(setting)
        if not reps:
            return {}
        return {f"{layer}/{atk}/{k}": summarise(r["test_gap"][layer][atk][k] for r in reps)["mean"]
                for layer, by_atk in reps[0]["test_gap"].items() for atk, vals in by_atk.items()
                for k in vals}

    out: dict = {}
    for setting in grid.settings:
        dataset = setting[0]
        rows = out.setdefault(dataset, {"rows": [], "cells": {}})
        label = "/".join(setting[2:])
        rows["cells"][label] = {"robust": summarise(robust(setting).values()),
                                "clean": summarise(r["clean"] for r in grid.results(setting)),
                                "train_curve": curve(setting), "test_gap": gap(setting)}
        if setting[2] == "pgd-at" or setting[4] == "beta0":
            continue
        refs = [("beta0", next(st for st in grid.settings if st[0] == dataset
                               and st[2] == setting[2] and st[-1] == "beta0"))]
        if cfg.a3t_attack == "pgd":
            refs.append(("pgd-at", (dataset, "paired", "pgd-at")))
        for name, ref in refs:
            if ref not in grid.settings:
                continue
            d = paired_difference(robust(setting), robust(ref))
            rows["rows"].append({"cell": label, "layer": int(setting[3][5:]),
                                 "beta": float(setting[4][4:].split("-")[0]),
                                 "encoder_loss": cfg.encoder_loss, "attack": cfg.a3t_attack,
                                 "reference": name, "diff_pp": {
                                     k: (100 * v if k in ("mean", "std") else
                                         [100 * c for c in v] if k in ("ci95", "values") else v)
                                     for k, v in d.items()}})
    return out


def _surrogate(cfg: Config, run, dataset: str, seed: int, data):
    """The transfer attack's source: an undefended network from its own initial weights."""
    from deepscope.nets.io import load_model

    sub = run.child(f"{dataset}/surrogate/seed{seed}", config=_sub_config(cfg, dataset, "surrogate"),
                    seed=seed + 1000)
    if sub.finished:
        return load_model(sub.dir / "model.pt", map_location=sub.device)
    model = _train_one(cfg, sub, dataset, "standard", data, evaluate_it=False)[0]
    sub.write_result({"role": "transfer-attack source (standard training, seed + 1000)"})
    return model


def _sub_config(cfg: Config, dataset: str, method: str) -> dict:
    s = settings(cfg, dataset)
    shared = dict(dataset=dataset, method=method, norm=cfg.norm, lr=cfg.lr, hidden=list(cfg.hidden),
                  validation=cfg.validation, quick=cfg.quick, **{k: v for k, v in s.items()})
    if method == "a3t":
        shared.update(layer=cfg.layer, alpha=cfg.alpha, beta=cfg.beta, disc_hidden=list(cfg.disc_hidden),
                      disc_lr=cfg.disc_lr, a3t_attack=cfg.a3t_attack, encoder_loss=cfg.encoder_loss)
    if method == "trades":
        shared.update(trades_beta=cfg.trades_beta)
    if method != "surrogate":
        shared.update(attacks=list(cfg.attacks), restarts=cfg.restarts)
    return shared


def run(cfg: Config, run) -> dict:
    import functools

    from deepscope.robust.evaluation import summarise_reports

    data = functools.cache(lambda dataset: _load(dataset, cfg, run))
    surrogate = functools.cache(lambda dataset, seed: _surrogate(cfg, run, dataset, seed,
                                                                  data(dataset)))

    def one(sub, setting, seed: int) -> dict:
        dataset, method = setting
        source = surrogate(dataset, seed) if "transfer" in cfg.attacks else None
        return _train_one(cfg, sub, dataset, method, data(dataset), surrogate=source)[1]

    if cfg.mode == "paired":
        def paired_one(sub, setting, seed: int) -> dict:
            # both arms of a pair are attacked by the same surrogate
            source = surrogate(setting[0], seed) if "transfer" in cfg.attacks else None
            return _paired_cell(cfg, sub, setting, data(setting[0]), surrogate=source)
        grid = run.grid(_paired_settings(cfg), range(cfg.seed, cfg.seed + cfg.seeds), paired_one,
                        config=lambda st, seed: _paired_config(cfg, st))
        paired = _paired_summary(grid, cfg)
        for dataset, res in paired.items():
            _plot_invariance(run, dataset, res, cfg)
        return {"headline": {d: r["rows"] for d, r in paired.items()}, "paired": paired,
                "paper": PAPER, "summary": _paired_text(paired, cfg, grid)}

    grid = run.grid([(d, m) for d in cfg.datasets for m in cfg.methods],
                    range(cfg.seed, cfg.seed + cfg.seeds), one,
                    config=lambda st, seed: _sub_config(cfg, *st))
    results: dict = {}
    for dataset in cfg.datasets:
        results[dataset] = {m: summarise_reports(grid.results((dataset, m))) for m in cfg.methods}
        results[dataset]["settings"] = {**settings(cfg, dataset), "norm": cfg.norm,
                                        "n_eval": grid.results((dataset, cfg.methods[0]))[0]["n"],
                                        "evaluated_on": "validation" if cfg.validation else "test"}
        _plot(run, dataset, results[dataset])
    return {"headline": _headline(results), "results": results, "paper": PAPER,
            "summary": _summary(results, cfg)}


def _paired_config(cfg: Config, setting: tuple) -> dict:
    dataset = setting[0]
    shared = _sub_config(cfg, dataset, "pgd-at" if setting[2] == "pgd-at" else "a3t")
    shared.update(cell="/".join(setting[1:]))
    if setting[-1] == "beta0":  # the reference: D never pushes back, whatever its loss
        shared.update(encoder_loss="paper")
    return shared


def _paired_text(paired: dict, cfg: Config, grid) -> str:
    lines = [f"paired: A3T beta > 0 minus beta = 0, same initial weights, minibatch order and "
             f"evaluation seeds; robust = worst case of {', '.join(cfg.attacks)}; "
             f"mean and 95% paired-t interval over seeds, percentage points"]
    for dataset, res in paired.items():
        ran = sorted({a for st in grid.settings if st[0] == dataset for r in grid.results(st)
                      for a in r["attacks"]})
        missing = sorted({f"{k}: {v}" for st in grid.settings if st[0] == dataset
                          for r in grid.results(st) for k, v in r["unavailable"].items()})
        lines.append(f"{dataset}: attacks that ran: {', '.join(ran)}"
                     + (f"; not run: {'; '.join(missing)}" if missing else ""))
        for r in res["rows"]:
            d = r["diff_pp"]
            lines.append(f"  {r['cell']:<28} minus {r['reference']:<7} {d['mean']:+6.2f} "
                         f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] n={d['n']}")
        for label, c in res["cells"].items():
            lines.append(f"  {label:<28} robust {100 * c['robust']['mean']:5.1f} ± "
                         f"{100 * c['robust']['std']:4.1f}  clean {100 * c['clean']['mean']:5.1f}")
    return "\n".join(lines)


def _plot_invariance(run, dataset: str, res: dict, cfg: Config) -> None:
    """D's training accuracy and the batch CKA of clean vs adversarial representations over
    training, one line per cell."""
    from deepscope.report.figures import plt, save

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for label, c in res["cells"].items():
        tc = c["train_curve"]
        if "disc_acc" not in tc:
            continue
        for ax, key in zip(axes, ("disc_acc", "cka")):
            ax.plot(tc["step"], tc[key], lw=1, label=label.replace(f"{cfg.a3t_attack}/", ""))
    axes[0].set_ylabel("D's accuracy (training batch)")
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[1].set_ylabel("linear CKA(E(x), E(x_adv))")
    for ax in axes:
        ax.set_xlabel("step")
    axes[1].legend(fontsize=6)
    fig.suptitle(f"{dataset}: is invariance reached? (mean over seeds)", fontsize=9)
    save(fig, run.figure_path(f"a3t_invariance_{dataset}"))


def _plot(run, dataset: str, res: dict) -> None:
    import numpy as np

    from deepscope.report.figures import plt, save

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for method, r in res.items():
        if method == "settings":
            continue
        e, m, s = (np.asarray(r["curve"][k]) for k in ("eps", "mean", "std"))
        ax.plot(e, m, marker="o", ms=3, label=method)
        ax.fill_between(e, m - s, m + s, alpha=0.2)
    eps, norm = res["settings"]["eps"], res["settings"]["norm"]
    ax.axvline(eps, color="grey", lw=0.8, ls="--")
    # The last eps (half the input range, the masking check) is far from the others: a
    # symlog axis keeps the curve near the training eps readable.
    ax.set_xscale("symlog", linthresh=max(eps / 2, 1e-3))
    ax.set_xlim(left=0)
    ax.set_xticks(e, [f"{v:.3g}" for v in e], fontsize=6, rotation=60)
    ax.minorticks_off()
    ax.set_xlabel(f"eps ({'L-inf' if norm == 'linf' else 'L2'}; linear below {max(eps / 2, 1e-3):g})")
    ax.set_ylabel("robust accuracy\n(FGSM + PGD-20, worst case)")
    ax.set_title(f"{dataset}: training eps = {eps}")
    ax.legend(fontsize=7)
    save(fig, run.figure_path(f"eps_curve_{dataset}"))


def _fmt(s: dict) -> str:
    return f"{100 * s['mean']:5.1f} ± {100 * s['std']:4.1f}"


def _summary(results: dict, cfg: Config) -> str:
    from collections import Counter

    lines = []
    for dataset, res in results.items():
        st = res["settings"]
        lines.append(f"{dataset}: eps {st['eps']} {cfg.norm}, bounds {tuple(st['bounds'])}, "
                     f"{st['n_eval']} {st['evaluated_on']} examples, {cfg.seeds} seed(s)")
        lines.append("  accuracy in %, mean ± std over seeds; robust = per-example worst case of all attacks;")
        lines.append("  strongest = the single attacks with the lowest accuracy, seeds where each did (ties: all)")
        lines.append(f"  {'method':<9}{'clean':>13}{'robust':>13}{'AutoAttack':>13}  strongest")
        for method, r in res.items():
            if method == "settings":
                continue
            aa = _fmt(r["attacks"]["autoattack"]) if "autoattack" in r["attacks"] else "-"
            ties = Counter(k for seed in r["strongest"] for k in seed)
            top = ", ".join(f"{k} {n}/{len(r['strongest'])}" for k, n in ties.most_common())
            lines.append(f"  {method:<9}{_fmt(r['clean']):>13}{_fmt(r['robust']):>13}{aa:>13}  {top}")
        failed = sorted({f"{m}: {k}" for m, r in res.items() if m != "settings"
                         for k, c in r["checks"].items() if c["failed"]})
        lines.append("  masking checks: " + ("all passed" if not failed else "FAILED " + "; ".join(failed)))
        ran = sorted({a for m, r in res.items() if m != "settings" for a in r["attacks"]})
        lines.append(f"  attacks that ran: {', '.join(ran)}")
        missing = sorted({u for m, r in res.items() if m != "settings" for u in r["unavailable"]})
        for u in missing:
            lines.append(f"  not run: {u}")
    return "\n".join(lines)


def _headline(results: dict) -> dict:
    head = {}
    for dataset, res in results.items():
        ran = sorted({a for m, r in res.items() if m != "settings" for a in r["attacks"]})
        head[dataset] = {"attacks_ran": ran}
        head[dataset] |= {m: {"clean": r["clean"]["mean"], "robust": r["robust"]["mean"],
                             "robust_std": r["robust"]["std"], "robust_ci95": r["robust"]["ci95"],
                             "n_seeds": r["robust"]["n"]}
                         for m, r in res.items() if m != "settings"}
    return head


def _call(d: dict) -> str:
    """'helps' (interval above 0), 'hurts' (below 0) or 'does nothing' (interval holds 0)."""
    if d["n"] < 2:
        return "one seed"
    lo, hi = d["ci95"]
    return "helps" if lo > 0 else "hurts" if hi < 0 else "does nothing"


def verdict(result: dict) -> dict:
    """Does the discriminator add robustness? The paired difference β > 0 minus β = 0.

    Each paired row (``result['paired'][dataset]['rows']``) is A3T at one layer and β > 0 minus
    A3T at β = 0 (FGSM-AT with D watching but never pushing back) on the same initial weights,
    minibatch order and evaluation seeds, in percentage points of worst-case robust accuracy,
    with a 95% paired-t interval over seeds: it *helps* where the interval lies above 0,
    *hurts* where below, *does nothing* where it holds 0.

    reproduced: one (layer, β) helps on every dataset; partly: some cell helps somewhere but
    not on every dataset; not reproduced: no cell helps anywhere; not run: no paired rows
    (``--mode paired``) or fewer than two seeds. Rows against PGD-AT (``--a3t-attack pgd``) are
    reported in ``measured`` and not judged.
    """
    claim = ("Erraqabi et al. 2017 (arXiv 1801.04055): making clean and adversarial "
             "representations indistinguishable to a discriminator adds robustness to adversarial "
             "training (our test: A3T with beta > 0 minus beta = 0, paired by seed, worst-case "
             "robust accuracy)")
    paired = result.get("paired") or {}
    rows = {d: [r for r in res["rows"] if r["reference"] == "beta0"] for d, res in paired.items()}
    rows = {d: r for d, r in rows.items() if r}
    if not rows:
        return {"claim": claim, "verdict": "not run",
                "measured": "no paired rows: run with --mode paired (the default) and 2+ seeds"}
    parts, helps = [], {}
    for dataset, rs in rows.items():
        cells = []
        for r in rs:
            d = r["diff_pp"]
            call = _call(d)
            if call == "helps":
                helps.setdefault(dataset, set()).add(r["cell"])
            cells.append(f"{r['cell']} {d['mean']:+.1f} pp [{d['ci95'][0]:+.1f}, "
                         f"{d['ci95'][1]:+.1f}] n={d['n']} ({call})")
        pgd = [r for r in paired[dataset]["rows"] if r["reference"] == "pgd-at"]
        cells.extend(f"{r['cell']} minus PGD-AT {r['diff_pp']['mean']:+.1f} pp "
                     f"[{r['diff_pp']['ci95'][0]:+.1f}, {r['diff_pp']['ci95'][1]:+.1f}]"
                     for r in pgd)
        parts.append(f"{dataset}: " + "; ".join(cells))
    measured = " | ".join(parts)
    if all(_call(r["diff_pp"]) == "one seed" for rs in rows.values() for r in rs):
        return {"claim": claim, "verdict": "not run", "measured": measured + " (one seed: no interval)"}
    everywhere = set.intersection(*(helps.get(d, set()) for d in rows))
    if everywhere:
        v = "reproduced"
    elif helps:
        v = "partly"
    else:
        v = "not reproduced"
    return {"claim": claim, "measured": measured, "verdict": v}
