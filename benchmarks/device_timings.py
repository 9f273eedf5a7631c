"""Timings of the paper-scale paths on one device, each beside the CPU where that is cheap.

    python benchmarks/device_timings.py --device cuda --out timings.json     # ~2 minutes on a GPU
    python benchmarks/device_timings.py --device cpu --tiny --out t.json     # the same code, tiny

Run by ``make gpu-check`` (scripts/gpu_check.py). Measured, in one process:

1. ``ntk_mlp``: the full tangent kernel (``empirical_ntk``) of an MLP 40-256-256-10 on 500
   inputs; the CPU figure beside it (0.37 s on 2 threads in benchmarks/results/ntk_speed.json).
2. ``ntk_resnet18``: the per-layer tangent-kernel traces of a ResNet-18 without BatchNorm on
   100 CIFAR-shaped inputs (``mode="trace"``, per layer); CPU only at ``--tiny``.
3. ``spectral``: the spectral-sinusoids default at paper size (3 seeds x 2 amplitude cases = 6
   networks 1-256x5-1, 200 points, full batch, Adam) trained batched for ``--spectral-steps``
   steps, extrapolated to the paper's 60,000 steps (the goal: <= 5 minutes on one GPU).
4. ``epoch_ce`` and ``epoch_crosssplit``: one epoch of cross-entropy and of CrossSplit with a
   PreAct-ResNet-18 (BatchNorm) on ``--n`` synthetic CIFAR-shaped images (no files needed),
   float32 and, on CUDA, mixed precision; seconds per epoch, and per 50,000 images.

Each figure is the median of ``--repeats`` calls after one warm-up; CUDA timings synchronise
the device. Writes JSON with the device name, torch version and thread count.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernels, allocator, thread pool
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ntk_mlp(device: torch.device, tiny: bool, repeats: int) -> dict:
    from deepscope.dynamics import empirical_ntk
    from deepscope.nets import MLP

    n = 50 if tiny else 500
    g = torch.Generator().manual_seed(0)
    net = MLP(40, [256, 256], 10)
    x = torch.randn(n, 40, generator=g)
    out = {"inputs": n}
    for dev in dict.fromkeys([device, torch.device("cpu")]):
        m, xd = net.to(dev), x.to(dev)
        out[f"seconds_{dev.type}"] = _time(lambda m=m, xd=xd: empirical_ntk(m, xd), dev, repeats)
    return out


def ntk_resnet18(device: torch.device, tiny: bool, repeats: int) -> dict:
    from deepscope.dynamics import empirical_ntk
    from deepscope.nets import build_net

    n, width = (4, 8) if tiny else (100, 64)
    net = build_net("resnet18", input_shape=(3, 32, 32), num_classes=10, width=width).to(device)
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    sec = _time(lambda: empirical_ntk(net, x, mode="trace", per_layer=True), device, repeats)
    return {"inputs": n, "width": width, f"seconds_{device.type}": sec}


def spectral(device: torch.device, tiny: bool, steps: int) -> dict:
    from deepscope.dynamics.spectral import sum_of_sinusoids
    from deepscope.dynamics.spectral_train import train_lockstep

    freqs = list(range(5, 55, 5))
    z = torch.arange(200, dtype=torch.float32) / 200
    targets, groups = {}, []
    for s in range(3):
        phases = (torch.rand(len(freqs), generator=torch.Generator().manual_seed(s)) * 6.28).tolist()
        for case, amps in (("equal", [1.0] * 10), ("increasing", [0.1 * (i + 1) for i in range(10)])):
            targets[f"{case}_s{s}"] = sum_of_sinusoids(z, freqs, amps, phases)
        groups.append([f"equal_s{s}", f"increasing_s{s}"])
    width, depth = (16, 3) if tiny else (256, 6)

    def go(k: int) -> None:
        train_lockstep(z[:, None], targets, generator=torch.Generator().manual_seed(0), device=device,
                       width=width, depth=depth, steps=k, share_init=groups, record_every=10 * k,
                       checkpoint_every=10 * k, implementation="stacked")

    go(5)
    _sync(device)
    t0 = time.perf_counter()
    go(steps)
    _sync(device)
    sec = time.perf_counter() - t0
    return {"networks": 6, "width": width, "depth": depth, "steps_timed": steps,
            "seconds_timed": sec, "extrapolated_seconds_60k_steps": sec / steps * 60_000,
            "goal_seconds": 300}


def epochs(device: torch.device, tiny: bool, n: int, repeats: int) -> dict:
    from deepscope.robust import train_ce, train_crosssplit

    n = 64 if tiny else n
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    kw = {"width": 8} if tiny else {}
    out = {"images": n}
    for name, fn, extra in (("ce", train_ce, {}),
                            ("crosssplit", train_crosssplit, {"warmup_epochs": 0})):
        for amp in ([False, True] if device.type == "cuda" else [False]):
            opts = {"epochs": 1, "batch_size": 16 if tiny else 128, "device": str(device), "amp": amp}
            sec = _time(lambda fn=fn, opts=opts, extra=extra: fn(
                x, y, num_classes=10, generator=torch.Generator().manual_seed(0),
                net="preact-resnet18", net_kwargs={"norm": "batch", **kw}, options=opts, **extra),
                device, repeats)
            key = f"epoch_{name}{'_amp' if amp else ''}"
            out[key] = {"seconds": sec, "seconds_per_50k_images": sec / n * 50_000}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="'cuda', 'cuda:N' or 'cpu'")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: checks the code, not a benchmark")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per figure (median)")
    ap.add_argument("--spectral-steps", type=int, default=2000, help="steps of the spectral run timed")
    ap.add_argument("--n", type=int, default=10_000, help="synthetic images per epoch timing")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/device_timings.json"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    repeats = 1 if args.tiny else args.repeats
    res = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "tiny": args.tiny}
    for name, fn in (("ntk_mlp", lambda: ntk_mlp(device, args.tiny, repeats)),
                     ("ntk_resnet18", lambda: ntk_resnet18(device, args.tiny, repeats)),
                     ("spectral", lambda: spectral(device, args.tiny, 20 if args.tiny else args.spectral_steps)),
                     ("epochs", lambda: epochs(device, args.tiny, args.n, repeats))):
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:  # one failing path must not hide the others' numbers
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        res[name]["wall_seconds"] = round(time.perf_counter() - t0, 2)
        print(name, json.dumps(res[name]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    if any("error" in v for v in res.values() if isinstance(v, dict)):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
