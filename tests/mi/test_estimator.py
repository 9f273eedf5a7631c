import math
import warnings

import numpy as np
import pytest
import torch

from deepscope.mi import MINE, tasks
from deepscope.mi.estimator import MIWarning, NotFittedError

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


@pytest.mark.parametrize("bound", ["dv", "nwj", "smile", "infonce"])
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
    from sklearn.base import BaseEstimator, clone
    from sklearn.exceptions import NotFittedError as SkNotFitted

    est = MINE(lr=3e-4, bound="nwj")
    assert isinstance(est, BaseEstimator) and NotFittedError is SkNotFitted
    assert clone(est).get_params() == est.get_params() and clone(est) is not est
    assert repr(est) == "MINE(bound='nwj', lr=0.0003)"  # sklearn's repr: the changed parameters
    assert est.set_params(max_steps=7).max_steps == 7
    with pytest.raises(ValueError, match="Invalid parameter 'steps'"):
        est.set_params(steps=7)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.score(np.zeros((10, 1)), np.zeros((10, 1)))
    with pytest.raises(AttributeError):
        _ = est.mi_


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
