"""Mutual information: MINE and its applications.

>>> from deepscope.mi import MINE
>>> est = MINE(random_state=0).fit(x, y)          # doctest: +SKIP
>>> est.mi_, est.ci_, est.mi_bits_                # doctest: +SKIP

Modules: ``bounds`` (pure functions and the one dispatch by bound name), ``critics``,
``estimator`` (``MINE``, a scikit-learn estimator), ``loss`` (``MILoss``, ``bound_on_batch``),
``knn`` (KSG, Gaussian closed forms), ``tasks`` (distributions with known MI), and the
training loops, each taking an explicit ``generator`` and an optional ``run``: ``staircase``
(``train_staircase``), ``gan`` (``train_gan``), ``bottleneck`` (``train_ib``); ``stats``
(summaries over seeds). See docs/mine.md.
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
