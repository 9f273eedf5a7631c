"""MINE speed and memory; writes benchmarks/results/mi_speed.json.

Measured in one run, in this order, with nothing else running:

(a) training steps/s of ``MINE.fit``'s loop against a plain PyTorch MINE loop with the
    same critic architecture, batch and initial weights (tensors indexed directly, no
    DataLoader, torch.optim.Adam, joint and marginal batches through the critic separately);
(b) achieved GFLOP/s of both (FLOPs counted analytically for the critic's forward and
    backward) against the machine's float32 matrix-multiply GFLOP/s (a 2048^3 matmul);
(c) wall time of ``MINE().fit`` with default settings to its held-out estimate on a 5-d
    Gaussian task with N = 5,000 (and of the whole ``deepscope mi estimate-csv`` command,
    interpreter start and imports included);
(d) peak extra memory of fitting a 1,000,000-row, 50 + 50-dimensional float32 input,
    as a multiple of the input's size (measured in a fresh subprocess).

    python benchmarks/mi_speed.py [--threads 2] [--steps 2000] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
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
from deepscope.mi.critics import ConcatCritic


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def train_flops_per_step(k: int, dx: int, dy: int, hidden: tuple[int, ...]) -> float:
    """Forward + backward FLOPs of the concat critic on K joint + K marginal pairs.

    Forward: 2 * rows * (fan_in * fan_out) per linear layer. Backward: weight gradients
    for every layer plus input gradients for all but the first (the data needs none).
    """
    dims = [dx + dy, *hidden, 1]
    rows = 2 * k
    fwd = sum(2 * rows * a * b for a, b in zip(dims[:-1], dims[1:]))
    bwd_w = fwd
    bwd_in = sum(2 * rows * a * b for a, b in list(zip(dims[:-1], dims[1:]))[1:])
    return float(fwd + bwd_w + bwd_in)


def plain_loop(x: torch.Tensor, y: torch.Tensor, critic: ConcatCritic, steps: int, k: int, seed: int) -> float:
    """A straightforward MINE loop (moving-average corrected gradient); returns steps/s."""
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    ema = None
    t = time.perf_counter()
    for _ in range(steps):
        i = torch.randint(0, n, (k,), generator=g)
        j = torch.randint(0, n, (k,), generator=g)
        t_joint = critic(x[i], y[i])
        t_marg = critic(x[i], y[j])
        e = torch.exp(t_marg).mean()
        ema = e.detach() if ema is None else 0.99 * ema + 0.01 * e.detach()
        loss = -(t_joint.mean() - e / ema)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t)


def ours_loop(x, y, steps: int, k: int, seed: int, precision: str = "fp32") -> float:
    """Steps/s of MINE.fit's training loop (no early stop; one validation pass at the end)."""
    est = MINE(batch_size=k, max_steps=steps, eval_every=steps, patience=1, n_bootstrap=0,
               random_state=seed, precision=precision).fit(x, y)
    return steps / est.restarts_[0]["train_seconds"]


MEMORY_CHILD = r"""
import json, resource, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from deepscope.mi import MINE
n, d = 1_000_000, 50
rng = np.random.default_rng(0)
x = np.empty((n, d), np.float32); y = np.empty((n, d), np.float32)
for s in range(0, n, 100_000):   # chunked so creating the input leaves no big temporaries
    a = rng.standard_normal((100_000, d), dtype=np.float32)
    x[s:s+100_000] = a
    y[s:s+100_000] = 0.3 * a + rng.standard_normal((100_000, d), dtype=np.float32)
def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1]) / 1024
before = rss_mb()
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
est = MINE(max_steps=200, eval_every=200, patience=1, n_bootstrap=20, random_state=0).fit(x, y)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"input_mb": (x.nbytes + y.nbytes) / 2**20, "rss_before_fit_mb": before,
                  "peak_before_fit_mb": peak_before, "peak_during_fit_mb": peak, "mi": est.mi_}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every measurement")
    ap.add_argument("--steps", type=int, default=2000, help="training steps per throughput measurement")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of (a); the median is kept")
    ap.add_argument("--skip-memory", action="store_true", help="skip (d), which needs ~2 GB")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mi_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"benchmark": "mi_speed", "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}

    # (a) + (b): throughput on the 5-d task, critic 2x100, batch 256.
    x, y, _ = tasks.correlated_gaussian(5000, d=5, mi=2.0, seed=0)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    k, hidden = 256, (100, 100)
    rates = {"plain": [], "deepscope_fp32": [], "deepscope_bf16": []}
    for r in range(args.repeats):  # alternate so drifts in machine speed hit all alike
        torch.manual_seed(r)
        rates["plain"].append(plain_loop(tx, ty, ConcatCritic(5, 5, hidden), args.steps, k, r))
        rates["deepscope_fp32"].append(ours_loop(x, y, args.steps, k, r))
        rates["deepscope_bf16"].append(ours_loop(x, y, args.steps, k, r, precision="bf16"))
    med = {name: float(np.median(v)) for name, v in rates.items()}
    flops = train_flops_per_step(k, 5, 5, hidden)
    peak = matmul_gflops()
    out["throughput"] = {
        "task": "5-d Gaussian, N=5000, concat critic 2x100, batch 256",
        "steps_per_s_runs": rates, "steps_per_s_median": med,
        "speedup_vs_plain": {name: med[name] / med["plain"] for name in med},
        "flops_per_step": flops,
        "achieved_gflops": {name: med[name] * flops / 1e9 for name in med},
        "matmul_gflops_2048": peak,
        "fraction_of_matmul_peak": {name: med[name] * flops / 1e9 / peak for name in med},
    }
    print(json.dumps(out["throughput"], indent=2), flush=True)

    # (c) time to a converged held-out estimate (early stopping ends training).
    x, y, truth = tasks.correlated_gaussian(5000, d=5, mi=2.0, seed=1)
    times, ests = [], []
    for s in range(3):
        t = time.perf_counter()
        est = MINE(random_state=s).fit(x, y)
        times.append(time.perf_counter() - t)
        ests.append(est.mi_)
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "xy.csv"
        header = ",".join([f"X{i}" for i in range(5)] + [f"Y{i}" for i in range(5)])
        np.savetxt(csv, np.hstack([x, y]), delimiter=",", header=header, comments="")
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "deepscope.cli", "mi", "estimate-csv", str(csv), "5", "5",
                            "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        cli_seconds = time.perf_counter() - t
    out["time_to_estimate"] = {
        "task": "5-d Gaussian, N=5000, true MI 2.0 nats, MINE() defaults",
        "fit_seconds": times, "fit_seconds_median": float(np.median(times)),
        "estimates": ests, "truth": truth,
        "cli_estimate_csv_seconds": cli_seconds, "cli_output": p.stdout.strip(),
    }
    print(json.dumps(out["time_to_estimate"], indent=2), flush=True)

    # (d) memory, in a fresh process so earlier allocations do not hide the peak.
    # With one thread the extra is the single float32 copy fit() makes; with more, the
    # worker threads' allocator arenas add a roughly fixed amount on top.
    if not args.skip_memory:
        out["memory"] = {}
        for threads in sorted({1, args.threads}):
            p = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(threads)],
                               capture_output=True, text=True, check=True)
            mem = json.loads(p.stdout.strip().splitlines()[-1])
            mem["extra_peak_over_input"] = (mem["peak_during_fit_mb"] - mem["rss_before_fit_mb"]) / mem["input_mb"]
            out["memory"][f"threads={threads}"] = mem
            print(json.dumps(mem, indent=2), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
