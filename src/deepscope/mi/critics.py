"""Statistics networks ("critics") T(x, y) for the MI bounds.

Every critic is a plain ``nn.Module`` with two methods:

- ``forward(x, y) -> (K,)``: scores of aligned pairs (x_i, y_i);
- ``pairwise(x, y) -> (K, K)``: ``s[i, j] = T(x_i, y_j)`` for all pairs.

>>> import torch
>>> from deepscope.mi.critics import ConcatCritic, SeparableCritic, pairwise_scores
>>> x, y = torch.randn(8, 5), torch.randn(8, 5)
>>> t = ConcatCritic(dim_x=5, dim_y=5, hidden=(100, 100))
>>> t.pairwise(x, y).shape                     # K^2 pairs, first layer shared
torch.Size([8, 8])
>>> t = SeparableCritic(5, 5, hidden=(256,), embed=32)
>>> t.pairwise(x, y).shape                     # 2K forward passes, one matmul
torch.Size([8, 8])
>>> pairwise_scores(t, x, y).shape             # any module with forward(x, y)
torch.Size([8, 8])

A user module only needs ``forward(x, y) -> (K,)`` or ``(K, 1)``;
:func:`pairwise_scores` falls back to evaluating the K^2 pairs in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from deepscope.nets import MLP, make_activation

__all__ = [
    "ConcatCritic", "HybridCritic", "SeparableCritic", "canonical_pairs", "canonical_terms",
    "gaussian_log_ratio", "gaussian_moments", "joint_scores", "make_critic", "mlp", "pairwise_scores",
    "shrink_covariance", "student_t_copula_ratio", "student_t_quantile_table",
]

def mlp(dim_in: int, hidden: Sequence[int], dim_out: int, *, activation: str = "relu") -> nn.Sequential:
    """A plain MLP ``dim_in -> hidden... -> dim_out`` that keeps leading dimensions."""
    return MLP(dim_in, hidden, dim_out, activation=activation, flatten=False)


class ConcatCritic(nn.Module):
    """T(x, y) = MLP([x, y]): the critic of the MINE paper.

    The first layer is split as W [x; y] = W_x x + W_y y, so the K^2 pairs of
    :meth:`pairwise` share K + K first-layer products instead of K^2.

    Parameters
    ----------
    dim_x, dim_y : int
    hidden : sequence of int
        Hidden widths (at least one layer). Default (100, 100), the 2x100 critic
        of public MINE replications.
    activation : str
        'relu', 'elu', 'gelu', 'tanh' or 'softplus'.
    """

    def __init__(self, dim_x: int, dim_y: int, hidden: Sequence[int] = (100, 100), *, activation: str = "relu"):
        super().__init__()
        if len(hidden) < 1:
            raise ValueError("hidden == (), ConcatCritic needs at least one hidden layer")
        self.dim_x, self.dim_y = dim_x, dim_y
        self.first = nn.Linear(dim_x + dim_y, hidden[0])
        self.rest = nn.Sequential(make_activation(activation), *mlp(hidden[0], hidden[1:], 1, activation=activation))

    def _halves(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.first.weight
        return x @ w[:, : self.dim_x].T, y @ w[:, self.dim_x :].T + self.first.bias

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scores of aligned pairs: (K, dx), (K, dy) -> (K,)."""
        return self.rest(self.first(torch.cat([x, y], dim=1))).squeeze(-1)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """All pairs: (K, dx), (L, dy) -> (K, L) with s[i, j] = T(x_i, y_j)."""
        hx, hy = self._halves(x, y)
        h = hx[:, None, :] + hy[None, :, :]
        return self.rest(h).squeeze(-1)

    def scores_at(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Scores of the pairs (x[rows[k]], y[cols[k]]): (P,), the first layer computed once per row."""
        hx, hy = self._halves(x, y)
        return self.rest(hx[rows] + hy[cols]).squeeze(-1)

    def joint_and_shuffled(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of (x_i, y_i) and (x_i, y_perm[i]) in one pass through the hidden layers."""
        hx, hy = self._halves(x, y)
        h = torch.cat([hx + hy, hx + hy[perm]], dim=0)
        t = self.rest(h).squeeze(-1)
        k = x.shape[0]
        return t[:k], t[k:]


class SeparableCritic(nn.Module):
    """T(x, y) = g(x)^T h(y): all K^2 scores from 2K network evaluations and one matmul.

    Parameters
    ----------
    dim_x, dim_y : int
    hidden : sequence of int
        Hidden widths of both embedding networks.
    embed : int
        Embedding dimension (32 in Song & Ermon's staircase).
    """

    def __init__(self, dim_x: int, dim_y: int, hidden: Sequence[int] = (256, 256), *, embed: int = 32, activation: str = "relu"):
        super().__init__()
        self.g = mlp(dim_x, hidden, embed, activation=activation)
        self.h = mlp(dim_y, hidden, embed, activation=activation)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.g(x) * self.h(y)).sum(-1)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(x) @ self.h(y).T

    def joint_and_shuffled(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gx, hy = self.g(x), self.h(y)
        return (gx * hy).sum(-1), (gx * hy[perm]).sum(-1)


def _as_scores(t: torch.Tensor, n: int, who: str) -> torch.Tensor:
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (n,):
        raise ValueError(
            f"critic returned shape {tuple(t.shape)} for {n} pairs; {who} must return (K,) or (K, 1)"
        )
    return t


def pairwise_scores(critic: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K, L) scores s[i, j] = critic(x_i, y_j), using ``critic.pairwise`` when it exists."""
    if hasattr(critic, "pairwise"):
        return critic.pairwise(x, y)
    k, n = x.shape[0], y.shape[0]
    xx = x.repeat_interleave(n, dim=0)
    yy = y.repeat(k, *([1] * (y.ndim - 1)))
    return _as_scores(critic(xx, yy), k * n, type(critic).__name__).reshape(k, n)


def joint_scores(critic: nn.Module, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of aligned pairs and of (x_i, y_perm[i]) pairs, in one call when the critic allows it."""
    if hasattr(critic, "joint_and_shuffled"):
        return critic.joint_and_shuffled(x, y, perm)
    k = x.shape[0]
    t = _as_scores(critic(torch.cat([x, x]), torch.cat([y, y[perm]])), 2 * k, type(critic).__name__)
    return t[:k], t[k:]


def make_critic(kind: str, dim_x: int, dim_y: int, *, hidden: Sequence[int], embed: int = 32, activation: str = "relu") -> nn.Module:
    """Build a critic by name: ``'concat'`` or ``'separable'``."""
    if kind == "concat":
        return ConcatCritic(dim_x, dim_y, hidden, activation=activation)
    if kind == "separable":
        return SeparableCritic(dim_x, dim_y, hidden, embed=embed, activation=activation)
    raise ValueError(f"critic == {kind!r}; choose 'concat', 'separable' or pass an nn.Module")


def gaussian_moments(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of the rows of [x, y], in float64.

    Accumulated a block of rows at a time about the first row (no full-size float64 copy of
    the data, no cancellation for data far from the origin).
    """
    dx, n = x.shape[1], x.shape[0]
    step = max(1, (1 << 18) // (dx + y.shape[1]))
    s1 = torch.zeros(dx + y.shape[1], dtype=torch.float64, device=x.device)
    s2 = torch.zeros(s1.shape[0], s1.shape[0], dtype=torch.float64, device=x.device)
    shift = torch.cat([x[0], y[0]]).double()
    for i in range(0, n, step):
        z = torch.cat([x[i : i + step], y[i : i + step]], dim=1).double() - shift
        s1 += z.sum(0)
        s2 += z.T @ z
    return s1 / n + shift, (s2 - torch.outer(s1, s1) / n) / max(n - 1, 1)


def shrink_covariance(s: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """(1 - shrinkage) S + shrinkage diag(S), plus a 1e-9 relative ridge (shrinkage in [0, 1])."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage == {shrinkage}, must be in [0, 1]")
    s = (1.0 - shrinkage) * s + shrinkage * torch.diag(torch.diagonal(s))
    return s + 1e-9 * torch.eye(s.shape[0], dtype=s.dtype, device=s.device) * torch.diagonal(s).mean()


def canonical_pairs(s: torch.Tensor, dx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical correlation analysis of a joint covariance ``s`` of [x (dx), y].

    Returns ``wx (K, dx)``, ``wy (K, dy)`` and ``r (K,)``, K = min(dx, dy), with the canonical
    correlations r in decreasing order: a_k = wx[k] (x - mu_x) and b_k = wy[k] (y - mu_y) have
    unit variance, corr(a_k, b_k) = r_k and all other pairs are uncorrelated.
    """
    def inv_sqrt(a: torch.Tensor) -> torch.Tensor:
        w, v = torch.linalg.eigh(a)
        return (v * w.clamp_min(1e-12 * w.abs().max()).rsqrt()) @ v.T

    ax, ay = inv_sqrt(s[:dx, :dx]), inv_sqrt(s[dx:, dx:])
    u, r, vt = torch.linalg.svd(ax @ s[:dx, dx:] @ ay)
    k = r.shape[0]
    # |r| < 1 strictly: a deterministic pair would make the ratio infinite (1 - r^2 >= 1e-8)
    return u[:, :k].T @ ax, vt[:k] @ ay, r.clamp(max=(1.0 - 1e-8) ** 0.5)


def canonical_terms(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Per canonical pair, the log density ratio of the bivariate Gaussian with correlation r_k.

    ``a``, ``b``: (..., K) canonical variates of x and y; returns (..., K). Summed over the
    first k pairs it is the rank-k Gaussian ratio, so one cumulative sum scores every rank.
    """
    one_m = 1.0 - r * r
    return -0.5 * torch.log(one_m) - (r * r * (a * a + b * b) - 2.0 * r * a * b) / (2.0 * one_m)


def gaussian_log_ratio(
    x: torch.Tensor, y: torch.Tensor, *, shrinkage: float = 0.0, rank: int | None = None,
    moments: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The log density ratio log p(x, y) / p(x) p(y) of the Gaussian fitted to paired rows.

    For z = [x, y] ~ N(mu, S): log p(z) / p(x) p(y) = c - (z - mu)^T M (z - mu) / 2 with
    M = S^-1 - blockdiag(S_xx^-1, S_yy^-1) and c = (log det S_xx + log det S_yy - log det S) / 2,
    the Gaussian MI (so E_P of the ratio is c). ``shrinkage`` in [0, 1] pulls S towards its
    diagonal, S <- (1 - shrinkage) S + shrinkage diag(S): 1 gives M = 0 (independence).
    ``rank`` keeps only the ``rank`` strongest canonical pairs (reduced-rank CCA: the ratio
    is the sum of one bivariate Gaussian ratio per canonical pair, :func:`canonical_terms`);
    ``None`` (or min(dx, dy)) is the full ratio, 0 independence. With few informative
    directions among many coordinates, the dropped pairs are the fitted noise that the
    full ratio pays for on held-out rows (about one nat per 2n per fitted cross-covariance).

    Parameters
    ----------
    x : (N, dx) tensor
    y : (N, dy) tensor
    shrinkage : float
    rank : int or None
    moments : (mu, S) from :func:`gaussian_moments`, to reuse them (default: computed here)

    Returns
    -------
    mu : (dx + dy,) tensor, m : (dx + dy, dx + dy) tensor, c : scalar tensor (float32)
    """
    dx = x.shape[1]
    mu, s = gaussian_moments(x, y) if moments is None else moments
    s = shrink_covariance(s, shrinkage)
    if rank is None:
        p = torch.linalg.inv(s)
        m = p.clone()
        m[:dx, :dx] -= torch.linalg.inv(s[:dx, :dx])
        m[dx:, dx:] -= torch.linalg.inv(s[dx:, dx:])
        m = (m + m.T) / 2
        c = 0.5 * (torch.logdet(s[:dx, :dx]) + torch.logdet(s[dx:, dx:]) - torch.logdet(s))
        return mu.float(), m.float(), c.float()
    k_max = min(dx, y.shape[1])
    if not 0 <= rank <= k_max:
        raise ValueError(f"rank == {rank}, must be in [0, min(dx, dy)] = [0, {k_max}]")
    wx, wy, r = canonical_pairs(s, dx)
    wx, wy, r = wx[:rank], wy[:rank], r[:rank]
    one_m = 1.0 - r * r
    # per pair: (r^2 a^2 + r^2 b^2 - 2 r a b) / (1 - r^2) = [a b] B_k [a b]^T, and z -> (a, b) is W
    w = torch.zeros(2 * rank, s.shape[0], dtype=s.dtype, device=s.device)
    w[:rank, :dx], w[rank:, dx:] = wx, wy
    b = torch.diag(torch.cat([r * r / one_m, r * r / one_m]))
    i = torch.arange(rank, device=s.device)
    b[i, rank + i] = b[rank + i, i] = -r / one_m
    m = w.T @ b @ w
    c = -0.5 * torch.log(one_m).sum()
    return mu.float(), ((m + m.T) / 2).float(), c.float()


#: The normal scores a Student-t part maps: |z| beyond it is clamped (a Gaussianiser fitted on
#: fewer than 10^6 rows never goes past 4.9).
T_TABLE_Z_MAX = 6.0


def student_t_quantile_table(dof: float, *, z_max: float = T_TABLE_Z_MAX, points: int = 2049) -> torch.Tensor:
    """The Student-t quantile of the standard normal CDF, F_nu^-1(Phi(z)), on a uniform z grid.

    Returns ``(points,)`` float64 values at ``torch.linspace(-z_max, z_max, points)``: the
    monotone map that turns normal scores into t scores with ``dof`` degrees of freedom.
    Computed without scipy (whose import costs more than an estimate): with t = sqrt(nu)
    sinh(s), the t density becomes c cosh(s)^-nu in s, whose CDF a fine trapezoid on
    s in [-30, 30] gives to about 1e-9 (the mass beyond s = -30 is below e^-30); each Phi(z)
    is then inverted by linear interpolation in s. Symmetric by construction.
    """
    if not dof > 0:
        raise ValueError(f"dof == {dof}, must be > 0")
    s = torch.linspace(-30.0, 0.0, 30_001, dtype=torch.float64)
    log_f = -dof * (torch.logaddexp(s, -s) - math.log(2.0))  # log cosh(s)^-nu
    f = torch.exp(log_f - log_f.max())
    cdf = torch.cat([f.new_zeros(1), torch.cumulative_trapezoid(f, s)])
    cdf = cdf / (2.0 * cdf[-1])  # the half line s <= 0 holds half the mass
    z = torch.linspace(-z_max, 0.0, points // 2 + 1, dtype=torch.float64)
    p = torch.special.ndtr(z)
    i = torch.searchsorted(cdf, p).clamp(1, len(s) - 1)
    w = (p - cdf[i - 1]) / (cdf[i] - cdf[i - 1]).clamp_min(1e-300)
    q = math.sqrt(dof) * torch.sinh(s[i - 1] + w * (s[i] - s[i - 1]))
    q[-1] = 0.0
    return torch.cat([q, -q[:-1].flip(0)])


def student_t_copula_ratio(corr: torch.Tensor, dx: int, dof: float) -> dict[str, torch.Tensor]:
    """The log density ratio of a Student-t copula, as buffers for :class:`HybridCritic`.

    For normal scores z = [z_x, z_y] (Gaussianised columns) mapped to t scores
    u = F_nu^-1(Phi(z)) (:func:`student_t_quantile_table`), the t copula with correlation
    ``corr`` (D, D) and ``dof`` degrees of freedom has

        log c(z) / c_x(z_x) c_y(z_y) = log t_nu(u; R) - log t_nu(u_x; R_xx) - log t_nu(u_y; R_yy)

    (the univariate t densities of the copulas cancel), with the multivariate t density
    log t_nu(u; R) = log G((nu + d) / 2) - log G(nu / 2) - d/2 log(nu pi) - 1/2 log det R
    - (nu + d)/2 log(1 + u^T R^-1 u / nu). This is the exact ratio when X and Y share a
    heavy-tailed scale (a multivariate t, whatever the marginal maps), which no Gaussian
    ratio captures; nu -> infinity gives the Gaussian-copula ratio. ``corr`` is the
    correlation of the normal scores (close to the t copula's R for moderate correlations).

    Returns ``{"dof", "m", "m_x", "m_y", "c", "qmap"}``: the joint precision R^-1, the blocks'
    own precisions, the constant and the quantile table.
    """
    d = corr.shape[0]
    dy = d - dx
    r = corr.double()
    lg = torch.special.gammaln
    nu = torch.tensor(float(dof), dtype=torch.float64)
    c = (lg((nu + d) / 2) + lg(nu / 2) - lg((nu + dx) / 2) - lg((nu + dy) / 2)
         - 0.5 * (torch.logdet(r) - torch.logdet(r[:dx, :dx]) - torch.logdet(r[dx:, dx:])))
    sym = lambda a: ((a + a.T) / 2).float()  # noqa: E731
    return {"dof": nu.float(), "m": sym(torch.linalg.inv(r)), "m_x": sym(torch.linalg.inv(r[:dx, :dx])),
            "m_y": sym(torch.linalg.inv(r[dx:, dx:])), "c": c.float(),
            "qmap": student_t_quantile_table(float(dof)).float()}


class HybridCritic(ConcatCritic):
    """T(x, y) = q(x, y) + MLP([x, y]): a parametric log density ratio plus a learned residual.

    q is fixed (buffers): the Gaussian ratio of :func:`gaussian_log_ratio` (``mu``, ``m``,
    ``c``) or, with ``dof``, the Student-t copula ratio of :func:`student_t_copula_ratio`
    (``dof``, ``m``, ``m_x``, ``m_y``, ``c``, ``qmap``). The MLP's last layer starts at zero, so
    the untrained critic is exactly q and training only has to learn what q misses (tails,
    nonlinear maps). On Gaussianised inputs the Gaussian q is the Gaussian-copula ratio, which
    is where most of the MI of smooth tasks sits; it also needs no data-hungry search for the
    few informative coordinates.

    Parameters
    ----------
    dim_x, dim_y : int
    hidden : sequence of int
    mu, m, c : tensors from :func:`gaussian_log_ratio` (default: zeros, i.e. a plain MLP critic)
    dof, m_x, m_y, qmap : the Student-t part's other buffers (default: the Gaussian part)
    activation : str
    """

    def __init__(self, dim_x: int, dim_y: int, hidden: Sequence[int] = (100, 100), *,
                 mu: torch.Tensor | None = None, m: torch.Tensor | None = None,
                 c: torch.Tensor | None = None, dof: torch.Tensor | None = None,
                 m_x: torch.Tensor | None = None, m_y: torch.Tensor | None = None,
                 qmap: torch.Tensor | None = None, radial: bool = False, activation: str = "relu"):
        super().__init__(dim_x, dim_y, hidden, activation=activation)
        d = dim_x + dim_y
        self.radial = radial
        if radial:  # the first layer also reads |x|^2 / dx and |y|^2 / dy
            self.radial_w = nn.Linear(2, hidden[0], bias=False)
        buf = lambda name, t, shape: self.register_buffer(  # noqa: E731
            name, torch.zeros(shape) if t is None else t.detach().clone().float())
        buf("mu", mu, d)
        buf("m", m, (d, d))
        buf("c", c, ())
        self.student_t = dof is not None
        if self.student_t:
            buf("dof", dof, ())
            buf("m_x", m_x, (dim_x, dim_x))
            buf("m_y", m_y, (dim_y, dim_y))
            buf("qmap", qmap, qmap.shape)
        last = [mod for mod in self.rest.modules() if isinstance(mod, nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()

    def _t_scores(self, z: torch.Tensor) -> torch.Tensor:
        """Normal scores -> t scores through the quantile table (clamped to its range)."""
        n = self.qmap.shape[0]
        pos = ((z / T_TABLE_Z_MAX).clamp(-1.0, 1.0) + 1.0) * (0.5 * (n - 1))
        i = pos.floor().clamp(max=n - 2).long()
        w = pos - i
        return self.qmap[i] * (1.0 - w) + self.qmap[i + 1] * w

    def _parametric_rows(self, x: torch.Tensor, y: torch.Tensor):
        """Per-row parts of q: (a (Nx, dx), b (Ny, dx), sx, sy) with q(x_i, y_j) depending on the
        rows only through sx[i], sy[j] and the cross term a_i . b_j (:meth:`_combine`)."""
        dx = self.dim_x
        if self.student_t:
            ux, uy = self._t_scores(x), self._t_scores(y)
            mxx, mxy, myy = self.m[:dx, :dx], self.m[:dx, dx:], self.m[dx:, dx:]
            sx = torch.stack([((ux @ mxx) * ux).sum(-1), ((ux @ self.m_x) * ux).sum(-1)], -1)
            sy = torch.stack([((uy @ myy) * uy).sum(-1), ((uy @ self.m_y) * uy).sum(-1)], -1)
            return ux, uy @ mxy.T, sx, sy
        xc, yc = x - self.mu[:dx], y - self.mu[dx:]
        mxx, mxy, myy = self.m[:dx, :dx], self.m[:dx, dx:], self.m[dx:, dx:]
        return xc, yc @ mxy.T, ((xc @ mxx) * xc).sum(-1), ((yc @ myy) * yc).sum(-1)

    def _combine(self, sx: torch.Tensor, sy: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        if not self.student_t:  # c - (z - mu)^T M (z - mu) / 2
            return self.c - 0.5 * (sx + sy) - cross
        nu, dx, dy = self.dof, self.dim_x, self.dim_y
        joint = (sx[..., 0] + sy[..., 0] + 2.0 * cross).clamp_min(0.0)
        return (self.c - 0.5 * (nu + dx + dy) * torch.log1p(joint / nu)
                + 0.5 * (nu + dx) * torch.log1p(sx[..., 1] / nu)
                + 0.5 * (nu + dy) * torch.log1p(sy[..., 1] / nu))

    def parametric(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """q(x_i, y_i) for aligned pairs: (K,)."""
        a, b, sx, sy = self._parametric_rows(x, y)
        return self._combine(sx, sy, (a * b).sum(-1))

    def _halves(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hx, hy = super()._halves(x, y)
        if self.radial:
            w = self.radial_w.weight
            hx = hx + (x * x).mean(-1, keepdim=True) * w[:, 0]
            hy = hy + (y * y).mean(-1, keepdim=True) * w[:, 1]
        return hx, hy

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hx, hy = self._halves(x, y)
        return self.rest(hx + hy).squeeze(-1) + self.parametric(x, y)

    def scores_at(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        a, b, sx, sy = self._parametric_rows(x, y)
        q = self._combine(sx[rows], sy[cols], (a[rows] * b[cols]).sum(-1))
        return super().scores_at(x, y, rows, cols) + q

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b, sx, sy = self._parametric_rows(x, y)
        q = self._combine(sx[:, None], sy[None, :], a @ b.T)
        return super().pairwise(x, y) + q

    def joint_and_shuffled(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tj, tm = super().joint_and_shuffled(x, y, perm)
        a, b, sx, sy = self._parametric_rows(x, y)
        qj = self._combine(sx, sy, (a * b).sum(-1))
        qm = self._combine(sx, sy[perm], (a * b[perm]).sum(-1))
        return tj + qj, tm + qm
