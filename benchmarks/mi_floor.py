"""MINE: the error an *exact* critic makes with the estimator's read-out, per task family.

The default ``MINE()`` reads its estimate once, on the test split (15% of N = 5,000 rows: 750),
with SMILE's clipped DV read-out (tau = 5, about 50,000 shuffled pairs). Even the true log
density ratio log p(x, y) / p(x) p(y) as the critic gives a noisy number from 750 rows. This
script measures that floor: for every family of ``deepscope.mi.tasks.FAMILIES`` it draws
``--draws`` independent 750-row samples, scores them with the family's exact log ratio
(closed form; for the mapped families the inverse map, for Student-t scipy's
``multivariate_t``, for additive noise the trapezoid density of Y), and reports the bias, the
standard deviation and the mean absolute error of the read-out. Writes
benchmarks/results/mi_floor.json.

    python benchmarks/mi_floor.py            # the reported run (~1 min)
    python benchmarks/mi_floor.py --quick    # 20 draws

No training is involved: the numbers are what the best possible critic would score on the
task-family accuracy table (benchmarks/mi_speed.py) with the same split and read-out (docs/mine.md, "Read-out floor").
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from deepscope.mi import bounds, tasks
from deepscope.mi.critics import canonical_terms

TAU = 5.0
N_TEST = 750          # MINE() on 5,000 rows: test_fraction 0.15
PAIRS = 50_000        # MINE's eval_pairs


def gaussian_pairs(x: np.ndarray, y: np.ndarray, rho: float, k: int | None = None) -> np.ndarray:
    """Exact log ratio when (x_i, y_i) for i < k are standard bivariate normal pairs with corr rho
    (the library's per-canonical-pair term, summed)."""
    t = canonical_terms(torch.from_numpy(x[:, :k]), torch.from_numpy(y[:, :k]),
                        torch.tensor(rho, dtype=torch.float64))
    return t.sum(1).numpy()


def student_t_ratio(dx: int, dy: int, dof: float, rho: float):
    cov = np.eye(dx + dy)
    for i in range(min(dx, dy)):
        cov[i, dx + i] = cov[dx + i, i] = rho
    joint = stats.multivariate_t(np.zeros(dx + dy), cov, df=dof)
    px = stats.multivariate_t(np.zeros(dx), np.eye(dx), df=dof)
    py = stats.multivariate_t(np.zeros(dy), np.eye(dy), df=dof)
    return lambda x, y: joint.logpdf(np.hstack([x, y])) - px.logpdf(x) - py.logpdf(y)


def uniform_noise_ratio(eps: float):
    def ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # p(y_i | x_i) = 1/eps on [x_i, x_i + eps]; p(y_i) is the trapezoid min(y, eps, 1 + eps - y) / eps
        inside = np.all((y >= x) & (y <= x + eps), axis=1)
        py = np.clip(np.minimum(np.minimum(y, eps), 1.0 + eps - y) / eps, 1e-300, None)
        out = np.full(x.shape[0], -np.inf)
        out[inside] = (-math.log(eps) - np.log(py[inside])).sum(1)
        return out
    return ratio


def exact_ratios() -> dict:
    """Family name -> (sampler(n, seed), exact log ratio(x, y)), matching tasks.FAMILIES."""
    def mapped(name, d):
        rho = tasks.rho_for_mi(1.0, d)
        inv = tasks.MAPS[name]
        return lambda x, y: gaussian_pairs(inv(x.astype(np.float64), inverse=True),
                                           inv(y.astype(np.float64), inverse=True), rho)

    return {
        "gaussian-5d": lambda x, y: gaussian_pairs(x, y, tasks.rho_for_mi(1.0, 5)),
        "gaussian-25d": lambda x, y: gaussian_pairs(x, y, tasks.rho_for_mi(2.0, 25)),
        "sparse-25d": lambda x, y: gaussian_pairs(x, y, tasks.rho_for_mi(1.5, 3), k=3),
        "shear-5d": mapped("shear", 5),
        "spiral-3d": mapped("spiral", 3),
        "student-t-2d-dof2": student_t_ratio(2, 2, 2.0, 0.0),
        "student-t-5d-dof3": student_t_ratio(5, 5, 3.0, 0.5),
        "additive-noise-2d": uniform_noise_ratio(0.5),
        "cubic-25d": lambda x, y: gaussian_pairs(np.cbrt(x), np.cbrt(y), tasks.rho_for_mi(1.0, 25)),
    }


def read_out(ratio, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    """SMILE's value as MINE reports it: mean joint score - log mean exp(clip(marginal scores))."""
    n = x.shape[0]
    x, y = x.astype(np.float64), y.astype(np.float64)
    tj = ratio(x, y)
    reps = max(1, min(PAIRS // n, n - 1))
    tm = []
    for _ in range(reps):  # a shifted random permutation: no row paired with itself
        p = rng.permutation(n)
        cols = np.empty(n, dtype=np.int64)
        cols[p] = np.roll(p, 1)
        tm.append(ratio(x, y[cols]))
    return float(bounds.evaluate("smile", torch.from_numpy(tj), torch.from_numpy(np.concatenate(tm)),
                                 tau=TAU))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200, help="independent 750-row samples per family")
    ap.add_argument("--quick", action="store_true", help="20 draws (a smoke test)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mi_floor.json")
    args = ap.parse_args()
    draws = 20 if args.quick else args.draws
    t0 = time.perf_counter()
    ratios = exact_ratios()
    out = {"benchmark": "mi_floor", "n_test": N_TEST, "pairs": PAIRS, "tau": TAU,
           "draws": draws, "command": "python benchmarks/mi_floor.py"
           + (" --quick" if args.quick else ""), "families": {}}
    for fam, sampler in tasks.FAMILIES.items():
        errs = []
        for s in range(draws):
            x, y, truth = sampler(N_TEST, 10_000 + s)
            errs.append(read_out(ratios[fam], x, y, np.random.default_rng(s)) - truth)
        errs = np.asarray(errs)
        row = {"truth": truth, "bias": float(errs.mean()), "sd": float(errs.std(ddof=1)),
               "mean_abs_error": float(np.abs(errs).mean())}
        out["families"][fam] = row
        print(f"{fam:20s} truth {truth:.3f}  bias {row['bias']:+.3f}  sd {row['sd']:.3f}  "
              f"mean |error| {row['mean_abs_error']:.3f}", flush=True)
    out["mean_abs_error_over_families"] = float(np.mean(
        [r["mean_abs_error"] for r in out["families"].values()]))
    out["seconds"] = time.perf_counter() - t0
    print(f"exact critic, {N_TEST} test rows: MAE over families "
          f"{out['mean_abs_error_over_families']:.3f} nats ({out['seconds']:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
