"""Summaries over seeds: mean, standard deviation and a 95% interval, for result tables.

>>> from deepscope.mi.stats import over_seeds
>>> s = over_seeds([23.0, 25.0, 24.0])
>>> s["mean"], s["n"], [round(v, 2) for v in s["ci95"]]
(24.0, 3, [21.52, 26.48])
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["over_seeds"]


def over_seeds(values: Iterable[float]) -> dict:
    """``{"mean", "std", "ci95", "n"}`` of per-seed values.

    ``std`` is the sample standard deviation (ddof = 1; 0 for one value); ``ci95`` the
    two-sided 95% Student-t interval of the mean (``(mean, mean)`` for one value). Values
    may be ``inf`` (a KL with no high-quality sample): the mean is then ``inf`` and the
    spread ``nan``.
    """
    import numpy as np
    from scipy import stats

    a = np.asarray([float(v) for v in values], dtype=float)
    if a.size == 0:
        raise ValueError("values is empty; need at least one seed's value")
    mean = float(a.mean())
    if a.size == 1:
        return {"mean": mean, "std": 0.0, "ci95": (mean, mean), "n": 1}
    with np.errstate(invalid="ignore"):
        std = float(a.std(ddof=1))
    half = float(stats.t.ppf(0.975, a.size - 1)) * std / math.sqrt(a.size)
    return {"mean": mean, "std": std, "ci95": (mean - half, mean + half), "n": int(a.size)}
