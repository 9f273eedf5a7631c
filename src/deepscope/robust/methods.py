"""The methods of :mod:`deepscope.robust` by name: one entry point per family.

>>> from deepscope.robust.methods import make_objective, NOISY_METHODS
>>> make_objective("trades", eps=0.1, steps=5)
TRADES(eps=0.1, norm='linf', bounds=(0.0, 1.0), beta=6.0, steps=5, step_size=None)
>>> NOISY_METHODS[:3]
('crosssplit', 'ce', 'ce-es')

- Adversarial training: :func:`make_objective` (``'standard'``, ``'fgsm-at'``, ``'pgd-at'``,
  ``'trades'``, ``'a3t'``) gives the objective that
  :func:`~deepscope.robust.adversarial.train_robust` trains with.
- Training under label noise: :func:`train_noisy` (``'crosssplit'`` and its ablations,
  ``'ce'``, ``'ce-es'``, ``'coteaching'``, ``'dividemix'``, ``'cleanlab'``) trains one method
  with the networks, views and budget every method shares, and each method's settings as
  its paper (and the crosssplit recipe) uses them.

The names (the ``Literal`` types and tuples) import without torch, so that a recipe's
``Config`` can use them; the methods themselves are imported on first use.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from deepscope.data.augment import Views
    from deepscope.robust.objective import Objective
    from deepscope.train.loop import NetSpec, TrainOptions, TrainResult
    from deepscope.train.run import NullRun, Run

__all__ = [
    "AdversarialMethod", "ADVERSARIAL_METHODS", "make_objective", "NoisyMethod",
    "NOISY_METHODS", "NOISY_METHOD_NAMES", "train_noisy", "noisy_result",
]

# -- adversarial training ------------------------------------------------------------------------

AdversarialMethod = Literal["standard", "fgsm-at", "pgd-at", "trades", "a3t"]
#: method -> (module of deepscope.robust, class)
_OBJECTIVES: dict[str, tuple[str, str]] = {
    "standard": ("adversarial", "Standard"), "fgsm-at": ("adversarial", "FGSMAT"),
    "pgd-at": ("adversarial", "PGDAT"), "trades": ("adversarial", "TRADES"), "a3t": ("a3t", "A3T")}
#: Names accepted by :func:`make_objective`.
ADVERSARIAL_METHODS: tuple[str, ...] = typing.get_args(AdversarialMethod)


def make_objective(method: AdversarialMethod, **options: Any) -> Objective:
    """The objective of ``method`` ('standard', 'fgsm-at', 'pgd-at', 'trades', 'a3t').

    ``options`` are the objective's keywords (``eps``, ``norm``, ``bounds``, ``steps``, ...);
    the standard objective ignores them.
    """
    if method not in _OBJECTIVES:
        raise ValueError(f"method == {method!r}, must be one of {list(ADVERSARIAL_METHODS)}")
    module, name = _OBJECTIVES[method]
    return getattr(importlib.import_module(f"deepscope.robust.{module}"), name)(**options)


# -- label noise ---------------------------------------------------------------------------------

NoisyMethod = Literal["crosssplit", "ce", "ce-es", "coteaching", "dividemix", "cleanlab",
                      "crosssplit-all", "crosssplit-no-clc", "crosssplit-no-ssl"]
#: Names accepted by :func:`train_noisy`.
NOISY_METHODS: tuple[str, ...] = typing.get_args(NoisyMethod)
#: What each method is, for tables and legends.
NOISY_METHOD_NAMES = {
    "crosssplit": "CrossSplit", "ce": "cross-entropy", "ce-es": "CE + early stop (noisy val)",
    "coteaching": "co-teaching", "dividemix": "DivideMix", "cleanlab": "confident learning",
    "crosssplit-all": "CrossSplit, both nets see all data",
    "crosssplit-no-clc": "CrossSplit without label correction",
    "crosssplit-no-ssl": "CrossSplit without the unlabeled half"}

_ABLATIONS = {"crosssplit": {}, "crosssplit-all": {"split": "all"},
              "crosssplit-no-clc": {"label_correction": False},
              "crosssplit-no-ssl": {"semi_supervised": False}}


def _crosssplit(method: str) -> Callable[..., TrainResult]:
    def train(x, y, common, a) -> TrainResult:
        from deepscope.robust.crosssplit import CROSSSPLIT_DEFAULTS, train_crosssplit
        from deepscope.train.loop import TrainOptions

        paper = a["ssl"] == "paper"
        batch = TrainOptions.resolve(common["options"], CROSSSPLIT_DEFAULTS).batch_size
        kw = dict(y_true=a["y_true"], warmup_epochs=a["warmup_epochs"],
                  unlabeled_weight=a["unlabeled_weight"],
                  warmup_batch_size=batch * (2 if paper else 1),
                  refresh="batch" if paper else "epoch", mixup=paper,
                  contrastive_weight=0.025 if paper else 0.0, train_views=2 if paper else 1,
                  peer_views=2 if paper else 0,
                  confidence_penalty=0.1 if a["asymmetric"] else 0.0)
        return train_crosssplit(x, y, **{**kw, **_ABLATIONS[method], **a["crosssplit_options"]},
                                **common)
    return train


def _ce(x, y, common, a) -> TrainResult:
    from deepscope.robust.baselines import train_ce

    return train_ce(x, y, **common)


def _ce_es(x, y, common, a) -> TrainResult:
    from deepscope.robust.baselines import train_ce_early_stopping

    return train_ce_early_stopping(x, y, val_fraction=0.1, **common)


def _coteaching(x, y, common, a) -> TrainResult:
    from deepscope.robust.baselines import train_coteaching

    if a["noise_rate"] is None:
        raise ValueError("noise_rate is None, must be given for 'coteaching' (its forget rate: "
                         "the noise rate, assumed known as in the paper)")
    return train_coteaching(x, y, y_true=a["y_true"], forget_rate=min(a["noise_rate"], 0.99),
                            **common)


def _dividemix(x, y, common, a) -> TrainResult:
    from deepscope.robust.baselines import train_dividemix

    # the reduced form drops MixUp, as CrossSplit's does: on the MNIST-1D CNN one mixed epoch
    # after the first co-divide collapses both networks to two or three classes (docs/crosssplit.md)
    return train_dividemix(x, y, y_true=a["y_true"], warmup_epochs=a["warmup_epochs"],
                           mixup=a["ssl"] == "paper",
                           confidence_penalty=0.1 if a["asymmetric"] else 0.0, **common)


def _cleanlab(x, y, common, a) -> TrainResult:
    from deepscope.robust.baselines import CE_DEFAULTS, train_confident_learning
    from deepscope.train.loop import TrainOptions

    epochs = TrainOptions.resolve(common["options"], CE_DEFAULTS).epochs
    return train_confident_learning(x, y, y_true=a["y_true"], folds=a["folds"],
                                    cv_epochs=max(1, epochs // 3), **common)


_NOISY: dict[str, Callable[..., TrainResult]] = {
    **{m: _crosssplit(m) for m in _ABLATIONS},
    "ce": _ce, "ce-es": _ce_es, "coteaching": _coteaching, "dividemix": _dividemix,
    "cleanlab": _cleanlab,
}


def train_noisy(
    method: NoisyMethod,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    y_true: torch.Tensor | None = None,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    net: NetSpec = "cnn1d",
    net_kwargs: Mapping[str, Any] | None = None,
    views: Views | None = None,
    warmup_epochs: int = 10,
    ssl: Literal["paper", "reduced"] = "paper",
    unlabeled_weight: float = 30.0,
    asymmetric: bool = False,
    noise_rate: float | None = None,
    folds: int = 4,
    crosssplit_options: Mapping[str, Any] | None = None,
    options: TrainOptions | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    desc: str | None = None,
) -> TrainResult:
    """Train one label-noise method on ``(x, y)``: the comparison of arXiv 2212.01674.

    Parameters
    ----------
    method : str
        One of :data:`NOISY_METHODS`: 'crosssplit' (:func:`~deepscope.robust.crosssplit.
        train_crosssplit`), its ablations 'crosssplit-all' (both networks on all the data),
        'crosssplit-no-clc' (no label correction), 'crosssplit-no-ssl' (no unlabeled half);
        'ce', 'ce-es' (noisy 10% validation split), 'coteaching', 'dividemix', 'cleanlab'
        (:mod:`deepscope.robust.baselines`).
    x : (N, ...) float tensor
    y : (N,) int tensor
        Given (noisy) labels.
    y_true : (N,) int tensor, optional
        Clean labels, only for logging (corrected-label accuracy, kept precision, ...).
    net, net_kwargs, views, options, generator, run
        As every loop; ``options`` unset take each loop's own defaults.
    warmup_epochs : int
        Cross-entropy warm-up of CrossSplit and DivideMix.
    ssl : 'paper' or 'reduced'
        CrossSplit's semi-supervised part: 'paper' (MixUp, two strong views, the contrastive
        term, targets per batch, a warm-up batch twice the labelled one) or 'reduced'
        (consistency only: one view, targets per epoch, no MixUp, no contrastive term).
        DivideMix follows it for MixUp: 'reduced' trains it without MixUp.
    unlabeled_weight : float
        CrossSplit's λ_u (DivideMix keeps its own 25).
    asymmetric : bool
        Asymmetric noise: the warm-ups of CrossSplit and DivideMix add the confidence penalty
        (0.1), as the papers do.
    noise_rate : float, optional
        The realised noise rate: co-teaching's forget rate (required for 'coteaching').
    folds : int
        Confident learning's folds; each fold model trains a third of the epochs.
    crosssplit_options : dict, optional
        Keywords of :func:`~deepscope.robust.crosssplit.train_crosssplit` that replace those
        ``ssl`` and ``method`` set (one factor at a time: ``{'unlabeled_weight': 1}``,
        ``{'mixup': True}``, ``{'labelled': 'all'}``, ...); only for the crosssplit methods.
    desc : str, optional
        Progress-bar label (default: the method).

    Returns
    -------
    TrainResult
    """
    if method not in _NOISY:
        raise ValueError(f"method == {method!r}, must be one of {list(NOISY_METHODS)}")
    if ssl not in ("paper", "reduced"):
        raise ValueError(f"ssl == {ssl!r}, must be 'paper' or 'reduced'")
    common = dict(num_classes=num_classes, x_test=x_test, y_test=y_test, net=net,
                  net_kwargs=net_kwargs, views=views, options=options, generator=generator,
                  run=run, desc=desc or method)
    extra = dict(y_true=y_true, warmup_epochs=warmup_epochs, ssl=ssl,
                 unlabeled_weight=unlabeled_weight, asymmetric=asymmetric,
                 noise_rate=noise_rate, folds=folds,
                 crosssplit_options=dict(crosssplit_options or {}))
    if extra["crosssplit_options"] and not method.startswith("crosssplit"):
        raise ValueError(f"crosssplit_options == {extra['crosssplit_options']!r} with method == "
                         f"{method!r}: they are keywords of train_crosssplit; pass them only with "
                         "a crosssplit method")
    return _NOISY[method](x, y, common, extra)


def noisy_models(method: NoisyMethod, res: TrainResult) -> dict:
    """The networks a method's result stands for: ce-es's is the one of its selected epoch."""
    return {"net": res.info["best_val_state"]} if method == "ce-es" else res.models


def noisy_result(method: NoisyMethod, res: TrainResult) -> dict:
    """The JSON-able numbers of :func:`train_noisy`'s result: last and best test accuracy,
    the test-accuracy curve, and what the method adds (CrossSplit's corrected-label accuracy
    curve, ce-es's selected epoch, confident learning's removed set, DivideMix's labelled
    precision)."""
    hist = res.history
    out = {"last_test_acc": res.last_test_acc, "best_test_acc": res.best_test_acc,
           "test_acc_curve": [h.get("test_acc") for h in hist]}
    if "label_acc" in (hist[-1] if hist else {}):
        out["label_acc_curve"] = [h.get("label_acc") for h in hist]
    if method == "ce-es":
        out["selected_test_acc"] = res.info["test_acc_at_best_val"]
        out["selected_epoch"] = res.info["best_val_epoch"]
    if method == "cleanlab":
        out.update({k: res.info[k] for k in ("n_removed", "removed_precision", "removed_recall")
                    if k in res.info})
    if method == "dividemix" and hist and "labelled_precision_net_a" in hist[-1]:
        out["labelled_precision"] = (hist[-1]["labelled_precision_net_a"]
                                     + hist[-1]["labelled_precision_net_b"]) / 2
    return out
