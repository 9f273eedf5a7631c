"""``MILoss``: a differentiable mutual-information term for use inside other objectives.

>>> import torch
>>> from deepscope.mi import MILoss, adaptive_gradient_clip
>>> mi = MILoss(dim_x=2, dim_y=8)                 # concat critic, MINE bound with moving average
>>> x, z = torch.randn(128, 2), torch.randn(128, 8)
>>> value = mi(x, z)                               # scalar, in nats; gradient flows to x, z and the critic
>>> value = mi(x, z, generator=torch.Generator().manual_seed(0))   # the permutation from a generator

Maximising MI (a GAN generator, Belghazi et al. 2018 section 5.1): the generator and
the critic both ascend ``value``::

    loss_g = gan_loss - beta * mi(fake, z)        # critic params get their grads from the same backward

Minimising MI (an information bottleneck, section 5.3): the critic ascends, the
encoder descends; take two steps::

    critic_opt.zero_grad(); (-mi(x, code.detach())).backward(); critic_opt.step()
    loss = ce + beta * mi(x, code)                # then step only the encoder/decoder optimiser

``adaptive_gradient_clip`` combines a main loss and an MI term so the MI gradient
never outweighs the main one: g = g_u + min(|g_u|, |g_m|) g_m / |g_m|.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import nn

from deepscope.mi import bounds
from deepscope.mi.critics import joint_scores, make_critic, pairwise_scores

__all__ = ["MILoss", "adaptive_gradient_clip", "bound_on_batch"]


def bound_on_batch(
    critic: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bound: bounds.Bound,
    pairs: Literal["shuffle", "all"] = "shuffle",
    log_ema: torch.Tensor | None = None,
    alpha: float = 0.01,
    tau: float = 5.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Score a batch with ``critic`` and return :func:`bounds.objective` on it: ``(value, log_ema)``.

    Parameters
    ----------
    critic : nn.Module
        ``forward(x, y) -> (K,)`` (and optionally ``pairwise``/``joint_and_shuffled``).
    x : (K, dx) tensor
    y : (K, dy) tensor
        Paired rows.
    bound : {'mine', 'dv', 'nwj', 'infonce', 'smile'}
    pairs : {'shuffle', 'all'}
        Marginal pairs: ``'shuffle'`` pairs x_i with y_perm(i) for a random permutation
        (K pairs; MINE's and ``MILoss``'s), ``'all'`` uses every i != j (K(K-1) pairs; the
        staircase's). InfoNCE always scores all K x K pairs.
    log_ema, alpha, tau :
        See :func:`bounds.objective`.
    generator : torch.Generator, optional
        Draws the permutation (on the CPU). ``None``: torch's global RNG, as dropout does.

    Notes
    -----
    This is the step objective of ``MINE.fit``, ``MILoss`` and ``train_staircase``.
    """
    if bound == "infonce" or pairs == "all":
        tj, tm = bounds.pair_scores(bound, pairwise_scores(critic, x, y))
    else:
        k = x.shape[0]
        perm = (torch.randperm(k, device=x.device) if generator is None
                else torch.randperm(k, generator=generator).to(x.device))
        tj, tm = joint_scores(critic, x, y, perm)
    return bounds.objective(bound, tj, tm, log_ema=log_ema, alpha=alpha, tau=tau)


