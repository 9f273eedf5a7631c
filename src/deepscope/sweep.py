"""``deepscope sweep``: run a recipe over a grid of options, locally or on SLURM (submitit).

::

    deepscope sweep mine-gaussians --grid seed=0,1,2 --grid lr=1e-3,3e-4 -- --quick
    deepscope sweep mi-staircase --grid seed=0,1,2,3 --executor slurm --slurm-partition gpu --gpus-per-node 1

Each grid point is one run directory ``OUT/<key=value,...>``; the options after ``--``
are passed to every point. A sweep started again skips the points whose ``result.json``
exists and resumes the unfinished ones from their checkpoints, so an interrupted sweep
(or a preempted SLURM job, which submitit requeues) loses at most one checkpoint
interval per point. Values are parsed by the recipe's own typed config, so an invalid
value fails before anything is submitted.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

__all__ = ["SweepArgs", "expand_grid", "sweep_main", "run_point", "aggregate"]


@dataclass(frozen=True)
class SweepArgs:
    """Run RECIPE once per point of a grid of options; recipe options shared by all points go after `--`."""

    recipe: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RECIPE")]
    """Recipe name (deepscope run --list)."""
    grid: tuple[str, ...] = ()
    """KEY=V1,V2,... (repeatable): a recipe option and its values; the sweep is the product of all."""
    out: Path | None = None
    """Sweep directory (default runs/sweeps/RECIPE-<timestamp>); rerun with it to resume."""
    executor: Literal["inline", "local", "slurm"] = "local"
    """inline: one after another in this process; local: subprocesses via submitit; slurm: sbatch via submitit."""
    max_parallel: int = 1
    """Points running at once (local), or the SLURM array's parallelism."""
    timeout_min: int = 60
    """Per-point time limit in minutes (local and slurm)."""
    slurm_partition: str | None = None
    """SLURM partition."""
    gpus_per_node: int = 0
    """GPUs per point (SLURM)."""
    cpus_per_task: int = 2
    """CPUs per point (SLURM)."""
    mem_gb: int = 8
    """Memory per point in GB (SLURM)."""


def expand_grid(grid: tuple[str, ...]) -> list[dict[str, str]]:
    """``("a=1,2", "b=x")`` -> ``[{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]``."""
    keys, values = [], []
    for item in grid:
        if "=" not in item:
            raise ValueError(f"--grid {item!r} is not KEY=V1,V2,...")
        k, v = item.split("=", 1)
        k = k.strip().lstrip("-").replace("_", "-")
        vals = [x.strip() for x in v.split(",") if x.strip()]
        if not k or not vals:
            raise ValueError(f"--grid {item!r} needs a key and at least one value")
        if k in keys:
            raise ValueError(f"--grid names {k!r} twice; give all its values in one KEY=V1,V2")
        keys.append(k)
        values.append(vals)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)] if keys else [{}]


def point_name(point: dict[str, str]) -> str:
    if not point:
        return "default"
    return ",".join(f"{k}={v}".replace("/", "_").replace(" ", "_") for k, v in point.items())


def point_argv(point: dict[str, str], shared: list[str], out: Path) -> list[str]:
    argv = list(shared)
    for k, v in point.items():
        argv += [f"--{k}", *v.split()]  # a value with spaces is several tokens (tuple options)
    return argv + ["--out", str(out), "--no-progress"]


def run_point(recipe: str, argv: list[str]) -> dict:
    """Parse ``argv`` with the recipe's config and run it (what each job executes)."""
    from deepscope.runner import execute_recipe, load_recipe, parse_config

    cfg = parse_config(load_recipe(recipe).Config, argv, prog=f"deepscope run {recipe}")
    return execute_recipe(recipe, cfg, quiet=True)


