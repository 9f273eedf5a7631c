"""FGSM: one step of size ε along the sign of the input gradient (Goodfellow et al., arXiv 1412.6572).

``x_adv = clip(x + ε·sign(∇_x L(x, y)), lo, hi)`` for L∞; for L2 the step is ``ε·g/‖g‖₂``
(the fast gradient method).
"""

from __future__ import annotations

from deepscope.robust.attacks.base import Attack, ascent_step, clamp

__all__ = ["FGSM"]


class FGSM(Attack):
    """Fast gradient sign method (one step, no random start).

    Parameters are those of :class:`~deepscope.robust.attacks.base.Attack`.

    Examples
    --------
    >>> import torch
    >>> from deepscope.robust.attacks import FGSM
    >>> net = torch.nn.Linear(4, 3)
    >>> x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = FGSM(net, eps=0.1, bounds=(0.0, 1.0))(x, y)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    """

    def perturb(self, x, y, lo, hi, generator):
        g, _ = self.input_grad(x, y)
        return clamp(x + ascent_step(g, self.eps, self.norm), lo, hi)

