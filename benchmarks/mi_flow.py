"""MINE's flow critic: per task family, the truth, the hybrid critic, the flow critic,
the selection between them, the default ``MINE()`` and the read-out floor; writes
benchmarks/results/mi_flow.json.

    OMP_NUM_THREADS=1 python benchmarks/mi_flow.py                 # the reported run
    OMP_NUM_THREADS=1 python benchmarks/mi_flow.py --quick         # 2 families, 1 seed (smoke test)
    OMP_NUM_THREADS=1 python benchmarks/mi_flow.py --timing-only   # only the whole-process timing (mi_flow_timing.json)

Families: the nine of ``deepscope.mi.tasks.FAMILIES`` (N = 5,000) and three BMI-like tasks
written from their definitions (Czyz et al., NeurIPS 2023): the half-cube map of a 5 + 5
Gaussian, the spiral of a 5 + 5 Gaussian, and a 1 + 1 Student-t with one degree of freedom.
Per family and seed, each on the same split: "gaussian", ``MINE(critic="hybrid", dof=math.inf,
transform="gaussianize")`` (the hybrid critic with only its Gaussian part, on Gaussianised
columns); "hybrid", the same with ``dof="auto"`` (the Gaussian or a Student-t copula part, chosen
on validation); "default", ``MINE()`` (``dof="auto"`` and ``transform="auto"``: Gaussianised or
standardised columns, chosen on validation); "flow", ``MINE(critic="flow", transform="gaussianize")``;
"select", ``MINE(critic="select")`` (hybrid or flow, each Gaussianised or standardised: four
candidates, chosen on validation; its ``selection_`` is recorded). The flow options were chosen on seeds 20, 21, 30 and 31 (spiral,
shear, additive noise, Student-t 5 + 5); the default ``--seeds`` (40, 41, 42) chose nothing.

Summary per configuration: the mean absolute error over the nine families (and over all
twelve), the worst ratio of a family's mean estimate to its truth, and the median seconds
per estimate (wall and CPU; on a loaded machine compare CPU, or rerun). The floor is the
exact-critic read-out error of benchmarks/results/mi_floor.json (benchmarks/mi_floor.py).

Whole process (``--reps``, 0 skips): ``deepscope mi estimate-csv`` on a 25 + 25 Gaussian
(5,000 rows) with the default critic and with ``--critic select``, each call after a bare
``import torch`` process; the median paired difference is the cost beyond the import (the
target for the default: <= 1.2 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepscope.mi import MINE, tasks

EXTRA = {  # BMI-like tasks (not in tasks.FAMILIES)
    "bmi-half-cube-5d": lambda n, seed: tasks.transformed_gaussian(n, d=5, mi=1.0, transform="half-cube", seed=seed),
    "bmi-spiral-5d": lambda n, seed: tasks.mapped_gaussian(n, d=5, mi=1.0, map="spiral", seed=seed),
    "bmi-student-t-1d-dof1": lambda n, seed: tasks.student_t(n, dim_x=1, dim_y=1, dof=1.0, seed=seed),
}
CONFIGS = ("gaussian", "hybrid", "default", "flow", "select")
BARE_TORCH = "import torch, os; torch.set_num_threads(1); os._exit(0)"


def fit(x, y, seed: int, **kw) -> dict:
    c0, t0 = time.process_time(), time.perf_counter()
    est = MINE(random_state=seed, **kw).fit(x, y)
    out = {"estimate": est.mi_, "ci": list(est.ci_), "val": max(r["val"] for r in est.restarts_),
           "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
           "readout": est.readout_, "dof": est.dof_, "transform": est.transform_,
           "selection": getattr(est, "selection_", None)}
    if est.flows_ is not None:
        out["flow_steps"] = est.flow_history_[-1]["step"]
        out["flow_seconds"] = est.timings_["flow"]
        out["flow_gaussian_mi"] = est.flows_.gaussian_mi()
    return out


def accuracy(families: dict, seeds: list[int]) -> list[dict]:
    rows = []
    for fam, sampler in families.items():
        for seed in seeds:
            x, y, truth = sampler(5000, seed)
            row = {"family": fam, "seed": seed, "truth": truth, "dims": [x.shape[1], y.shape[1]]}
            row["gaussian"] = fit(x, y, seed, critic="hybrid", dof=math.inf, transform="gaussianize")
            row["hybrid"] = fit(x, y, seed, critic="hybrid", transform="gaussianize")
            row["default"] = fit(x, y, seed)
            row["flow"] = fit(x, y, seed, critic="flow", transform="gaussianize")
            row["select"] = fit(x, y, seed, critic="select")
            chosen = row["select"]["selection"]["chosen"]
            rows.append(row)
            print(f"{fam:22s} seed {seed} truth {truth:.3f} " + " ".join(
                f"{c}={row[c]['estimate']:.3f}({row[c]['cpu_seconds']:.1f}s)" for c in CONFIGS)
                + f" chosen={chosen} load={os.getloadavg()[0]:.1f}", flush=True)
    return rows


def summarise(rows: list[dict], families: list[str], floor: dict) -> dict:
    out = {}
    for c in CONFIGS:
        per_family = {}
        for fam in families:
            rs = [r for r in rows if r["family"] == fam]
            if not rs:
                continue
            est = [r[c]["estimate"] for r in rs]
            per_family[fam] = {"truth": rs[0]["truth"], "estimates": est, "mean": float(np.mean(est)),
                               "ratio": float(np.mean(est) / rs[0]["truth"]),
                               "mean_abs_error": float(np.mean([abs(e - rs[0]["truth"]) for e in est])),
                               "floor_mean_abs_error": floor.get(fam, {}).get("mean_abs_error")}
        nine = [f for f in per_family if f in tasks.FAMILIES]
        worst = min(nine, key=lambda f: per_family[f]["ratio"]) if nine else None
        err9 = [abs(r[c]["estimate"] - r["truth"]) for r in rows if r["family"] in tasks.FAMILIES]
        out[c] = {
            "mean_abs_error_9_families": float(np.mean(err9)) if err9 else None,
            "mean_abs_error_all": float(np.mean([abs(r[c]["estimate"] - r["truth"]) for r in rows])),
            "worst_family": worst, "worst_ratio": per_family[worst]["ratio"] if worst else None,
            "seconds_median": float(np.median([r[c]["seconds"] for r in rows])),
            "cpu_seconds_median": float(np.median([r[c]["cpu_seconds"] for r in rows])),
            "per_family": per_family,
        }
        out[c]["chosen_standardize"] = sum(r[c]["transform"] == "standardize" for r in rows)
        if c == "select":
            out[c]["chosen_flow"] = sum(r["select"]["selection"]["chosen"].startswith("flow") for r in rows)
            out[c]["chosen_of"] = len(rows)
    return out


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stdout}{p.stderr}")
    return time.perf_counter() - t, p.stdout.strip()


def whole_process(reps: int) -> dict:
    x, y, truth = tasks.FAMILIES["gaussian-25d"](5000, 0)
    out = {"truth": truth}
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "g25.csv"
        header = ",".join([f"X{i}" for i in range(25)] + [f"Y{i}" for i in range(25)])
        np.savetxt(csv, np.hstack([x, y]), delimiter=",", header=header, comments="", fmt="%.8g")
        for label, extra in (("default", []), ("select", ["--critic", "select"])):
            bare, walls, ests, loads = [], [], [], []
            for _ in range(reps):
                bare.append(timed([sys.executable, "-c", BARE_TORCH])[0])
                wall, stdout = timed([sys.executable, "-m", "deepscope.cli", "mi", "estimate-csv", str(csv),
                                      "25", "25", "--threads", "1", *extra])
                walls.append(wall)
                ests.append(float(stdout))
                loads.append(os.getloadavg()[0])
            out[label] = {"wall_seconds": walls, "bare_import_torch_seconds": bare, "estimates": ests,
                          "wall_median": float(np.median(walls)),
                          "beyond_import_torch_median": float(np.median(np.subtract(walls, bare))),
                          "load_avg_1min": loads}
            print(f"estimate-csv 25+25 [{label}]: median {out[label]['wall_median']:.2f} s, beyond a bare "
                  f"import torch {out[label]['beyond_import_torch_median']:.2f} s, load {loads}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="40,41,42", help="task seeds (never used to choose anything)")
    ap.add_argument("--reps", type=int, default=5, help="whole-process calls per configuration (0 skips)")
    ap.add_argument("--no-extra", action="store_true", help="only the nine tasks.FAMILIES")
    ap.add_argument("--quick", action="store_true", help="2 families, 1 seed, 1 rep")
    ap.add_argument("--timing-only", action="store_true", help="only the whole-process timing")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON written (default results/mi_flow.json; with --timing-only "
                         "results/mi_flow_timing.json, so the accuracy run is kept)")
    args = ap.parse_args()
    if args.out is None:
        name = "mi_flow_timing.json" if args.timing_only else "mi_flow.json"
        args.out = Path(__file__).parent / "results" / name
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]
    families = {**tasks.FAMILIES, **({} if args.no_extra else EXTRA)}
    if args.quick:
        families = {k: families[k] for k in ("shear-5d", "gaussian-5d")}
    floor_path = Path(__file__).parent / "results" / "mi_floor.json"
    floor = json.loads(floor_path.read_text())["families"] if floor_path.exists() else {}
    out: dict = {"benchmark": "mi_flow", "threads": 1, "torch": torch.__version__,
                 "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                 "load_avg_at_start": os.getloadavg(), "seeds": seeds, "n": 5000,
                 "tuning_seeds": [20, 21, 30, 31],
                 "command": " ".join(["python", "benchmarks/mi_flow.py", *sys.argv[1:]])}
    if not args.timing_only:
        rows = accuracy(families, seeds)
        out["rows"] = rows
        out["summary"] = summarise(rows, list(families), floor)
        out["floor_mean_abs_error_9_families"] = float(np.mean(
            [floor[f]["mean_abs_error"] for f in tasks.FAMILIES if f in floor])) if floor else None
        for c, s in out["summary"].items():
            print(f"{c:8s} MAE (9 families) {s['mean_abs_error_9_families']:.3f}  MAE (all) "
                  f"{s['mean_abs_error_all']:.3f}  worst {s['worst_family']} {s['worst_ratio']:.2f}  "
                  f"median {s['seconds_median']:.2f} s ({s['cpu_seconds_median']:.2f} s CPU)", flush=True)
    reps = 1 if args.quick else args.reps
    if reps > 0:
        out["whole_process"] = whole_process(reps)
    out["load_avg_at_end"] = os.getloadavg()
    out["benchmark_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} in {out['benchmark_seconds']:.0f} s")


if __name__ == "__main__":
    main()
