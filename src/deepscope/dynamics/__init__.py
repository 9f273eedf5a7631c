"""deepscope.dynamics: how networks learn.

- ``spectral``: Fourier / kernel-eigenbasis spectrum of learned functions, the perturbation
  spectrum, a spectrum recorder for training loops and the heatmap (spectral bias,
  arXiv 1806.08734). ``from deepscope.dynamics.spectral import fourier_spectrum``.
  ``spectral_train``: the training loop of those experiments (``train_lockstep``).
- ``ntk``: the empirical tangent kernel (full, traced, diagonal, per layer, centred, chunked),
  three exact implementations. ``from deepscope.dynamics.ntk import empirical_ntk``.
- ``alignment``: kernel-label alignment, CKA, spectrum statistics, y^T K y by one vjp and the
  path complexity measure (neural feature alignment, arXiv 2008.00938); ``ntk_tracker``:
  ``AlignmentTracker`` logs them on probe sets at log-spaced steps of a training loop.
- ``regimes``: lazy vs feature learning (arXiv 2209.09658): ``AlphaScaled``, ``linearize``, the
  loss ladder, learning times, ReLU-sign and tangent-kernel linearity probes, the loops
  ``train_alpha`` and ``train_full_batch``; ``difficulty``: c-score by hold-out, label noise,
  spurious patch, kNN agreement, the 2-D toys' distance to the boundary, c-score files.
"""
