"""deepscope: what deep networks learn, as tested PyTorch software.

Six research systems, one library:

- ``deepscope.mi``        MINE: mutual information estimation, ``MILoss``, GAN and information bottleneck
- ``deepscope.dynamics``  spectral bias, tangent kernels and alignment, lazy vs feature learning
- ``deepscope.robust``    CrossSplit (label noise), A3T (adversarial training)

Shared plumbing lives in ``deepscope.train`` (run directories, checkpoints),
``deepscope.data``, ``deepscope.nets`` and ``deepscope.report``. Importing
``deepscope`` itself is cheap: subpackages load torch only when used.
"""

__version__ = "0.1.0"
