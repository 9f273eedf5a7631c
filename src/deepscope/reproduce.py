"""``deepscope reproduce``: each paper's headline experiment, then one report over all of them.

::

    deepscope reproduce all --scale smoke            # every system, smallest meaningful version (minutes)
    deepscope reproduce mine crosssplit --scale quick --out runs/repro
    deepscope reproduce all --scale paper --executor slurm --slurm-partition gpu --gpus-per-node 1

What runs is declared by the recipes themselves (``SYSTEM`` and ``REPRODUCE``, see
:mod:`deepscope.recipes`). Each system's recipes run one after the other into
``OUT/<system>/<recipe>/``. Rerunning skips the finished ones (``result.json`` exists) and
resumes unfinished ones from their checkpoints. A failing system does not stop the others: it is reported as failed, with the
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

from deepscope.recipes import SCALES, load_recipe, registry

__all__ = ["systems", "reproduce_plan", "ReproduceArgs", "reproduce", "reproduce_main"]

Scale = Literal["smoke", "quick", "paper"]

#: A plan: system key -> [(recipe, {scale: options})], in the order the systems run.
Plan = dict[str, list[tuple[str, dict[str, list[str]]]]]


def systems() -> dict[str, str]:
    """System keys (the words on the command line) -> the names the report uses, in order.

    Read from the recipes' ``SYSTEM`` declarations (:func:`deepscope.recipes.registry`).
    """
    return {key: s.name for key, s in registry().systems.items()}


def reproduce_plan() -> Plan:
    """Each system's headline recipe(s) with their options per scale, from the recipes'
    ``REPRODUCE`` declarations; a scale a recipe has no run at is left out."""
    out: Plan = {}
    for key, steps in registry().plans.items():
        out[key] = [(recipe, {scale: list(r.options(scale)) for scale in SCALES
                              if r.options(scale) is not None})
                    for recipe, r in steps]
    return out


def _needs_data_root(recipe: str) -> bool:
    r = getattr(load_recipe(recipe), "REPRODUCE", None)
    return bool(getattr(r, "paper_needs_data_root", False))


@dataclass(frozen=True)
class ReproduceArgs:
    """Run each paper's headline experiment at a scale, then write one report over all of them."""

    systems: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="SYSTEM")] = ("all",)
    """'all' or system keys (the recipes' SYSTEM declarations: mine, spectral, alignment, lazy, crosssplit, a3t, ...)."""
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


def _selected(chosen: tuple[str, ...]) -> list[str]:
    known = systems()
    if not chosen or "all" in chosen:
        return list(known)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise ValueError(f"system == {unknown[0]!r} is unknown; choose 'all' or any of {', '.join(known)}")
    return list(dict.fromkeys(chosen))


def _common(args: ReproduceArgs) -> list[str]:
    opts = ["--device", args.device]
    if args.threads:
        opts += ["--threads", str(args.threads)]
    return opts + ([] if args.progress else ["--no-progress"])


def reproduce(args: ReproduceArgs, *, plan: Plan | None = None) -> dict[str, dict]:
    """Run the plan (default: :func:`reproduce_plan`, read from the recipes); return
    ``{system: {"status": ..., "runs": [...], "error": ...}}``.

    Statuses: 'done' (every recipe finished), 'failed' (one raised; the first error line is
    kept), 'not available' (the system has no recipe at this scale yet).
    """
    from deepscope.runner import execute_recipe, load_recipe, parse_config
    from deepscope.train.run import is_finished

    steps_of = reproduce_plan() if plan is None else plan
    outcome: dict[str, dict] = {}
    for system in _selected(args.systems):
        steps = [(r, opts[args.scale]) for r, opts in steps_of.get(system, []) if args.scale in opts]
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
            if args.scale == "paper" and args.data_root is not None and _needs_data_root(recipe):
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
