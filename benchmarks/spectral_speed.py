"""Speed of the spectral-bias sinusoid experiment and overhead of the spectrum recorder.

    OMP_NUM_THREADS=1 python benchmarks/spectral_speed.py --threads 1            # ~3 min
    OMP_NUM_THREADS=1 python benchmarks/spectral_speed.py --threads 1 --full     # + the real run

Writes benchmarks/results/spectral_speed.json with

- ``paper_size``: seconds per Adam step of the paper's network (1 -> 256 x5 -> 1, 200 points,
  full batch), measured over ``--steps`` steps and extrapolated to one seed of
  ``deepscope run spectral-sinusoids`` (60k steps x 2 amplitude cases, recording every 100).
  With ``--full`` the recipe itself is also run once at that size and its wall time stored.
- ``recorder_overhead``: the same training with and without ``SpectrumRecorder`` (every 100
  steps, logging into a Run's metrics.jsonl), same steps, alternated ``--repeats`` times in one
  process; the ratio of the median times.
- ``lockstep_loop``: the recipes' loop, ``deepscope.dynamics.spectral_train.train_lockstep``
  (one model, ``log_spectra`` every 100 steps, a Run writing metrics and a checkpoint every
  2000 steps), timed in the same alternation: its median over the hand-written loop's with
  the recorder, i.e. what the shared loop costs over a bare one.

- ``batched_vs_sequential``: the recipe's default at paper size, 3 seeds x 2 amplitude cases =
  6 networks, ``--batched-steps`` steps of ``train_lockstep(implementation="stacked")`` (one BatchedMLP of the 6) against
  ``train_lockstep`` (the 6 networks stepped one after the other, i.e. 6 separate runs' work),
  alternated ``--batched-repeats`` times, at 1 thread and at ``--threads`` threads; medians
  extrapolated to 60k steps. ``--full-batched`` also runs ``deepscope run spectral-sinusoids``
  (3 seeds) once, batched, and stores its wall time (that takes longer than 6 minutes here).

Wall times on a shared machine move with its load: the file records the load average and
``torch.get_num_threads()`` beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from deepscope.dynamics.spectral import SpectrumRecorder, sum_of_sinusoids
from deepscope.dynamics.spectral_train import log_spectra, train_lockstep
from deepscope.nets import MLP
from deepscope.train import Run
from deepscope.train.rng import fork_seeded

FREQS = list(range(5, 55, 5))
PAPER_STEPS = 60_000
RECORD_EVERY = 100


def _setup(seed: int = 0):
    z = torch.arange(200, dtype=torch.float32) / 200
    x = z[:, None]
    y = sum_of_sinusoids(z, FREQS, [1.0] * len(FREQS), [0.0] * len(FREQS))
    with fork_seeded(torch.Generator().manual_seed(seed)):
        net = MLP(1, [256] * 5, 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    return x, y, net, opt


def train(steps: int, *, record: bool, run: Run | None) -> tuple[float, float]:
    """(seconds for ``steps`` full-batch Adam steps, seconds of those spent in the recorder)."""
    x, y, net, opt = _setup()
    rec = SpectrumRecorder(x, every=RECORD_EVERY, freqs=FREQS, log=run.log) if record else None
    in_rec = 0.0
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        loss = ((net(x).squeeze(-1) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rec is not None:
            t1 = time.perf_counter()
            rec(step, net)
            in_rec += time.perf_counter() - t1
    return time.perf_counter() - t0, in_rec


def train_shared_loop(steps: int, run: Run) -> float:
    """Seconds for ``steps`` steps of ``train_lockstep`` on the same problem (one model)."""
    x, y, _, _ = _setup()
    t0 = time.perf_counter()
    train_lockstep(x, {"a": y}, generator=torch.Generator().manual_seed(0), run=run, steps=steps,
                   record_every=RECORD_EVERY, checkpoint_every=2000,
                   record=log_spectra(x, {"a": [1.0] * len(FREQS)}, freqs=FREQS))
    return time.perf_counter() - t0


def batched_vs_sequential(steps: int, repeats: int, threads: list[int]) -> dict:
    """Seconds for ``steps`` steps of the 6 paper-size networks, batched vs one after another."""
    z = torch.arange(200, dtype=torch.float32) / 200
    x = z[:, None]
    names, groups, scale, targets = [], [], {}, {}
    for s in range(3):
        phases = torch.rand(len(FREQS), generator=torch.Generator().manual_seed(s)) * 6.28
        for case, amps in (("equal", [1.0] * len(FREQS)), ("increasing", [0.1 * (i + 1) for i in range(len(FREQS))])):
            targets[f"{case}_s{s}"] = sum_of_sinusoids(z, FREQS, amps, phases.tolist())
            scale[f"{case}_s{s}"] = amps
        groups.append([f"equal_s{s}", f"increasing_s{s}"])
    names = list(targets)
    out: dict = {"networks": len(names), "steps": steps, "repeats": repeats}
    for nt in threads:
        torch.set_num_threads(nt)
        for impl in ("stacked", "separate"):  # warm-up: allocator, kernels, thread pool
            train_lockstep(x, targets, generator=torch.Generator().manual_seed(0), steps=5,
                           share_init=groups, implementation=impl)
        times: dict[str, list[float]] = {"batched": [], "sequential": []}
        for _ in range(repeats):
            for key, impl in (("batched", "stacked"), ("sequential", "separate")):
                t0 = time.perf_counter()
                train_lockstep(x, targets, generator=torch.Generator().manual_seed(0), steps=steps,
                               share_init=groups, record_every=RECORD_EVERY,
                               checkpoint_every=10 * steps, implementation=impl,
                               record=log_spectra(x, scale, freqs=FREQS))
                times[key].append(time.perf_counter() - t0)
        b, q = statistics.median(times["batched"]), statistics.median(times["sequential"])
        out[f"threads_{nt}"] = {
            "seconds_batched": times["batched"], "seconds_sequential": times["sequential"],
            "ms_per_step_all_6_batched": 1e3 * b / steps,
            "ms_per_step_all_6_sequential": 1e3 * q / steps,
            "speedup": q / b,
            "extrapolated_paper_size_seconds_batched": b / steps * PAPER_STEPS,
            "extrapolated_paper_size_seconds_sequential": q / steps * PAPER_STEPS,
            "gflops_batched": 6 * _flops_per_step() / (b / steps) / 1e9,
        }
    return out


def _flops_per_step() -> float:
    """Multiply-adds x 2 of one Adam step of the paper's network on 200 points (fwd + bwd)."""
    macs = 200 * (256 + 4 * 256 * 256 + 256)                 # forward
    return 2 * (3 * macs - 200 * 256)                         # backward: 2x, no input gradient


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="steps per timed training")
    ap.add_argument("--repeats", type=int, default=5, help="alternated with/without pairs")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--full", action="store_true", help="also run the paper-size recipe once (slow)")
    ap.add_argument("--batched-steps", type=int, default=200, help="steps per batched/sequential timing")
    ap.add_argument("--batched-repeats", type=int, default=3)
    ap.add_argument("--skip-recorder", action="store_true",
                    help="only the batched-vs-sequential entry (keeps the other fields of --out)")
    ap.add_argument("--full-batched", action="store_true",
                    help="also run spectral-sinusoids at paper size, 3 seeds, batched (slow)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "spectral_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.skip_recorder:
        result = json.loads(args.out.read_text()) if args.out.exists() else {}
    else:
        result = recorder_and_loop(args)
    result["batched_vs_sequential"] = batched_vs_sequential(
        args.batched_steps, args.batched_repeats, sorted({1, args.threads}))
    result["batched_vs_sequential"]["load_average_1_5_15_after"] = [round(v, 2) for v in os.getloadavg()]
    torch.set_num_threads(args.threads)
    if args.full_batched:
        from deepscope.recipes.spectral_sinusoids import Config
        from deepscope.runner import execute_recipe

        tmp = Path(tempfile.mkdtemp(prefix="spectral_speed_"))
        t0 = time.perf_counter()
        res = execute_recipe(
            "spectral-sinusoids",
            Config(n_seeds=3, out=tmp / "full3", progress=False, threads=args.threads, device="cpu"),
            quiet=True,
        )
        result["batched_vs_sequential"]["measured_full_run_3_seeds_seconds"] = time.perf_counter() - t0
        result["batched_vs_sequential"]["measured_full_run_spearman"] = res["spearman"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, v in result["batched_vs_sequential"].items():
        if key.startswith("threads_"):
            print(f"{key}: 6 networks, batched {v['ms_per_step_all_6_batched']:.1f} ms/step vs "
                  f"sequential {v['ms_per_step_all_6_sequential']:.1f} ms/step ({v['speedup']:.2f}x); "
                  f"paper size extrapolated {v['extrapolated_paper_size_seconds_batched'] / 60:.1f} min "
                  f"vs {v['extrapolated_paper_size_seconds_sequential'] / 60:.1f} min; "
                  f"{v['gflops_batched']:.0f} GFLOP/s")
    print(f"wrote {args.out}")


def recorder_and_loop(args) -> dict:
    """The recorder overhead, the shared loop's cost and the one-seed extrapolation."""

    tmp = Path(tempfile.mkdtemp(prefix="spectral_speed_"))
    run = Run(tmp / "rec", config={"bench": "spectral_speed"}, seed=0, progress=False)
    train(200, record=True, run=run)  # warm-up (allocator, kernels)
    with_rec, without, in_rec, shared = [], [], [], []
    for i in range(args.repeats):
        without.append(train(args.steps, record=False, run=None)[0])
        total, spent = train(args.steps, record=True, run=run)
        with_rec.append(total)
        in_rec.append(spent)
        loop_run = Run(tmp / f"loop{i}", config={"bench": "spectral_speed"}, progress=False)
        shared.append(train_shared_loop(args.steps, loop_run))
    t_without, t_with = statistics.median(without), statistics.median(with_rec)
    per_step = t_with / args.steps
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        },
        "paper_size": {
            "method": (
                f"measured {args.steps} steps of one model (recording every {RECORD_EVERY}), "
                f"median of {args.repeats}; extrapolated x {PAPER_STEPS} steps x 2 models "
                f"(one seed = both amplitude cases)"
            ),
            "seconds_per_step": per_step,
            "extrapolated_seconds_one_seed": per_step * PAPER_STEPS * 2,
            "extrapolated_seconds_one_model": per_step * PAPER_STEPS,
        },
        "recorder_overhead": {
            "steps": args.steps,
            "record_every": RECORD_EVERY,
            "seconds_without": without,
            "seconds_with": with_rec,
            "ratio_median_with_over_without": t_with / t_without,
            "overhead_percent": 100 * (t_with / t_without - 1),
            "seconds_inside_recorder": in_rec,
            "recorder_share_percent_of_with_runs": 100 * sum(in_rec) / sum(with_rec),
            "note": (
                "the A/B ratio moves with the machine's load; the share of time spent inside "
                "the recorder calls (timed in the same runs) is the steadier estimate"
            ),
        },
    }
    result["lockstep_loop"] = {
        "steps": args.steps,
        "seconds": shared,
        "ratio_median_over_hand_written_with_recorder": statistics.median(shared) / t_with,
    }
    if args.full:
        from deepscope.recipes.spectral_sinusoids import Config
        from deepscope.runner import execute_recipe

        t0 = time.perf_counter()
        res = execute_recipe(
            "spectral-sinusoids",
            Config(n_seeds=1, out=tmp / "full", progress=False, threads=args.threads, device="cpu"),
            quiet=True,
        )
        result["paper_size"]["measured_full_run_seconds"] = time.perf_counter() - t0
        result["paper_size"]["measured_full_run_spearman"] = res["spearman"]
    ov = result["recorder_overhead"]
    print(
        f"{per_step * 1e3:.2f} ms/step -> one seed at paper size ~ "
        f"{math.ceil(per_step * PAPER_STEPS * 2 / 60)} min; recorder overhead "
        f"{ov['overhead_percent']:+.2f}% A/B, {ov['recorder_share_percent_of_with_runs']:.2f}% "
        f"inside the recorder; train_lockstep / hand-written loop "
        f"{result['lockstep_loop']['ratio_median_over_hand_written_with_recorder']:.3f} "
        f"(threads={torch.get_num_threads()})"
    )
    return result


if __name__ == "__main__":
    main()
