"""deepscope: what deep networks learn, as tested PyTorch software.

Six research systems, one library:

- ``deepscope.mi``        MINE: mutual information estimation, ``MILoss``, GAN and information bottleneck
- ``deepscope.dynamics``  spectral bias, tangent kernels and alignment, lazy vs feature learning
- ``deepscope.robust``    CrossSplit (label noise), A3T (adversarial training)

Shared plumbing lives in ``deepscope.train`` (run directories, checkpoints, the loop kit),
``deepscope.data``, ``deepscope.nets`` and ``deepscope.report``. Importing
``deepscope`` itself is cheap: ``deepscope.mi``, ``deepscope.nets`` and the other packages
are imported on first use, and load torch only then.

``deepscope.load(run_dir)`` gives back the trained network(s) of a run in eval mode.
"""

__version__ = "0.1.0"

#: The packages reachable as attributes of ``deepscope`` (imported on first use).
PACKAGES = ("mi", "dynamics", "robust", "nets", "data", "train")

__all__ = [*PACKAGES, "load"]


def __getattr__(name):  # lazy: importing deepscope must not import torch
    if name in PACKAGES:
        import importlib

        return importlib.import_module(f"deepscope.{name}")
    if name == "load":
        from deepscope.nets.io import load

        return load
    raise AttributeError(f"module 'deepscope' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