class MILoss(nn.Module):
    """The MI between two batches of tensors as a differentiable scalar (nats).

    Parameters
    ----------
    critic : nn.Module, optional
        A statistics network with ``forward(x, y) -> (K,)``. Built from
        ``dim_x``/``dim_y``/``hidden`` when omitted.
    dim_x, dim_y : int, optional
        Input sizes for the default concatenated-input critic.
    hidden : sequence of int
        Hidden widths of the default critic.
    bound : str
        ``'mine'`` (DV value, bias-corrected gradient through a moving average; default),
        ``'dv'``, ``'nwj'``, ``'infonce'`` or ``'smile'``.
    alpha : float
        Moving-average weight of the new batch for ``'mine'`` (0.01 as in public code).
    tau : float
        Clipping for ``'smile'``.

    Notes
    -----
    Inputs are ``(K, dx)`` and ``(K, dy)`` tensors or numpy arrays, cast to the critic's dtype
    and device (float64 or integer input works with the float32 default critic); 1-D inputs are
    taken as (K, 1).
    Marginal pairs come from a fresh random permutation of ``y`` each call (all K x K
    pairs for ``'infonce'``), drawn from ``forward``'s ``generator`` argument, or from
    torch's global RNG when it is omitted (PyTorch's convention, as for dropout).
    """

    def __init__(
        self,
        critic: nn.Module | None = None,
        *,
        dim_x: int | None = None,
        dim_y: int | None = None,
        hidden: Sequence[int] = (100, 100),
        bound: bounds.Bound = "mine",
        alpha: float = 0.01,
        tau: float = 5.0,
    ) -> None:
        super().__init__()
        bounds.check_bound(bound)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha == {alpha}, must be in (0, 1]")
        if critic is None:
            if dim_x is None or dim_y is None:
                raise ValueError("MILoss needs either critic=... or both dim_x and dim_y")
            critic = make_critic("concat", dim_x, dim_y, hidden=hidden)
        self.critic = critic
        self.bound = bound
        self.alpha = alpha
        self.tau = tau
        self.register_buffer("log_ema", torch.tensor(math.nan))

    def forward(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The bound on the batch ``(x, y)``, a scalar tensor in nats.

        ``generator`` draws the permutation that forms marginal pairs (None: the global RNG).
        """
        x, y = self._as_input(x), self._as_input(y)
        x = x[:, None] if x.ndim == 1 else x
        y = y[:, None] if y.ndim == 1 else y
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows and y has {y.shape[0]}; they must be paired")
        k = x.shape[0]
        if k < 2:
            raise ValueError(f"batch size == {k}, must be >= 2 to form marginal pairs")
        state = None if torch.isnan(self.log_ema) else self.log_ema
        value, new = bound_on_batch(self.critic, x, y, bound=self.bound, generator=generator,
                                    log_ema=state, alpha=self.alpha, tau=self.tau)
        if new is not None and self.training and torch.is_grad_enabled():
            self.log_ema.copy_(new)
        return value

    def _as_input(self, t) -> torch.Tensor:
        # numpy arrays and other dtypes are cast to the critic's (a float64 batch into a float32
        # critic would fail inside a matmul); the cast is differentiable
        t = torch.as_tensor(t)
        p = next((q for q in self.critic.parameters() if q.is_floating_point()), None)
        if p is not None and (t.dtype != p.dtype or t.device != p.device):
            t = t.to(device=p.device, dtype=p.dtype)
        elif not t.is_floating_point():
            t = t.float()
        return t

    def extra_repr(self) -> str:
        return f"bound={self.bound!r}, alpha={self.alpha}"


def adaptive_gradient_clip(
    main_loss: torch.Tensor, mi_term: torch.Tensor, params: Iterable[nn.Parameter]
) -> dict[str, float]:
    """Set ``p.grad`` to g_u + min(|g_u|, |g_m|) g_m / |g_m| for the given parameters.

    g_u is the gradient of ``main_loss`` and g_m of ``mi_term`` (pass the MI term with
    the sign and weight it has in the total loss, e.g. ``-beta * mi``); norms are
    global over ``params``. This is the adaptive clipping of Belghazi et al. 2018
    (section 5.1): the MI term can steer but never dominate. Gradients already in
    ``p.grad`` are overwritten. Returns both norms, for logging.
    """
    params = [p for p in params if p.requires_grad]
    g_u = torch.autograd.grad(main_loss, params, retain_graph=True, allow_unused=True)
    g_m = torch.autograd.grad(mi_term, params, retain_graph=True, allow_unused=True)
    g_u = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_u)]
    g_m = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_m)]
    nu = torch.sqrt(sum((g * g).sum() for g in g_u))
    nm = torch.sqrt(sum((g * g).sum() for g in g_m))
    scale = torch.where(nm > 0, torch.minimum(nu, nm) / nm.clamp_min(1e-30), torch.zeros_like(nm))
    for p, a, b in zip(params, g_u, g_m):
        p.grad = a + scale * b
    return {"grad_main_norm": float(nu), "grad_mi_norm": float(nm)}
