"""One prepared check of every CUDA path, for the few minutes a GPU machine is lent.

    python scripts/gpu_check.py --device cuda --out gpu-check      # on the GPU machine (<= 8 min)
    python scripts/gpu_check.py --device cpu --out gpu-check-cpu   # the same steps, tiny, on the CPU

Steps, each in its own process with its own time limit (a step that fails or runs out of time
is recorded and the next one runs):

1. ``env``: torch and CUDA versions, the GPUs, the CPU threads.
2. ``device_tests``: the tests marked ``cuda`` (tests/cuda): every training loop on the device
   against the CPU (and AMP on vs off), a checkpoint written on the device and resumed to the
   same numbers, ``deepscope.load`` onto the device and back.
3. ``torchrun``: the distributed loops test with one process per GPU on the device's backend
   (NCCL on CUDA; gloo with two processes on the CPU), equal to one process.
4. ``timings``: ``benchmarks/device_timings.py`` — the tangent kernel (MLP on 500 inputs, full;
   ResNet-18 without BatchNorm on 100 CIFAR-shaped inputs, per layer), a timed fraction of the
   paper-size spectral run (extrapolated), one epoch of cross-entropy and of CrossSplit with a
   PreAct-ResNet-18 on synthetic CIFAR-shaped data; each beside the CPU where that is cheap.
5. ``recipes``: every recipe's ``--quick`` run on the device, end to end.

Writes ``OUT/gpu_check.json`` (one record per step: status, seconds, numbers, the output's
tail) and ``OUT/gpu_check.md`` (the same as a table), and exits 1 if a step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (step, seconds allowed on CUDA, seconds allowed on the CPU at the tiny size)
LIMITS = {"env": (60, 60), "device_tests": (120, 300), "torchrun": (90, 240),
          "timings": (150, 300), "recipes": (150, 600)}


def _run(cmd: list[str], *, timeout: float, env: dict | None = None) -> dict:
    """Run one step's command; its status, seconds and the tail of its output."""
    start = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **(env or {})})
        status = "passed" if p.returncode == 0 else f"failed (exit {p.returncode})"
        out = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        status = f"timed out after {timeout:.0f} s"
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    return {"status": status, "seconds": round(time.time() - start, 1), "command": " ".join(cmd),
            "tail": out[-3000:]}


def _env_step(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.machine()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    ok = device == "cpu" or torch.cuda.is_available()
    return {"status": "passed" if ok else "failed (no CUDA device)", "seconds": 0.0,
            "numbers": info, "command": "", "tail": ""}


def _procs(cpu: bool) -> int:
    """One process per GPU (a one-process NCCL group on one GPU); two gloo processes on the CPU."""
    if cpu:
        return 2
    import torch

    return max(torch.cuda.device_count(), 1)


def _recipes() -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from deepscope.runner import recipe_modules

    return sorted(recipe_modules())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="'cuda' (the check) or 'cpu' (the same steps, tiny)")
    ap.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder for the JSON and Markdown summaries")
    ap.add_argument("--steps", nargs="+", default=list(LIMITS), choices=list(LIMITS),
                    help="run only these steps")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = args.device == "cpu"
    py = sys.executable
    dev_env = {"DEEPSCOPE_CHECK_DEVICE": args.device, "PYTHONUNBUFFERED": "1"}
    if cpu:
        dev_env["OMP_NUM_THREADS"] = "1"
    report: dict = {"device": args.device, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    t0 = time.time()
    for step in args.steps:
        limit = LIMITS[step][1 if cpu else 0]
        if step == "env":
            rec = _env_step(args.device)
        elif step == "device_tests":
            rec = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                        "tests/cuda"], timeout=limit, env=dev_env)
        elif step == "torchrun":
            rec = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "distributed",
                        "tests/distributed/test_loops.py", "-k", "test_two_processes_equal_one"],
                       timeout=limit, env={**dev_env, "DEEPSCOPE_TORCHRUN_PROCS": str(_procs(cpu))})
        elif step == "timings":
            timings = args.out / "timings.json"
            cmd = [py, "benchmarks/device_timings.py", "--device", args.device, "--out", str(timings)]
            rec = _run(cmd + (["--tiny"] if cpu else []), timeout=limit, env=dev_env)
            if timings.exists():
                rec["numbers"] = json.loads(timings.read_text())
        else:  # recipes
            runs, per = args.out / "recipes", {}
            rec = {"status": "passed", "seconds": 0.0, "command": "deepscope run R --quick", "tail": ""}
            deadline = time.time() + limit
            for name in _recipes():
                left = deadline - time.time()
                if left < 5:
                    per[name] = "not run (step's time used up)"
                    rec["status"] = "failed (time used up)"
                    continue
                r = _run([py, "-m", "deepscope.cli", "run", name, "--quick", "--device", args.device,
                          "--no-progress", "--out", str(runs / name)], timeout=left, env=dev_env)
                per[name] = f"{r['status']} in {r['seconds']} s"
                rec["seconds"] = round(rec["seconds"] + r["seconds"], 1)
                if r["status"] != "passed":
                    rec["status"] = "failed"
                    rec["tail"] += f"--- {name}\n{r['tail'][-1500:]}\n"
            rec["numbers"] = per
        report["steps"][step] = rec
        print(f"{step:13s} {rec['status']} ({rec['seconds']} s)", flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(_markdown(report))
    return 0 if all(r["status"] == "passed" for r in report["steps"].values()) else 1


def _markdown(report: dict) -> str:
    lines = [f"# Device check on `{report['device']}` ({report['started']}, {report['seconds']} s)", "",
             "| step | status | seconds | numbers |", "|---|---|---|---|"]
    for step, r in report["steps"].items():
        nums = json.dumps(r.get("numbers", {}))
        lines.append(f"| {step} | {r['status']} | {r['seconds']} | {nums[:400]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
