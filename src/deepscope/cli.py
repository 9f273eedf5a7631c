"""The ``deepscope`` command.

::

    deepscope run --list                     the recipes (one per paper experiment)
    deepscope run RECIPE [--help] [options]  run one; writes runs/RECIPE/<id>/
    deepscope mi estimate X Y [options]      MINE estimate of I(X;Y) from .npy/.npz/.csv files
    deepscope mi estimate-csv PATH DX DY     the BMI benchmark's external-estimator protocol
    deepscope reproduce [SYSTEM ...|all]     each paper's headline experiment + the report
    deepscope report RUNS...                 one HTML page over a set of run directories
    deepscope sweep RECIPE --grid K=V1,V2    a grid of runs, locally or on SLURM (submitit)

Every option is typed and documented from the dataclass field docstrings
(tyro). The router below reads only the first words of the command line and
imports just the module that handles them, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

from deepscope.recipes import recipe_modules
from deepscope.runner import run_recipe_cli

# command words -> "module:function"; the function parses its own arguments with tyro.
COMMANDS = {
    ("mi", "estimate"): "deepscope.mi.commands:estimate_main",
    ("mi", "estimate-csv"): "deepscope.mi.commands:estimate_csv_main",
    ("report",): "deepscope.report.html:report_main",
    ("sweep",): "deepscope.sweep:sweep_main",
    ("reproduce",): "deepscope.reproduce:reproduce_main",
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
  reproduce [SYSTEM ...|all] --scale smoke|quick|paper
                              each paper's headline experiment, then one HTML report
  report RUNS...              write an HTML report (verdicts, tables, figures) over runs
  sweep RECIPE --grid K=V1,V2 [-- recipe options]
                              run a grid of a recipe's options (inline, local or SLURM via
                              submitit); rerun to resume, finished points are skipped

`deepscope COMMAND --help` explains every option of a command.
"""


def _run_command(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        mods = recipe_modules()
        print("usage: deepscope run RECIPE [options]   (deepscope run RECIPE --help)\n\nrecipes:")
        for name, modname in mods.items():
            doc = (importlib.import_module(modname).__doc__ or "").strip().splitlines()
            print(f"  {name:24s} {doc[0] if doc else ''}")
        return 0
    return run_recipe_cli(argv[0], argv[1:])


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
