"""verdict() of the a3t recipe on hand-made paired results."""

from deepscope.recipes.a3t import verdict


def _row(cell, mean, lo, hi, n=5, reference="beta0"):
    return {"cell": cell, "reference": reference,
            "diff_pp": {"mean": mean, "std": 1.0, "ci95": [lo, hi], "n": n}}


def _res(**rows):
    return {"paired": {d: {"rows": r, "cells": {}} for d, r in rows.items()}}


def test_helps_on_every_dataset_at_the_same_cell_is_reproduced():
    v = verdict(_res(digits=[_row("fgsm/layer2/beta0.01", 1.2, 0.3, 2.1)],
                     mnist1d=[_row("fgsm/layer2/beta0.01", 0.8, 0.1, 1.5),
                              _row("fgsm/layer2/beta0.1", -2.0, -3.0, -1.0)]))
    assert v["verdict"] == "reproduced"
    assert "digits: fgsm/layer2/beta0.01 +1.2 pp [+0.3, +2.1] n=5 (helps)" in v["measured"]
    assert "fgsm/layer2/beta0.1 -2.0 pp [-3.0, -1.0] n=5 (hurts)" in v["measured"]


def test_helps_somewhere_is_partly_and_nowhere_is_not_reproduced():
    partly = _res(digits=[_row("fgsm/layer2/beta0.01", 1.2, 0.3, 2.1)],
                  mnist1d=[_row("fgsm/layer2/beta0.01", 0.4, -0.5, 1.3)])
    assert verdict(partly)["verdict"] == "partly"
    other_cell = _res(digits=[_row("fgsm/layer1/beta0.01", 1.2, 0.3, 2.1)],
                      mnist1d=[_row("fgsm/layer2/beta0.01", 1.0, 0.2, 1.8)])
    assert verdict(other_cell)["verdict"] == "partly"      # not the same cell on both
    nothing = _res(digits=[_row("fgsm/layer2/beta0.01", 0.4, -0.5, 1.3),
                           _row("fgsm/layer2/beta1", -9.0, -11.0, -7.0)])
    v = verdict(nothing)
    assert v["verdict"] == "not reproduced" and "(does nothing)" in v["measured"]


def test_pgd_at_rows_are_reported_not_judged_and_empty_results_are_not_run():
    v = verdict(_res(digits=[_row("pgd/layer2/beta0.1", 0.1, -0.5, 0.7),
                             _row("pgd/layer2/beta0.1", 5.0, 4.0, 6.0, reference="pgd-at")]))
    assert v["verdict"] == "not reproduced" and "minus PGD-AT +5.0 pp" in v["measured"]
    assert verdict({})["verdict"] == "not run"
    assert verdict({"results": {"digits": {}}})["verdict"] == "not run"
    one = verdict(_res(digits=[_row("fgsm/layer2/beta0.01", 1.0, 1.0, 1.0, n=1)]))
    assert one["verdict"] == "not run" and "one seed" in one["measured"]
