"""Alpha-scaled models, the linearised model, and the probes of how linear training stayed.

Chizat, Oyallon & Bach, "On lazy training in differentiable programming" (arXiv 1812.07956):
``f_alpha = alpha (h(theta) - h(theta_0))`` trained on ``L / alpha^2`` is lazy for large alpha,
its parameters barely move and it follows the linearised model. George, Lajoie & Baratin
(arXiv 2209.09658) compare alpha = 1 (feature learning) with alpha = 100 (lazy).

Cookbook::

    import copy, torch
    from deepscope.dynamics.alpha_scaling import (
        AlphaScaled, linearize, relu_sign_agreement, tangent_kernel,
    )
    from deepscope.dynamics.alignment import cka
    from deepscope.nets import MLP

    net = MLP(40, [64, 64], 10)
    hasty = AlphaScaled(copy.deepcopy(net), alpha=1.0)      # feature learning
    lazy = AlphaScaled(copy.deepcopy(net), alpha=100.0)     # same initialisation, lazy
    x = torch.randn(256, 40)
    lazy.objective(lazy(x).square().mean()).backward()      # the training rule: L / alpha^2
    lin = linearize(net)                                    # h(theta0) + J(theta0)(theta - theta0)

    relu_sign_agreement(lazy, x)                            # 1.0 at initialisation
    k0 = tangent_kernel(lazy, x[:32])                       # (32, 32) traced over the outputs
    float(cka(k0, tangent_kernel(lazy, x[:32]), centered=False))   # kernel rotation: 1.0 here
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AlphaScaled", "Linearized", "linearize", "relu_sign_agreement", "tangent_kernel"]


class AlphaScaled(nn.Module):
    """``f_alpha(x) = alpha * (h(theta, x) - h(theta_0, x))`` with a frozen copy of the initial model.

    Parameters
    ----------
    model : nn.Module
        The network ``h``; it is trained in place (``self.model``). A frozen deep copy taken
        now is ``h(theta_0, .)`` (``self.init``, ``requires_grad=False``), so ``f_alpha`` is zero
        at initialisation for every alpha. Fork two regimes from one initialisation with
        ``AlphaScaled(copy.deepcopy(net), 1.0)`` and ``AlphaScaled(copy.deepcopy(net), 100.0)``.
    alpha : float
        > 0. ``alpha = 1`` is the ordinary network minus its initial output (feature learning);
        ``alpha >> 1`` is lazy training: the parameters move by O(1 / alpha) and ``f_alpha``
        approaches the linearised model (:func:`linearize`).

    Notes
    -----
    **Training rule.** Chizat & Bach's scaling trains on the objective ``L(f_alpha) / alpha**2``
    at an unchanged learning rate ``eta``. Its gradient is ``(1 / alpha) J^T dL/df_alpha``, the
    same update as the gradient ``J^T dL/df_alpha`` at rate ``eta / alpha``. This class
    implements the **objective form**, :meth:`objective`: ``model.objective(loss).backward()``
    with the optimiser built once at the nominal rate. Why this form: every optimiser that is
    linear in the gradient (SGD, momentum, Nesterov) then follows the same trajectory as the
    rate form, while the optimiser, its learning rate and its schedule stay identical across
    alphas, so alpha is the only thing that changes between the two regimes. At initialisation
    the function-space velocity ``-eta J J^T dL/df`` is then independent of alpha.
    Adaptive optimisers (Adam, RMSprop) divide the 1/alpha^2 back out: with them neither
    form gives lazy training.

    ``init`` is evaluated without gradient. Models with batch statistics (BatchNorm in train
    mode) mix examples differently in ``model`` and ``init``; use ``norm='none'``.
    """

    def __init__(self, model: nn.Module, alpha: float):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model is a {type(model).__name__}, must be a torch.nn.Module")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0 \
                or not math.isfinite(alpha):
            raise ValueError(f"alpha == {alpha!r}, must be a finite number > 0 (1: feature "
                             f"learning, 100: lazy)")
        self.model = model
        self.init = copy.deepcopy(model).requires_grad_(False)
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor, *, init_output: torch.Tensor | None = None) -> torch.Tensor:
        """``alpha * (model(x) - init(x))``; pass ``init_output = init(x)`` to reuse it (full batch)."""
        if init_output is None:
            with torch.no_grad():
                init_output = self.init(x)
        return self.alpha * (self.model(x) - init_output)

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The training rule: ``loss / alpha**2`` (see the class notes for why this form)."""
        return loss / self.alpha**2

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class Linearized(nn.Module):
    """``h_lin(theta, x) = h(theta_0, x) + J(theta_0, x) (theta - theta_0)`` (see :func:`linearize`).

    ``self.model`` holds the trainable ``theta`` (a copy of the network, used only for its
    parameters); ``self.init`` is frozen at ``theta_0``. The Jacobian-vector product is exact
    (``torch.func.jvp``) and differentiable in ``theta``, so the linearised model trains with
    the same optimisers as the network.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model is a {type(model).__name__}, must be a torch.nn.Module")
        self.model = copy.deepcopy(model)
        self.init = copy.deepcopy(model).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, jvp

        p0 = {k: v.detach() for k, v in self.init.named_parameters()}
        theta = dict(self.model.named_parameters())
        tangent = {k: theta[k] - p0[k] for k in p0}
        buffers = dict(self.init.named_buffers())
        out, dout = jvp(lambda p: functional_call(self.init, {**p, **buffers}, (x,)), (p0,), (tangent,))
        return out + dout


def linearize(model: nn.Module) -> Linearized:
    """The exact first-order model of ``model`` around its current parameters ``theta_0``.

    Parameters
    ----------
    model : nn.Module
        Copied: the result starts at ``theta = theta_0`` and trains its own copy.

    Returns
    -------
    Linearized
        ``h(theta_0, x) + J(theta_0, x) (theta - theta_0)``, computed with ``torch.func.jvp``.
        ``AlphaScaled(linearize(net), alpha)`` is alpha-independent: the lazy limit of
        ``AlphaScaled(net, alpha)`` as alpha grows.

    Examples
    --------
    >>> from deepscope.nets import MLP
    >>> net = MLP(3, [16], 2)
    >>> x = torch.randn(5, 3)
    >>> torch.allclose(linearize(net)(x), net(x))        # equal at theta_0
    True
    """
    return Linearized(model)


_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_}


class _ReluSigns(torch.overrides.TorchFunctionMode):
    """Record ``input > 0`` at every ReLU call (nn.ReLU, F.relu, torch.relu, Tensor.relu)."""

    def __init__(self) -> None:
        super().__init__()
        self.signs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELUS:
            self.signs.append((args[0] > 0).detach())
        return func(*args, **(kwargs or {}))


def _relu_signs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    mode = _ReluSigns()
    with torch.no_grad(), mode:
        model(x)
    return mode.signs


def relu_sign_agreement(model: nn.Module, x: torch.Tensor, reference: nn.Module | None = None, *,
                        per_layer: bool = False) -> float | list[float]:
    """Fraction of ReLU units (over the probe inputs) whose sign matches the reference network's.

    Parameters
    ----------
    model : nn.Module
        An :class:`AlphaScaled` (compared with its frozen ``init``) or any network.
    x : (N, ...) tensor
        Probe inputs.
    reference : nn.Module, optional
        The network at initialisation; default ``model.init`` for an AlphaScaled.
    per_layer : bool
        Return one fraction per ReLU call (in call order) instead of the pooled fraction.

    Returns
    -------
    float or list of float
        1.0 when every pre-activation has the sign it had at initialisation (lazy training keeps
        the activation pattern; feature learning changes it). Every call of ``nn.ReLU``,
        ``F.relu``, ``torch.relu`` or ``Tensor.relu`` is seen (through a ``TorchFunctionMode``).
    """
    if isinstance(model, AlphaScaled):
        net, reference = model.model, model.init if reference is None else reference
    else:
        net = model
    if reference is None:
        raise ValueError("reference is None and model is not an AlphaScaled: pass the network at "
                         "initialisation as reference=")
    a, b = _relu_signs(net, x), _relu_signs(reference, x)
    if not a:
        raise ValueError("the model calls no ReLU (nn.ReLU, F.relu, torch.relu); sign agreement "
                         "is defined for ReLU networks only")
    if len(a) != len(b) or any(u.shape != v.shape for u, v in zip(a, b)):
        raise ValueError("model and reference call their ReLUs on different shapes; they must "
                         "share one architecture")
    same = [(u == v) for u, v in zip(a, b)]
    if per_layer:
        return [float(s.float().mean()) for s in same]
    return float(sum(int(s.sum()) for s in same) / sum(s.numel() for s in same))


def tangent_kernel(model: nn.Module, x: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """The empirical tangent kernel traced over outputs, ``K[i, j] = sum_o <df_o(x_i), df_o(x_j)>``.

    :func:`deepscope.dynamics.ntk.empirical_ntk` with ``mode="trace"``.

    Parameters
    ----------
    model : nn.Module
        Differentiated with respect to its parameters with ``requires_grad=True`` (for an
        :class:`AlphaScaled`, those of ``model.model``, so the kernel of ``f_alpha`` is
        ``alpha**2`` times that of ``h``; the frozen ``init`` does not count).
    x : (N, ...) tensor
    chunk_size : int, optional
        Examples per block (see ``empirical_ntk``).

    Returns
    -------
    (N, N) tensor
    """
    from deepscope.dynamics.ntk import empirical_ntk

    return empirical_ntk(model, x, mode="trace", chunk_size=chunk_size)
