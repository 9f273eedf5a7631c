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

from collections.abc import Sequence

import torch
from torch import nn

from deepscope.nets import MLP, make_activation

__all__ = [
    "ConcatCritic", "HybridCritic", "SeparableCritic", "canonical_pairs", "canonical_terms",
    "gaussian_log_ratio", "gaussian_moments", "joint_scores", "make_critic", "mlp", "pairwise_scores",
    "shrink_covariance",
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


class HybridCritic(ConcatCritic):
    """T(x, y) = q(x, y) + MLP([x, y]): a Gaussian log density ratio plus a learned residual.

    q is the fixed quadratic of :func:`gaussian_log_ratio` (buffers ``mu``, ``m``, ``c``); the
    MLP's last layer starts at zero, so the untrained critic is exactly the Gaussian ratio and
    training only has to learn what the Gaussian misses (tails, nonlinear maps). On
    Gaussianised inputs q is the Gaussian-copula ratio, which is where most of the MI of
    smooth tasks sits; it also needs no data-hungry search for the few informative coordinates.

    Parameters
    ----------
    dim_x, dim_y : int
    hidden : sequence of int
    mu, m, c : tensors from :func:`gaussian_log_ratio` (default: zeros, i.e. a plain MLP critic)
    activation : str
    """

    def __init__(self, dim_x: int, dim_y: int, hidden: Sequence[int] = (100, 100), *,
                 mu: torch.Tensor | None = None, m: torch.Tensor | None = None,
                 c: torch.Tensor | None = None, radial: bool = False, activation: str = "relu"):
        super().__init__(dim_x, dim_y, hidden, activation=activation)
        d = dim_x + dim_y
        self.radial = radial
        if radial:  # the first layer also reads |x|^2 / dx and |y|^2 / dy
            self.radial_w = nn.Linear(2, hidden[0], bias=False)
        self.register_buffer("mu", torch.zeros(d) if mu is None else mu.detach().clone().float())
        self.register_buffer("m", torch.zeros(d, d) if m is None else m.detach().clone().float())
        self.register_buffer("c", torch.zeros(()) if c is None else c.detach().clone().float())
        last = [mod for mod in self.rest.modules() if isinstance(mod, nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()

    def _quad_parts(self, x: torch.Tensor, y: torch.Tensor):
        dx = self.dim_x
        xc, yc = x - self.mu[:dx], y - self.mu[dx:]
        mxx, mxy, myy = self.m[:dx, :dx], self.m[:dx, dx:], self.m[dx:, dx:]
        qx = ((xc @ mxx) * xc).sum(-1)
        qy = ((yc @ myy) * yc).sum(-1)
        return xc, yc @ mxy.T, qx, qy

    def quadratic(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """q(x_i, y_i) for aligned pairs: (K,)."""
        xc, ym, qx, qy = self._quad_parts(x, y)
        return self.c - 0.5 * (qx + qy) - (xc * ym).sum(-1)

    def _halves(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hx, hy = super()._halves(x, y)
        if self.radial:
            w = self.radial_w.weight
            hx = hx + (x * x).mean(-1, keepdim=True) * w[:, 0]
            hy = hy + (y * y).mean(-1, keepdim=True) * w[:, 1]
        return hx, hy

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hx, hy = self._halves(x, y)
        return self.rest(hx + hy).squeeze(-1) + self.quadratic(x, y)

    def scores_at(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        xc, ym, qx, qy = self._quad_parts(x, y)
        q = self.c - 0.5 * (qx[rows] + qy[cols]) - (xc[rows] * ym[cols]).sum(-1)
        return super().scores_at(x, y, rows, cols) + q

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc, ym, qx, qy = self._quad_parts(x, y)
        q = self.c - 0.5 * (qx[:, None] + qy[None, :]) - xc @ ym.T
        return super().pairwise(x, y) + q

    def joint_and_shuffled(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tj, tm = super().joint_and_shuffled(x, y, perm)
        xc, ym, qx, qy = self._quad_parts(x, y)
        qj = self.c - 0.5 * (qx + qy) - (xc * ym).sum(-1)
        qm = self.c - 0.5 * (qx + qy[perm]) - (xc * ym[perm]).sum(-1)
        return tj + qj, tm + qm
