"""Speed and peak memory of the empirical tangent kernel: deepscope against the usual ways.

    # the benchmark environment (nngeometry is not a deepscope dependency):
    python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0 nngeometry \\
        && .venv-bench/bin/pip install -e .
    OMP_NUM_THREADS=2 .venv-bench/bin/python benchmarks/ntk_speed.py --threads 2      # minutes
    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/ntk_speed.py --threads 1 --quick

Writes benchmarks/results/ntk_speed.json (``--quick``: ntk_speed_quick.json) with, for each case,
each method's wall time, peak extra memory, agreement with deepscope's kernel and the ratio
``time(method) / time(deepscope auto)``:

- ``mlp``: the full ``(N, N, 10, 10)`` kernel of an MLP 40-256-256-10 on N = 500 random inputs
  (float32, weights from seed 0), the issue's case;
- ``cnn``: the full kernel of a small CNN on 8x8 one-channel inputs (conv 1->16 3x3, conv
  16->32 3x3 stride 2, linear 512->10, ReLU), N = 200;
- ``mlp_trace_20k``: deepscope's traced ``(20000, 20000)`` kernel of the MLP (1.6 GB output).

Methods: deepscope's ``auto``, ``factorized``, ``jacobian`` and ``vjp_jvp``; ``tutorial``, the
torch.func NTK tutorial's Jacobian contraction (``vmap(jacrev)`` per example, then an einsum per
parameter); ``naive``, one backward per example and output, then ``J J^T``; ``nngeometry`` 0.4's
``GramMatrix`` (an FMatDense built by hooks and per-layer factorisation; one batch of all N
examples, the fastest of 50/100/200 tried on N = 200), when importable.

How it measures. Every (case, method) runs in a fresh subprocess: build the model and inputs,
warm up on 8 examples, reset the kernel's peak-RSS counter (``/proc/self/clear_refs``, Linux),
then time the first full-size call; the peak extra memory is ``VmHWM`` after it minus ``VmRSS``
before it (whole process: torch's CPU allocator is invisible to tracemalloc). Fast methods are
then repeated and the median of the repeats is reported (the first call is also stored). The
file records torch's thread count, the load average before and after, and the machine's float32
matrix-multiply rate at that thread count: timings on a shared machine are not benchmarks.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

CASES = {
    # name: (inputs, N, N --quick, mode)
    "mlp": ("mlp", 500, 100, "full"),
    "cnn": ("cnn", 200, 50, "full"),
    "mlp_trace_20k": ("mlp", 20_000, 2_000, "trace"),
}
DEEPSCOPE = ["auto", "factorized", "jacobian", "vjp_jvp"]
OTHERS = ["tutorial", "naive", "nngeometry"]
SLOW = {"jacobian", "vjp_jvp", "tutorial", "naive"}  # timed once


def build(kind: str, n: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if kind == "mlp":
            net = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
            x = torch.randn(n, 40, generator=g)
        else:
            net = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
            )
            x = torch.randn(n, 1, 8, 8, generator=g)
    return net.eval(), x


# --------------------------------------------------------------------------------------
# The methods compared; each returns the kernel in deepscope's layout
# --------------------------------------------------------------------------------------
def tutorial_ntk(net: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """The torch.func tutorial's way: per-example Jacobians by vmap(jacrev), einsum per parameter."""
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in net.named_parameters()}

    def single(p, xi):
        return functional_call(net, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(single), (None, 0))(params, x)
    eq = {"full": "Naf,Mbf->NMab", "trace": "Naf,Maf->NM", "diagonal": "Naf,Maf->NMa"}[mode]
    return sum(torch.einsum(eq, j.flatten(2), j.flatten(2)) for j in jac.values())


