"""Mutual information: MINE and its applications.

>>> from deepscope.mi import MINE
>>> est = MINE(random_state=0).fit(x, y)          # doctest: +SKIP
>>> est.mi_, est.ci_, est.mi_bits_                # doctest: +SKIP

Modules: ``bounds`` (pure functions), ``critics``, ``estimator`` (``MINE``),
``loss`` (``MILoss``), ``knn`` (KSG, Gaussian closed forms), ``tasks``
(distributions with known MI), ``gan``, ``bottleneck``.
"""

__all__ = ["MINE", "MILoss", "adaptive_gradient_clip", "ksg", "gaussian_mi"]


def __getattr__(name):
    if name == "MINE":
        from deepscope.mi.estimator import MINE

        return MINE
    if name in ("MILoss", "adaptive_gradient_clip"):
        from deepscope.mi import loss

        return getattr(loss, name)
    if name in ("ksg", "gaussian_mi"):
        from deepscope.mi import knn

        return getattr(knn, name)
    raise AttributeError(f"module 'deepscope.mi' has no attribute {name!r}")
