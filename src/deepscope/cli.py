"""The ``deepscope`` command.

::

    deepscope run --list                     the recipes (one per paper experiment)
    deepscope run RECIPE [--help] [options]  run one; writes runs/RECIPE/<id>/
    deepscope mi estimate X Y [options]      MINE estimate of I(X;Y) from .npy/.npz/.csv files
    deepscope mi estimate-csv PATH DX DY     the BMI benchmark's external-estimator protocol
    deepscope report RUNS_DIR                one HTML page over a set of run directories
    deepscope sweep RECIPE --grid K=V1,V2    a grid of runs, locally or on SLURM (submitit)

Every option is typed and documented from the dataclass field docstrings
(tyro). The router below reads only the first words of the command line and
imports just the module that handles them, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

# command words -> "module:function"; the function parses its own arguments with tyro.
COMMANDS = {
    ("mi", "estimate"): "deepscope.mi.commands:estimate_main",
    ("mi", "estimate-csv"): "deepscope.mi.commands:estimate_csv_main",
    ("report",): "deepscope.report.html:report_main",
    ("sweep",): "deepscope.sweep:sweep_main",
}

USAGE = """\
usage: deepscope COMMAND ...

What deep networks learn: MINE, spectral bias, tangent-kernel alignment,
lazy vs feature learning, CrossSplit, A3T.

commands:
  run --list                  list the recipes (each reproduces a paper experiment)
  run RECIPE [options]        run a recipe; `deepscope run RECIPE --help` lists its options
  mi estimate X Y [options]   estimate I(X;Y) with MINE from .npy/.npz/.csv files
  mi estimate-csv PATH DX DY  BMI-benchmark protocol: prints only the estimate in nats
  report RUNS_DIR             write an HTML report over a folder of runs
  sweep RECIPE --grid K=V1,V2 [-- recipe options]
                              run a grid of a recipe's options (inline, local or SLURM via
                              submitit); rerun to resume, finished points are skipped

`deepscope COMMAND --help` explains every option of a command.
"""


def recipe_modules() -> dict[str, str]:
    """Map recipe name ('mine-gaussians') to module ('deepscope.recipes.mine_gaussians')."""
    import deepscope.recipes as pkg

    out = {}
    for m in pkgutil.iter_modules(pkg.__path__):
        if not m.name.startswith("_"):
            out[m.name.replace("_", "-")] = f"deepscope.recipes.{m.name}"
    return dict(sorted(out.items()))


def load_recipe(name: str):
    """Import a recipe module by its CLI name; the module defines ``Config`` and ``run``."""
    mods = recipe_modules()
    if name not in mods:
        raise SystemExit(
            f"deepscope: unknown recipe {name!r}; known: {', '.join(mods) or '(none)'}"
        )
    return importlib.import_module(mods[name])


def default_run_dir(recipe: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / recipe / f"{stamp}-s{seed}"


def execute_recipe(name: str, cfg, *, quiet: bool = False) -> dict:
    """Run recipe ``name`` with config ``cfg``: create the Run, call ``run``, write result.json.

    A failure writes ``error.txt`` (the traceback) into the run directory and re-raises,
    so a crashed run still leaves its config, metrics and last checkpoint behind.
    """
    from deepscope.train import Run

    mod = load_recipe(name)
    out = cfg.out if cfg.out is not None else default_run_dir(name, cfg.seed)
    cfg = replace(cfg, out=Path(out))
    run = Run(
        cfg.out, config={"recipe": name, **_fields(cfg)}, seed=cfg.seed,
        device=cfg.device, threads=cfg.threads, progress=cfg.progress,
    )
    try:
        result = mod.run(cfg, run)
    except BaseException:
        (run.dir / "error.txt").write_text(traceback.format_exc())
        raise
    result = {"recipe": name, **result, "run_dir": str(run.dir),
              "seconds": round(time.time() - run.started, 2)}
    run.write_result(result)
    if not quiet:
        _print_result(result)
    return result


def _fields(cfg) -> dict:
    from dataclasses import fields

    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def _print_result(result: dict) -> None:
    from rich.console import Console

    con = Console()
    if "summary" in result and isinstance(result["summary"], str):
        con.print(result["summary"], markup=False, highlight=False)
    con.print(f"[bold]wrote[/bold] {result['run_dir']}/result.json ({result['seconds']} s)")


def _run_command(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        mods = recipe_modules()
        print("usage: deepscope run RECIPE [options]   (deepscope run RECIPE --help)\n\nrecipes:")
        for name, modname in mods.items():
            doc = (importlib.import_module(modname).__doc__ or "").strip().splitlines()
            print(f"  {name:24s} {doc[0] if doc else ''}")
        return 0
    import tyro

    name = argv[0]
    mod = load_recipe(name)
    cfg = tyro.cli(
        mod.Config, args=argv[1:], prog=f"deepscope run {name}",
        description=(mod.__doc__ or "").strip(),
    )
    execute_recipe(name, cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from deepscope import __version__

        print(f"deepscope {__version__}")
        return 0
    if argv[0] == "run":
        return _run_command(argv[1:])
    for words, target in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            modname, fn = target.split(":")
            return int(getattr(importlib.import_module(modname), fn)(argv[len(words):]) or 0)
    if argv[0] == "mi":
        print("usage: deepscope mi {estimate,estimate-csv} ...  (add --help to either)")
        return 0 if argv[1:2] in (["-h"], ["--help"]) else 2
    print(f"deepscope: unknown command {' '.join(argv[:2])!r}\n\n{USAGE}", file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
