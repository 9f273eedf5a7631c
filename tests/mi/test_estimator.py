import copy
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from deepscope.mi import MINE, bounds, tasks
from deepscope.mi.estimator import PRESETS, MIWarning, NotFittedError

FAST = dict(max_steps=600, eval_every=100, patience=3, n_bootstrap=50)


@pytest.fixture(scope="module")
def gauss():
    return tasks.correlated_gaussian(3000, d=2, mi=1.0, seed=0)


def test_estimate_near_truth_and_interval_contains_it(gauss):
    x, y, truth = gauss
    est = MINE(random_state=0, **FAST).fit(x, y)
    assert est.mi_ == pytest.approx(truth, abs=0.25)
    lo, hi = est.ci_
    assert lo < est.mi_ < hi and hi - lo < 0.5
    assert est.mi_bits_ == pytest.approx(est.mi_ / math.log(2))
    assert est.history_ and {"step", "train", "val"} <= set(est.history_[0])
    assert est.n_train_ + est.n_val_ + est.n_test_ == 3000


def test_independent_variables_give_near_zero():
    rng = np.random.default_rng(0)
    est = MINE(random_state=0, **FAST).fit(rng.normal(size=(3000, 3)), rng.normal(size=(3000, 3)))
    assert abs(est.mi_) < 0.1


def test_same_seed_same_numbers_and_global_rng_untouched(gauss):
    x, y, _ = gauss
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = MINE(random_state=3, **FAST).fit(x, y)
    assert torch.equal(before, torch.get_rng_state())
    b = MINE(random_state=3, **FAST).fit(x, y)
    assert a.mi_ == b.mi_ and a.ci_ == b.ci_


@pytest.mark.parametrize("bound", ["mine", "dv", "nwj", "infonce"])
def test_every_bound_trains(gauss, bound):
    x, y, truth = gauss
    est = MINE(bound=bound, random_state=0, batch_size=128, **FAST).fit(x, y)
    assert 0.5 < est.mi_ < truth + 0.3


def test_torch_inputs_user_critic_and_restarts(gauss):
    x, y, _ = gauss

    class Bilinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Bilinear(2, 2, 1)

        def forward(self, a, b):
            return self.w(a, b).squeeze(-1)

    est = MINE(critic=Bilinear(), n_restarts=2, random_state=0, **FAST).fit(torch.from_numpy(x), torch.from_numpy(y))
    assert len(est.restarts_) == 2 and isinstance(est.critic_, Bilinear)
    best = max(est.restarts_, key=lambda r: r["val"])
    assert est.mi_ == best["test"]
    assert est.score(x[:500], y[:500]) > 0.3


def test_gaussianize_is_invariant_to_monotone_maps():
    x, y, truth = tasks.correlated_gaussian(3000, d=2, mi=1.0, seed=1)
    a = MINE(transform="gaussianize", random_state=0, **FAST).fit(x, y)
    b = MINE(transform="gaussianize", random_state=0, **FAST).fit(np.exp(x), y**3)
    # Ranks are unchanged by a monotone map: training rows map identically; held-out rows
    # differ only through linear interpolation of the empirical CDF between training values.
    assert a.mi_ == pytest.approx(b.mi_, abs=1e-3)
    c = MINE(transform="standardize", random_state=0, **FAST).fit(np.exp(x), y**3)
    assert abs(c.mi_ - a.mi_) > 1e-2


def test_infonce_ceiling_warns():
    x, y, _ = tasks.correlated_gaussian(3000, d=2, mi=4.0, seed=0)
    with pytest.warns(MIWarning, match="ceiling log\\(batch_size\\)"):
        est = MINE(bound="infonce", batch_size=16, random_state=0, **FAST).fit(x, y)
    assert est.mi_ <= math.log(16) + 1e-6
    assert est.warnings_


def test_scikit_learn_estimator_get_params_clone_and_not_fitted():
    # MINE follows scikit-learn's protocol without subclassing BaseEstimator (importing
    # scikit-learn costs more than an estimate): clone, get/set_params, repr, NotFittedError.
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError as SkNotFitted

    est = MINE(lr=3e-4, bound="nwj")
    assert NotFittedError is SkNotFitted
    assert clone(est).get_params() == est.get_params() and clone(est) is not est
    assert repr(est) == "MINE(bound='nwj', lr=0.0003)"  # sklearn's repr: the changed parameters
    assert est.set_params(max_steps=7).max_steps == 7
    with pytest.raises(ValueError, match="Invalid parameter 'steps'"):
        est.set_params(steps=7)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.score(np.zeros((10, 1)), np.zeros((10, 1)))
    with pytest.raises(AttributeError):
        _ = est.mi_
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(SkNotFitted):
        check_is_fitted(est)
    x, y, _ = tasks.correlated_gaussian(600, d=1, mi=0.5, seed=0)
    check_is_fitted(MINE(max_steps=5, n_bootstrap=0).fit(x, y))


