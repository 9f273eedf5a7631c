"""Robust accuracy, judged by our attacks and by libraries we did not write, with masking checks.

>>> import torch
>>> from deepscope.robust.evaluation import evaluate
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> x, y = torch.rand(50, 8), torch.randint(3, (50,))
>>> g = torch.Generator().manual_seed(0)
>>> rep = evaluate(net, x, y, eps=0.1, bounds=(0.0, 1.0), generator=g,
...                attacks=("fgsm", "pgd20"), eps_grid=(0.05, 0.1, 0.5))   # ours only: quick
>>> sorted(rep)[:4]
['attacks', 'checks', 'clean', 'curve']

Attacks (``attacks=``; each example counts as robust only if it is classified correctly on
its clean input *and* under every attack that ran: the per-example worst case):

============== ================================================================== =========
name           what                                                               whose
============== ================================================================== =========
fgsm           one signed-gradient step                                           ours
pgd20          PGD, 20 steps of 2.5ε/20, random start, ``restarts`` restarts        ours
pgd100         PGD, 100 steps of 2.5ε/100, random start, ``restarts`` restarts      ours
foolbox-pgd    foolbox 3 ``LinfPGD``/``L2PGD`` as our PGD-100: 100 steps of 2.5ε/100,   foolbox
               random start, ``restarts`` restarts
autoattack     torchattacks ``AutoAttack(version='standard')``: APGD-CE, APGD-T,    torchattacks
               FAB-T, Square (Croce & Hein, arXiv 2003.01690)
square         torchattacks ``Square`` alone, 1000 queries: score-based black box   torchattacks
transfer       PGD-20 crafted on ``surrogate``, applied to the model: black box       ours
============== ================================================================== =========

foolbox and torchattacks are imported only here, and only when asked for (the ``attacks``
extra); a missing library is reported in ``unavailable`` with the reason and a warning, not
raised, and ``ran`` names the attacks whose worst case the robust accuracy is.
torchattacks expects inputs in [0, 1]: the model is wrapped as ``u ↦ model(lo + u·(hi − lo))``
with ``ε/(hi − lo)``. Per-feature bounds go through one affine map for both libraries,
``u ↦ model(clamp(lo + S·u, lo, hi))`` with one scale ``S = max(hi − lo)`` and ``ε/S``: the
threat model (the ε-ball in the original units, inside the box) is unchanged
(:class:`_UnitBox` says why one scale and not one per feature). Only infinite bounds leave
the libraries out. Their adversarial inputs are projected back onto our ε-ball and bounds (``violations`` counts
the examples that needed it; it should be 0).

Gradient-masking checks (:func:`masking_checks`, Athalye et al. arXiv 1802.00420 and Carlini
et al. arXiv 1902.06705): robust accuracy falls monotonically with ε and reaches ≈ 0 at a
large ε (half the input range in L∞: every input can then be moved to the same point); more
PGD steps and restarts are never weaker; a black-box or transfer attack is never stronger than
the white-box ones; our PGD and the independent libraries agree.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deepscope.robust.attacks import FGSM, PGD, eval_mode, project
from deepscope.robust.attacks.base import as_bounds, check_norm, clamp
from deepscope.train.loop import generator_or_default
from deepscope.train.rng import fork_seeded, spawn

__all__ = [
    "ATTACKS", "OURS", "DEFAULT_ATTACKS", "clean_accuracy", "robust_accuracy", "accuracy_curve",
    "masking_checks", "evaluate", "large_eps", "summarise_reports", "paired_difference",
]

OURS = ("fgsm", "pgd20", "pgd100")
ATTACKS = (*OURS, "foolbox-pgd", "autoattack", "square", "transfer")
DEFAULT_ATTACKS = ("fgsm", "pgd20", "pgd100", "foolbox-pgd", "autoattack", "square", "transfer")
_LIBRARY = {"foolbox-pgd": "foolbox", "autoattack": "torchattacks", "square": "torchattacks"}


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad(), eval_mode(model):
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                   batch_size: int = 1024) -> float:
    """Clean accuracy of ``model`` on ``x`` (N, ...), ``y`` (N,), in eval mode."""
    return (_predict(model, x, batch_size) == y).float().mean().item()


def large_eps(bounds, norm: str, shape: Sequence[int]) -> float:
    """An ε at which no classifier can stay robust: half the input range (L∞), times √d (L2).

    Every input can then be moved to the middle of the box, so all classes share one point.
    """
    lo, hi = (torch.as_tensor(b, dtype=torch.float64) for b in bounds)
    half = 0.5 * float((hi - lo).max())
    return half if norm == "linf" else half * math.sqrt(math.prod(shape))


def _scalar_bounds(bounds) -> tuple[float, float] | None:
    lo, hi = (torch.as_tensor(b, dtype=torch.float64) for b in bounds)
    if lo.numel() > 1 and not bool((lo == lo.flatten()[0]).all()):
        return None
    if hi.numel() > 1 and not bool((hi == hi.flatten()[0]).all()):
        return None
    lo, hi = float(lo.flatten()[0]), float(hi.flatten()[0])
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


class _UnitBox(nn.Module):
    """``u ∈ [0, 1] ↦ model(clamp(lo + S·u, lo, hi))``: the libraries' input convention.

    ``lo``, ``hi`` are numbers or per-feature tensors (of one example's shape); ``S`` is one
    number, the widest feature range ``max(hi − lo)``. One scale for every feature keeps the
    threat model exact: a perturbation of ``δ`` in the original units is ``δ/S`` in ``u``, so
    the library's ε is ``ε/S`` for L∞ and L2 alike and its ε-ball is ours, feature by feature.
    (A per-feature scale ``hi_i − lo_i`` would map the L∞ ball onto a box of radii
    ``ε/(hi_i − lo_i)`` and the L2 ball onto an ellipsoid, which a library's scalar ε cannot
    express: it would attack either a smaller set or a larger one that must be cut back.) The
    price: a feature narrower than the widest fills ``[0, (hi_i − lo_i)/S]`` of the attack's
    ``[0, 1]``; above that the clamp holds it at ``hi_i``, where its gradient is zero, exactly
    as the original box stops it. With scalar bounds this is ``u ↦ model(lo + u·(hi − lo))``.

    torchattacks' APGD and Square need (N, C, H, W) input. Examples that are not images, of
    shape (D,), are laid out as one s × s channel with s = ⌈√D⌉ (8 × 8 for the digits, 7 × 7
    for MNIST-1D's 40 features); the padding pixels are cut off before the model sees them.
    """

    def __init__(self, model: nn.Module, lo, hi, shape: Sequence[int]):
        super().__init__()
        self.model, self.shape = model, tuple(shape)
        self.lo, self.hi = (torch.as_tensor(b, dtype=torch.float32) for b in (lo, hi))
        self.scale = float((self.hi - self.lo).max())
        self.d = math.prod(self.shape)
        self.side = math.isqrt(self.d - 1) + 1

    def _box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lo.to(x), self.hi.to(x)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        lo, _ = self._box(x)
        u = ((x - lo) / self.scale).clamp(0, 1)
        if len(self.shape) == 3:
            return u
        flat = u.reshape(len(u), -1)
        pad = flat.new_zeros(len(u), self.side ** 2 - self.d)
        return torch.cat([flat, pad], 1).view(len(u), 1, self.side, self.side)

    def from_image(self, u: torch.Tensor) -> torch.Tensor:
        if len(self.shape) != 3:
            u = u.reshape(len(u), -1)[:, :self.d].reshape(len(u), *self.shape)
        lo, hi = self._box(u)
        return torch.minimum(torch.maximum(lo + u * self.scale, lo), hi)

    def forward(self, u):
        return self.model(self.from_image(u))


def _run_library(name, model, x, y, eps, norm, bounds, seed, num_classes, batch_size, restarts=1):
    """Adversarial inputs from foolbox / torchattacks, or raise ImportError / ValueError."""
    if name == "autoattack" and num_classes < 4:
        raise ValueError(f"needs >= 4 classes (APGD-T's targeted DLR loss), the model has {num_classes}")
    lo_t, hi_t = (torch.as_tensor(b, dtype=torch.float64) for b in bounds)
    if not (bool(torch.isfinite(lo_t).all()) and bool(torch.isfinite(hi_t).all())):
        raise ValueError("needs finite bounds (infinite bounds given: no box to map onto [0, 1])")
    box = _scalar_bounds(bounds)
    # per-feature bounds: the libraries attack through the affine map of _UnitBox
    lo_f, hi_f = (torch.as_tensor(b, dtype=x.dtype, device=x.device).expand(x.shape[1:])
                  for b in bounds)
    outs = []
    with fork_seeded(torch.Generator().manual_seed(seed)), eval_mode(model):
        if name == "foolbox-pgd":
            import foolbox as fb

            if box is not None:
                fmodel, scale, to_u, from_u = fb.PyTorchModel(model, bounds=box, device=x.device), \
                    1.0, (lambda t: t), (lambda t: t)
            else:
                unit = _UnitBox(model, lo_f, hi_f, x.shape[1:]).eval()
                fmodel = fb.PyTorchModel(unit, bounds=(0.0, 1.0), device=x.device)
                scale, to_u, from_u = unit.scale, unit.to_image, unit.from_image
            # Our PGD-100's settings (100 steps of 2.5ε/100, random start, restarts), foolbox's
            # code: the comparison tests the implementation, not the schedule. (foolbox's own
            # default, 40 steps of ε/30, was weaker than FGSM on an adversarially trained digits MLP.)
            # Restarts as for our PGD-100: an example counts as broken if any restart breaks it.
            kind = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
            attack = kind(steps=100, rel_stepsize=0.025, random_start=True)
            for i in range(0, len(x), batch_size):
                xb, yb = to_u(x[i:i + batch_size]), y[i:i + batch_size]
                best = xb.clone()
                broken = torch.zeros(len(xb), dtype=torch.bool, device=x.device)
                for _ in range(restarts):
                    _, adv, success = attack(fmodel, xb, yb, epsilons=eps / scale)
                    new = success.to(x.device) & ~broken
                    best[new] = adv.detach()[new]
                    broken |= new
                outs.append(from_u(best))
        else:
            import torchattacks as ta

            unit = _UnitBox(model, *(box or (lo_f, hi_f)), x.shape[1:]).eval()
            e, n = eps / unit.scale, ("Linf" if norm == "linf" else "L2")
            if name == "autoattack":
                attack = ta.AutoAttack(unit, norm=n, eps=e, version="standard",
                                       n_classes=num_classes, seed=seed)
            else:
                attack = ta.Square(unit, norm=n, eps=e, n_queries=1000, n_restarts=1, seed=seed)
            for i in range(0, len(x), batch_size):
                u = unit.to_image(x[i:i + batch_size])
                outs.append(unit.from_image(attack(u, y[i:i + batch_size]).detach()))
    return torch.cat(outs)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                    generator: torch.Generator | None = None, bounds=None, norm: str = "linf",
                    attacks: Sequence[str] = DEFAULT_ATTACKS, restarts: int = 5,
                    surrogate: nn.Module | None = None, batch_size: int = 1024) -> dict[str, Any]:
    """Accuracy under each attack and under their per-example worst case.

    Parameters
    ----------
    model : nn.Module
        (N, ...) -> (N, K) logits; attacked in eval mode.
    x : (N, ...) float tensor, inside ``bounds``
    y : (N,) int64 tensor
    eps : float
        Radius of the threat model.
    generator : torch.Generator, optional
        Random starts of our attacks and the seeds handed to the libraries (default: PyTorch's
        own, as ``torch.rand``).
    bounds : (lo, hi), optional
        Default: ``model.input_bounds`` (set by :func:`deepscope.load`).
    norm : 'linf' or 'l2'
    attacks : names from :data:`ATTACKS`
    restarts : int
        Restarts of our PGD-20 and PGD-100.
    surrogate : nn.Module, optional
        Source model of the ``transfer`` attack (skipped, and listed in ``unavailable``, without it).

    Returns
    -------
    dict
        ``clean``, ``robust`` (worst case), ``attacks`` {name: accuracy}, ``ran`` (the attacks
        that ran, whose worst case ``robust`` is), ``strongest`` (the single attack with the
        lowest accuracy), ``unavailable`` {name: reason, also issued as a warning}, ``violations`` {name:
        examples projected back into the threat model}, ``n``, ``eps``, ``norm``, and
        ``per_example`` {name: (N,) bool tensor, correct under that attack}.
    """
    check_norm(norm)
    generator = generator_or_default(generator)
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"attacks contains {unknown}, must be names from {list(ATTACKS)}")
    if bounds is None:
        bounds = getattr(model, "input_bounds", None)
        if bounds is None:
            raise ValueError("bounds is None and the model has no input_bounds; pass bounds=(lo, hi)")
    if eps == 0:
        attacks = ()
    lo, hi = as_bounds(bounds, x)
    clean = _predict(model, x, batch_size) == y
    num_classes = int(_logits_dim(model, x))
    per_example: dict[str, torch.Tensor] = {}
    unavailable: dict[str, str] = {}
    violations: dict[str, int] = {}

    def judge(name: str, x_adv: torch.Tensor) -> None:
        delta = x_adv - x
        fixed = clamp(x + project(delta, eps, norm), lo, hi)
        violations[name] = int(((fixed - x_adv).flatten(1).abs().amax(1) > 1e-5 * max(1.0, eps)).sum())
        per_example[name] = (_predict(model, fixed, batch_size) == y) & clean

    ours: dict[str, Callable[[], torch.Tensor]] = {
        "fgsm": lambda: FGSM(model, eps=eps, norm=norm, bounds=bounds)(x, y),
        "pgd20": lambda: PGD(model, eps=eps, norm=norm, bounds=bounds, steps=20,
                             restarts=restarts)(x, y, generator=generator),
        "pgd100": lambda: PGD(model, eps=eps, norm=norm, bounds=bounds, steps=100,
                              restarts=restarts)(x, y, generator=generator),
    }
    for name in attacks:
        if name in ours:
            judge(name, ours[name]())
        elif name == "transfer":
            if surrogate is None:
                unavailable[name] = "no surrogate model given"
                continue
            judge(name, PGD(surrogate, eps=eps, norm=norm, bounds=bounds, steps=20)(
                x, y, generator=generator))
        else:
            seed = spawn(generator) % 2**31
            try:
                adv = _run_library(name, model, x, y, eps, norm, bounds, seed, num_classes,
                                   batch_size, restarts)
            except ImportError as e:
                unavailable[name] = f"{_LIBRARY[name]} is not installed ({e}); pip install 'deepscope[attacks]'"
                continue
            except ValueError as e:
                unavailable[name] = str(e)
                continue
            judge(name, adv)
    if unavailable:
        # never drop a judge silently
        warnings.warn("robust accuracy judged without " + "; ".join(
            f"{k} ({v})" for k, v in unavailable.items()) + f"; attacks that ran: "
            f"{', '.join(per_example) or 'none'}", stacklevel=2)
    accs = {k: v.float().mean().item() for k, v in per_example.items()}
    worst = clean.clone()
    for v in per_example.values():
        worst &= v
    return {
        "eps": float(eps), "norm": norm, "n": int(len(y)),
        "clean": clean.float().mean().item(), "robust": worst.float().mean().item(),
        "attacks": accs, "ran": list(per_example),
        "strongest": min(accs, key=accs.get) if accs else None,
        "unavailable": unavailable, "violations": violations,
        "per_example": {**per_example, "worst": worst},
    }


def _logits_dim(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), eval_mode(model):
        return model(x[:1]).shape[1]


def accuracy_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps_grid: Sequence[float],
                   generator: torch.Generator | None = None, bounds=None, norm: str = "linf",
                   attacks: Sequence[str] = ("fgsm", "pgd20"), restarts: int = 1,
                   batch_size: int = 1024) -> list[dict[str, Any]]:
    """Worst-case robust accuracy at each ε of ``eps_grid`` (ours: FGSM and PGD-20 by default).

    Returns one ``{"eps", "robust", "attacks", "strongest"}`` per ε, in the grid's order.
    """
    out = []
    for e in eps_grid:
        r = robust_accuracy(model, x, y, eps=float(e), generator=generator, bounds=bounds, norm=norm,
                            attacks=attacks, restarts=restarts, batch_size=batch_size)
        out.append({"eps": float(e), "robust": r["robust"], "attacks": r["attacks"],
                    "strongest": r["strongest"]})
    return out


def masking_checks(report: dict[str, Any], curve: Sequence[dict[str, Any]] | None = None, *,
                   tol: float = 0.01, zero_tol: float = 0.05, agree_tol: float = 0.03,
                   large: float | None = None) -> dict[str, dict[str, Any]]:
    """The gradient-masking checks, each ``{"pass": bool or None, ...numbers}``.

    Parameters
    ----------
    report : dict
        From :func:`robust_accuracy` (with pgd20/pgd100 and, where available, square, transfer,
        foolbox-pgd, autoattack); ``report["pgd20_one_restart"]``, when present, is PGD-20's
        accuracy with one restart (compared with ``restarts`` restarts).
    curve : list of dict, optional
        From :func:`accuracy_curve`, ε increasing, its last ε large (see :func:`large_eps`).
    tol : float
        Slack for "never weaker / never stronger / monotone" (paired comparisons on the same
        examples; random starts move a few examples).
    zero_tol : float
        "≈ 0" means at most this accuracy at the curve's last ε (when it is ``>= large``).
    agree_tol : float
        Largest gap between our PGD-100 and an independent library that counts as agreement.

    Notes
    -----
    ``pass`` is None when a check had nothing to compare.
    """
    a = report["attacks"]
    checks: dict[str, dict[str, Any]] = {}
    if curve:
        accs = [c["robust"] for c in curve]
        rises = [round(b - c, 6) for c, b in zip(accs, accs[1:])]
        checks["monotone_in_eps"] = {"pass": all(r <= tol for r in rises), "eps": [c["eps"] for c in curve],
                                     "robust": accs, "largest_rise": max(rises, default=0.0)}
        last = curve[-1]
        big = large is None or last["eps"] >= large - 1e-9
        checks["zero_at_large_eps"] = {"pass": (last["robust"] <= zero_tol) if big else None,
                                       "eps": last["eps"], "robust": last["robust"]}
    if "pgd20" in a and "pgd100" in a:
        single = report.get("pgd20_one_restart")
        ok = a["pgd100"] <= a["pgd20"] + tol and (single is None or a["pgd20"] <= single + tol)
        checks["more_steps_not_weaker"] = {"pass": ok, "pgd20_one_restart": single,
                                           "pgd20": a["pgd20"], "pgd100": a["pgd100"]}
    white = [a[k] for k in ("fgsm", "pgd20", "pgd100", "foolbox-pgd", "autoattack") if k in a]
    black = {k: a[k] for k in ("square", "transfer") if k in a}
    if white and black:
        best = min(white)
        checks["blackbox_not_stronger"] = {"pass": all(v >= best - tol for v in black.values()),
                                           "white_box": best, **black}
    else:
        checks["blackbox_not_stronger"] = {"pass": None, "reason": "no black-box attack ran"}
    if "pgd100" in a:
        theirs = {k: a[k] for k in ("foolbox-pgd", "autoattack") if k in a}
        checks["libraries_agree"] = {
            "pass": all(abs(v - a["pgd100"]) <= agree_tol for v in theirs.values()) if theirs else None,
            "pgd100": a["pgd100"], **theirs,
            **({} if theirs else {"reason": "no independent library ran"})}
    return checks


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
             generator: torch.Generator | None = None, bounds=None, norm: str = "linf",
             attacks: Sequence[str] = DEFAULT_ATTACKS, eps_grid: Sequence[float] | None = None,
             restarts: int = 5, surrogate: nn.Module | None = None, batch_size: int = 1024,
             **check_options: Any) -> dict[str, Any]:
    """Clean and robust accuracy at ``eps``, the ε curve and the gradient-masking checks.

    ``eps_grid`` defaults to ``eps·(0, 0.25, 0.5, 1, 1.5, 2)`` plus :func:`large_eps`. Other
    arguments as in :func:`robust_accuracy`; ``check_options`` go to :func:`masking_checks`.
    The returned dict is JSON-ready (``per_example`` is dropped).
    """
    generator = generator_or_default(generator)
    if bounds is None:
        bounds = getattr(model, "input_bounds", None)
        if bounds is None:
            raise ValueError("bounds is None and the model has no input_bounds; pass bounds=(lo, hi)")
    big = large_eps(bounds, norm, x.shape[1:])
    if eps_grid is None:
        eps_grid = sorted({round(eps * f, 8) for f in (0, 0.25, 0.5, 1, 1.5, 2)} | {big})
    eps_grid = sorted(float(e) for e in eps_grid)
    report = robust_accuracy(model, x, y, eps=eps, generator=generator, bounds=bounds, norm=norm,
                             attacks=attacks, restarts=restarts, surrogate=surrogate,
                             batch_size=batch_size)
    report.pop("per_example")
    curve = accuracy_curve(model, x, y, eps_grid=eps_grid, generator=generator, bounds=bounds,
                           norm=norm, batch_size=batch_size)
    report["curve"] = curve
    at_eps = [c for c in curve if abs(c["eps"] - eps) <= 1e-9 and "pgd20" in c["attacks"]]
    report["pgd20_one_restart"] = at_eps[0]["attacks"]["pgd20"] if at_eps else None
    report["large_eps"] = big
    report["checks"] = masking_checks(report, curve, large=big, **check_options)
    return report


def summarise_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`evaluate` reports of one model's seeds, summarised over the seeds.

    Returns ``clean``, ``robust`` and ``attacks`` {name: ...} as
    :func:`deepscope.train.stats.summarise` gives them; ``strongest`` (per seed, the attacks
    that reached the lowest single-attack accuracy, ties included); ``unavailable`` and the
    sum of ``violations``; ``checks`` {name: passed / failed / not_run counts}; ``curve``
    (``eps`` and the mean and std of the worst-case accuracy at each); ``seconds`` (mean
    ``train_seconds`` and ``eval_seconds`` where the reports hold them).
    """
    from deepscope.train.stats import summarise

    reps = list(reports)
    if not reps:
        raise ValueError("reports is empty, must hold one evaluate() report per seed")
    attacks = sorted({a for r in reps for a in r["attacks"]})
    strongest = [sorted(k for k, v in r["attacks"].items() if v == min(r["attacks"].values()))
                 for r in reps]
    checks: dict = {}
    for r in reps:
        for name, c in r["checks"].items():
            tally = checks.setdefault(name, {"passed": 0, "failed": 0, "not_run": 0})
            tally["passed" if c["pass"] is True else "failed" if c["pass"] is False else "not_run"] += 1
    curve = [summarise(r["curve"][i]["robust"] for r in reps) for i in range(len(reps[0]["curve"]))]
    return {
        "clean": summarise(r["clean"] for r in reps),
        "robust": summarise(r["robust"] for r in reps),
        "attacks": {a: summarise(r["attacks"][a] for r in reps if a in r["attacks"]) for a in attacks},
        "strongest": strongest,
        "unavailable": sorted({f"{k}: {v}" for r in reps for k, v in r["unavailable"].items()}),
        "violations": int(sum(sum(r.get("violations", {}).values()) for r in reps)),
        "checks": checks,
        "curve": {"eps": [c["eps"] for c in reps[0]["curve"]], "mean": [c["mean"] for c in curve],
                  "std": [c["std"] for c in curve]},
        "seconds": {k: summarise(r.get(f"{k}_seconds", float("nan")) for r in reps)["mean"]
                    for k in ("train", "eval")},
    }


def paired_difference(treated: Mapping[int, float], control: Mapping[int, float]) -> dict[str, Any]:
    """``treated − control`` seed by seed, summarised: the paired comparison of two settings.

    Parameters
    ----------
    treated, control : mapping seed -> value
        One number per seed (e.g. robust accuracy), each pair from the same initial weights,
        data order and evaluation seed. Only seeds present in both are paired.

    Returns
    -------
    dict
        :func:`deepscope.train.stats.summarise` of the differences (``mean``, ``std``,
        ``ci95``: the paired Student-t interval over seeds, ``n``, ``values``), plus ``seeds``
        (those paired, sorted) and ``unpaired`` (seeds in only one of the two).

    >>> d = paired_difference({0: 0.82, 1: 0.80, 2: 0.85}, {0: 0.80, 1: 0.79, 2: 0.83, 3: 0.9})
    >>> round(d["mean"], 4), d["n"], d["unpaired"]
    (0.0167, 3, [3])
    """
    from deepscope.train.stats import summarise

    seeds = sorted(set(treated) & set(control))
    if not seeds:
        raise ValueError(f"treated has seeds {sorted(treated)} and control {sorted(control)}; "
                         "they must share at least one seed to be paired")
    d = summarise(float(treated[s]) - float(control[s]) for s in seeds)
    return {**d, "seeds": seeds, "unpaired": sorted(set(treated) ^ set(control))}
