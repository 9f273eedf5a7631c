"""The factorised tangent kernel's per-layer choice: Gram form against the layer's Jacobian.

``empirical_ntk(..., implementation="factorized")`` computes each Linear/Conv layer's kernel
block either by the Gram form (input Gram times gradient Gram, summed over pairs of positions)
or by contracting the layer's per-example Jacobian, whichever its cost model
(``deepscope.dynamics.ntk._form_costs``) says is cheaper. This script times both forms on
synthetic layer features (N = 100 examples, 10 outputs, the same N x N block) for several
(positions S, input size D, output channels C) and each kernel mode, and reports:

- the measured time of each form and their ratio;
- ``beta``: the Gram form's time beyond its matrix-multiply FLOPs, per element of the
  (.., S, .., S) temporary it reduces, in units of the Jacobian form's time per multiply-add
  (the constant ``_REDUCE_COST`` holds one per mode);
- whether the cost model, and the plain FLOP count it replaced, pick the faster form;
- end to end: the per-layer full kernel of SmallCNN(32, 64) (hidden 128) on 100 8x8 inputs, the
  tangent-kernel tracker's call, with the cost model and with the plain FLOP count (best of
  ``--reps``).

    OMP_NUM_THREADS=1 python benchmarks/ntk_gram_cost.py --threads 1   # ~1 min; writes results/ntk_gram_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from deepscope.dynamics import ntk

SHAPES = [(4, 577, 64), (9, 289, 64), (16, 289, 64), (16, 145, 32), (4, 1153, 128), (9, 577, 16),
          (25, 73, 8)]


def features(mode: str, n: int, o: int, s: int, d: int, c: int, g: torch.Generator):
    """Random layer inputs and output gradients in both of ntk's forms (as _layer_features stores them)."""
    a = torch.randn(n, s, d, generator=g)
    grad = torch.randn(o, n, s, c, generator=g)
    return ntk._layer_form(mode, a, grad, gram=True), ntk._layer_form(mode, a, grad, gram=False)[1]


def best_of(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def plain_flops(mode: str, o: int, s: int, d: int, c: int) -> tuple[int, int]:
    """The cost model before the reduction term (FLOP count only)."""
    if mode == "full":
        return s * s * d + o * o * s * s * (c + 1), o * o * d * c
    return s * s * d + o * s * s * (c + 1), o * d * c


def small_cnn_kernel(reps: int) -> dict:
    """Per-layer full kernel of SmallCNN(32, 64) on 100 digits-sized inputs, both cost models."""
    from deepscope.dynamics import empirical_ntk
    from deepscope.nets import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(10, input_shape=(1, 8, 8), channels=(32, 64), hidden=128).eval()
    x = torch.randn(100, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out, model_costs = {}, ntk._form_costs
    try:
        for name, costs in (("model", model_costs), ("plain_flops", plain_flops)):
            ntk._form_costs = costs
            out[f"seconds_{name}"] = best_of(lambda: empirical_ntk(net, x, per_layer=True), reps)
    finally:
        ntk._form_costs = model_costs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=100, help="examples per block side")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ntk_gram_cost.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    o, n = 10, args.n
    rows = []
    for mode in ("full", "trace", "diagonal"):
        ctx = type("Ctx", (), {"n_out": o, "mode": mode, "dtype": torch.float32})()
        for s, d, c in SHAPES:
            fg, j = features(mode, n, o, s, d, c, g)
            t_gram = best_of(lambda ctx=ctx, fg=fg: ntk._gram_block(ctx, fg, fg, None), args.reps)
            t_jac = best_of(lambda j=j, mode=mode: ntk._contract_jac(j, j, mode), args.reps)
            model_gram, model_jac = ntk._form_costs(mode, o, s, d, c)
            flop_gram, flop_jac = plain_flops(mode, o, s, d, c)
            reduced = {"full": o * o * s * s, "trace": s * s, "diagonal": o * s * s}[mode]
            matmul_gram = flop_gram - (o * o if mode == "full" else o) * s * s
            per_fma = t_jac / (flop_jac * n * n)
            row = {"mode": mode, "positions": s, "d_in": d, "d_out": c,
                   "seconds_gram": t_gram, "seconds_jacobian": t_jac, "ratio_gram_over_jac": t_gram / t_jac,
                   "beta": (t_gram / (n * n) - matmul_gram * per_fma) / (reduced * per_fma),
                   "faster": "gram" if t_gram < t_jac else "jacobian",
                   "model_picks": "gram" if model_gram <= model_jac else "jacobian",
                   "plain_flops_picks": "gram" if flop_gram <= flop_jac else "jacobian"}
            rows.append(row)
            print(f"{mode:8s} S={s:2d} D={d:4d} C={c:3d}: gram {t_gram * 1e3:7.1f} ms, jacobian "
                  f"{t_jac * 1e3:7.1f} ms (x{row['ratio_gram_over_jac']:.2f}), beta {row['beta']:5.0f}; "
                  f"faster {row['faster']}, model {row['model_picks']}, plain FLOPs {row['plain_flops_picks']}",
                  flush=True)
    end_to_end = small_cnn_kernel(args.reps)
    print(f"SmallCNN(32, 64), per-layer full kernel of 100 inputs: {end_to_end['seconds_model']:.2f} s "
          f"with the cost model, {end_to_end['seconds_plain_flops']:.2f} s with the plain FLOP count")
    out = {"benchmark": "ntk_gram_cost", "threads": args.threads, "torch": torch.__version__,
           "machine": platform.processor() or platform.machine(), "load_avg_at_end": os.getloadavg(),
           "n": n, "outputs": o, "reduce_cost": dict(ntk._REDUCE_COST), "rows": rows,
           "model_right": sum(r["model_picks"] == r["faster"] for r in rows),
           "plain_flops_right": sum(r["plain_flops_picks"] == r["faster"] for r in rows),
           "cases": len(rows), "small_cnn_end_to_end": end_to_end}
    print(f"cost model picks the faster form in {out['model_right']}/{len(rows)} cases "
          f"(plain FLOP count: {out['plain_flops_right']}/{len(rows)})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
