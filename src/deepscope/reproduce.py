"""``deepscope reproduce``: each paper's headline experiment, then one report over all of them.

::

    deepscope reproduce all --scale smoke            # every system, smallest meaningful version (minutes)
    deepscope reproduce mine crosssplit --scale quick --out runs/repro
    deepscope reproduce all --scale paper --executor slurm --slurm-partition gpu --gpus-per-node 1

Each system's recipes run one after the other into ``OUT/<system>/<recipe>/``. Rerunning
skips the finished ones (``result.json`` exists) and resumes unfinished ones from their
checkpoints. A failing system does not stop the others: it is reported as failed, with the
first line of its error, in the summary and in the report (``OUT/report.html``; its verdict
table also as Markdown in ``OUT/verdicts.md``).

Scales: ``smoke`` (every system's smallest meaningful run, about 5 minutes in all on 2 CPU
cores), ``quick`` (the CPU-scale settings of each system with seeds and intervals, about 30
minutes), ``paper`` (the papers' sizes, for GPUs and clusters: ``--executor local|slurm``
submits each recipe through ``deepscope sweep``'s executors).
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

__all__ = ["SYSTEMS", "PLAN", "ReproduceArgs", "reproduce", "reproduce_main"]

Scale = Literal["smoke", "quick", "paper"]

#: Short names on the command line -> the system names the report uses.
SYSTEMS = {
    "mine": "MINE",
    "spectral": "Spectral bias",
    "alignment": "Neural feature alignment",
    "lazy": "Lazy vs hasty",
    "crosssplit": "CrossSplit",
    "a3t": "A3T",
}

#: system -> [(recipe, {scale: options})]: the headline experiment of each paper at each scale.
PLAN: dict[str, list[tuple[str, dict[str, list[str]]]]] = {
    "mine": [
        ("mine-gaussians", {
            "smoke": ["--quick"],
            "quick": ["--dims", "2", "20", "--rhos", "0.3", "0.5", "0.9"],  # N = 10,000 as in Fig. 1
            "paper": [],
        }),
    ],
    "spectral": [
        ("spectral-sinusoids", {
            "smoke": ["--quick"],
            "quick": ["--steps", "10000", "--n-seeds", "1"],
            "paper": [],
        }),
    ],
    "alignment": [
        ("feature-alignment", {
            "smoke": ["--quick"],
            "quick": ["--settings", "digits-small-cnn", "--fractions", "0", "0.5", "--seeds", "3"],
            "paper": ["--settings", "cifar10-vgg19", "cifar10-resnet18"],
        }),
    ],
    "lazy": [
        ("lazy-vs-hasty", {
            "smoke": ["--quick"],
            "quick": ["--mode", "toy"],
            "paper": ["--mode", "cifar10"],
        }),
    ],
    "crosssplit": [
        ("crosssplit", {
            "smoke": ["--quick"],
            "quick": ["--n", "10000", "--noise", "sym40", "sym60", "sym80", "--methods", "crosssplit", "ce",
                      "--seeds", "2", "--epochs", "40"],
            "paper": ["--dataset", "cifar10"],
        }),
    ],
    "a3t": [
        ("a3t", {
            "smoke": ["--quick"],
            "quick": ["--datasets", "digits", "--methods", "standard", "fgsm-at", "a3t", "--seeds", "2",
                      "--epochs", "20"],
            "paper": ["--datasets", "mnist"],
        }),
    ],
}

#: Options every paper-scale run needs from the user (the image datasets' folder).
NEEDS_DATA_ROOT = {"alignment", "lazy", "crosssplit", "a3t"}


@dataclass(frozen=True)
class ReproduceArgs:
    """Run each paper's headline experiment at a scale, then write one report over all of them."""

    systems: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="SYSTEM")] = ("all",)
    """'all' or any of: mine, spectral, alignment, lazy, crosssplit, a3t."""
    scale: Scale = "smoke"
    """smoke: minutes on a laptop; quick: the CPU-scale settings with seeds (~30 min on 2 cores); paper: the papers' sizes."""
    out: Path = Path("runs/reproduce")
    """Output folder: OUT/<system>/<recipe>/ per run and OUT/report.html. Rerun to resume."""
    threads: int = 0
    """CPU threads for torch in each run (0 keeps torch's default)."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda' or 'cuda:N' for every run."""
    progress: bool = True
    """Show progress bars."""
    data_root: Path | None = None
    """Folder with the torchvision files (CIFAR-10, MNIST) for --scale paper."""
    executor: Literal["inline", "local", "slurm"] = "inline"
    """inline: in this process; local / slurm: each recipe submitted through `deepscope sweep`'s executor."""
    slurm_partition: str | None = None
    """SLURM partition (executor slurm)."""
    gpus_per_node: int = 0
    """GPUs per run (executor slurm)."""
    timeout_min: int = 24 * 60
    """Per-run time limit in minutes (executors local and slurm)."""


