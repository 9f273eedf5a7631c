"""The thin base of deepscope's attacks: bounds, norm balls, steepest-ascent steps, eval mode.

An attack stores its hyperparameters and implements ``perturb(x, y, generator)``; the base
validates the inputs, puts the model in eval mode while attacking (and gives every module its
own mode back afterwards), and returns a detached tensor inside the ε-ball and the bounds.

Bounds are ``(lo, hi)``: Python numbers, or tensors broadcastable to one example's shape
(per-feature bounds), or ``±inf`` for no bound. Norms are ``'linf'`` and ``'l2'`` (per
example, over all of its features).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Attack", "LpNorm", "LP_NORMS", "Bounds", "LossFn",
    "as_bounds", "check_in_bounds", "clamp", "project", "ascent_step", "random_start",
    "eval_mode", "cross_entropy", "kl_divergence",
]

#: The threat models' norms (not to be confused with :data:`deepscope.nets.NORMS`, layers).
LpNorm = Literal["linf", "l2"]
LP_NORMS = ("linf", "l2")
Bounds = tuple[float | torch.Tensor, float | torch.Tensor]
#: ``loss(logits, target) -> (N,)`` per-example loss that the attack maximises.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy ``(N,)`` of ``logits`` (N, K) against labels ``y`` (N,)."""
    return F.cross_entropy(logits, y, reduction="none")


def kl_divergence(logits: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """Per-example ``KL(p_clean || softmax(logits))`` ``(N,)``: TRADES' inner loss (arXiv 1901.08573)."""
    logp = F.log_softmax(logits, dim=1)
    return (p_clean * (torch.log(p_clean.clamp_min(1e-12)) - logp)).sum(1)


def check_norm(norm: str) -> str:
    """``norm`` if it is one of :data:`LP_NORMS`, else a ValueError naming them."""
    if norm not in LP_NORMS:
        raise ValueError(f"norm == {norm!r}, must be one of {list(LP_NORMS)}")
    return norm


def as_bounds(bounds: Bounds, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)`` as tensors on ``x``'s device and dtype, broadcastable to ``x`` (N, ...).

    Each bound is a number or a tensor of one example's shape (or broadcastable to it).
    """
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds == {bounds!r}, must be a pair (lo, hi) of numbers or tensors")
    out = []
    for name, b in zip(("lo", "hi"), bounds):
        t = torch.as_tensor(b, dtype=x.dtype, device=x.device)
        try:
            torch.broadcast_shapes(t.shape, x.shape[1:])
        except RuntimeError:
            raise ValueError(f"bounds {name} has shape {tuple(t.shape)}, must broadcast to one "
                             f"example's shape {tuple(x.shape[1:])}") from None
        if t.isnan().any():
            raise ValueError(f"bounds {name} contains NaN; pass numbers or finite/±inf tensors")
        out.append(t)
    lo, hi = out
    if (lo > hi).any():
        raise ValueError(f"bounds == ({_show(bounds[0])}, {_show(bounds[1])}): lo > hi somewhere; "
                         "pass lo <= hi")
    return lo, hi


def _show(b) -> str:
    if isinstance(b, torch.Tensor) and b.numel() > 1:
        return f"tensor of shape {tuple(b.shape)}"
    return repr(float(b))


def check_in_bounds(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, *, tol: float = 1e-5) -> None:
    """Raise ``ValueError`` if ``x`` leaves ``[lo, hi]`` by more than ``tol``."""
    below, above = (lo - x).max().item(), (x - hi).max().item()
    if below > tol or above > tol:
        raise ValueError(
            f"x lies outside bounds (by {max(below, above):.4g}: x in [{x.min().item():.4g}, "
            f"{x.max().item():.4g}]); pass the data's bounds, e.g. bounds=(x.min(), x.max())"
        )


def clamp(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``x`` clipped to ``[lo, hi]`` elementwise (bounds broadcast over the batch)."""
    return torch.maximum(torch.minimum(x, hi), lo)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shaped (N, 1, 1, ...) to broadcast against ``t``."""
    n = t.flatten(1).norm(dim=1)
    return n.view(-1, *([1] * (t.ndim - 1)))


def project(delta: torch.Tensor, eps: float, norm: LpNorm) -> torch.Tensor:
    """Project perturbations ``delta`` (N, ...) onto the ε-ball of ``norm`` (per example)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
    return delta * scale


def ascent_step(grad: torch.Tensor, size: float, norm: LpNorm) -> torch.Tensor:
    """The steepest-ascent step of length ``size`` in ``norm``: ``size·sign(g)`` or ``size·g/‖g‖₂``."""
    if norm == "linf":
        return size * grad.sign()
    return size * grad / _flat_norm(grad).clamp_min(1e-12)


def random_start(x: torch.Tensor, eps: float, norm: LpNorm, generator: torch.Generator) -> torch.Tensor:
    """A perturbation drawn uniformly from the ε-ball of ``norm`` (on CPU, then moved to ``x``)."""
    shape = x.shape
    if norm == "linf":
        delta = (2 * torch.rand(shape, generator=generator) - 1) * eps
    else:
        d = math.prod(shape[1:])
        direction = torch.randn(shape, generator=generator)
        direction = direction / _flat_norm(direction).clamp_min(1e-12)
        radius = torch.rand(shape[0], generator=generator) ** (1.0 / d) * eps
        delta = direction * radius.view(-1, *([1] * (len(shape) - 1)))
    return delta.to(device=x.device, dtype=x.dtype)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode; each module gets its own mode back after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


class Attack:
    """Base of the attacks: stores hyperparameters; subclasses implement :meth:`perturb`.

    Parameters
    ----------
    model : nn.Module
        Maps (N, ...) inputs to (N, K) logits.
    eps : float
        Radius of the threat model's ball (>= 0).
    norm : 'linf' or 'l2'
    bounds : (lo, hi)
        The input domain: numbers or per-feature tensors; the adversarial input is clipped to it.
    loss : callable, optional
        ``loss(logits, target) -> (N,)`` to maximise; default cross-entropy against labels.
    """

    def __init__(self, model: nn.Module, *, eps: float, norm: LpNorm = "linf",
                 bounds: Bounds = (0.0, 1.0), loss: LossFn | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model is a {type(model).__name__}, must be a torch.nn.Module")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps == {eps!r}, must be a finite number >= 0")
        self.model = model
        self.eps = float(eps)
        self.norm = check_norm(norm)
        self.bounds = bounds
        self.loss = loss if loss is not None else cross_entropy

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial version of ``x`` (N, ...) for targets ``y`` (N,) labels or (N, K) probabilities.

        ``generator`` feeds random starts; None is PyTorch's default generator (as ``torch.rand``).
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x is a {type(x).__name__}, must be a floating-point tensor (N, ...)")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"y.shape[0] == {y.shape[0]}, must equal x.shape[0] == {x.shape[0]}")
        lo, hi = as_bounds(self.bounds, x)
        check_in_bounds(x, lo, hi)
        with eval_mode(self.model), torch.enable_grad():
            x_adv = self.perturb(x.detach(), y.detach(), lo, hi, generator)
        return x_adv.detach()

    def perturb(self, x: torch.Tensor, y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def input_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(∇_x Σ loss, per-example loss)`` at ``x``; parameters' ``.grad`` are left untouched."""
        x = x.detach().requires_grad_(True)
        loss = self.loss(self.model(x), y)
        (g,) = torch.autograd.grad(loss.sum(), x)
        return g, loss.detach()

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if k not in ("model", "loss", "bounds")]
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"
