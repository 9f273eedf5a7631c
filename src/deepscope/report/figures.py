"""Figure helpers: one place that picks the non-interactive backend and saves PNGs.

>>> from deepscope.report.figures import plt, save
>>> fig, ax = plt.subplots()
>>> save(fig, run.figure_path("curve"))  # writes into your run directory  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # runs are headless; never open windows
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save"]


def save(fig, path: str | Path, *, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG to ``path`` (parents created), close it and return the path.

    Under torchrun only rank 0 writes (the other processes draw the same figure).
    """
    from deepscope.train.distributed import env_rank

    path = Path(path)
    if env_rank() != 0:
        plt.close(fig)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
