"""Shared training plumbing: run directories, metrics, atomic checkpoints, resume, progress.

>>> from deepscope.train import Run, RunConfig
>>> run = Run("runs/demo/try1", config={"lr": 1e-3}, seed=0)      # doctest: +SKIP
>>> run.log(step=10, loss=0.5)                                     # doctest: +SKIP
>>> run.save_checkpoint({"model": model.state_dict()}, step=10)    # doctest: +SKIP
>>> state = run.load_checkpoint()   # None on a fresh run           # doctest: +SKIP
"""

from deepscope.train.config import RunConfig

__all__ = ["Run", "RunConfig", "resolve_device"]


def __getattr__(name):  # lazy: RunConfig must stay importable without torch
    if name in ("Run", "resolve_device"):
        from deepscope.train import run as _run

        return getattr(_run, name)
    raise AttributeError(name)
