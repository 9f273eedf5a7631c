"""benchmarks/mi_floor.py's exact critics: E_P[log ratio] is each family's true MI."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from deepscope.mi import tasks

_spec = importlib.util.spec_from_file_location(
    "mi_floor", Path(__file__).resolve().parents[2] / "benchmarks" / "mi_floor.py")
mi_floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mi_floor)


@pytest.mark.parametrize("family", sorted(tasks.FAMILIES))
def test_exact_ratio_averages_to_the_true_mi(family):
    x, y, truth = tasks.FAMILIES[family](40_000, 123)
    t = mi_floor.exact_ratios()[family](x.astype(np.float64), y.astype(np.float64))
    assert np.isfinite(t).all()  # joint pairs are always in the support
    se = t.std() / np.sqrt(len(t))
    assert abs(t.mean() - truth) < 4 * se + 2e-3, (t.mean(), truth, se)
    # and the read-out (joint and shuffled pairs, 750 rows) lands near it
    assert mi_floor.read_out(mi_floor.exact_ratios()[family], x[:750], y[:750],
                             np.random.default_rng(0)) == pytest.approx(truth, abs=0.25)
