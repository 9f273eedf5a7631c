"""A3T vs standard, FGSM-AT, PGD-AT and TRADES, judged by our attacks, foolbox and AutoAttack (arXiv 1801.04055).

    deepscope run a3t --threads 1 --out runs/a3t                        # digits + MNIST-1D, 3 seeds
    deepscope run a3t --datasets digits --methods a3t --out runs/a3t    # one part; rerun to fill in
    deepscope run a3t --datasets mnist --data-root ~/data --device cuda  # paper scale, eps 0.3
    deepscope run a3t --quick

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
    quick=("--datasets", "digits", "--methods", "standard", "fgsm-at", "a3t", "--seeds", "2",
           "--epochs", "20"),
    paper=("--datasets", "mnist"),
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
    """A3T: training attack (the paper: FGSM)."""

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

    QUICK: ClassVar[dict] = {"datasets": ("digits",), "seeds": 1, "epochs": 2, "restarts": 1,
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
               surrogate=None) -> tuple:
    """Train (or resume) one model in sub-run ``sub``, save it, evaluate it: (model, report or None)."""
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
        "a3t": dict(common, layer=layer, alpha=cfg.alpha, beta=cfg.beta, disc_hidden=cfg.disc_hidden,
                    disc_lr=cfg.disc_lr or cfg.lr, attack=cfg.a3t_attack, pgd_steps=s["pgd_steps"]),
    }[method]
    t0 = time.time()
    # the network is built from the "train" generator: the same initial weights for every method
    model = train_robust(net_name, xtr, ytr, make_objective(method, **options),
                         num_classes=kw["num_classes"], net_kwargs={"hidden": kw["hidden"]}
                         if "hidden" in kw else None, generator=sub.generator("train"), run=sub,
                         options={"epochs": s["epochs"], "batch_size": s["batch_size"], "lr": cfg.lr},
                         log_every=20, desc=f"{dataset}/{method}/seed{sub.seed}").model
    train_s = time.time() - t0
    save_model(sub.dir / "model.pt", model, net_name,
               attrs={"input_bounds": bounds, "eps": s["eps"], "norm": cfg.norm, "method": method,
                      "dataset": dataset}, **kw)
    if not evaluate_it:
        return model, None
    t0 = time.time()
    dev = sub.device
    rep = evaluate(model, xte.to(dev), yte.to(dev), eps=s["eps"], bounds=bounds, norm=cfg.norm,
                   generator=sub.generator("eval"), attacks=cfg.attacks, restarts=cfg.restarts,
                   surrogate=surrogate)
    rep.update(train_seconds=round(train_s, 1), eval_seconds=round(time.time() - t0, 1))
    return model, rep


def _surrogate(cfg: Config, run, dataset: str, seed: int, data):
    """The transfer attack's source: an undefended network from its own initial weights."""
    from deepscope.nets.io import load_model

    sub = run.child(f"{dataset}/surrogate/seed{seed}", config=_sub_config(cfg, dataset, "surrogate"),
                    seed=seed + 1000)
    if sub.finished:
        return load_model(sub.dir / "model.pt", map_location=sub.device)
    model, _ = _train_one(cfg, sub, dataset, "standard", data, evaluate_it=False)
    sub.write_result({"role": "transfer-attack source (standard training, seed + 1000)"})
    return model


def _sub_config(cfg: Config, dataset: str, method: str) -> dict:
    s = settings(cfg, dataset)
    shared = dict(dataset=dataset, method=method, norm=cfg.norm, lr=cfg.lr, hidden=list(cfg.hidden),
                  validation=cfg.validation, quick=cfg.quick, **{k: v for k, v in s.items()})
    if method == "a3t":
        shared.update(layer=cfg.layer, alpha=cfg.alpha, beta=cfg.beta, disc_hidden=list(cfg.disc_hidden),
                      disc_lr=cfg.disc_lr, a3t_attack=cfg.a3t_attack)
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
        missing = sorted({u for m, r in res.items() if m != "settings" for u in r["unavailable"]})
        for u in missing:
            lines.append(f"  not run: {u}")
    return "\n".join(lines)


def _headline(results: dict) -> dict:
    head = {}
    for dataset, res in results.items():
        head[dataset] = {m: {"clean": r["clean"]["mean"], "robust": r["robust"]["mean"],
                             "robust_std": r["robust"]["std"], "robust_ci95": r["robust"]["ci95"],
                             "n_seeds": r["robust"]["n"]}
                         for m, r in res.items() if m != "settings"}
    return head


def verdict(result: dict) -> dict:
    """A3T's robust accuracy at least FGSM-AT's (the target), per dataset.

    reproduced: A3T's mean robust accuracy >= FGSM-AT's on every dataset where both ran;
    partly: below on some dataset but within A3T's 95% interval over seeds there (not
    distinguishable), or A3T's gradient-masking checks failed; not reproduced: A3T below
    FGSM-AT's mean with FGSM-AT above A3T's interval everywhere; not run: no dataset with
    both methods.
    """
    claim = ("Erraqabi et al. 2017 (arXiv 1801.04055): A3T is a viable alternative to adversarial "
             "training (our target: A3T's robust accuracy, worst case of all attacks, at least "
             "FGSM-AT's on the same network and budget; a probe on digits: FGSM-AT "
             "82.1%, untuned A3T 78.1% under PGD-20)")
    parts, at_least, close, masked, skipped = [], [], [], [], []
    for dataset, res in (result.get("results") or {}).items():
        a, f = res.get("a3t"), res.get("fgsm-at")
        if not a or not f:
            skipped.append(f"{dataset} ({'a3t' if not a else 'fgsm-at'} not run)")
            continue
        ra, rf = a["robust"], f["robust"]
        ci = ra.get("ci95") or (ra["mean"], ra["mean"])
        spread = (f" [95% CI {100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ra["n"] >= 2
                  else " (one seed: no interval)")
        parts.append(f"{dataset}: A3T {100 * ra['mean']:.1f}%{spread} vs FGSM-AT "
                     f"{100 * rf['mean']:.1f}% (n={ra['n']})")
        at_least.append(ra["mean"] >= rf["mean"])
        close.append(ra["n"] >= 2 and ci[0] <= rf["mean"] <= ci[1])
        masked.extend(f"{dataset}: {k}" for k, c in (a.get("checks") or {}).items()
                      if c.get("failed"))
    if not parts:
        return {"claim": claim, "verdict": "not run",
                "measured": "no dataset with both A3T and FGSM-AT" +
                            (f": {', '.join(skipped)}" if skipped else "")}
    measured = "; ".join(parts)
    if skipped:
        measured += f"; not run: {', '.join(skipped)}"
    if masked:
        measured += f"; masking checks failed for A3T: {', '.join(masked)}"
    if all(at_least) and not masked:
        v = "reproduced"
    elif all(a or c for a, c in zip(at_least, close)) or any(at_least):
        v = "partly"
    else:
        v = "not reproduced"
    return {"claim": claim, "measured": measured, "verdict": v}
