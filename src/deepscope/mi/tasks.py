"""Distributions with known mutual information, for tests and benchmarks.

>>> from deepscope.mi import tasks
>>> x, y, mi = tasks.correlated_gaussian(10_000, d=20, rho=0.5, seed=0)      # mi = -10 log(0.75)
>>> x, y, mi = tasks.correlated_gaussian(5000, d=5, mi=2.0, seed=0)          # choose the MI instead
>>> x, y, mi = tasks.transformed_gaussian(5000, d=5, mi=2.0, transform="cubic", seed=0)
>>> x, y, mi = tasks.uniform_noise(5000, d=2, eps=0.3, seed=0)               # Y = X + U(0, eps)
>>> steps, truth = tasks.staircase_schedule()                                # Song & Ermon 2020
>>> x, y, mi = tasks.sparse_gaussian(5000, d=25, k=3, mi=1.5, seed=0)        # 3 of 25 pairs informative
>>> x, y, mi = tasks.mapped_gaussian(5000, d=3, mi=1.0, map="spiral", seed=0)  # mixes coordinates
>>> x, y, mi = tasks.student_t(5000, dim_x=2, dim_y=2, dof=2.0, seed=0)      # MI in the tails
>>> x, y, mi = tasks.FAMILIES["shear-5d"](5000, 0)                           # the benchmark's families

All samplers return float32 numpy arrays ``x (N, d)``, ``y (N, d)`` and the true MI in nats.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FAMILIES",
    "MAPS",
    "mapped_gaussian",
    "shear",
    "sparse_gaussian",
    "spiral",
    "student_t",
    "student_t_mi",
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


# -- hard families -----------------------------------------------------------------------
# Each sampler returns float32 x (N, dx), y (N, dy) and the true MI in nats, from its seed.


def sparse_gaussian(
    n: int, *, d: int = 25, k: int = 3, mi: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """X, Y in R^d with only the first ``k`` coordinate pairs correlated (equally); the rest is noise.

    The MI, ``mi`` nats, sits in k of the d x d cross-pairs: a critic must find the few
    informative coordinates among 2d inputs. Truth: the Gaussian closed form with d = k.
    """
    if not 1 <= k <= d:
        raise ValueError(f"k == {k}, must be in [1, d] with d == {d}")
    rng = np.random.default_rng(seed)
    rho = rho_for_mi(mi, k)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d))
    y[:, :k] = rho * x[:, :k] + math.sqrt(1.0 - rho * rho) * y[:, :k]
    return x.astype(np.float32), y.astype(np.float32), gaussian_mi_closed_form(k, rho)


def shear(a: np.ndarray, *, amplitude: float = 1.0, inverse: bool = False) -> np.ndarray:
    """A smooth, volume-preserving, invertible map of R^d (d >= 2): two additive couplings.

    With u = the first half of the coordinates and v = the rest:
    v <- v + amplitude * sin(u_j) (u_j cycling over u), then u <- u + amplitude * tanh(v_j).
    Each coupling has a unit-triangular Jacobian, so det J = 1; MI is invariant under it.
    """
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"shear needs (N, d) with d >= 2; got shape {a.shape}")
    out = np.array(a, dtype=np.float64, copy=True)
    h = out.shape[1] // 2
    u, v = out[:, :h], out[:, h:]
    ju = np.arange(v.shape[1]) % h      # which u coordinate drives each v coordinate
    jv = np.arange(h) % v.shape[1]
    if not inverse:
        v += amplitude * np.sin(u[:, ju])
        u += amplitude * np.tanh(v[:, jv])
    else:
        u -= amplitude * np.tanh(v[:, jv])
        v -= amplitude * np.sin(u[:, ju])
    return out


def spiral(a: np.ndarray, *, speed: float = 1 / 3, inverse: bool = False) -> np.ndarray:
    """Rotate each coordinate plane (0,1), (2,3), ... by the angle ``speed * |a|^2`` (d >= 2).

    A rotation whose angle depends only on the norm: it keeps the norm, so it is inverted
    by rotating back, and it preserves volume (BMI's spiral diffeomorphism, Czyz et al. 2023,
    whose default speed, 1/3, is this one's; BMI rotates one plane, this rotates every pair).
    """
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"spiral needs (N, d) with d >= 2; got shape {a.shape}")
    out = np.array(a, dtype=np.float64, copy=True)
    theta = speed * (out * out).sum(1) * (-1.0 if inverse else 1.0)
    c, s = np.cos(theta), np.sin(theta)
    for i in range(0, out.shape[1] - 1, 2):
        p, q = out[:, i].copy(), out[:, i + 1].copy()
        out[:, i], out[:, i + 1] = c * p - s * q, s * p + c * q
    return out


#: Smooth invertible maps of R^d applied to X and Y separately by :func:`mapped_gaussian`.
MAPS = {"shear": shear, "spiral": spiral}


def mapped_gaussian(
    n: int, *, d: int = 3, mi: float = 1.0, map: str = "spiral", seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Correlated Gaussian with a smooth nonlinear volume-preserving map of R^d applied to X and to Y.

    Unlike :func:`transformed_gaussian` the map mixes coordinates (``'shear'``: additive
    couplings; ``'spiral'``: a norm-dependent rotation), so per-column Gaussianisation does not
    undo it. The MI is the Gaussian's: an invertible map of X (or of Y) leaves I(X;Y) unchanged.
    """
    if map not in MAPS:
        raise ValueError(f"map == {map!r}; choose one of {sorted(MAPS)}")
    x, y, truth = correlated_gaussian(n, d=d, mi=mi, seed=seed)
    f = MAPS[map]
    return f(x.astype(np.float64)).astype(np.float32), f(y.astype(np.float64)).astype(np.float32), truth


def _digamma(z: float) -> float:
    # recurrence up to z >= 6, then the asymptotic series (error < 1e-12 there)
    acc = 0.0
    while z < 6.0:
        acc -= 1.0 / z
        z += 1.0
    f = 1.0 / (z * z)
    return acc + math.log(z) - 0.5 / z - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))


