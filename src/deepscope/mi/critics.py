"""Statistics networks ("critics") T(x, y) for the MI bounds.

Every critic is a plain ``nn.Module`` with two methods:

- ``forward(x, y) -> (K,)``: scores of aligned pairs (x_i, y_i);
- ``pairwise(x, y) -> (K, K)``: ``s[i, j] = T(x_i, y_j)`` for all pairs.

>>> from deepscope.mi.critics import ConcatCritic, SeparableCritic, pairwise_scores
>>> t = ConcatCritic(dim_x=5, dim_y=5, hidden=(100, 100))
>>> s = t.pairwise(x, y)                       # doctest: +SKIP   K^2 pairs, first layer shared
>>> t = SeparableCritic(5, 5, hidden=(256,), embed=32)
>>> s = t.pairwise(x, y)                       # doctest: +SKIP   2K forward passes, one matmul
>>> s = pairwise_scores(my_module, x, y)       # doctest: +SKIP   any module with forward(x, y)

A user module only needs ``forward(x, y) -> (K,)`` or ``(K, 1)``;
:func:`pairwise_scores` falls back to evaluating the K^2 pairs in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope.nets import MLP, make_activation

__all__ = ["ConcatCritic", "SeparableCritic", "mlp", "pairwise_scores", "joint_scores", "make_critic"]

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


def gaussian_log_ratio(
    x: torch.Tensor, y: torch.Tensor, *, shrinkage: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The log density ratio log p(x, y) / p(x) p(y) of the Gaussian fitted to paired rows.

    For z = [x, y] ~ N(mu, S): log p(z) / p(x) p(y) = c - (z - mu)^T M (z - mu) / 2 with
    M = S^-1 - blockdiag(S_xx^-1, S_yy^-1) and c = (log det S_xx + log det S_yy - log det S) / 2,
    the Gaussian MI (so E_P of the ratio is c). ``shrinkage`` in [0, 1] pulls S towards its
    diagonal, S <- (1 - shrinkage) S + shrinkage diag(S): 1 gives M = 0 (independence).

    Parameters
    ----------
    x : (N, dx) tensor
    y : (N, dy) tensor
    shrinkage : float

    Returns
    -------
    mu : (dx + dy,) tensor, m : (dx + dy, dx + dy) tensor, c : scalar tensor (float32)
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage == {shrinkage}, must be in [0, 1]")
    dx, n = x.shape[1], x.shape[0]
    # moments in float64, a block of rows at a time (no full-size float64 copy of the data)
    step = max(1, (1 << 18) // (dx + y.shape[1]))
    s1 = torch.zeros(dx + y.shape[1], dtype=torch.float64, device=x.device)
    s2 = torch.zeros(s1.shape[0], s1.shape[0], dtype=torch.float64, device=x.device)
    shift = torch.cat([x[0], y[0]]).double()
    for i in range(0, n, step):
        z = torch.cat([x[i : i + step], y[i : i + step]], dim=1).double() - shift
        s1 += z.sum(0)
        s2 += z.T @ z
    mu = s1 / n + shift
    s = (s2 - torch.outer(s1, s1) / n) / max(n - 1, 1)
    s = (1.0 - shrinkage) * s + shrinkage * torch.diag(torch.diagonal(s))
    s = s + 1e-9 * torch.eye(s.shape[0], dtype=s.dtype) * torch.diagonal(s).mean()
    p = torch.linalg.inv(s)
    m = p.clone()
    m[:dx, :dx] -= torch.linalg.inv(s[:dx, :dx])
    m[dx:, dx:] -= torch.linalg.inv(s[dx:, dx:])
    m = (m + m.T) / 2
    c = 0.5 * (torch.logdet(s[:dx, :dx]) + torch.logdet(s[dx:, dx:]) - torch.logdet(s))
    return mu.float(), m.float(), c.float()


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
