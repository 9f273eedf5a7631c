"""deepscope: what deep networks learn, as tested PyTorch software.

Six research systems, one library:

- ``deepscope.mi``        MINE: mutual information estimation, ``MILoss``, GAN and information bottleneck
- ``deepscope.dynamics``  spectral bias, tangent kernels and alignment, lazy vs feature learning
- ``deepscope.robust``    CrossSplit (label noise), A3T (adversarial training)

Shared plumbing lives in ``deepscope.train`` (run directories, checkpoints),
``deepscope.data``, ``deepscope.nets`` and ``deepscope.report``. Importing
``deepscope`` itself is cheap: subpackages load torch only when used.

``deepscope.load(run_dir)`` gives back the trained network(s) of a run in eval mode.
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing deepscope must not import torch
    if name == "load":
        from deepscope.nets.io import load

        return load
    raise AttributeError(f"module 'deepscope' has no attribute {name!r}")
