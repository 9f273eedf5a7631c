"""deepscope.robust: training that resists label noise (CrossSplit) and adversarial examples (A3T).

The public names are here, imported on first use (``import deepscope.robust`` loads nothing
heavy)::

    from deepscope.robust import train_crosssplit, train_ce, train_noisy, make_objective, evaluate

Label noise (CrossSplit, arXiv 2212.01674; docs/crosssplit.md); the noise generators and
the views are data: :mod:`deepscope.data.noise`, :mod:`deepscope.data.augment`::

    noisy = make_label_noise(y, "sym60", num_classes=10, generator=g)
    res = train_crosssplit(x, noisy.labels, num_classes=10, generator=g, x_test=xt, y_test=yt)
    res.predict(xt).argmax(1)                    # sum of the two networks' logits
    res = train_noisy("dividemix", x, noisy.labels, num_classes=10, generator=g)  # any method by name

Adversarial robustness (A3T, arXiv 1801.04055; docs/a3t.md)::

    res = train_robust("mlp", x, y, make_objective("a3t", eps=0.1), num_classes=10, generator=g)
    report = evaluate(res.model, x_test, y_test, eps=0.1, bounds=(0.0, 1.0))

Modules: :mod:`~deepscope.robust.crosssplit`, :mod:`~deepscope.robust.baselines`,
:mod:`~deepscope.robust.noisy_training` (their shared math and evaluation),
:mod:`~deepscope.robust.adversarial` (FGSM-AT, PGD-AT, TRADES and the loop),
:mod:`~deepscope.robust.a3t`, :mod:`~deepscope.robust.objective` (the objective protocol),
:mod:`~deepscope.robust.methods` (methods by name), :mod:`~deepscope.robust.attacks`,
:mod:`~deepscope.robust.evaluation`.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_HOMES = {
    **dict.fromkeys(["train_crosssplit", "clc_soft_labels", "gamma_at", "CROSSSPLIT_DEFAULTS",
                     "equal_step_schedule"],
                    "crosssplit"),
    **dict.fromkeys(["train_ce", "train_ce_early_stopping", "train_coteaching",
                     "train_dividemix", "train_confident_learning", "coteaching_keep_rate"],
                    "baselines"),
    **dict.fromkeys(["Standard", "FGSMAT", "PGDAT", "TRADES", "train_robust"], "adversarial"),
    **dict.fromkeys(["A3T", "split_model", "train_a3t", "linear_cka", "representation_gap",
                     "ENCODER_LOSSES"], "a3t"),
    "Objective": "objective",
    **dict.fromkeys(["make_objective", "ADVERSARIAL_METHODS", "train_noisy", "NOISY_METHODS"],
                    "methods"),
    **dict.fromkeys(["FGSM", "PGD", "LP_NORMS"], "attacks"),
    **dict.fromkeys(["evaluate", "robust_accuracy", "accuracy_curve", "masking_checks",
                     "clean_accuracy", "paired_difference"], "evaluation"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'deepscope.robust' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deepscope.robust.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
