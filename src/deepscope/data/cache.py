"""A dataset built once per run directory: later sub-runs and a resumed run read it back.

>>> from deepscope.data.cache import cached
>>> from deepscope.train.run import NullRun
>>> d = cached(NullRun(), "toy.pt", lambda: {"x": [1, 2]})     # no directory: just built
>>> d["x"]
[1, 2]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["cached"]


def cached(run: Any, name: str, build: Callable[[], Any]) -> Any:
    """``build()`` stored as ``<run dir>/<name>`` (atomically, by ``run.save_file``), or read
    back from there when a previous call of this run stored it.

    Generating MNIST-1D or sampling a task takes seconds; every sub-run of a recipe and every
    resume of it then uses the same tensors. Without a directory (a :class:`NullRun`) the data
    is built and nothing is written. ``name`` should say what determines the data (size, seed).
    """
    import torch

    path = run.dir / name if getattr(run, "dir", None) is not None else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    obj = build()
    if path is not None:
        run.save_file(name, obj)
    return obj