def _selected(systems: tuple[str, ...]) -> list[str]:
    if not systems or "all" in systems:
        return list(SYSTEMS)
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"system == {unknown[0]!r} is unknown; choose 'all' or any of {', '.join(SYSTEMS)}")
    return list(dict.fromkeys(systems))


def _common(args: ReproduceArgs) -> list[str]:
    opts = ["--device", args.device]
    if args.threads:
        opts += ["--threads", str(args.threads)]
    return opts + ([] if args.progress else ["--no-progress"])


def reproduce(args: ReproduceArgs, *, plan: dict | None = None) -> dict[str, dict]:
    """Run the plan; return ``{system: {"status": ..., "runs": [...], "error": ...}}``.

    Statuses: 'done' (every recipe finished), 'failed' (one raised; the first error line is
    kept), 'not available' (the system has no recipe at this scale yet).
    """
    from deepscope.runner import execute_recipe, load_recipe, parse_config
    from deepscope.train.run import is_finished

    plan = PLAN if plan is None else plan
    outcome: dict[str, dict] = {}
    for system in _selected(args.systems):
        steps = [(r, opts[args.scale]) for r, opts in plan.get(system, []) if args.scale in opts]
        if not steps:
            outcome[system] = {"status": "not available", "runs": [], "error": None}
            continue
        outcome[system] = {"status": "done", "runs": [], "error": None}
        for recipe, opts in steps:
            out = args.out / system / recipe
            outcome[system]["runs"].append(str(out))
            if is_finished(out):
                print(f"  {system:11s} {recipe:22s} already done ({out})")
                continue
            argv = [*opts, *_common(args), "--out", str(out)]
            if args.scale == "paper" and system in NEEDS_DATA_ROOT and args.data_root is not None:
                argv += ["--data-root", str(args.data_root)]
            t0 = time.time()
            try:
                if args.executor == "inline":
                    cfg = parse_config(load_recipe(recipe).Config, argv, prog=f"deepscope run {recipe}")
                    execute_recipe(recipe, cfg, quiet=True)
                else:
                    _submit(args, recipe, argv, out)
                print(f"  {system:11s} {recipe:22s} done in {time.time() - t0:.0f} s ({out})")
            except Exception as e:  # noqa: BLE001 - one failing system must not stop the others
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                outcome[system].update(status="failed", error=f"{type(e).__name__}: {first}")
                if not (out / "error.txt").exists():
                    out.mkdir(parents=True, exist_ok=True)
                    (out / "error.txt").write_text(traceback.format_exc())
                print(f"  {system:11s} {recipe:22s} FAILED: {type(e).__name__}: {first}")
                break
    return outcome


def _submit(args: ReproduceArgs, recipe: str, argv: list[str], out: Path) -> None:
    """One recipe through ``deepscope sweep``'s executors (a one-point grid in ``out``)."""
    from deepscope.sweep import sweep_main

    opts = [recipe, "--out", str(out.parent / (out.name + "-sweep")), "--executor", args.executor,
            "--timeout-min", str(args.timeout_min), "--gpus-per-node", str(args.gpus_per_node)]
    if args.slurm_partition:
        opts += ["--slurm-partition", args.slurm_partition]
    shared = [a for a in argv if a not in ("--out", str(out))]
    if sweep_main([*opts, "--", *shared]) != 0:
        raise RuntimeError(f"{recipe} failed under --executor {args.executor} (see {out}-sweep)")


def reproduce_main(argv: list[str]) -> int:
    args = tyro.cli(ReproduceArgs, args=argv, prog="deepscope reproduce")
    try:
        systems = _selected(args.systems)
    except ValueError as e:
        print(f"deepscope reproduce: {e}", file=sys.stderr)
        return 2
    print(f"deepscope reproduce {' '.join(systems)} --scale {args.scale} -> {args.out}")
    outcome = reproduce(args)
    from deepscope.report.html import verdict_markdown, write_report

    args.out.mkdir(parents=True, exist_ok=True)
    page = write_report(args.out, args.out / "report.html")
    (args.out / "verdicts.md").write_text(verdict_markdown(args.out))
    failed = [s for s, o in outcome.items() if o["status"] == "failed"]
    missing = [s for s, o in outcome.items() if o["status"] == "not available"]
    print(f"report: {page} (verdict table as Markdown: {args.out / 'verdicts.md'})")
    if missing:
        print(f"no recipe yet at --scale {args.scale} for: {', '.join(missing)}")
    if failed:
        for s in failed:
            print(f"FAILED {s}: {outcome[s]['error']}")
        return 1
    return 0
