"""deepscope.dynamics: how networks learn.

- ``spectral``: Fourier / kernel-eigenbasis spectrum of learned functions, the perturbation
  spectrum, a spectrum recorder for training loops and the heatmap (spectral bias,
  arXiv 1806.08734). ``from deepscope.dynamics.spectral import fourier_spectrum``.
"""
