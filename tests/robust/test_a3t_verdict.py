"""verdict() of the a3t recipe on hand-made results."""

from deepscope.recipes.a3t import verdict


def _m(robust, lo, hi, n=3, failed=0):
    return {"robust": {"mean": robust, "std": 0.01, "ci95": (lo, hi), "n": n},
            "checks": {"gradient": {"passed": n - failed, "failed": failed, "not_run": 0}}}


def test_a3t_at_least_fgsm_at_is_reproduced():
    res = {"results": {"digits": {"a3t": _m(0.819, 0.804, 0.834), "fgsm-at": _m(0.814, 0.78, 0.86),
                                  "settings": {}}}}
    v = verdict(res)
    assert v["verdict"] == "reproduced"
    assert "digits: A3T 81.9% [95% CI 80.4, 83.4] vs FGSM-AT 81.4% (n=3)" in v["measured"]


def test_a3t_partial_results():
    within = {"results": {"digits": {"a3t": _m(0.81, 0.79, 0.83), "fgsm-at": _m(0.82, 0.80, 0.84)}}}
    assert verdict(within)["verdict"] == "partly"
    masked = {"results": {"digits": {"a3t": _m(0.85, 0.84, 0.86, failed=1), "fgsm-at": _m(0.82, 0.8, 0.84)}}}
    v = verdict(masked)
    assert v["verdict"] == "partly" and "masking checks failed for A3T: digits: gradient" in v["measured"]
    below = {"results": {"digits": {"a3t": _m(0.70, 0.68, 0.72), "fgsm-at": _m(0.82, 0.8, 0.84)}}}
    assert verdict(below)["verdict"] == "not reproduced"
    one_seed = {"results": {"digits": {"a3t": _m(0.80, 0.80, 0.80, n=1), "fgsm-at": _m(0.81, 0.81, 0.81, n=1)}}}
    v = verdict(one_seed)
    assert v["verdict"] == "not reproduced" and "(one seed: no interval)" in v["measured"]
    mixed = {"results": {"digits": {"a3t": _m(0.83, 0.82, 0.84), "fgsm-at": _m(0.82, 0.8, 0.84)},
                         "mnist1d": {"a3t": _m(0.30, 0.29, 0.31), "fgsm-at": _m(0.33, 0.32, 0.34)}}}
    assert verdict(mixed)["verdict"] == "partly"
    half = {"results": {"digits": {"a3t": _m(0.83, 0.82, 0.84), "fgsm-at": _m(0.82, 0.8, 0.84)},
                        "mnist1d": {"a3t": _m(0.3, 0.29, 0.31)}}}
    v = verdict(half)
    assert v["verdict"] == "reproduced" and "not run: mnist1d (fgsm-at not run)" in v["measured"]


def test_a3t_not_run():
    assert verdict({})["verdict"] == "not run"
    v = verdict({"results": {"digits": {"standard": _m(0.3, 0.2, 0.4), "a3t": _m(0.8, 0.7, 0.9)}}})
    assert v["verdict"] == "not run" and "fgsm-at not run" in v["measured"]
