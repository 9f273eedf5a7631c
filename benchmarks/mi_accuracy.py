"""Accuracy of MINE's held-out estimate on tasks with known MI; writes benchmarks/results/mi_accuracy.json.

1. Correlated Gaussians, N = 10,000, d in {2, 20}, true MI from 0.5 to 8 nats, for
   each bound in --bounds (MINE and SMILE by default) with KSG beside them: the
   target is |estimate - truth| <= 0.05 + 0.1 * truth for truth <= 4.
2. The same Gaussians under invertible per-coordinate maps (MI unchanged), estimated
   with transform='standardize', 'gaussianize' and 'auto' (the one of the two with the
   higher validation bound): the measurement behind the estimator's default transform.

    python benchmarks/mi_accuracy.py [--quick] [--seeds 2] [--bounds mine,smile] [--preset concat-mine] [--out ...]
    python benchmarks/mi_accuracy.py --maps-only --seeds 3 --out benchmarks/results/mi_transform.json

The tables in docs/mine.md's "Benchmarks" section were measured with ``--preset concat-mine``
(the MINE paper's concatenation critic and bound); the hard task families and the comparison
of the presets are in benchmarks/mi_speed.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from deepscope.mi import MINE, tasks
from deepscope.mi.estimator import PRESETS
from deepscope.mi.knn import ksg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few points only (smoke test)")
    ap.add_argument("--seeds", type=int, default=2, help="data/critic seeds per point")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--bounds", default="mine,smile", help="comma-separated MINE(bound=...) values to measure")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS), help="MINE configuration")
    ap.add_argument("--maps-only", action="store_true", help="only part 2, the per-coordinate maps")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mi_accuracy.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mis = (1.0, 4.0) if args.quick else (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
    dims = (2,) if args.quick else (2, 20)
    seeds = range(1 if args.quick else args.seeds)
    n = 3000 if args.quick else 10_000
    bound_names = [b.strip() for b in args.bounds.split(",") if b.strip()]

    gauss = []
    for d in () if args.maps_only else dims:
        for mi in mis:
            for s in seeds:
                x, y, truth = tasks.correlated_gaussian(n, d=d, mi=mi, seed=s)
                row = {"d": d, "truth": truth, "seed": s, "ksg": ksg(x, y, random_state=s)}
                for b in bound_names:
                    t0 = time.perf_counter()
                    est = MINE(**{**PRESETS[args.preset], "bound": b}, random_state=s).fit(x, y)
                    row[b] = {
                        "estimate": est.mi_, "ci": est.ci_, "steps": est.restarts_[0]["steps"],
                        "seconds": time.perf_counter() - t0, "error": est.mi_ - truth,
                        "within_target": abs(est.mi_ - truth) <= 0.05 + 0.1 * truth,
                        "warnings": est.warnings_,
                    }
                gauss.append(row)
                print(f"d={d:2d} truth={truth:5.2f} seed={s} ksg={row['ksg']:6.3f} " + " ".join(
                    f"{b}={row[b]['estimate']:6.3f} [{row[b]['ci'][0]:.2f},{row[b]['ci'][1]:.2f}] "
                    f"ok={row[b]['within_target']!s:5} {row[b]['seconds']:4.1f}s" for b in bound_names), flush=True)

    marg = []
    maps = ("identity", "cubic") if args.quick else ("identity", "cubic", "exp", "sinh", "half-cube")
    for tf in maps:
        for s in seeds:
            x, y, truth = tasks.transformed_gaussian(n, d=5, mi=2.0, transform=tf, seed=s)
            row = {"map": tf, "truth": truth, "seed": s}
            for pre in ("standardize", "gaussianize", "auto"):
                est = MINE(**{**PRESETS[args.preset], "transform": pre}, random_state=s).fit(x, y)
                row[pre] = est.mi_
                if pre == "auto":
                    row["auto_chose"] = est.transform_
            marg.append(row)
            print(f"map={tf:9s} truth={truth:.2f} standardize={row['standardize']:.3f} "
                  f"gaussianize={row['gaussianize']:.3f} auto={row['auto']:.3f} ({row['auto_chose']})", flush=True)

    def mean_abs(rows, key):
        return float(np.mean([abs(r[key] - r["truth"]) for r in rows]))

    summary = {
        "target_truth_le_4": {
            b: {
                f"d={d}": f"{sum(r[b]['within_target'] for r in gauss if r['d'] == d and r['truth'] <= 4)}"
                          f"/{sum(1 for r in gauss if r['d'] == d and r['truth'] <= 4)}"
                for d in dims
            }
            for b in bound_names
        },
        "transform_mean_abs_error": {
            t: mean_abs(marg, t) for t in ("standardize", "gaussianize", "auto")
        },
    }
    out = {
        "benchmark": "mi_accuracy", "preset": args.preset, "n": n, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "gaussians": gauss, "marginal_maps": marg, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
