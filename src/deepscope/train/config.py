"""Options every recipe shares. Imports nothing heavy: the CLI builds ``--help`` from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunConfig:
    """Where and how a run executes (shared by all recipes)."""

    out: Path | None = None
    """Run directory. Default: runs/<recipe>/<timestamp>. Pass an existing directory to resume it."""

    seed: int = 0
    """Random seed: the same seed on the same machine gives the same numbers."""

    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""

    threads: int = 0
    """CPU threads for torch (0 keeps torch's default)."""

    progress: bool = True
    """Show progress bars."""

    checkpoint_every: int = 0
    """Write a checkpoint every this many steps (0: the recipe's default)."""
