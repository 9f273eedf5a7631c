"""The grid helper: sub-runs per setting and seed, skip finished, one summary rule."""

import math

import pytest

from deepscope.train import Run
from deepscope.train.run import NullRun
from deepscope.train.stats import summarise


def test_summarise_student_t_interval_and_nan_rule():
    s = summarise([23.0, 25.0, 24.0])
    assert s["mean"] == 24.0 and s["n"] == 3 and s["n_missing"] == 0
    assert s["ci95"][0] == pytest.approx(21.516, abs=1e-3)
    s = summarise([1.0, float("nan"), 3.0])
    assert (s["n"], s["n_missing"], s["mean"]) == (2, 1, 2.0)
    e = summarise([])
    assert e["n"] == 0 and math.isnan(e["mean"])
    one = summarise([5.0])
    assert one["std"] == 0.0 and tuple(one["ci95"]) == (5.0, 5.0)


def test_grid_runs_each_cell_once_and_resumes(tmp_path):
    calls = []

    def fn(sub, setting, seed):
        calls.append((setting, seed))
        return {"acc": 0.5 + 0.1 * seed + (0.2 if setting == ("b", "x") else 0.0), "pair": (1, 2)}

    run = Run(tmp_path / "r", config={}, seed=0, progress=False)
    settings = [("a", "x"), ("b", "x")]
    g = run.grid(settings, [0, 1], fn)
    assert len(calls) == 4
    assert (tmp_path / "r" / "b" / "x" / "seed1" / "result.json").exists()
    s = g.summary("acc", scale=100, digits=2)
    assert s[("a", "x")]["mean"] == pytest.approx(55.0) and s[("b", "x")]["n"] == 2
    g2 = Run(tmp_path / "r", config={}, seed=0, progress=False).grid(settings, [0, 1], fn)
    assert len(calls) == 4, "finished cells must be read back, not rerun"
    assert g2.cells == g.cells  # fresh and resumed grids hold the same (JSON) values
    assert g.values(("a", "x"), "missing") == [pytest.approx(math.nan, nan_ok=True)] * 2


def test_grid_without_a_run_writes_nothing():
    g = NullRun().grid(["s"], [3], lambda sub, s, seed: {"v": seed})
    assert g.results("s") == [{"v": 3}]
