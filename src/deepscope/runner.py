"""Running recipes: discovery, the run directory, errors. Shared by ``cli`` and ``sweep``.

A recipe module ``deepscope/recipes/<name>.py`` defines ``Config`` (a frozen dataclass
subclassing :class:`deepscope.train.RunConfig`) and ``run(cfg, run) -> dict``; see
``deepscope/recipes/__init__.py`` (discovery and the registry live there).
:func:`execute_recipe` applies the ``--quick`` preset, seeds the process's global random
generators once (:func:`deepscope.train.rng.seed_globals`; library code never reseeds them),
creates the :class:`~deepscope.train.Run`, calls ``run`` and writes ``result.json``. A crash
writes the traceback to ``error.txt`` in the run directory and re-raises.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from deepscope.recipes import System, load_recipe, recipe_modules
from deepscope.train.config import deferred_validation

__all__ = [
    "recipe_modules", "load_recipe", "default_run_dir", "parse_config", "execute_recipe",
    "RecipeError",
]


class RecipeError(Exception):
    """A recipe's run crashed; ``error.txt`` in ``run_dir`` holds the traceback."""

    def __init__(self, message: str, run_dir: Path):
        super().__init__(message)
        self.run_dir = run_dir


def default_run_dir(recipe: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / recipe / f"{stamp}-s{seed}"


def parse_config(config_cls: type, argv: list[str], *, prog: str, description: str = ""):
    """Parse ``argv`` into ``config_cls`` with tyro, then validate once.

    ``--help`` and unparsable options exit through tyro (exit code 2); a value that the
    config's ``validate`` rejects raises ``ValueError`` with its one-line message.
    """
    import tyro

    with deferred_validation():
        cfg = tyro.cli(config_cls, args=argv, prog=prog, description=description)
    cfg.validate()
    return cfg


def _fields(cfg) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def command_line(name: str, cfg) -> str:
    """The ``deepscope run`` command that makes ``cfg``: the options that differ from defaults."""
    import shlex
    from dataclasses import MISSING

    words = ["deepscope", "run", name]
    for f in fields(cfg):
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        value = getattr(cfg, f.name)
        if f.name in ("progress", "debug") or value == default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, (tuple, list)):
            words += [flag, *map(str, value)] if value else [flag]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def execute_recipe(name: str, cfg, *, quiet: bool = False) -> dict:
    """Run recipe ``name`` with ``cfg``: preset, Run, ``run(cfg, run)``, ``result.json``.

    Raises ``ValueError`` (nothing written) for a config the recipe rejects, and re-raises
    a crash inside the run after writing its traceback to ``<run_dir>/error.txt``.
    """
    from deepscope.train import Run
    from deepscope.train.rng import seed_globals

    mod = load_recipe(name)
    cfg = cfg.with_preset()
    cfg.validate()
    out = cfg.out if cfg.out is not None else default_run_dir(name, cfg.seed)
    cfg = replace(cfg, out=Path(out))
    # The command boundary: the one place a run seeds Python's, numpy's and torch's global
    # generators (for third-party code that draws from them; deepscope's own code takes
    # explicit generators). Every recipe run starts from the same global state, whatever ran
    # before it in this process (reproduce, an inline sweep).
    seed_globals(cfg.seed)
    run = Run(
        cfg.out, config={"recipe": name, **_fields(cfg)}, seed=cfg.seed,
        device=cfg.device, threads=cfg.threads, progress=cfg.progress, loggers=cfg.logger,
    )
    try:
        result = mod.run(cfg, run)
    except BaseException:
        if run.writes:
            (run.dir / "error.txt").write_text(traceback.format_exc())
        raise
    finally:
        run.close()
    if run.writes:  # a resumed run that finished is not failed
        (run.dir / "error.txt").unlink(missing_ok=True)
    system = getattr(mod, "SYSTEM", None)
    result = {"recipe": name, "system": system.name if isinstance(system, System) else None, **result,
              "run_dir": str(run.dir), "command": command_line(name, cfg),
              "seconds": round(time.time() - run.started, 2)}
    if callable(getattr(mod, "verdict", None)):  # computed from the numbers, never by hand
        result["verdict"] = {"system": result["system"], **mod.verdict(result)}
    run.write_result(result)
    if not quiet and run.writes:
        _print_result(result)
    return result


def _print_result(result: dict) -> None:
    from rich.console import Console

    con = Console()
    if "summary" in result and isinstance(result["summary"], str):
        con.print(result["summary"], markup=False, highlight=False)
    con.print(f"[bold]wrote[/bold] {result['run_dir']}/result.json ({result['seconds']} s)")


def run_recipe_cli(name: str, argv: list[str]) -> int:
    """``deepscope run NAME ARGV``: the exit code (0 ok, 1 crashed, 2 bad options, 130 interrupted).

    Bad options print one line and write nothing. A crash prints one line pointing to the
    traceback in ``error.txt`` (``--debug`` prints the traceback as well).
    """
    prog = f"deepscope run {name}"
    try:
        mod = load_recipe(name)
        cfg = parse_config(mod.Config, argv, prog=prog, description=(mod.__doc__ or "").strip())
        cfg = cfg.with_preset()
        cfg.validate()
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    out = cfg.out if cfg.out is not None else default_run_dir(name, cfg.seed)
    cfg = replace(cfg, out=Path(out))
    try:
        execute_recipe(name, cfg)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun with --out {out} to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the traceback is in error.txt; one line here
        if cfg.debug:
            traceback.print_exc()
        err = Path(out) / "error.txt"
        where = f"traceback in {err}" if err.exists() else "no run directory was written"
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"{prog}: {type(e).__name__}: {first} ({where}; --debug prints it)", file=sys.stderr)
        return 2 if not err.exists() and isinstance(e, ValueError) else 1
    return 0
