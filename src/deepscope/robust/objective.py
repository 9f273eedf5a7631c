"""What a training objective of :func:`~deepscope.robust.adversarial.train_robust` is, and the
checks its threat-model options share.

An objective is ``loss(model, x, y, generator) -> (loss, metrics)``; one that owns extra
trainable state (A3T's discriminator) builds it in ``setup(model, generator=, device=)`` and
lists it in ``state()`` so that checkpoints hold it.

>>> from deepscope.robust.objective import Objective, check_eps
>>> check_eps(0.1)
0.1
>>> check_eps(0)
Traceback (most recent call last):
...
ValueError: eps == 0, must be a finite number > 0
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["Objective", "check_eps"]


def check_eps(eps: float) -> float:
    """``float(eps)`` if it is a finite number > 0 (a training attack's radius)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps == {eps!r}, must be a finite number > 0")
    return float(eps)


class Objective:
    """A training objective: ``loss(model, x, y, generator) -> (scalar loss, {name: float})``."""

    name = "objective"

    def setup(self, model: nn.Module, *, generator: torch.Generator, device: torch.device) -> None:
        """Build extra trainable state (none by default); called once before training."""

    def state(self) -> dict[str, Any]:
        """Extra objects to checkpoint by name (modules, optimizers); ``{}`` by default."""
        return {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.endswith("_")]
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"