def sweep_main(argv: list[str]) -> int:
    shared: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, shared = argv[:i], argv[i + 1 :]
    args = tyro.cli(SweepArgs, args=argv, prog="deepscope sweep")
    from deepscope.runner import load_recipe, parse_config
    from deepscope.train.run import is_finished

    try:
        mod = load_recipe(args.recipe)
    except ValueError as e:
        print(f"deepscope sweep: {e}", file=sys.stderr)
        return 2
    if args.max_parallel < 1:
        print(f"deepscope sweep: max_parallel == {args.max_parallel}, must be >= 1", file=sys.stderr)
        return 2
    try:
        points = expand_grid(args.grid)
    except ValueError as e:
        print(f"deepscope sweep: {e}", file=sys.stderr)
        return 2
    root = args.out or Path("runs") / "sweeps" / f"{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    jobs = []
    for p in points:
        d = root / point_name(p)
        pa = point_argv(p, shared, d)
        try:  # validate every point before submitting any
            parse_config(mod.Config, pa, prog=f"deepscope run {args.recipe}").with_preset().validate()
        except ValueError as e:
            print(f"deepscope sweep: point {point_name(p)}: {e}", file=sys.stderr)
            return 2
        except SystemExit:
            print(f"deepscope sweep: point {point_name(p)} has invalid options: {' '.join(pa)}", file=sys.stderr)
            return 2
        jobs.append((p, d, pa))
    todo = [(p, d, pa) for p, d, pa in jobs if not is_finished(d)]
    print(f"sweep {args.recipe}: {len(jobs)} points, {len(jobs) - len(todo)} already done, "
          f"{len(todo)} to run -> {root}")
    root.mkdir(parents=True, exist_ok=True)
    failed = []
    if args.executor == "inline":
        for p, d, pa in todo:
            try:
                run_point(args.recipe, pa)
                print(f"  done   {point_name(p)}")
            except Exception as e:  # noqa: BLE001 - reported per point; the sweep goes on
                failed.append(point_name(p))
                print(f"  FAILED {point_name(p)}: {type(e).__name__}: {e} (see {d}/error.txt)")
    else:
        failed = _submit(args, todo, root)
    print(f"sweep finished: {len(jobs) - len(failed)}/{len(jobs)} points have results"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    table = aggregate([(p, d) for p, d, _ in jobs], root)
    if table:
        print(f"aggregated over seeds: {root / 'summary.csv'} ({len(table)} settings)")
    return 1 if failed else 0


def _numbers(result: dict, prefix: str = "") -> dict[str, float]:
    """The numeric scalars of a result (nested dicts flattened with '.'; lists skipped)."""
    out: dict[str, float] = {}
    for k, v in result.items():
        if k in ("seconds", "seed"):
            continue
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[prefix + k] = float(v)
        elif v in ("inf", "-inf"):
            out[prefix + k] = float(v)
        elif isinstance(v, dict) and k != "verdict":
            out.update(_numbers(v, prefix + k + "."))
    return out


def aggregate(points: list[tuple[dict[str, str], Path]], root: Path) -> list[dict]:
    """Every numeric result summarised across seeds, per grid setting, by the one rule of
    :func:`deepscope.train.stats.summarise` (mean, std with ddof=1, the 95% interval; NaN
    values dropped and counted).

    Points that differ only in ``seed`` form one setting. Writes ``root/summary.csv`` and
    ``root/summary.json`` (one row per setting and metric: ``mean``, ``std``, ``ci95_low``,
    ``ci95_high``, ``count``, ``missing``) and returns the rows.
    """
    import csv
    import json

    from deepscope.train.run import is_finished, read_result
    from deepscope.train.stats import summarise

    groups: dict[tuple, list[dict[str, float]]] = {}
    for p, d in points:
        if not is_finished(d):
            continue
        key = tuple((k, v) for k, v in p.items() if k != "seed")
        groups.setdefault(key, []).append(_numbers(read_result(d)))
    rows = []
    for key, results in groups.items():
        for metric in sorted({m for r in results for m in r}):
            s = summarise(r[metric] for r in results if metric in r)
            rows.append({**dict(key), "metric": metric, "mean": s["mean"], "std": s["std"],
                         "ci95_low": s["ci95"][0], "ci95_high": s["ci95"][1], "count": s["n"],
                         "missing": s["n_missing"]})
    if not rows:
        return rows
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(root / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    from deepscope.train.jsonio import to_jsonable
    from deepscope.train.run import atomic_write_text

    atomic_write_text(root / "summary.json", json.dumps(to_jsonable(rows), indent=1) + "\n")
    return rows


def _submit(args: SweepArgs, todo, root: Path) -> list[str]:
    try:
        import submitit
    except ImportError:
        print("deepscope sweep: --executor local/slurm needs submitit: pip install 'deepscope[cluster]'",
              file=sys.stderr)
        return [point_name(p) for p, _, _ in todo]
    ex = submitit.AutoExecutor(folder=root / "submitit", cluster=args.executor)
    params = {"timeout_min": args.timeout_min, "name": f"deepscope-{args.recipe}"}
    if args.executor == "slurm":
        params.update(slurm_partition=args.slurm_partition, gpus_per_node=args.gpus_per_node,
                      cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                      slurm_array_parallelism=args.max_parallel)
        params = {k: v for k, v in params.items() if v is not None}
    ex.update_parameters(**params)
    failed = []
    # SLURM throttles the array itself; locally, submit in waves of max_parallel.
    wave = len(todo) if args.executor == "slurm" else args.max_parallel
    for s in range(0, len(todo), max(wave, 1)):
        chunk = todo[s : s + wave]
        with ex.batch():
            submitted = [ex.submit(run_point, args.recipe, pa) for _, _, pa in chunk]
        for (p, d, _), job in zip(chunk, submitted):
            try:
                _wait(job, args.executor)
                job.result()
                print(f"  done   {point_name(p)} (job {job.job_id})")
            except Exception as e:  # noqa: BLE001
                failed.append(point_name(p))
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                print(f"  FAILED {point_name(p)} (job {job.job_id}): {msg} (see {d}/error.txt)")
    return failed


def _in_squeue(job_id: str) -> bool | None:
    """Whether SLURM still lists the job (None when squeue cannot be asked)."""
    import subprocess

    try:
        p = subprocess.run(["squeue", "-h", "-j", str(job_id)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(p.stdout.strip()) if p.returncode == 0 else False


def _wait(job, executor: str, poll: float = 5.0, grace: int = 3) -> None:
    """Block until ``job`` finished; fail a SLURM job that left the queue without a result.

    submitit asks ``sacct`` for a job's state; on a cluster without accounting that fails and a
    job killed by ``scancel`` or the OOM killer would be waited for forever. Here a job absent
    from ``squeue`` ``grace`` polls in a row, with no result file, counts as failed (rerun the
    sweep to resume it from its checkpoint).
    """
    if executor != "slurm":
        return
    gone = 0
    while not job.paths.result_pickle.exists():
        queued = _in_squeue(job.job_id)
        if queued is None:  # no squeue here: let submitit decide
            return
        gone = 0 if queued else gone + 1
        if gone >= grace:
            if job.paths.result_pickle.exists():
                return
            raise RuntimeError(f"job {job.job_id} left the SLURM queue without a result "
                               "(cancelled, preempted or killed); rerun the sweep to resume it")
        time.sleep(poll)