@pytest.mark.parametrize(
    "kwargs, x, y, match",
    [
        ({}, np.zeros((100, 2)), np.zeros((99, 2)), "x has 100 rows and y has 99"),
        ({}, np.ones((30, 2)), np.ones((30, 2)), "30 rows; need at least 50"),
        ({}, np.r_[np.full((1, 2), np.nan), np.random.rand(99, 2)], np.random.rand(100, 2), "x contains NaN or inf values \\(first at row 0\\)"),
        ({}, np.random.rand(100, 2), np.c_[np.random.rand(100), np.ones(100)], "y has constant column\\(s\\) \\[1\\]"),
        ({}, np.array([["a"]] * 100, dtype=object), np.random.rand(100, 1), "x has dtype object"),
        ({"batch_size": 1}, np.random.rand(100, 2), np.random.rand(100, 2), "batch_size == 1, must be >= 2"),
        ({"bound": "mutual"}, np.random.rand(100, 2), np.random.rand(100, 2), "bound == 'mutual'"),
        ({"transform": "log"}, np.random.rand(100, 2), np.random.rand(100, 2), "transform == 'log'"),
        ({"critic": "big"}, np.random.rand(100, 2), np.random.rand(100, 2), "critic == 'big'"),
    ],
)
def test_bad_input_messages(kwargs, x, y, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MINE(**kwargs).fit(x, y)


def test_no_warning_on_a_normal_fit(gauss):
    x, y, _ = gauss
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MINE(random_state=0, **FAST).fit(x, y)


def test_adam_matches_torch_optim_adam():
    from deepscope.mi.estimator import _Adam

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    b = copy.deepcopy(a)
    ours, ref = _Adam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    x = torch.randn(32, 3)
    for _ in range(20):
        for net, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_estimate_path_imports_only_torch_and_numpy():
    code = (
        "import sys, numpy as np; from deepscope.mi import MINE, tasks; "
        "x, y, _ = tasks.correlated_gaussian(600, d=2, mi=1.0, seed=0); "
        "MINE(max_steps=20, n_bootstrap=10).fit(x, y); "
        "print([m for m in ('sklearn', 'scipy', 'torch._dynamo', 'matplotlib', 'tyro') if m in sys.modules])"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_vectorised_bootstrap_equals_resampling_the_bound():
    g = np.random.default_rng(0)
    per_row = g.normal(size=(200, 6))
    for bound in ("mine", "nwj", "smile"):
        est = MINE(bound=bound, tau=1.0, n_bootstrap=40)
        lo, hi = est._bootstrap(per_row, seed=5)
        rng = np.random.default_rng(5)
        idx = rng.integers(0, 200, (40, 200))
        vals = [float(est._bound_value(torch.from_numpy(per_row[i, 0]), torch.from_numpy(per_row[i, 1:])))
                for i in idx]
        ref = np.percentile(vals, [2.5, 97.5])
        assert (lo, hi) == pytest.approx(tuple(ref), abs=1e-9), bound


def test_hybrid_critic_starts_at_the_gaussian_ratio_and_presets_select_the_old_estimator():
    x, y, truth = tasks.correlated_gaussian(3000, d=3, mi=1.0, seed=2)
    # no training: the held-out bound of the fitted Gaussian ratio alone is close to the truth
    est = MINE(max_steps=1, eval_every=1, patience=1, random_state=0).fit(x, y)
    assert est.history_[0]["step"] == 0 and est.mi_ == pytest.approx(truth, abs=0.12)
    assert 0.0 <= est.shrinkage_ <= 1.0 and set(est.timings_) >= {"train", "validation", "test", "bootstrap"}
    old = MINE(**PRESETS["concat-mine"])
    assert old.critic == "concat" and old.bound == "mine" and old.batch_size == 256 and old.max_steps == 10_000
    assert repr(MINE(**PRESETS["default"])) == "MINE()"
    with pytest.raises(ValueError, match="shrinkage == 2, must be 'auto' or a number in \\[0, 1\\]"):
        MINE(shrinkage=2).fit(x, y)


def test_a_test_estimate_far_below_validation_warns():
    # the DV read-out of bound='mine' collapses on this sample (one outlying marginal score);
    # SMILE's clipped read-out does not (measured in docs/mine.md; this sample and split were
    # found by searching data seeds 0-3 x random states 0-7 with Gaussianised columns: 1 collapse in 26)
    x, y, truth = tasks.mapped_gaussian(5000, d=5, mi=1.0, map="shear", seed=1)
    with pytest.warns(MIWarning, match="far below the same critic's validation bound"):
        bad = MINE(bound="mine", transform="gaussianize", random_state=1).fit(x, y)
    assert bad.mi_ < 0.5 * truth
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = MINE(random_state=1).fit(x, y)
    assert good.mi_ > 0.7 * truth


def test_default_training_stops_two_evaluations_after_its_best():
    """The default stopping rule (patience 2, no halving for the hybrid critic): training ends
    at the second evaluation that does not beat the best so far, the untrained Gaussian part
    (step 0) included; on correlated Gaussians that answer is already the right critic."""
    x, y, truth = tasks.correlated_gaussian(4000, d=3, mi=1.0, seed=3)
    est = MINE(random_state=0, n_bootstrap=20).fit(x, y)
    vals = [h["val"] for h in est.history_]
    best = max(range(len(vals)), key=vals.__getitem__)
    assert est.restarts_[0]["steps"] == min(est.max_steps, (best + 2) * est.eval_every)
    assert est.restarts_[0]["steps"] < est.max_steps
    assert abs(est.mi_ - truth) < 0.15
    with pytest.raises(ValueError, match="lr_decay == 'yes'; choose True, False or 'auto'"):
        MINE(lr_decay="yes").fit(x, y)


def test_rank_auto_keeps_the_informative_canonical_pairs_and_beats_the_full_ratio():
    # 2 informative pairs among 20 + 20 coordinates: the full Gaussian ratio fits 400
    # cross-covariances and pays about 400 / (2 * 2,100) = 0.095 nats for them on held-out rows
    kw = dict(max_steps=1, eval_every=1, patience=1, n_bootstrap=0, random_state=0, shrinkage=0.0)
    gains = []
    for seed in range(3):
        x, y, truth = tasks.sparse_gaussian(3000, d=20, k=2, mi=1.0, seed=seed)
        auto, full = MINE(**kw).fit(x, y), MINE(rank=20, **kw).fit(x, y)
        assert auto.gaussian_rank_ == 2 and full.gaussian_rank_ == 20
        gains.append(auto.mi_ - full.mi_)  # same test rows: the difference has little noise
    assert np.mean(gains) > 0.05, gains
    with pytest.raises(ValueError, match="rank == 21, must be <= min\\(dim_x, dim_y\\) == 20"):
        MINE(rank=21).fit(x, y)
    with pytest.raises(ValueError, match="rank == -1, must be 'auto' or an integer >= 0"):
        MINE(rank=-1).fit(x, y)


def test_every_rank_at_once_equals_the_bound_per_column():
    g = torch.Generator().manual_seed(0)
    tj, tm = torch.randn(50, 4, generator=g, dtype=torch.float64), 3 * torch.randn(400, 4, generator=g, dtype=torch.float64)
    for bound in ("mine", "nwj", "smile"):
        est = MINE(bound=bound, tau=1.0)
        vals = est._dv_value(tj.mean(0), bounds.logmeanexp(est._clip(tm), dim=0))
        ref = torch.stack([est._bound_value(tj[:, k], tm[:, k]) for k in range(4)])
        torch.testing.assert_close(vals, ref)


def test_deterministic_pairs_warn_that_the_number_is_not_a_measurement():
    x = np.random.default_rng(0).standard_normal((2000, 3)).astype(np.float32)
    with pytest.warns(MIWarning, match="exceeds log\\(N_test\\) = 5.70.*not a measurement"):
        est = MINE(n_bootstrap=0).fit(x, x.copy())
    # the read-out falls back to the clipped critic's DV bound (at most 2 tau) and says so
    assert math.log(est.n_test_) < est.mi_ <= 2 * est.tau and est.readout_ == "dv-clipped"
    assert len(est.warnings_) == 2 and "SMILE's clipped read-out is not a bound" in est.warnings_[0]


def test_validate_refuses_bad_options_before_any_work():
    assert MINE().validate(3, 2) is not None
    for kw, match in [({"hidden": ()}, "hidden == \\(\\), must be a non-empty sequence"),
                      ({"hidden": (64, 0)}, "hidden == \\(64, 0\\)"),
                      ({"embed": 0}, "embed == 0, must be an integer >= 1"),
                      ({"rank": 3}, "rank == 3, must be <= min\\(dim_x, dim_y\\) == 2")]:
        with pytest.raises(ValueError, match=match):
            MINE(**kw).validate(3, 2)