def _t_entropy_term(d: int, dof: float) -> float:
    # h(t_d(dof, S)) = log det S / 2 + (d / 2) log(dof pi) + this term
    return (math.lgamma(dof / 2) - math.lgamma((dof + d) / 2)
            + (dof + d) / 2 * (_digamma((dof + d) / 2) - _digamma(dof / 2)))


def student_t_mi(dim_x: int, dim_y: int, dof: float, rho: float = 0.0) -> float:
    """I(X;Y) of a multivariate Student-t (X, Y) with ``dof`` degrees of freedom, in nats.

    Scale matrix: identity within X and within Y, corr(X_i, Y_i) = rho for i < min(dx, dy).
    Closed form from the entropy of the multivariate t (Arellano-Valle, Contreras-Reyes &
    Genton, Scand. J. Statist. 40, 2013; used by BMI, Czyz et al. 2023):
    I = I_Gauss(scale) + c(dx) + c(dy) - c(dx + dy), with
    c(d) = log G(v/2) - log G((v + d)/2) + (v + d)/2 [psi((v + d)/2) - psi(v/2)].
    The c terms are > 0 even at rho = 0: the shared radius carries information (heavy tails).
    """
    if not dof > 0:
        raise ValueError(f"dof == {dof}, must be > 0")
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho == {rho}, must be in (-1, 1)")
    gauss = gaussian_mi_closed_form(min(dim_x, dim_y), rho)
    c = _t_entropy_term
    return gauss + c(dim_x, dof) + c(dim_y, dof) - c(dim_x + dim_y, dof)


def student_t(
    n: int, *, dim_x: int = 2, dim_y: int = 2, dof: float = 3.0, rho: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Multivariate Student-t (X, Y): a correlated Gaussian divided by one shared sqrt(chi2_dof / dof).

    See :func:`student_t_mi` for the scale matrix and the closed-form MI. With ``rho = 0``
    the coordinates are uncorrelated yet dependent: all the MI is in the tails.
    """
    truth = student_t_mi(dim_x, dim_y, dof, rho)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim_x))
    y = rng.standard_normal((n, dim_y))
    m = min(dim_x, dim_y)
    y[:, :m] = rho * x[:, :m] + math.sqrt(1.0 - rho * rho) * y[:, :m]
    w = np.sqrt(rng.chisquare(dof, size=(n, 1)) / dof)
    return (x / w).astype(np.float32), (y / w).astype(np.float32), truth


#: The task families of benchmarks/mi_speed.py: name -> sampler(n, seed) -> (x, y, mi).
#: Chosen to be hard for a critic, with dimensions up to 25 + 25 and MI mostly below 2 nats.
FAMILIES = {
    "gaussian-5d": lambda n, seed: correlated_gaussian(n, d=5, mi=1.0, seed=seed),
    "gaussian-25d": lambda n, seed: correlated_gaussian(n, d=25, mi=2.0, seed=seed),
    "sparse-25d": lambda n, seed: sparse_gaussian(n, d=25, k=3, mi=1.5, seed=seed),
    "shear-5d": lambda n, seed: mapped_gaussian(n, d=5, mi=1.0, map="shear", seed=seed),
    "spiral-3d": lambda n, seed: mapped_gaussian(n, d=3, mi=1.0, map="spiral", seed=seed),
    "student-t-2d-dof2": lambda n, seed: student_t(n, dim_x=2, dim_y=2, dof=2.0, seed=seed),
    "student-t-5d-dof3": lambda n, seed: student_t(n, dim_x=5, dim_y=5, dof=3.0, rho=0.5, seed=seed),
    "additive-noise-2d": lambda n, seed: uniform_noise(n, d=2, eps=0.5, seed=seed),
    "cubic-25d": lambda n, seed: transformed_gaussian(n, d=25, mi=1.0, transform="cubic", seed=seed),
}
