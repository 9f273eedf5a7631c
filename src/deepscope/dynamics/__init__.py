"""deepscope.dynamics: how networks learn.

    from deepscope.dynamics import empirical_ntk, kernel_alignment, train_alpha

Every public name below is importable from here; the modules load on first use, so
``import deepscope.dynamics`` stays cheap.

- ``ntk``: the empirical tangent kernel (full, traced, diagonal, per layer, centred, chunked),
  three exact implementations (``empirical_ntk``).
- ``alignment``: kernel-label alignment, CKA, spectrum statistics, y^T K y by one vjp and the
  path complexity measure (neural feature alignment, arXiv 2008.00938); ``ntk_tracker``:
  ``AlignmentTracker`` logs them on probe sets at log-spaced steps of a training loop;
  ``feature_alignment``: the loop ``train_feature_alignment``; ``alignment_experiment``: the
  paper's settings, one training cell and the summary of a grid of them.
- Lazy vs feature learning (arXiv 2209.09658): ``alpha_scaling`` (``AlphaScaled``,
  ``linearize``, the ReLU-sign and tangent-kernel probes), ``ladder`` (the loss ladder,
  learning times, the regime comparison), ``alpha_training`` (the minibatch loop
  ``train_alpha``), ``full_batch`` (``train_full_batch``: K stacked networks by gradient
  descent), ``difficulty`` (c-score by hold-out, spurious patch, kNN agreement, the 2-D toys'
  distance to the boundary, c-score files) and ``lazy_vs_hasty`` (the experiment:
  ``compare_toys``, ``compare_real``).
- ``spectral``: Fourier / kernel-eigenbasis spectrum of learned functions, the perturbation
  spectrum, a spectrum recorder and the heatmap (spectral bias, arXiv 1806.08734);
  ``spectral_train``: the training loops of those experiments (``train_lockstep``).
"""

from __future__ import annotations

import importlib

_MODULES = {
    "ntk": ["empirical_ntk", "NTKImplementation", "MODES", "check_ntk_model"],
    "alignment": ["center_kernel", "label_targets", "kernel_alignment", "cka", "eigen_stats",
                  "kernel_matrix", "yky", "path_complexity", "output_margins", "margin",
                  "linear_rademacher_bound"],
    "ntk_tracker": ["AlignmentTracker", "log_steps"],
    "feature_alignment": ["train_feature_alignment", "kaiming_init", "INITS"],
    "alignment_experiment": ["readout", "spearman_interval", "FIT_THRESHOLD"],
    "alpha_scaling": ["AlphaScaled", "Linearized", "linearize", "relu_sign_agreement",
                      "tangent_kernel"],
    "ladder": ["example_losses", "ladder_levels", "LossLadder", "learning_times", "group_gap",
               "regime_delta", "learning_time_spearman"],
    "alpha_training": ["train_alpha"],
    "full_batch": ["train_full_batch", "FullBatchResult", "snapshot_outputs", "full_batch_step"],
    "difficulty": ["toy_labels", "distance_to_boundary", "sample_toy", "spurious_patch",
                   "knn_agreement", "quantile_groups", "holdout_splits", "holdout_consistency",
                   "Consistency", "consistency_reliability", "load_cscores"],
    "lazy_vs_hasty": ["toy_setup", "mean_map_statistics", "toy_grid", "compare_toys", "ToyComparison", "load_real", "RealData",
                      "compare_real", "RealComparison"],
    "spectral": ["fourier_spectrum", "kernel_eigenbasis", "eigenbasis_spectrum",
                 "perturbation_spectrum", "first_crossing", "spearman", "SpectrumRecorder",
                 "plot_spectrum_heatmap", "EIGEN_SOLVERS", "sum_of_sinusoids", "flower_curve"],
    "spectral_train": ["train_lockstep", "log_spectra", "read_spectra",
                       "load_lockstep_model", "build_mlp"],
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'deepscope.dynamics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deepscope.dynamics.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
