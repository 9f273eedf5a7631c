"""Summaries over seeds: mean, standard deviation and a 95% interval, for result tables.

One rule for every table of the project: NaN values (a run that produced no number) are
dropped and counted in ``n_missing``; an infinite value makes the mean infinite and the spread
NaN; an empty list gives NaN everywhere and ``n == 0``.

>>> from deepscope.train.stats import summarise
>>> s = summarise([23.0, 25.0, 24.0])
>>> s["mean"], s["n"], [round(v, 2) for v in s["ci95"]]
(24.0, 3, [21.52, 26.48])
>>> summarise([1.0, float("nan")])["n_missing"]
1
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["summarise"]


def summarise(values: Iterable[float]) -> dict:
    """``{"mean", "std", "ci95", "n", "n_missing", "values"}`` of per-seed values.

    Parameters
    ----------
    values : iterable of float
        One number per seed (or per run). NaN marks a missing number.

    Returns
    -------
    dict
        ``mean``; ``std``, the sample standard deviation (ddof = 1; 0 for one value);
        ``ci95``, the two-sided 95% Student-t interval of the mean (``(mean, mean)`` for one
        value); ``n``, the values used; ``n_missing``, the NaN values dropped; ``values``, the
        values used, in order.
    """
    import numpy as np
    from scipy import stats

    a = np.asarray([float(v) for v in values], dtype=float)
    missing = int(np.isnan(a).sum())
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": (math.nan, math.nan), "n": 0,
                "n_missing": missing, "values": []}
    mean = float(a.mean())
    if a.size == 1:
        std, half = 0.0, 0.0
    else:
        with np.errstate(invalid="ignore"):
            std = float(a.std(ddof=1))
        half = float(stats.t.ppf(0.975, a.size - 1)) * std / math.sqrt(a.size)
    return {"mean": mean, "std": std, "ci95": (mean - half, mean + half), "n": int(a.size),
            "n_missing": missing, "values": a.tolist()}
