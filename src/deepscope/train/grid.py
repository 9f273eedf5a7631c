"""Sub-runs over settings and seeds, and their summaries: what every multi-seed recipe does.

``run.grid(settings, seeds, fn)`` runs ``fn(sub, setting, seed) -> dict`` once per setting and
seed in its own sub-run ``<run dir>/<setting path>/seed<seed>``, writes each returned dict as
that sub-run's ``result.json``, skips the sub-runs that are finished (they are read back), and
returns a :class:`Grid` that summarises any number over seeds with one rule
(:func:`deepscope.train.stats.summarise`)::

    def one(sub, setting, seed):
        method, noise = setting
        res = train_ce(..., generator=sub.generator("train"), run=sub)
        return {"last": res.last_test_acc}

    g = run.grid([("ce", "sym40"), ("ce", "sym60")], seeds=[0, 1, 2], fn=one)
    g.summary("last", scale=100)      # {("ce", "sym40"): {"mean", "std", "ci95", "n", ...}, ...}
    g.results(("ce", "sym40"))        # the three seeds' dicts, in seed order

A setting is a string or a tuple of strings (the parts of its sub-run path); a recipe never
builds the path or globs its run directory itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepscope.train.jsonio import from_json, to_jsonable
from deepscope.train.stats import summarise

__all__ = ["Grid", "run_grid", "setting_path"]

Setting = Hashable


def setting_path(setting: Setting) -> str:
    """The sub-run path of a setting: ``'a/b'`` for ``('a', 'b')``, ``str(setting)`` otherwise."""
    if isinstance(setting, tuple):
        return "/".join(str(p) for p in setting)
    return str(setting)


@dataclass
class Grid:
    """The results of a grid of sub-runs, keyed by ``(setting, seed)``.

    Attributes
    ----------
    settings : list
        The settings, in the order given.
    seeds : list of int
        The seeds, in the order given.
    cells : dict of (setting, seed) -> dict
        Each sub-run's result (what ``fn`` returned, or its stored ``result.json``).
    dirs : dict of (setting, seed) -> Path or None
        Each sub-run's directory (None without a run directory), to read its side files.
    """

    settings: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    cells: dict = field(default_factory=dict)
    dirs: dict = field(default_factory=dict)

    def results(self, setting: Setting) -> list[dict]:
        """The results of ``setting``, one per seed, in seed order (missing seeds left out)."""
        return [self.cells[(setting, s)] for s in self.seeds if (setting, s) in self.cells]

    def values(self, setting: Setting, key: str | Callable[[dict], float]) -> list[float]:
        """``key`` (a result key, or a function of a result) of each seed of ``setting``.

        A result without the key gives NaN, which :func:`summarise` counts as missing.
        """
        get = key if callable(key) else (lambda r: r.get(key, float("nan")))
        return [float(get(r)) for r in self.results(setting)]

    def summary(self, key: str | Callable[[dict], float], *, scale: float = 1.0,
                digits: int | None = None) -> dict:
        """``{setting: summarise(values * scale)}`` for every setting; rounded to ``digits``."""
        out = {}
        for setting in self.settings:
            st = summarise(v * scale for v in self.values(setting, key))
            if digits is not None:
                st = _rounded(st, digits)
            out[setting] = st
        return out


def _rounded(st: dict, digits: int) -> dict:
    r = lambda v: round(v, digits)  # noqa: E731
    return {**st, "mean": r(st["mean"]), "std": r(st["std"]),
            "ci95": [r(c) for c in st["ci95"]], "values": [r(v) for v in st["values"]]}


def run_grid(run: Any, settings: Iterable[Setting], seeds: Sequence[int],
             fn: Callable[[Any, Setting, int], dict], *,
             config: Callable[[Setting, int], Any] | None = None) -> Grid:
    """Run ``fn(sub, setting, seed)`` for every setting and seed; see the module docstring.

    Parameters
    ----------
    run : Run or NullRun
        The parent run; each cell is ``run.child(f"{setting_path(setting)}/seed{seed}",
        config=config(setting, seed), seed=seed)``.
    settings : iterable of str or tuple of str
    seeds : sequence of int
        Each cell's sub-run is seeded with its seed (``sub.generator(name)`` derives from it).
    fn : callable
        ``fn(sub, setting, seed) -> dict``, the cell's headline numbers (JSON-able); written
        to the sub-run's ``result.json``. A finished sub-run is not run again: its stored
        result is read back, so a rerun with the same ``--out`` resumes the grid.
    config : callable, optional
        ``config(setting, seed)``, the sub-run's ``config.json`` (compared on resume).

    Returns
    -------
    Grid
    """
    settings = list(settings)
    seeds = [int(s) for s in seeds]
    grid = Grid(settings=settings, seeds=seeds)
    for setting in settings:
        for seed in seeds:
            sub = run.child(f"{setting_path(setting)}/seed{seed}",
                            config=None if config is None else config(setting, seed), seed=seed)
            grid.dirs[(setting, seed)] = sub.dir
            if sub.finished:
                grid.cells[(setting, seed)] = sub.read_result()
                continue
            result = fn(sub, setting, seed)
            sub.write_result(result)
            # as a resumed grid reads it back: JSON types, infinities as floats
            grid.cells[(setting, seed)] = from_json(json.loads(json.dumps(to_jsonable(result))))
    return grid
