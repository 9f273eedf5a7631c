"""``deepscope mi estimate`` and ``deepscope mi estimate-csv``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

__all__ = ["EstimateArgs", "EstimateCsvArgs", "estimate_main", "estimate_csv_main"]


@dataclass(frozen=True)
class EstimateArgs:
    """Estimate I(X;Y) with MINE on held-out rows; print nats and bits with a 95% interval.

    X and Y are PATH or PATH:SELECTOR: x.npy, data.npz:KEY, table.csv (all columns),
    table.csv:a,b (by header name) or table.csv:0-4,7 (0-based indices). Rows are paired.
    Writes a run directory with config.json, metrics.jsonl, result.json and a training-curve figure.
    """

    x: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="X")]
    """X: .npy, .npz[:KEY] or .csv[:COLUMNS]."""
    y: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="Y")]
    """Y: .npy, .npz[:KEY] or .csv[:COLUMNS]."""
    bound: Literal["mine", "dv", "nwj", "infonce", "smile"] | None = None
    """Lower bound trained and reported (default: the preset's; smile for default, mine for concat-mine)."""
    preset: Literal["default", "concat-mine"] = "default"
    """Named configuration (deepscope.mi.estimator.PRESETS): concat-mine is the MINE paper's concatenation critic and bound with long early-stopped training; options below override it."""
    critic: Literal["auto", "hybrid", "concat", "separable", "flow", "select"] | None = None
    """Statistics network: hybrid (Gaussian ratio + MLP residual), concat MLP on [x, y], separable g(x)^T h(y), flow (hybrid on rows mapped by flows fitted by maximum likelihood; needs zuko) or select (hybrid or flow, by the validation bound) (default: the preset's; auto: separable for infonce, hybrid otherwise)."""
    hidden: tuple[int, ...] | None = None
    """Hidden layer widths of the critic (default: the preset's, 64 64)."""
    batch_size: int | None = None
    """Pairs per training step (default: the preset's, 1024)."""
    lr: float | None = None
    """Adam learning rate (default: the preset's, 1e-2)."""
    max_steps: int | None = None
    """Most training steps per restart; early stopping on validation may end sooner (default: the preset's, 300)."""
    patience: int | None = None
    """Validation evaluations without improvement before stopping (default: the preset's, 2)."""
    rank: int | None = None
    """Canonical pairs kept in the hybrid critic's Gaussian part (default: chosen on validation; see docs/mine.md)."""
    dof: float | None = None
    """Degrees of freedom of the hybrid critic's parametric part: inf for the Gaussian part, a number for a Student-t copula part (shared heavy tails; needs --transform gaussianize and no --rank) (default: chosen on validation among the Gaussian part and nu in 1, 2, 3, 4, 6, 10, 20)."""
    eval_every: int | None = None
    """Steps between validation evaluations (default: the preset's, 25)."""
    transform: Literal["auto", "gaussianize", "standardize", "none"] | None = None
    """Per-column preprocessing fitted on the training split (gaussianize: ranks -> normal quantiles; MI is unchanged; auto: gaussianize or standardize, whichever reads the higher validation bound) (default: the preset's; auto for default, gaussianize for concat-mine)."""
    n_restarts: int = 1
    """Independent critics; the best on validation reports on the test split."""
    seed: int = 0
    """Seed of the split, the initialisation and the batches."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    out: Path | None = None
    """Run directory (default runs/mi-estimate/<timestamp>)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class EstimateCsvArgs:
    """BMI-benchmark external-estimator protocol (Czyz et al., NeurIPS 2023).

    PATH is a CSV with a header row (X0,X1,...,Y0,Y1,...) and no index column; the first
    DIM_X columns are X, the next DIM_Y are Y. Prints the MINE estimate in nats and nothing
    else; on failure prints one line and exits non-zero.
    """

    path: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="PATH")]
    """CSV file with a header row."""
    dim_x: Annotated[int, tyro.conf.Positional, tyro.conf.arg(metavar="DIM_X")]
    """Number of X columns (the first ones)."""
    dim_y: Annotated[int, tyro.conf.Positional, tyro.conf.arg(metavar="DIM_Y")]
    """Number of Y columns (the next ones)."""
    seed: int = 0
    """Seed of the split, the initialisation and the batches."""
    bound: Literal["mine", "dv", "nwj", "infonce", "smile"] | None = None
    """Lower bound trained and reported (default: the preset's; smile for default, mine for concat-mine)."""
    transform: Literal["auto", "gaussianize", "standardize", "none"] | None = None
    """Per-column preprocessing fitted on the training split (auto: gaussianize or standardize, by the validation bound) (default: the preset's; auto for default, gaussianize for concat-mine)."""
    preset: Literal["default", "concat-mine"] = "default"
    """Named configuration (deepscope.mi.estimator.PRESETS): concat-mine is the MINE paper's concatenation critic and bound with long early-stopped training."""
    critic: Literal["auto", "hybrid", "concat", "separable", "flow", "select"] | None = None
    """Statistics network (default: the preset's); flow and select as for deepscope mi estimate."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""


def _preset_with(args, names: tuple[str, ...]) -> dict:
    """The preset's MINE options, overridden by the command-line options in ``names`` that were given."""
    from deepscope.mi.estimator import PRESETS

    return {**PRESETS[args.preset], **{k: getattr(args, k) for k in names if getattr(args, k) is not None}}


