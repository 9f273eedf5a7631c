"""The tangent-kernel tracker's cost per checkpoint, as a fraction of a feature-alignment run.

``AlignmentTracker`` (``deepscope.dynamics.ntk_tracker``) computes, at each checkpoint of the
schedule ``floor(5 * 1.15^k)``, the per-layer full tangent kernel of 100 training and 100 test
probes, their alignments and the spectrum of the centred (1000 x 1000) train kernel. This
script times, for one setting of the recipe (default the digits small CNN at its CPU-scale
options), on the setting's data and network:

- one checkpoint, split into the train kernel, the test kernel and the spectrum (median of
  ``--reps`` calls, at initialisation and after one epoch of training);
- one training epoch (SGD steps only; median of ``--reps`` epochs);
- a whole run: the checkpoints of the schedule up to ``--epochs`` epochs (the 50%-random-label
  run's length, fit epoch + 50) times the checkpoint cost, against that many training epochs:
  ``tracker_fraction = tracker / (tracker + training)``.

    OMP_NUM_THREADS=1 python benchmarks/alignment_tracker_cost.py --threads 1   # ~1 min; writes results/alignment_tracker_cost.json

Run it on a quiet machine: the recipe's own per-run numbers (``tracker_seconds`` and
``train_seconds`` in each sub-run's result.json) are taken on whatever else is running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setting", default="digits-small-cnn")
    ap.add_argument("--epochs", type=int, default=220, help="run length in epochs (fit + 50)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "alignment_tracker_cost.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from deepscope.data import load_dataset
    from deepscope.dynamics.alignment import center_kernel, eigen_stats, kernel_alignment
    from deepscope.dynamics.alignment_experiment import setting_options
    from deepscope.dynamics.feature_alignment import kaiming_init
    from deepscope.dynamics.ntk import empirical_ntk
    from deepscope.dynamics.ntk_tracker import log_steps
    from deepscope.nets import build_net

    opts = setting_options(args.setting)
    ds = load_dataset(opts["dataset"], n=opts.get("n", 5000), seed=0) \
        if opts["dataset"] == "mnist1d" else load_dataset(opts["dataset"], seed=0)
    x, y = ds.x_train, ds.y_train
    g = torch.Generator().manual_seed(0)
    net = build_net(opts["net"], input_shape=tuple(x.shape[1:]), num_classes=10, **opts["net_kwargs"])
    if opts["init"] == "kaiming":
        kaiming_init(net, g)
    probe = torch.randperm(len(x), generator=g)[:opts["n_probe"]]
    xp, yp = x[probe], y[probe]
    xq, yq = ds.x_test[:opts["n_probe"]], ds.y_test[:opts["n_probe"]]
    opt = torch.optim.SGD(net.parameters(), lr=opts["lr"], momentum=opts["momentum"],
                          weight_decay=opts["weight_decay"])
    bs = opts["batch_size"]
    steps_per_epoch = len(x) // bs

    def epoch() -> float:
        net.train()
        perm = torch.randperm(len(x), generator=g)
        t = time.perf_counter()
        for b in range(steps_per_epoch):
            i = perm[b * bs:(b + 1) * bs]
            loss = F.cross_entropy(net(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    def checkpoint() -> dict[str, float]:
        net.eval()
        out = {}
        t = time.perf_counter()
        ks = empirical_ntk(net, xp, per_layer=True)
        k = sum(ks.values())
        for kk in ks.values():
            kernel_alignment(kk, yp, n_classes=10)
        kernel_alignment(k, yp)
        out["train_kernel"] = time.perf_counter() - t
        t = time.perf_counter()
        kt = empirical_ntk(net, xq, per_layer=True)
        for kk in kt.values():
            kernel_alignment(kk, yq, n_classes=10)
        out["test_kernel"] = time.perf_counter() - t
        t = time.perf_counter()
        eigen_stats(center_kernel(k))
        out["spectrum"] = time.perf_counter() - t
        out["total"] = sum(out.values())
        return out

    checkpoint()  # warm-up
    at_init = [checkpoint() for _ in range(args.reps)]
    epochs = [epoch() for _ in range(args.reps)]
    trained = [checkpoint() for _ in range(args.reps)]
    med = {k: statistics.median(c[k] for c in at_init + trained) for k in at_init[0]}
    per_epoch = statistics.median(epochs)
    n_ckpt = len(log_steps(args.epochs * steps_per_epoch)) + 2  # + the fit and the end records
    tracker, training = n_ckpt * med["total"], args.epochs * per_epoch
    out = {
        "setting": args.setting, "options": opts, "threads": args.threads,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
        "seconds_per_checkpoint": med, "seconds_per_epoch": per_epoch,
        "steps_per_epoch": steps_per_epoch, "run_epochs": args.epochs, "checkpoints_per_run": n_ckpt,
        "run_tracker_seconds": tracker, "run_training_seconds": training,
        "tracker_fraction": tracker / (tracker + training),
        "checkpoint_over_epoch": med["total"] / per_epoch,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "options"}, indent=1))


if __name__ == "__main__":
    main()
