"""Options that the spectral-bias recipes share, validated once (imports nothing heavy).

The four spectral-bias recipes train the paper's MLP with :func:`train_lockstep
<deepscope.dynamics.spectral_train.train_lockstep>` (arXiv 1806.08734); their ``Config``
subclasses one of these and overrides a default where its experiment differs::

    @dataclass(frozen=True)
    class Config(SinusoidsConfig):
        steps: int = 20000          # the inherited docstring stays the --help text
        n_seeds: int = 3
        '''Independent runs.'''

Kept apart from ``spectral_train`` so that ``deepscope run RECIPE --help`` imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import PurePath
from typing import Any

from deepscope.train.config import RunConfig, require

__all__ = ["LockstepConfig", "SinusoidsConfig"]

_RUN_FIELDS = frozenset(f.name for f in fields(RunConfig))


@dataclass(frozen=True)
class LockstepConfig(RunConfig):
    """The network and optimiser of the spectral-bias experiments (defaults: the paper's)."""

    steps: int = 60000
    """Full-batch Adam steps per network (a multiple of record_every)."""

    lr: float = 3e-4
    """Adam learning rate (the paper, sinusoid experiments: 3e-4)."""

    width: int = 256
    """Width of every hidden layer (the paper: 256)."""

    depth: int = 6
    """Number of linear layers, ReLU between them (the paper: 6)."""

    record_every: int = 100
    """Measure and log every this many steps (the paper records the spectrum every 100)."""

    def validate(self) -> None:
        super().validate()
        for name in ("steps", "width", "record_every"):
            require(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        require(self.depth >= 2, "depth", self.depth, ">= 2 linear layers")
        require(self.lr > 0, "lr", self.lr, "> 0")
        require(self.steps % self.record_every == 0, "steps", self.steps,
                f"a multiple of record_every == {self.record_every}, so the last step is recorded")

    def settings(self, checkpoint_every: int) -> dict[str, Any]:
        """The recipe's own options (not where or how it runs), for result.json.

        Paths come back as strings, options left at ``None`` are left out, and
        ``checkpoint_every`` is the recipe's default when ``--checkpoint-every`` is 0.
        """
        own = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in _RUN_FIELDS or f.name == "checkpoint_every"}
        own = {k: str(v) if isinstance(v, PurePath) else v for k, v in own.items() if v is not None}
        return {**own, "checkpoint_every": self.checkpoint_every or checkpoint_every}

    def lockstep_options(self, checkpoint_every: int) -> dict[str, Any]:
        """Keyword arguments of ``train_lockstep`` set by this config.

        ``checkpoint_every`` is the recipe's default, used when ``--checkpoint-every`` is 0.
        """
        return dict(width=self.width, depth=self.depth, steps=self.steps, lr=self.lr,
                    record_every=self.record_every,
                    checkpoint_every=self.checkpoint_every or checkpoint_every)


@dataclass(frozen=True)
class SinusoidsConfig(LockstepConfig):
    """A target made of sinusoids of integer frequencies, sampled at n_points equally spaced."""

    freqs: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)
    """Integer frequencies k_i of the target (the paper: 5, 10, ..., 50; each < n_points / 2)."""

    n_points: int = 200
    """Points on one period (the paper: z_j = j / 200); the whole training set, one full batch."""

    def validate(self) -> None:
        super().validate()
        top = (self.n_points - 1) // 2
        require(bool(self.freqs) and all(1 <= k <= top for k in self.freqs), "freqs", self.freqs,
                f"integers in 1..{top} for n_points == {self.n_points} (raise --n-points)")
