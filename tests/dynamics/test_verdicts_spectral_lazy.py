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


def _toy_entry(mean, lo, hi, n=8):
    return {"n_seeds": n, "per_seed_spearman": {"mean": mean, "ci95": (lo, hi), "n": n}}


def test_lazy_toy_reads_the_lowest_level():
    res = {"toy": {"disk": {"0.65": _toy_entry(0.1, 0.05, 0.15), "0.6": _toy_entry(-0.3, -0.4, -0.2)},
                   "yinyang": {"0.65": _toy_entry(-0.2, -0.3, -0.1), "0.6": _toy_entry(-0.1, -0.2, -0.05)}}}
    v = lazy_verdict(res)
    assert v["verdict"] == "reproduced" and "disk at loss 0.6: per-seed Spearman -0.300" in v["measured"]
    res["toy"]["yinyang"]["0.6"] = _toy_entry(0.036, 0.022, 0.051)
    assert lazy_verdict(res)["verdict"] == "partly"
    res["toy"]["disk"]["0.6"] = _toy_entry(0.076, 0.058, 0.093)
    assert lazy_verdict(res)["verdict"] == "not reproduced"
    none = {"toy": {"disk": {"0.6": {"n_seeds": 0, "reached": {}}}}}
    v = lazy_verdict(none)
    assert v["verdict"] == "not run" and "no level reached" in v["measured"]
