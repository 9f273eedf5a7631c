"""Cost of one epoch of every CrossSplit form the one-factor study keeps, and of the baselines,
against one cross-entropy epoch of one network (target for the default form: <= 2.2x).

    OMP_NUM_THREADS=1 python benchmarks/crosssplit_cost.py --threads 1 --n 10000   # the study's size, ~4 min
    OMP_NUM_THREADS=1 python benchmarks/crosssplit_cost.py --threads 1            # the table's size (20,000)
    OMP_NUM_THREADS=1 python benchmarks/crosssplit_cost.py --threads 1 --quick    # ~1 min

Data and network are the crosssplit recipe's CPU scale: MNIST-1D (``--n`` samples, 80% for
training), the MNIST-1D CNN with ``--channels`` channels, batch 128, weak shift views. Timed,
in one process and alternated ``--repeats`` times so that a change of machine load hits
every method alike:

- ``ce``: one epoch of :func:`deepscope.robust.train_ce` (one network, all the data): the anchor;
- ``crosssplit[<row>]``: one post-warm-up epoch of :func:`train_crosssplit` with the study row's
  switches on the recipe's reduced MNIST-1D form (``STUDY_ROWS`` in ``recipes/crosssplit.py``;
  ``base`` is the default form; λ_u rows cost what ``base`` costs; ``released-loss`` is the
  paper's ingredients: per-batch targets over 2 weak views, 2 strong views, MixUp, contrastive);
- ``coteaching``, ``dividemix`` (reduced: no MixUp), ``dividemix[mixup]``: one post-warm-up epoch.

Each epoch includes the loop's evaluation on the test split. ``ratio_to_ce`` is median(epoch) /
median(CE epoch); ``run_ratio_to_ce`` multiplies it by the row's epoch factor (``equal-steps``
trains twice the epochs), i.e. a whole run's cost against a cross-entropy run. Writes
benchmarks/results/crosssplit_cost.json with the load average and thread count beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from deepscope.data import load_dataset
from deepscope.data.augment import signal_views
from deepscope.data.noise import make_label_noise
from deepscope.robust import train_ce, train_coteaching, train_crosssplit, train_dividemix
from deepscope.robust.crosssplit_study import study_row
from deepscope.train import Run

REDUCED = dict(refresh="epoch", mixup=False, contrastive_weight=0.0, train_views=1, peer_views=0)
#: the study's CrossSplit rows whose epoch costs differ (λ_u rows cost what base costs)
ROWS = ("base", "equal-steps", "labels-all", "per-batch-targets", "mixup", "contrastive",
        "released-loss")


def _epoch_seconds(run_dir: Path) -> list[float]:
    """Durations of the logged epochs, from the ``time`` stamps of metrics.jsonl."""
    times = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [b - a for a, b in zip(times, times[1:])]


def time_ce(data: dict, args, seed: int) -> float:
    """Seconds of one cross-entropy epoch (the second of two: the first pays warm-up costs)."""
    with tempfile.TemporaryDirectory() as d:
        train_ce(data["x"], data["y"], num_classes=10, generator=torch.Generator().manual_seed(seed),
                 x_test=data["xt"], y_test=data["yt"], net="cnn1d",
                 net_kwargs={"channels": args.channels}, views=signal_views("weak"),
                 options={"epochs": 2, "batch_size": 128, "lr": 0.05}, run=Run(d, progress=False))
        return _epoch_seconds(Path(d))[-1]


def time_crosssplit(data: dict, args, seed: int, row: str) -> float:
    """Seconds of one CrossSplit epoch of a study row after a one-epoch warm-up."""
    opts = {**REDUCED, **study_row(row)[1]}
    if opts.pop("released_warmup_batch", False):
        opts["warmup_batch_size"] = 256
    with tempfile.TemporaryDirectory() as d:
        train_crosssplit(data["x"], data["y"], num_classes=10,
                         generator=torch.Generator().manual_seed(seed), x_test=data["xt"],
                         y_test=data["yt"], net="cnn1d", net_kwargs={"channels": args.channels},
                         views=signal_views("weak"), warmup_epochs=1,
                         **{"warmup_batch_size": 128, **opts},
                         options={"epochs": 2, "batch_size": 128, "lr": 0.05},
                         run=Run(d, progress=False))
        return _epoch_seconds(Path(d))[-1]


def time_baseline(data: dict, args, seed: int, name: str) -> float:
    """Seconds of one post-warm-up epoch of co-teaching or DivideMix (two networks each)."""
    common = dict(num_classes=10, generator=torch.Generator().manual_seed(seed), x_test=data["xt"],
                  y_test=data["yt"], net="cnn1d", net_kwargs={"channels": args.channels},
                  views=signal_views("weak"), options={"epochs": 2, "batch_size": 128, "lr": 0.05})
    with tempfile.TemporaryDirectory() as d:
        if name == "coteaching":
            train_coteaching(data["x"], data["y"], forget_rate=0.54, run=Run(d, progress=False),
                             **common)
        else:
            train_dividemix(data["x"], data["y"], warmup_epochs=1, mixup=name == "dividemix[mixup]",
                            run=Run(d, progress=False), **common)
        return _epoch_seconds(Path(d))[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="2,000 samples, 1 repeat")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "crosssplit_cost.json")
    args = p.parse_args()
    if args.quick:
        args.n, args.repeats = 2000, 1
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist1d", n=args.n, seed=0)
    noisy = make_label_noise(ds.y_train, "sym60", num_classes=10, generator=torch.Generator().manual_seed(0))
    data = {"x": ds.x_train, "y": noisy.labels, "xt": ds.x_test, "yt": ds.y_test}
    load_before = os.getloadavg()
    t0 = time.time()
    names = ["ce", *(f"crosssplit[{r}]" for r in ROWS), "coteaching", "dividemix",
             "dividemix[mixup]"]
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.repeats):
        times["ce"].append(time_ce(data, args, r))
        for row in ROWS:
            times[f"crosssplit[{row}]"].append(time_crosssplit(data, args, r, row))
        for name in ("coteaching", "dividemix", "dividemix[mixup]"):
            times[name].append(time_baseline(data, args, r, name))
        print(r, {k: round(v[-1], 3) for k, v in times.items()}, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "what": "seconds per epoch (median over repeats) and ratio to one cross-entropy epoch of one network; run_ratio_to_ce: times the row's epoch factor",
        "n_train": len(data["x"]), "channels": args.channels, "batch_size": 128,
        "repeats": args.repeats, "seconds_per_epoch": {k: round(v, 3) for k, v in med.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_to_ce": {k: round(v / med["ce"], 3) for k, v in med.items() if k != "ce"},
        "run_ratio_to_ce": {k: round(v / med["ce"] * (study_row(k[11:-1])[2] if k.startswith(
            "crosssplit[") else 1), 3) for k, v in med.items() if k != "ce"},
        "target_ratio": 2.2,
        "threads": torch.get_num_threads(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.time() - t0, 1), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
