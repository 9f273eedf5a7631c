"""Distributions with known mutual information, for tests and benchmarks.

>>> from deepscope.mi import tasks
>>> x, y, mi = tasks.correlated_gaussian(10_000, d=20, rho=0.5, seed=0)      # mi = -10 log(0.75)
>>> x, y, mi = tasks.correlated_gaussian(5000, d=5, mi=2.0, seed=0)          # choose the MI instead
>>> x, y, mi = tasks.transformed_gaussian(5000, d=5, mi=2.0, transform="cubic", seed=0)
>>> x, y, mi = tasks.uniform_noise(5000, d=2, eps=0.3, seed=0)               # Y = X + U(0, eps)
>>> steps, truth = tasks.staircase_schedule()                                # Song & Ermon 2020

All samplers return float32 numpy arrays ``x (N, d)``, ``y (N, d)`` and the true MI in nats.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "rho_for_mi",
    "gaussian_mi_closed_form",
    "correlated_gaussian",
    "transformed_gaussian",
    "uniform_noise",
    "staircase_schedule",
    "TRANSFORMS",
]


def gaussian_mi_closed_form(d: int, rho: float) -> float:
    """I(X;Y) = -(d/2) log(1 - rho^2) for X, Z in R^d with corr(X_i, Z_j) = delta_ij rho."""
    return -0.5 * d * math.log1p(-rho * rho)


def rho_for_mi(mi: float, d: int) -> float:
    """The correlation that gives ``mi`` nats in the d-dimensional correlated Gaussian."""
    if mi < 0:
        raise ValueError(f"mi == {mi}, must be >= 0")
    return math.sqrt(-math.expm1(-2.0 * mi / d))


def correlated_gaussian(
    n: int, *, d: int, rho: float | None = None, mi: float | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Sample X, Y in R^d, standard normal marginals, corr(X_i, Y_j) = delta_ij rho.

    Give exactly one of ``rho`` (in (-1, 1)) or ``mi`` (nats). The MINE paper's
    Figure 1 uses d in {2, 20} and rho in {-0.99, ..., 0.99}.
    """
    if (rho is None) == (mi is None):
        raise ValueError("give exactly one of rho= or mi=")
    if n < 2 or d < 1:
        raise ValueError(f"n == {n}, d == {d}; need n >= 2 and d >= 1")
    if rho is None:
        rho = rho_for_mi(mi, d)
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho == {rho}, must be in (-1, 1)")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1.0 - rho * rho) * rng.standard_normal((n, d))
    return x.astype(np.float32), y.astype(np.float32), gaussian_mi_closed_form(d, rho)


# Invertible per-coordinate maps: MI is unchanged by them.
TRANSFORMS = {
    "identity": lambda a: a,
    "cubic": lambda a: a**3,                      # Song & Ermon's cubic staircase
    "exp": np.exp,                                # log-normal marginals: heavy right tail
    "sinh": lambda a: np.sinh(2.0 * a),           # heavy tails on both sides
    "half-cube": lambda a: np.sign(a) * np.abs(a) ** 1.5,  # BMI's half-cube map
}


def transformed_gaussian(
    n: int, *, d: int, mi: float, transform: str = "cubic", seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Correlated Gaussian with an invertible map applied to every coordinate of X and Y.

    The MI is the Gaussian one (it is invariant under invertible per-coordinate maps),
    but the marginals are no longer Gaussian: ``'cubic'``, ``'exp'`` (log-normal),
    ``'sinh'``, ``'half-cube'``, or ``'identity'``.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform == {transform!r}; choose one of {sorted(TRANSFORMS)}")
    x, y, truth = correlated_gaussian(n, d=d, mi=mi, seed=seed)
    f = TRANSFORMS[transform]
    return f(x.astype(np.float64)).astype(np.float32), f(y.astype(np.float64)).astype(np.float32), truth


def uniform_noise(n: int, *, d: int = 1, eps: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """X ~ U(0, 1)^d, Y = X + U(0, eps)^d, independent coordinates, eps in (0, 1].

    Y's density is a trapezoid with entropy eps/2, so per coordinate
    I = h(Y) - h(Y|X) = eps/2 - log(eps); in all, d times that. Non-Gaussian and
    bounded: a check that an estimator is not tuned to Gaussians.
    """
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps == {eps}, must be in (0, 1]")
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    y = x + eps * rng.uniform(size=(n, d))
    return x.astype(np.float32), y.astype(np.float32), d * (eps / 2.0 - math.log(eps))


def staircase_schedule(
    levels: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0), steps_per_level: int = 4000
) -> tuple[np.ndarray, np.ndarray]:
    """The staircase of Song & Ermon (2020): true MI per training step.

    Returns ``steps (T,)`` and ``truth (T,)`` with T = len(levels) * steps_per_level;
    the default is 2, 4, 6, 8, 10 nats, 4,000 steps each (20,000 steps; d = 20, batch 64).
    """
    truth = np.repeat(np.asarray(levels, dtype=np.float64), steps_per_level)
    return np.arange(len(truth)), truth
