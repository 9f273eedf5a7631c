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
