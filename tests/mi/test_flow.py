"""The flow critic, the selection between it and the hybrid critic, and the read-out
that stays a bound. Small flows and few rows: every test takes seconds on one thread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepscope.mi import bounds, tasks
from deepscope.mi.estimator import MINE, MIWarning
from deepscope.mi.flow import FlowCritic, FlowPair, fit_flow_pair, map_splits
from deepscope.mi.readout import clipped_dv, smile_excess, stay_a_bound

pytest.importorskip("zuko")

SMALL = {"transforms": 4, "max_steps": 300, "eval_every": 50, "patience": 3}
TINY = {"transforms": 2, "max_steps": 100, "eval_every": 50, "patience": 2}


def test_untrained_flow_pair_is_the_gaussian_and_maps_nothing():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, generator=g), torch.randn(64, 2, generator=g)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov = a @ a.T + 5 * torch.eye(5, dtype=torch.float64)
    pair = FlowPair(3, 2, cov=cov)
    mx, my = pair(x, y)
    assert torch.equal(mx, x) and torch.equal(my, y)  # identity at the start
    ref = torch.distributions.MultivariateNormal(torch.zeros(5), covariance_matrix=cov.float())
    torch.testing.assert_close(pair.log_prob(x, y), ref.log_prob(torch.cat([x, y], 1)), rtol=1e-4, atol=1e-4)
    s = cov
    mi = 0.5 * (torch.logdet(s[:3, :3]) + torch.logdet(s[3:, 3:]) - torch.logdet(s))
    assert pair.gaussian_mi() == pytest.approx(float(mi), rel=1e-5)


def test_one_column_variables_are_not_mapped():
    x, y, _ = tasks.correlated_gaussian(300, d=1, mi=0.5, seed=0)
    t = torch.from_numpy
    splits = {"train": (t(x[:200]), t(y[:200])), "val": (t(x[200:]), t(y[200:]))}
    pair, _ = fit_flow_pair(splits, **SMALL)
    assert pair.fx is None and pair.fy is None
    mapped = map_splits(pair, splits)
    assert torch.equal(mapped["val"][0], splits["val"][0])


def test_flow_critic_paths_agree():
    x, y, _ = tasks.mapped_gaussian(600, d=2, mi=0.5, map="shear", seed=0)
    est = MINE(critic="flow", random_state=0, flow_options=TINY, n_bootstrap=0).fit(x, y)
    critic = est.critic_
    assert isinstance(critic, FlowCritic)
    xt, yt = est.transform_inputs(x[:40], y[:40])
    with torch.no_grad():
        fwd = critic(xt, yt)
        pw = critic.pairwise(xt, yt)
        rows, cols = torch.arange(40).repeat(40), torch.arange(40).repeat_interleave(40)
        at = critic.scores_at(xt, yt, rows, cols)
    torch.testing.assert_close(pw.diagonal(), fwd, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(at.reshape(40, 40).T, pw, rtol=1e-4, atol=1e-4)
    assert est.score(x, y) == pytest.approx(est.score(x, y))  # score() reads through the flows


def test_flow_that_learns_nothing_is_the_hybrid_estimate():
    # one step cannot beat the untrained (identity) flows on validation: the mapped rows are the
    # rows, and the estimate is the hybrid critic's, number for number
    x, y, _ = tasks.correlated_gaussian(800, d=3, mi=0.5, seed=0)
    kw = {"random_state": 0, "transform": "gaussianize"}
    flow = MINE(critic="flow", flow_options={"max_steps": 1, "lr": 1e-9}, **kw).fit(x, y)
    hybrid = MINE(critic="hybrid", **kw).fit(x, y)
    assert flow.mi_ == hybrid.mi_ and flow.ci_ == hybrid.ci_


def test_flow_estimate_is_invariant_to_an_invertible_map_of_x():
    # a coordinate-mixing map (additive couplings, det J = 1) that per-column Gaussianisation
    # cannot undo: the flow critic's estimate stays inside its own interval, the hybrid's moves
    x, y, truth = tasks.correlated_gaussian(2000, d=2, mi=0.7, seed=1)
    xm = tasks.shear(x.astype(np.float64), amplitude=1.5).astype(np.float32)
    kw = {"random_state": 0, "flow_options": SMALL}
    plain = MINE(critic="flow", **kw).fit(x, y)
    mapped = MINE(critic="flow", **kw).fit(xm, y)
    assert mapped.ci_[0] <= plain.mi_ <= mapped.ci_[1]
    assert plain.ci_[0] <= mapped.mi_ <= plain.ci_[1]
    hybrid_plain = MINE(critic="hybrid", random_state=0).fit(x, y)
    hybrid_mapped = MINE(critic="hybrid", random_state=0).fit(xm, y)
    assert abs(mapped.mi_ - plain.mi_) < abs(hybrid_mapped.mi_ - hybrid_plain.mi_)


def test_select_keeps_the_candidate_with_the_higher_validation_bound():
    x, y, _ = tasks.mapped_gaussian(1000, d=2, mi=0.7, map="shear", seed=0)
    kw = {"random_state": 0, "flow_options": TINY, "n_bootstrap": 50, "transform": "gaussianize"}
    sel = MINE(critic="select", **kw).fit(x, y)
    fits = {k: MINE(critic=k, **kw).fit(x, y) for k in ("hybrid", "flow")}
    vals = {k: f.restarts_[0]["val"] for k, f in fits.items()}
    chosen = max(vals, key=vals.get)
    assert sel.selection_ == {**vals, "chosen": chosen}
    assert sel.mi_ == fits[chosen].mi_ and sel.ci_ == fits[chosen].ci_
    assert sel.critic == "select" and (sel.flows_ is None) == (chosen == "hybrid")
    assert "select" in repr(sel)


def test_auto_transform_keeps_the_candidate_with_the_higher_validation_bound():
    # y = x + uniform noise: the support's edges are straight on the raw coordinates and bent
    # by a per-column Gaussianisation, so the standardised candidate reads higher on validation
    x, y, _ = tasks.FAMILIES["additive-noise-2d"](5000, 20)  # docs/mine.md: 1.85 against 1.75
    auto = MINE(random_state=20, n_bootstrap=50).fit(x, y)
    fits = {t: MINE(random_state=20, n_bootstrap=50, transform=t).fit(x, y)
            for t in ("gaussianize", "standardize")}
    vals = {t: f.restarts_[0]["val"] for t, f in fits.items()}
    assert auto.selection_ == {**vals, "chosen": "standardize"} and vals["standardize"] > vals["gaussianize"]
    assert auto.transform_ == "standardize" and auto.transform == "auto"
    assert auto.mi_ == fits["standardize"].mi_ and auto.ci_ == fits["standardize"].ci_
    assert auto.score(x[:500], y[:500]) == fits["standardize"].score(x[:500], y[:500])


def test_auto_transform_refuses_a_standardised_candidate_with_heavy_tails():
    # Student-t with 2 degrees of freedom: on the raw coordinates a few validation rows score
    # tens of nats (their mean excess over tau is far above readout.TOL) and the standardised
    # candidate's validation bound is the higher one; it is not eligible, Gaussianised is kept
    x, y, truth = tasks.FAMILIES["student-t-2d-dof2"](5000, 21)
    auto = MINE(random_state=21, n_bootstrap=0).fit(x, y)
    assert auto.selection_["standardize"] > auto.selection_["gaussianize"]
    assert auto.selection_["chosen"] == "gaussianize" and auto.transform_ == "gaussianize"
    assert abs(auto.mi_ - truth) < 0.1


def test_flow_options_are_checked():
    x, y, _ = tasks.correlated_gaussian(200, d=2, mi=0.5, seed=0)
    with pytest.raises(ValueError, match="flow_options has unknown key\\(s\\) \\['steps'\\]"):
        MINE(critic="flow", flow_options={"steps": 10}).fit(x, y)
    with pytest.raises(ValueError, match="flow_options == 3, must be None or a dict"):
        MINE(flow_options=3).validate()


def test_readout_falls_back_to_a_bound_for_near_deterministic_pairs():
    # y = x + 1e-3 noise in 5 dimensions: I = 5/2 log(1 + 1e6) = 34.5 nats. SMILE's clipped
    # read-out credits the critic with every joint score above tau (it read 131 nats here);
    # the clipped critic's DV bound stays below the truth and below 2 tau
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 5)).astype(np.float32)
    y = (x + 1e-3 * rng.standard_normal((2000, 5))).astype(np.float32)
    truth = 2.5 * math.log(1 + 1e6)
    with pytest.warns(MIWarning, match="SMILE's clipped read-out is not a bound"):
        est = MINE(random_state=0, n_bootstrap=100).fit(x, y)
    assert est.readout_ == "dv-clipped"
    assert est.mi_ <= 2 * est.tau < truth and est.ci_[1] <= 2 * est.tau + 1e-9
    assert est.ci_[0] <= est.mi_ <= est.ci_[1]


def test_readout_keeps_smile_where_it_is_a_bound():
    x, y, _ = tasks.correlated_gaussian(1500, d=2, mi=1.0, seed=0)
    est = MINE(random_state=0).fit(x, y)
    assert est.readout_ == "smile" and not est.warnings_


def test_stay_a_bound_is_the_clipped_dv_and_smile_reads_it():
    g = torch.Generator().manual_seed(0)
    tj = 6.0 + torch.randn(300, generator=g, dtype=torch.float64)
    tm = -8.0 + 3 * torch.randn(300, 20, generator=g, dtype=torch.float64)
    per_row = np.concatenate([tj.numpy()[:, None], tm.numpy()], axis=1)
    assert smile_excess(tj, tau=5.0) > 0.5
    out, value, readout = stay_a_bound(per_row, tau=5.0, ceiling=math.log(300))
    assert readout == "dv-clipped"
    ref = bounds.dv(tj.clamp(-5, 5), tm.clamp(-5, 5).reshape(-1))
    assert value == pytest.approx(float(ref)) == pytest.approx(clipped_dv(tj, tm, tau=5.0))
    # SMILE's read-out of the clipped cache is that value: the bootstrap needs no new code
    smile = bounds.smile(torch.from_numpy(out[:, 0]), torch.from_numpy(out[:, 1:]).reshape(-1), tau=5.0)
    assert float(smile) == pytest.approx(value)
    low = np.concatenate([(tj - 4).numpy()[:, None], tm.numpy()], axis=1)  # joint scores under tau
    same, none, readout = stay_a_bound(low, tau=5.0, ceiling=math.log(300))
    assert readout == "smile" and none is None and same is low
    # past tau but under log(N_test): heavy tails, not a deterministic pair; SMILE stands
    same, none, readout = stay_a_bound(per_row, tau=5.0, ceiling=20.0)
    assert readout == "smile" and none is None


def test_estimate_csv_takes_the_flow_critic(tmp_path, capsys):
    # the BMI external-estimator path: `deepscope mi estimate-csv PATH 2 2 --critic flow`
    from deepscope.cli import main

    x, y, truth = tasks.mapped_gaussian(400, d=2, mi=0.7, map="shear", seed=0)
    path = tmp_path / "t.csv"
    np.savetxt(path, np.hstack([x, y]), delimiter=",", header="X0,X1,Y0,Y1", comments="")
    assert main(["mi", "estimate-csv", str(path), "2", "2", "--critic", "flow", "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip()
    assert abs(float(out) - truth) < 0.5 and len(out.splitlines()) == 1


def test_run_directory_records_the_selection(tmp_path, capsys):
    import json

    from deepscope.cli import main

    x, y, _ = tasks.mapped_gaussian(400, d=2, mi=0.7, map="shear", seed=0)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "run"
    assert main(["mi", "estimate", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--critic", "select",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "result.json").read_text())
    # four candidates: hybrid or flow, Gaussianised or standardised (transform='auto')
    assert set(res["selection"]) == {"hybrid/gaussianize", "hybrid/standardize", "flow/gaussianize",
                                     "flow/standardize", "chosen"}
    assert res["selection"]["chosen"].split("/")[1] == res["transform"] and res["readout"] == "smile"


def test_zuko_is_imported_only_for_a_flow():
    import subprocess
    import sys

    code = ("import sys, numpy as np; import deepscope.mi; from deepscope.mi import MINE, tasks; "
            "x, y, _ = tasks.correlated_gaussian(300, d=2, mi=0.5, seed=0); MINE(max_steps=10).fit(x, y); "
            "print('zuko' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stdout + p.stderr


def test_rows_beyond_the_training_range_are_clamped_to_it():
    x, y, _ = tasks.mapped_gaussian(600, d=2, mi=0.5, map="shear", seed=0)
    t = torch.from_numpy
    splits = {"train": (t(x[:400]), t(y[:400])), "val": (t(x[400:]), t(y[400:]))}
    pair, _ = fit_flow_pair(splits, **TINY)
    far = torch.full((1, 2), 50.0)
    mx, my = pair(far, -far)
    assert torch.all((mx >= pair.lo[:2]) & (mx <= pair.hi[:2])) and torch.isfinite(pair.lo).all()
    assert torch.all((my >= pair.lo[2:]) & (my <= pair.hi[2:]))
