"""The lazy-vs-hasty toy: 100 seeds as one batched model vs 100 sequential single-seed runs.

    OMP_NUM_THREADS=1 python benchmarks/batched_speed.py --threads 1          # ~4 min loaded
    OMP_NUM_THREADS=2 python benchmarks/batched_speed.py --threads 2 --whole-toy   # the recipe

``--whole-toy`` runs only ``deepscope run lazy-vs-hasty`` (the toy: 2 toys x 2 alphas x 100
seeds, grid maps, statistics, figure) in this process, timing it by stage, and adds
``whole_toy`` to the JSON (other entries kept).

Writes benchmarks/results/batched_speed.json with

- ``step_ms``: one full-batch training step (forward, backward, update) of K = 100 networks
  2-60-60-60-1 on 50 points each, for the two stacking implementations of
  ``deepscope.nets.batched`` (``bmm``: baddbmm per layer; ``vmap``: stack_module_state + vmap),
  ``manual`` (``train_full_batch``'s default step for ReLU MLPs: the backward pass written
  out, no autograd graph, one foreach update) and of one ordinary MLP; median over ``--repeats`` blocks of ``--block`` steps, alternated;
  ``step_ms_k4``: the same at K = 4 (``--small-k``), where per-call overheads weigh more.
- ``toy_alpha1``: the recipe's toy protocol on the disk at alpha = 1 (gradient descent lr 0.1
  until each seed's training loss reaches 0.5, 0.4, 0.3): ``train_full_batch`` on the stack of
  100 seeds vs the same 100 seeds one after the other with a plain single-network loop, wall
  time of each, and whether they agree (level-crossing steps equal, largest parameter
  difference of the snapshots).
- ``lazy_fixed_steps``: alpha = 100 for ``--lazy-steps`` steps, batched vs sequential (lazy
  seeds need thousands of steps; a fixed count gives the per-step ratio without an hour of
  sequential runs).

Wall times on a shared machine move with its load: the load average before and after and
``torch.get_num_threads()`` are stored beside the numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepscope.dynamics import (
    AlphaScaled,
    example_losses,
    full_batch_step,
    toy_setup,
    train_full_batch,
)
from deepscope.nets.batched import stack_models

LEVELS = [0.5, 0.4, 0.3]
LR = 0.1


def single_seed(x, y, net, alpha, *, levels, max_steps):
    """The per-seed toy: plain gradient descent on one MLP; (crossing steps, last snapshot)."""
    model = AlphaScaled(copy.deepcopy(net), alpha)
    h0 = model.init(x).detach()
    params = list(model.model.parameters())
    steps = [-1] * len(levels)
    snap = None
    for step in range(1, max_steps + 1):
        loss = example_losses(model(x, init_output=h0), y)[0].mean()
        value = loss.item()
        for i, lv in enumerate(levels):
            if steps[i] < 0 and value <= lv:
                steps[i] = step - 1
                if i == len(levels) - 1:
                    snap = [p.detach().clone() for p in params]
        if steps[-1] >= 0:
            break
        grads = torch.autograd.grad(model.objective(loss), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(LR * g)
    return steps, snap


def step_times(x, y, nets, *, block, repeats):
    """Median ms per training step: bmm stack, vmap stack, the hand-written step, one MLP."""
    cases = {impl: stack_models(nets, implementation=impl) for impl in ("bmm", "vmap")}
    single = copy.deepcopy(nets[0])
    s = 2.0 * y - 1.0
    stack = AlphaScaled(stack_models(nets, implementation="bmm"), 1.0)
    params = [p.detach().clone() for p in stack.model.parameters()]
    h0 = stack.init(x).detach()
    manual = full_batch_step(stack, "manual")
    ones = torch.ones(len(nets), 1, 1)

    def run_manual():
        # train_full_batch's step: loss and gradients by hand, one foreach update, loss to CPU
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(block):
                loss, grads = manual(params, x, h0, y, ones)
                loss.cpu()
                torch._foreach_add_(params, grads, alpha=-LR)
        return (time.perf_counter() - t0) / block * 1e3

    def run(model, xx, ss):
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        t0 = time.perf_counter()
        for _ in range(block):
            loss = F.softplus(-ss * model(xx).squeeze(-1)).mean(-1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / block * 1e3

    times = {"bmm": [], "vmap": [], "manual": [], "single": []}
    for _ in range(repeats):
        for impl, model in cases.items():
            times[impl].append(run(model, x, s))
        times["manual"].append(run_manual())
        times["single"].append(run(single, x[0], s[0]))
    return {k: statistics.median(v) for k, v in times.items()}


def whole_toy(threads: int) -> dict:
    """Wall and CPU seconds of the recipe's toy, by stage (wrapped library calls)."""
    import resource
    import tempfile

    from deepscope.dynamics import full_batch, lazy_vs_hasty
    from deepscope.report import figures
    from deepscope.runner import execute_recipe

    stages: dict[str, float] = {}

    def timed(owner, name, label):
        fn = getattr(owner, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                stages[label] = stages.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, wrapper)
        return fn

    patched = [(full_batch, "train_full_batch", "training (train_full_batch)"),
               (full_batch, "snapshot_outputs", "grid outputs at the snapshots"),
               (lazy_vs_hasty, "toy_setup", "data and initial networks"),
               (figures, "save", "figure")]
    originals = [(owner, name, timed(owner, name, label)) for owner, name, label in patched]
    out = Path(tempfile.mkdtemp(prefix="lvh_toy_"))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        from deepscope.recipes.lazy_vs_hasty import Config

        res = execute_recipe("lazy-vs-hasty", Config(out=out, progress=False, threads=threads,
                                                     device="cpu"), quiet=True)
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    stages["other (sub-run bookkeeping, statistics, result files)"] = wall - sum(stages.values())
    return {"wall_s": wall, "cpu_user_s": r1.ru_utime - r0.ru_utime,
            "cpu_sys_s": r1.ru_stime - r0.ru_stime, "threads": threads,
            "stages_wall_s": stages, "recipe_seconds": res.get("seconds"),
            "headline": res["headline"], "run_dir": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--block", type=int, default=50, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=5, help="alternated blocks per implementation")
    ap.add_argument("--small-k", type=int, default=4, help="also time the step at this K")
    ap.add_argument("--lazy-steps", type=int, default=300)
    ap.add_argument("--max-steps", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "batched_speed.json")
    ap.add_argument("--whole-toy", action="store_true",
                    help="only time `deepscope run lazy-vs-hasty` (the toy) by stage")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    if args.whole_toy:
        res = json.loads(args.out.read_text()) if args.out.exists() else {}
        res["whole_toy"] = {"load_before": load_before, **whole_toy(args.threads),
                            "load_after": os.getloadavg()}
        print("whole toy:", json.dumps(res["whole_toy"], indent=1), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.out}")
        return

    x, y, nets = toy_setup("disk", args.seeds, points=50, hidden=(60, 60, 60))
    res = {"seeds": args.seeds, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.machine(), "load_before": load_before}

    res["step_ms"] = step_times(x, y, nets, block=args.block, repeats=args.repeats)
    print("step ms:", {k: round(v, 3) for k, v in res["step_ms"].items()}, flush=True)
    k = args.small_k
    res[f"step_ms_k{k}"] = step_times(x[:k], y[:k], nets[:k], block=args.block, repeats=args.repeats)
    print(f"step ms at K = {k}:", {n: round(v, 3) for n, v in res[f"step_ms_k{k}"].items()}, flush=True)

    # the alpha = 1 toy protocol, batched and sequential
    t0 = time.perf_counter()
    batched = train_full_batch(AlphaScaled(stack_models(nets), 1.0), x, y, levels=LEVELS, lr=LR,
                               max_steps=args.max_steps)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    seq = [single_seed(x[k], y[k], nets[k], 1.0, levels=LEVELS, max_steps=args.max_steps)
           for k in range(args.seeds)]
    t_seq = time.perf_counter() - t0
    mism = sum(s != batched.steps[:, k].tolist() for k, (s, _) in enumerate(seq))
    names = list(batched.snapshots[-1])
    diff = max(float((batched.snapshots[-1][n][k] - (p.T if p.ndim == 2 else p)).abs().max())
               for k, (_, snap) in enumerate(seq) if snap is not None for n, p in zip(names, snap))
    res["toy_alpha1"] = {
        "batched_s": t_batched, "sequential_s": t_seq, "speedup": t_seq / t_batched,
        "seeds_with_different_crossing_steps": mism, "max_abs_param_diff_last_snapshot": diff,
        "steps_to_0.3_median": float(batched.steps[-1].float().median()),
    }
    print("toy alpha=1:", res["toy_alpha1"], flush=True)

    # alpha = 100, a fixed number of steps (no level is reached that early)
    far = [1e-6]
    t0 = time.perf_counter()
    train_full_batch(AlphaScaled(stack_models(nets), 100.0), x, y, levels=far, lr=LR,
                     max_steps=args.lazy_steps)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(args.seeds):
        single_seed(x[k], y[k], nets[k], 100.0, levels=far, max_steps=args.lazy_steps)
    t_seq = time.perf_counter() - t0
    res["lazy_fixed_steps"] = {"steps": args.lazy_steps, "batched_s": t_batched, "sequential_s": t_seq,
                               "speedup": t_seq / t_batched}
    print("alpha=100 fixed steps:", res["lazy_fixed_steps"], flush=True)
    res["load_after"] = os.getloadavg()
    if args.out.exists():  # keep the --whole-toy entry of an earlier run
        old = json.loads(args.out.read_text())
        if "whole_toy" in old:
            res["whole_toy"] = old["whole_toy"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
