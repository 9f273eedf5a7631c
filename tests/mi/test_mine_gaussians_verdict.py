"""verdict() of mine-gaussians on hand-made results (reproduced / partly / not reproduced / not run)."""

from deepscope.recipes.mine_gaussians import verdict


def _row(d, rho, truth, mine, ksg=None):
    r = {"d": d, "rho": rho, "truth": truth, "mine": mine, "mine_ci": (mine - 0.02, mine + 0.02)}
    return r if ksg is None else {**r, "ksg": ksg}


GOOD = [_row(2, 0.5, 0.288, 0.29, 0.29), _row(2, 0.9, 1.661, 1.60, 1.68),
        _row(20, 0.3, 0.943, 0.83, 0.27), _row(20, 0.5, 2.877, 2.58, 0.80),
        _row(20, 0.9, 16.6, 8.7, 3.9)]  # truth > 4 nats: not judged


def test_within_tolerance_at_both_dimensions_is_reproduced():
    v = verdict({"rows": GOOD})
    assert v["verdict"] == "reproduced"
    assert "4/4 points (d=2: 2/2, d=20: 2/2)" in v["measured"]
    assert "KSG within at 2/4" in v["measured"]
    assert "[95% CI" in v["measured"] and "Fig. 1" in v["claim"]


def test_only_d2_is_partly_and_says_what_is_missing():
    v = verdict({"rows": GOOD[:2]})
    assert v["verdict"] == "partly" and "d = 20 not run" in v["measured"]


def test_misses_are_counted():
    bad = [_row(2, 0.5, 0.288, 0.29), _row(2, 0.9, 1.661, 1.0), _row(20, 0.3, 0.943, 0.5),
           _row(20, 0.5, 2.877, 2.6)]
    assert verdict({"rows": bad})["verdict"] == "partly"  # 2/4
    worse = [_row(2, 0.9, 1.661, 1.0), _row(20, 0.3, 0.943, 0.5), _row(20, 0.5, 2.877, 2.6)]
    v = verdict({"rows": worse})
    assert v["verdict"] == "not reproduced" and "1/3" in v["measured"]


def test_no_mine_estimate_is_not_run():
    assert verdict({})["verdict"] == "not run"
    only_ksg = [{"d": 2, "rho": 0.5, "truth": 0.288, "ksg": 0.29}]
    assert verdict({"rows": only_ksg})["verdict"] == "not run"
    assert verdict({"rows": [_row(20, 0.9, 16.6, 8.7)]})["verdict"] == "not run"
