"""Baselines: the Kraskov (KSG) nearest-neighbour estimator and Gaussian closed forms.

>>> import numpy as np
>>> from deepscope.mi.knn import ksg, gaussian_mi, gaussian_mi_estimate
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 2)); y = 0.8 * x + 0.6 * rng.normal(size=(2000, 2))
>>> round(ksg(x, y, k=3, random_state=0), 2)          # truth: -log(1 - 0.8**2) = 1.02
1.04
>>> cov = np.array([[1, .5], [.5, 1]]); print(round(gaussian_mi(cov, dim_x=1), 4))
0.1438

KSG (Kraskov, Stoegbauer & Grassberger 2004, estimator 1) is accurate in low
dimension and low MI; its bias grows with both, which the MINE paper's Figure 1
shows. Neighbour search is scipy's cKDTree with the max-norm.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

__all__ = ["ksg", "gaussian_mi", "gaussian_mi_estimate"]


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} has shape {a.shape}; pass (N,) or (N, D)")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values; remove or impute those rows")
    return a


def ksg(x, y, *, k: int = 3, noise: float = 1e-10, random_state: int | None = 0) -> float:
    """KSG estimate of I(X;Y) in nats (Kraskov et al. 2004, estimator 1).

    Parameters
    ----------
    x : (N, Dx) or (N,) array
    y : (N, Dy) or (N,) array
    k : int
        Number of neighbours in the joint space (3 is the usual choice).
    noise : float
        Scale of the jitter added to standardised data to break ties (discrete values).
    random_state : int or None
        Seed of the jitter.

    Returns
    -------
    float
        I = psi(k) + psi(N) - mean[psi(n_x + 1) + psi(n_y + 1)], clipped at 0,
        where n_x, n_y count the points strictly within each point's k-th
        neighbour distance (max-norm) in the marginal spaces.
    """
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} rows and y has {y.shape[0]}; they must be paired")
    if not 1 <= k < n:
        raise ValueError(f"k == {k}, must be in [1, N) with N == {n}")
    rng = np.random.default_rng(random_state)

    def prep(a):
        sd = a.std(0)
        a = (a - a.mean(0)) / np.where(sd > 0, sd, 1.0)
        return a + noise * rng.standard_normal(a.shape)

    x, y = prep(x), prep(y)
    xy = np.hstack([x, y])
    # distance to the k-th neighbour (the point itself is neighbour 0)
    eps = cKDTree(xy).query(xy, k=k + 1, p=np.inf)[0][:, -1]
    # strictly closer than eps: shrink the radius by one ulp
    r = np.nextafter(eps, 0)
    nx = cKDTree(x).query_ball_point(x, r, p=np.inf, return_length=True) - 1
    ny = cKDTree(y).query_ball_point(y, r, p=np.inf, return_length=True) - 1
    mi = digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1))
    return float(max(mi, 0.0))


def gaussian_mi(cov, dim_x: int) -> float:
    """Exact I(X;Y) in nats for a joint Gaussian with covariance ``cov``.

    Parameters
    ----------
    cov : (Dx + Dy, Dx + Dy) array
        Joint covariance; X is the first ``dim_x`` coordinates.
    dim_x : int

    Notes
    -----
    I = (log det S_xx + log det S_yy - log det S) / 2.
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov has shape {cov.shape}; must be square")
    if not 0 < dim_x < cov.shape[0]:
        raise ValueError(f"dim_x == {dim_x}, must be in [1, {cov.shape[0] - 1}]")

    def logdet(a):
        sign, val = np.linalg.slogdet(a)
        if sign <= 0:
            raise ValueError("cov is not positive definite")
        return val

    return 0.5 * (logdet(cov[:dim_x, :dim_x]) + logdet(cov[dim_x:, dim_x:]) - logdet(cov))


def gaussian_mi_estimate(x, y) -> float:
    """Plug-in Gaussian MI: :func:`gaussian_mi` of the sample covariance.

    Consistent for Gaussian data; for other data it measures only the linear
    (second-order) dependence, so it can be far from the truth. A quick baseline.
    """
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows and y has {y.shape[0]}; they must be paired")
    return gaussian_mi(np.cov(np.hstack([x, y]), rowvar=False), x.shape[1])