def naive_ntk(net: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """One backward per example and output; then J J^T."""
    ps = list(net.parameters())
    rows = []
    for n in range(x.shape[0]):
        out = net(x[n : n + 1]).reshape(-1)
        for o in range(out.numel()):
            g = torch.autograd.grad(out[o], ps, retain_graph=o < out.numel() - 1)
            rows.append(torch.cat([t.reshape(-1) for t in g]))
    j = torch.stack(rows).view(x.shape[0], out.numel(), -1)
    eq = {"full": "naf,mbf->nmab", "trace": "naf,maf->nm", "diagonal": "naf,maf->nma"}[mode]
    return torch.einsum(eq, j, j)


def nngeometry_ntk(net: nn.Module, x: torch.Tensor, mode: str, batch_size: int | None = None) -> torch.Tensor:
    """nngeometry's dense tangent kernel (``GramMatrix`` -> FMatDense), (O, N, O, N) -> (N, N, O, O)."""
    from nngeometry import GramMatrix
    from torch.utils.data import DataLoader, TensorDataset

    if mode != "full":
        raise ValueError("nngeometry's FMatDense gives the full kernel only")
    loader = DataLoader(TensorDataset(x), batch_size=batch_size or x.shape[0])
    k = GramMatrix(net, loader, function=lambda *d: net(d[0])).data
    return k.permute(1, 3, 0, 2)


def method_fn(method: str):
    if method in DEEPSCOPE:
        from deepscope.dynamics import empirical_ntk

        return lambda net, x, mode: empirical_ntk(net, x, mode=mode, implementation=method)
    return {"tutorial": tutorial_ntk, "naive": naive_ntk, "nngeometry": nngeometry_ntk}[method]


# --------------------------------------------------------------------------------------
# One measurement, in a fresh process
# --------------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def worker(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    net, x = build(spec["model"], spec["n"])
    fn = method_fn(spec["method"])
    fn(net, x[:8], spec["mode"])  # warm-up: lazy imports, vmap and BLAS set-up
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    rss0 = _status_kib("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    k = fn(net, x, spec["mode"])
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kib("VmHWM") - rss0
    times, cpu = [], []
    for _ in range(spec["repeats"] - 1):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(net, x, spec["mode"])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out = {
        "seconds": statistics.median(times) if times else first,
        "cpu_seconds": statistics.median(cpu) if cpu else first_cpu,
        "seconds_first_call": first,
        "seconds_repeats": times,
        "peak_extra_mib": peak / 1024,
        "output_mib": k.numel() * k.element_size() / 2**20,
        "shape": list(k.shape),
        "threads": torch.get_num_threads(),
    }
    if spec["check"]:  # agreement with deepscope's kernel on the first 100 examples
        from deepscope.dynamics import empirical_ntk

        m = min(100, x.shape[0])
        ref = empirical_ntk(net, x[:m], mode=spec["mode"], implementation="factorized")
        out["max_rel_diff_vs_deepscope"] = float((k[:m, :m] - ref).abs().max() / ref.abs().max())
    return out


def run_one(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def matmul_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    torch.set_num_threads(threads)
    a = torch.randn(n, n)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def have_nngeometry() -> bool:
    try:
        import nngeometry  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every measurement")
    ap.add_argument("--quick", action="store_true", help="small sizes (a sanity run, not a benchmark)")
    ap.add_argument("--repeats", type=int, default=5, help="calls per fast method (median reported)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--methods", nargs="+", default=DEEPSCOPE + OTHERS, choices=DEEPSCOPE + OTHERS)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    out_path = args.out or Path(__file__).parent / "results" / ("ntk_speed_quick.json" if args.quick else "ntk_speed.json")
    nng = have_nngeometry()
    load_before = [round(v, 2) for v in os.getloadavg()]
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "python": sys.executable,
            "nngeometry": importlib.metadata.version("nngeometry") if nng else "not importable: skipped",
            "matmul_gflops_float32": round(matmul_gflops(args.threads), 1),
            "load_average_1_5_15_before": load_before,
        },
        "quick": args.quick,
        "memory_method": (
            "fresh subprocess per (case, method); warm-up on 8 examples; /proc/self/clear_refs "
            "reset; peak extra = VmHWM after the first full-size call - VmRSS before it"
        ),
        "cases": {},
    }
    for case in args.cases:
        model, n_full, n_quick, mode = CASES[case]
        n = n_quick if args.quick else n_full
        methods = [m for m in args.methods if not (m == "nngeometry" and (not nng or mode != "full"))]
        if case == "mlp_trace_20k":  # the others would need the (N O)^2 Jacobian products
            methods = [m for m in methods if m in ("auto", "factorized")]
        rows = {}
        for m in methods:
            spec = {"model": model, "n": n, "mode": mode, "method": m, "threads": args.threads,
                    "repeats": 1 if (m in SLOW or n > 5000) else args.repeats, "check": n <= 5000}
            t0 = time.perf_counter()
            rows[m] = run_one(spec, args.timeout)
            print(f"{case:14s} {m:11s} {json.dumps(rows[m])[:160]}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        base = rows.get("auto", {}).get("seconds")
        for r in rows.values():
            if base and "seconds" in r:
                r["time_ratio_vs_deepscope_auto"] = r["seconds"] / base
        result["cases"][case] = {"model": model, "n": n, "mode": mode, "methods": rows}
        if case == "mlp_trace_20k":
            p = sum(q.numel() for q in build(model, 1)[0].parameters())
            result["cases"][case]["others_not_run"] = (
                f"arithmetic, not measured: the per-example Jacobians of all N = {n} inputs "
                f"(tutorial, naive) hold N*O*P*4 B = {n * 10 * p * 4 / 2**30:.1f} GiB; nngeometry's "
                f"dense (O, N, O, N) kernel holds {(10 * n) ** 2 * 4 / 2**30:.1f} GiB"
            )
    result["machine"]["load_average_1_5_15_after"] = [round(v, 2) for v in os.getloadavg()]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
