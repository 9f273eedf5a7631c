"""White-box attacks used in training and evaluation: FGSM and PGD, L∞ and L2, any bounds.

>>> import torch
>>> from deepscope.robust.attacks import FGSM, PGD
>>> net = torch.nn.Linear(40, 10)
>>> x, y = torch.randn(8, 40).clamp(-4.3, 4.8), torch.randint(10, (8,))
>>> x_adv = FGSM(net, eps=0.3, bounds=(-4.3, 4.8))(x, y)                    # one step
>>> g = torch.Generator().manual_seed(0)
>>> x_adv = PGD(net, eps=0.3, bounds=(-4.3, 4.8), steps=20, restarts=3)(x, y, generator=g)
>>> x_adv = PGD(net, eps=0.3, bounds=(-4.3, 4.8))(x, y)          # PyTorch's default generator
>>> x_adv = PGD(net, eps=1.0, norm="l2", bounds=(-4.3, 4.8))(x, y, generator=g)

Every attack is batched, puts the model in eval mode while it attacks (each module gets its own
mode back afterwards), draws its random start only from the generator it is given (PyTorch's default one when
None, as ``torch.rand``), and returns
a detached tensor inside the ε-ball around ``x`` and inside ``bounds`` (numbers, or per-feature
tensors). ``loss`` (default cross-entropy) may be any ``loss(logits, target) -> (N,)``, e.g.
:func:`~deepscope.robust.attacks.base.kl_divergence` for TRADES.
"""

from deepscope.robust.attacks.base import (
    LP_NORMS,
    Attack,
    LpNorm,
    as_bounds,
    clamp,
    cross_entropy,
    eval_mode,
    kl_divergence,
    project,
)
from deepscope.robust.attacks.fgsm import FGSM
from deepscope.robust.attacks.pgd import PGD

__all__ = ["Attack", "FGSM", "PGD", "LP_NORMS", "LpNorm", "as_bounds", "clamp", "project", "eval_mode",
           "cross_entropy", "kl_divergence"]