def _plot_history(history: list[dict], path: Path, mi: float, ci: tuple[float, float]) -> None:
    from deepscope.report.figures import plt, save

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["train"] for h in history], label="train (mean since last eval)", lw=1)
    ax.plot(steps, [h["val"] for h in history], label="validation", lw=1.5)
    ax.axhline(mi, color="k", ls="--", lw=1, label=f"test estimate {mi:.3f} nats")
    ax.axhspan(ci[0], ci[1], color="k", alpha=0.1)
    ax.set_xlabel("step")
    ax.set_ylabel("bound (nats)")
    ax.legend(fontsize=8)
    save(fig, path)


def estimate_main(argv: list[str]) -> int:
    args = tyro.cli(EstimateArgs, args=argv, prog="deepscope mi estimate")
    import time

    from deepscope.mi.estimator import MINE, prepare_inputs
    from deepscope.mi.io import load_source
    from deepscope.train import Run

    options = {
        **_preset_with(args, ("bound", "critic", "hidden", "batch_size", "lr", "max_steps", "patience",
                              "eval_every", "rank", "dof", "transform")),
        "n_restarts": args.n_restarts,
        "random_state": args.seed, "verbose": args.progress,
    }
    try:  # bad input is refused before the run directory exists
        x, y = prepare_inputs(load_source(args.x), load_source(args.y))
        MINE(**options).validate(x.shape[1], y.shape[1])
    except (OSError, ValueError, TypeError) as e:
        print(f"deepscope mi estimate: {e}", file=sys.stderr)
        return 2
    out = args.out or Path("runs") / "mi-estimate" / time.strftime("%Y%m%d-%H%M%S")
    run = Run(out, config=args, seed=args.seed, device=args.device, threads=args.threads,
              progress=args.progress)
    est = MINE(**options, device=str(run.device))
    try:
        est.fit(x, y)
    except (ValueError, TypeError) as e:
        print(f"deepscope mi estimate: {e}", file=sys.stderr)
        return 2
    for h in est.history_:
        run.log(h["step"], train=h["train"], val=h["val"])
    run.save_file("critic.pt", est.critic_.state_dict())
    _plot_history(est.history_, run.figure_path("training"), est.mi_, est.ci_)
    result = {
        "mi_nats": est.mi_, "ci95_nats": est.ci_, "mi_bits": est.mi_bits_,
        "ci95_bits": [c / 0.6931471805599453 for c in est.ci_],
        "n_train": est.n_train_, "n_val": est.n_val_, "n_test": est.n_test_,
        "restarts": est.restarts_, "warnings": est.warnings_, "preset": args.preset,
        "seconds_by_stage": est.timings_,
        "parametric_part": {"shrinkage": est.shrinkage_, "rank": est.gaussian_rank_, "dof": est.dof_},
        "transform": est.transform_,
        "readout": est.readout_, "selection": getattr(est, "selection_", None),
    }
    run.write_result(result)
    lo, hi = est.ci_
    print(f"I(X;Y) = {est.mi_:.4f} nats  (95% CI {lo:.4f} .. {hi:.4f})  = {est.mi_bits_:.4f} bits")
    print(f"held out: {est.n_test_} test rows; run directory: {run.dir}")
    return 0


def estimate_csv_main(argv: list[str]) -> int:
    args = tyro.cli(EstimateCsvArgs, args=argv, prog="deepscope mi estimate-csv")
    import warnings

    warnings.simplefilter("ignore")  # the protocol parses all output as one float
    try:
        import numpy as np
        import torch

        from deepscope.mi.estimator import MINE
        from deepscope.mi.io import read_csv

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        if args.dim_x < 1 or args.dim_y < 1:
            raise ValueError(f"DIM_X == {args.dim_x}, DIM_Y == {args.dim_y}; both must be >= 1")
        if not args.path.exists():
            raise FileNotFoundError(f"input file {str(args.path)!r} does not exist")
        _, data = read_csv(args.path)
        if data.shape[1] != args.dim_x + args.dim_y:
            raise ValueError(
                f"{args.path} has {data.shape[1]} columns but DIM_X + DIM_Y == {args.dim_x + args.dim_y}"
            )
        x, y = data[:, : args.dim_x], data[:, args.dim_x :]
        est = MINE(**_preset_with(args, ("bound", "critic", "transform")), random_state=args.seed).fit(
            np.ascontiguousarray(x), np.ascontiguousarray(y)
        )
    except Exception as e:  # one line, non-zero exit: the client shows it as the failure
        sys.stdout.write(f"error: {type(e).__name__}: {e}\n")
        return _finish(1)
    sys.stdout.write(f"{est.mi_!r}\n")
    return _finish(0)


def _finish(rc: int) -> int:
    """End a process started only for ``estimate-csv`` without the interpreter's teardown.

    With torch imported, a normal exit takes 0.5-0.7 s (measured: ``python -c "import torch"``
    exits 0.5-0.7 s after the import, 0.05 s with ``os._exit``): a fifth of the whole command.
    Only when this process was launched as ``deepscope mi estimate-csv ...``; called in-process
    (``deepscope.cli.main([...])`` from Python) it returns normally.
    """
    if sys.argv[1:3] == ["mi", "estimate-csv"]:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc
