"""The whole lazy-vs-hasty toy as the paper runs it: 3 toys x 2 extra-dims settings x 2 alphas x 100 runs.

    OMP_NUM_THREADS=2 python benchmarks/lazy_toy_speed.py --threads 2          # the target: <= 2 min
    OMP_NUM_THREADS=1 python benchmarks/lazy_toy_speed.py --threads 1 --out benchmarks/results/lazy_toy_speed_t1.json

Runs ``deepscope run lazy-vs-hasty`` (mode toy, the recipe's defaults: disk, yinyang1,
disk_flip_diagonal, extra dims 0 and 5, 100 points, 100 runs per alpha, levels 0.5/0.4/0.3, at
most 25,000 steps, 61 x 61 maps, 1000 resamples) in this process, into a fresh temporary folder,
and writes JSON (default benchmarks/results/lazy_toy_speed.json) with

- ``seconds``: wall time of the recipe (``execute_recipe``), and ``training_seconds``: of its
  one batched training (the ``toy/batched`` sub-run's own ``seconds``);
- ``network_steps``: gradient steps summed over the 1,200 networks (each trains until it
  reaches the last level or the step cap), and ``us_per_network_step`` = training time /
  network steps (each network: 100 points, 2(+5)-60-60-60-1);
- ``steps_to_last_level``: per alpha, median and largest step at which runs reached loss 0.3,
  and how many never did;
- ``threads`` (``torch.get_num_threads()``), ``load_before`` / ``load_after`` (1-, 5-, 15-minute
  load averages), ``cpu_count``, ``platform``, the torch version.

Quote a time only from a run whose load average before and after is below ~0.5 per core with
nothing else running; the numbers move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100, help="runs per toy and alpha (paper: 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lazy_toy_speed.json")
    ap.add_argument("--keep", type=Path, default=None, help="run folder to keep (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from deepscope.recipes.lazy_vs_hasty import Config
    from deepscope.runner import execute_recipe

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "toy"
        cfg = Config(out=out, progress=False, threads=args.threads, device="cpu",
                     toy_runs=args.runs, seed=args.seed)
        t0 = time.perf_counter()
        res = execute_recipe("lazy-vs-hasty", cfg, quiet=True)
        seconds = time.perf_counter() - t0
        train = json.loads((out / "toy" / "batched" / "result.json").read_text())
        steps = torch.tensor(train["steps"])                    # (levels, networks), -1: never
        last = steps[-1]
        cap = cfg.toy_max_steps
        network_steps = int(torch.where(last >= 0, last, torch.full_like(last, cap)).sum())
        per_alpha = {}
        k = args.runs
        alphas = [f"{a:g}" for a in sorted(cfg.alphas)]
        for j, a in enumerate(alphas):  # pairs are ordered (dataset, alpha): alpha varies fastest
            idx = torch.cat([torch.arange(p * k, (p + 1) * k)
                             for p in range(j, last.numel() // k, len(alphas))])
            s = last[idx]
            ok = s[s >= 0]
            per_alpha[a] = {"median": float(ok.median()) if len(ok) else None,
                            "max": int(ok.max()) if len(ok) else None, "never": int((s < 0).sum())}
    entry = {
        "seconds": round(seconds, 2),
        "training_seconds": train.get("seconds"),
        "network_steps": network_steps,
        "us_per_network_step": round(1e6 * train["seconds"] / network_steps, 2) if train.get("seconds") else None,
        "steps_to_last_level": per_alpha,
        "verdict": res.get("verdict", {}).get("verdict"),
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "runs": args.runs,
        "seed": args.seed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(entry, indent=2) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
