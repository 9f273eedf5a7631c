"""Mutual information: MINE and its applications.

>>> from deepscope.mi import MINE, tasks
>>> x, y, truth = tasks.correlated_gaussian(2000, d=2, mi=1.0, seed=0)
>>> est = MINE(random_state=0).fit(x, y)
>>> round(truth, 3), abs(est.mi_ - truth) < 0.3   # also est.ci_, est.mi_bits_
(1.0, True)

Inside a model: ``MILoss(dim_x=..., dim_y=...)(x, z)`` is a differentiable MI term; the loops
``train_ib`` (information bottleneck), ``train_gan`` (MINE-regularised GAN) and
``train_staircase`` take an optional ``generator`` and ``run`` and return a
:class:`~deepscope.train.loop.TrainResult` (the staircase: its estimates).

Modules: ``bounds`` (pure functions and the one dispatch by bound name), ``critics``,
``estimator`` (``MINE``, a scikit-learn estimator), ``loss`` (``MILoss``, ``bound_on_batch``),
``knn`` (KSG, Gaussian closed forms), ``tasks`` (distributions with known MI), ``staircase``,
``gan``, ``bottleneck`` (the loops), ``io`` (reading .npy/.npz/.csv), ``flow`` (the flow critic:
per-variable normalizing flows, zuko), ``readout`` (the held-out read-out that stays a bound). Every name below is
imported on first use, so ``import deepscope.mi`` stays cheap. See docs/mine.md.
"""

from importlib import import_module

# name -> the submodule that defines it (a submodule itself maps to None)
_HOME = {
    "bounds": None, "critics": None, "estimator": None, "loss": None, "knn": None, "tasks": None,
    "staircase": None, "gan": None, "bottleneck": None, "io": None, "flow": None, "readout": None,
    "MINE": "estimator", "MIWarning": "estimator", "PRESETS": "estimator",
    "prepare_inputs": "estimator",
    "MILoss": "loss", "adaptive_gradient_clip": "loss", "bound_on_batch": "loss",
    "Bound": "bounds", "BOUNDS": "bounds",
    "ConcatCritic": "critics", "SeparableCritic": "critics", "HybridCritic": "critics",
    "make_critic": "critics", "gaussian_log_ratio": "critics", "student_t_copula_ratio": "critics",
    "ksg": "knn", "gaussian_mi": "knn", "gaussian_mi_estimate": "knn",
    "train_staircase": "staircase",
    "train_gan": "gan", "GANGenerator": "gan", "Discriminator": "gan", "Toy2D": "gan",
    "make_toy": "gan", "mode_metrics": "gan", "evaluate_generator": "gan",
    "train_ib": "bottleneck", "IBClassifier": "bottleneck", "vib_kl": "bottleneck",
    "error_rate": "bottleneck", "estimate_mi_xz": "bottleneck",
    "load_source": "io",
    "FlowPair": "flow", "FlowCritic": "flow", "fit_flow_pair": "flow",
}

__all__ = list(_HOME)


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'deepscope.mi' has no attribute {name!r}")
    home = _HOME[name]
    value = import_module(f"deepscope.mi.{name if home is None else home}")
    if home is not None:
        value = getattr(value, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
