"""verdict() of spectral-sinusoids and lazy-vs-hasty on hand-made results."""

from deepscope.recipes.lazy_vs_hasty import verdict as lazy_verdict
from deepscope.recipes.spectral_sinusoids import verdict as spectral_verdict

FREQS = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
SETTINGS = {"steps": 1000, "record_every": 100}


def _spectral(equal, increasing, per_seed=None):
    from deepscope.dynamics.spectral import spearman

    out = {"freqs": FREQS, "settings": SETTINGS, "learning_step": {}, "spearman": {}}
    for case, steps in (("equal", equal), ("increasing", increasing)):
        if steps is None:
            continue
        out["learning_step"][case] = steps
        out["spearman"][case] = spearman(FREQS, [float("nan") if s is None else s for s in steps],
                                         missing=1100)
    if per_seed:
        out["learning_step_per_seed"] = per_seed
    return out


ORDERED = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]


def test_spectral_low_frequencies_first_is_reproduced_with_a_seed_interval():
    seeds = {"equal": [ORDERED, ORDERED[:8] + [1000, 900]],
             "increasing": [ORDERED, ORDERED]}
    v = spectral_verdict(_spectral(ORDERED, ORDERED, seeds))
    assert v["verdict"] == "reproduced"
    assert "equal: rho 1.000" in v["measured"] and "95% CI" in v["measured"]
    assert "n=2" in v["measured"]


def test_spectral_partial_results():
    shuffled = [500, 100, 900, 300, 1000, 200, 700, 400, 800, 600]
    assert spectral_verdict(_spectral(ORDERED, shuffled))["verdict"] == "partly"  # one case
    v = spectral_verdict(_spectral(ORDERED, None))
    assert v["verdict"] == "partly" and "not run: increasing" in v["measured"]
    few = [100, 200, 300, None, None, None, None, None, None, None]
    v = spectral_verdict(_spectral(few, few))
    assert v["verdict"] == "partly" and "more steps needed" in v["measured"]
    one = [100] + [None] * 9  # a smoke run: only k = 5 learned (rho 0.52, p 0.12)
    v = spectral_verdict(_spectral(one, one))
    assert v["verdict"] == "partly" and "too few to test the order" in v["measured"]
    wrong_one = [None] * 9 + [100]  # only the highest learned
    assert spectral_verdict(_spectral(wrong_one, wrong_one))["verdict"] == "not reproduced"
    backwards = ORDERED[::-1]
    assert spectral_verdict(_spectral(backwards, shuffled))["verdict"] == "not reproduced"
    assert spectral_verdict({})["verdict"] == "not run"


def _delta(mean, lo, hi, n=3):
    return {"mean": mean, "ci95": (lo, hi), "n": n, "per_seed": [], "shared_rungs": [10]}


def test_lazy_real_data():
    good = {"delta": {"cscore": _delta(0.177, 0.004, 0.350), "noise": _delta(0.573, 0.265, 0.882),
                      "boundary": _delta(0.167, -0.092, 0.426)}}
    v = lazy_verdict(good)
    assert v["verdict"] == "reproduced"
    assert "cscore: Delta 0.177 [95% CI 0.004, 0.350], n=3" in v["measured"]
    assert "(boundary: 0.167" in v["measured"]
    wide = {"delta": {"cscore": _delta(0.1, -0.1, 0.3), "noise": _delta(0.5, 0.2, 0.8)}}
    assert lazy_verdict(wide)["verdict"] == "partly"
    half = {"delta": {"cscore": _delta(0.2, 0.1, 0.3)}}
    v = lazy_verdict(half)
    assert v["verdict"] == "partly" and "not run: noise" in v["measured"]
    wrong = {"delta": {"cscore": _delta(-0.2, -0.3, -0.1), "noise": _delta(-0.1, -0.4, 0.2)}}
    assert lazy_verdict(wrong)["verdict"] == "not reproduced"
    assert lazy_verdict({"delta": {"cscore": {"mean": None, "n": 0}}})["verdict"] == "not run"
    assert lazy_verdict({})["verdict"] == "not run"


def _toy_cell(contrast, lo, hi, n=100):
    return {"n_runs": n, "contrast": contrast, "contrast_ci95": [lo, hi],
            "holds": n >= 2 and contrast > 0 and lo > 0}


def test_lazy_toy_is_judged_on_the_mean_map_of_every_paper_cell():
    good = {"0.5": _toy_cell(0.02, 0.01, 0.03), "0.3": _toy_cell(0.03, 0.01, 0.05)}
    res = {"toy": {"disk": {"extra0": dict(good), "extra5": dict(good)},
                   "yinyang1": {"extra0": dict(good)},
                   "yinyang_scurve": {"extra0": {"0.5": _toy_cell(-0.1, -0.2, -0.05)}}}}  # ours: not judged
    v = lazy_verdict(res)
    assert v["verdict"] == "reproduced" and v["measured"].startswith("6 of 6 cells hold")
    assert "disk +5d: contrast +0.0200/+0.0300 at loss 0.5/0.3 (n=100), holds at 0.5, 0.3" in v["measured"]
    res["toy"]["yinyang1"]["extra0"]["0.3"] = _toy_cell(0.01, -0.01, 0.03)  # interval includes 0
    v = lazy_verdict(res)
    assert v["verdict"] == "partly" and "yinyang1 +0d: contrast +0.0200/+0.0100" in v["measured"]
    # a cell that few runs reached in both regimes is listed, not judged
    res["toy"]["yinyang1"]["extra0"]["0.3"] = _toy_cell(0.07, -0.01, 0.2, n=3)
    v = lazy_verdict(res)
    assert v["verdict"] == "reproduced" and "too few runs at 0.3 (n=3)" in v["measured"]
    bad = {"0.5": _toy_cell(-0.01, -0.02, 0.0)}
    assert lazy_verdict({"toy": {"disk": {"extra0": bad}}})["verdict"] == "not reproduced"
    none = {"toy": {"disk": {"extra0": {"0.3": {"n_runs": 0, "reached": {}}}}}}
    v = lazy_verdict(none)
    assert v["verdict"] == "not run" and "no level reached" in v["measured"]
    # a result of the earlier per-seed protocol (levels directly under the toy) is not judged
    old = {"toy": {"disk": {"0.3": {"n_seeds": 100, "per_seed_spearman": {"mean": 0.03}}}}}
    assert lazy_verdict(old)["verdict"] == "not run"


def test_lazy_toy_and_mnist1d_together():
    toy = {"disk": {"extra0": {"0.3": _toy_cell(0.03, 0.01, 0.05)}}}
    real = {"delta": {"cscore": _delta(0.177, 0.004, 0.350), "noise": _delta(0.573, 0.265, 0.882)}}
    v = lazy_verdict({"toy": toy, "mnist1d": real})
    assert v["verdict"] == "reproduced"
    assert "toy (reproduced)" in v["measured"] and "MNIST-1D (reproduced): cscore: Delta 0.177" in v["measured"]
    flat = {"disk": {"extra0": {"0.3": _toy_cell(-0.01, -0.02, 0.0)}}}
    assert lazy_verdict({"toy": flat, "mnist1d": real})["verdict"] == "partly"
    wrong = {"delta": {"cscore": _delta(-0.2, -0.3, -0.1), "noise": _delta(-0.1, -0.4, 0.2)}}
    assert lazy_verdict({"toy": flat, "mnist1d": wrong})["verdict"] == "not reproduced"
