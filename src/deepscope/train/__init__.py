"""Shared training plumbing: run directories, metrics, atomic checkpoints, resume, progress.

>>> from deepscope.train import Run, RunConfig
>>> run = Run("runs/demo/try1", config={"lr": 1e-3}, seed=0)      # doctest: +SKIP
>>> run.log(step=10, loss=0.5)                                     # doctest: +SKIP
>>> run.save(10, model=model, opt=opt)                            # doctest: +SKIP
>>> start = run.restore(model=model, opt=opt)["step"]  # 0 when fresh # doctest: +SKIP
"""

from deepscope.train.config import RunConfig

__all__ = ["Run", "RunConfig", "resolve_device"]


def __getattr__(name):  # lazy: RunConfig must stay importable without torch
    if name in ("Run", "resolve_device"):
        from deepscope.train import run as _run

        return getattr(_run, name)
    raise AttributeError(name)
