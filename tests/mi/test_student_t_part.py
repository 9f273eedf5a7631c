"""The hybrid critic's Student-t copula part: quantile table, exact ratio, selection, errors."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from deepscope.mi import MINE, tasks
from deepscope.mi.critics import (
    T_TABLE_Z_MAX,
    HybridCritic,
    student_t_copula_ratio,
    student_t_quantile_table,
)


@pytest.mark.parametrize("dof", [1.0, 2.0, 3.0, 4.5, 20.0])
def test_quantile_table_is_the_t_quantile_of_the_normal_cdf(dof):
    z = np.linspace(-T_TABLE_Z_MAX, T_TABLE_Z_MAX, 2049)
    ref = stats.t.ppf(stats.norm.cdf(z), dof)
    q = student_t_quantile_table(dof).numpy()
    assert np.max(np.abs(q - ref) / np.maximum(1.0, np.abs(ref))) < 1e-4
    assert np.all(np.diff(q) > 0) and q[1024] == 0.0


def _t_rows(n, r, dof, seed):
    rng = np.random.default_rng(seed)
    g = rng.multivariate_normal(np.zeros(len(r)), r, size=n)
    return g / np.sqrt(rng.chisquare(dof, size=(n, 1)) / dof)


def test_student_t_part_is_the_exact_log_ratio_of_a_multivariate_t():
    # rows of a 2 + 3 multivariate t, turned into normal scores with the exact marginal map:
    # the part's q must equal log t(x, y; R) - log t(x; R_xx) - log t(y; R_yy) (scipy's densities)
    dof, dx = 3.0, 2
    a = np.random.default_rng(0).standard_normal((5, 5))
    s = a @ a.T + 5 * np.eye(5)
    r = s / np.sqrt(np.outer(np.diag(s), np.diag(s)))
    u = _t_rows(400, r, dof, seed=1)
    z = torch.from_numpy(stats.norm.ppf(stats.t.cdf(u, dof))).float()
    keep = (z.abs() < T_TABLE_Z_MAX - 0.5).all(1)
    u, z = u[keep.numpy()], z[keep]
    critic = HybridCritic(dx, 3, hidden=(4,), **student_t_copula_ratio(torch.from_numpy(r), dx, dof))
    mvt = stats.multivariate_t
    ref = (mvt(np.zeros(5), r, df=dof).logpdf(u) - mvt(np.zeros(2), r[:2, :2], df=dof).logpdf(u[:, :2])
           - mvt(np.zeros(3), r[2:, 2:], df=dof).logpdf(u[:, 2:]))
    got = critic(z[:, :dx], z[:, dx:]).detach().double().numpy()  # the MLP starts at zero
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=2e-3)
    # all pairs and indexed pairs are the same function
    pw = critic.pairwise(z[:6, :dx], z[:6, dx:])
    rows, cols = torch.arange(6).repeat_interleave(6), torch.arange(6).repeat(6)
    torch.testing.assert_close(critic.scores_at(z[:6, :dx], z[:6, dx:], rows, cols), pw.reshape(-1))
    tj, tm = critic.joint_and_shuffled(z[:6, :dx], z[:6, dx:], torch.tensor([1, 2, 3, 4, 5, 0]))
    torch.testing.assert_close(tj, pw.diagonal())
    torch.testing.assert_close(tm, pw[torch.arange(6), torch.tensor([1, 2, 3, 4, 5, 0])])


def test_auto_keeps_a_student_t_part_for_shared_heavy_tails_and_the_gaussian_one_for_gaussians():
    x, y, truth = tasks.student_t(4000, dim_x=3, dim_y=3, dof=3.0, rho=0.5, seed=3)
    heavy = MINE(random_state=3, n_bootstrap=0, max_steps=50).fit(x, y)
    gauss_only = MINE(random_state=3, n_bootstrap=0, max_steps=50, dof=math.inf).fit(x, y)
    assert math.isfinite(heavy.dof_) and heavy.gaussian_rank_ is None
    assert gauss_only.dof_ == math.inf
    # the part alone: the shared scale is worth a large part of the MI the Gaussian part misses
    assert abs(heavy.mi_ - truth) < abs(gauss_only.mi_ - truth)
    x, y, _ = tasks.correlated_gaussian(4000, d=3, mi=1.0, seed=3)
    assert MINE(random_state=3, n_bootstrap=0, max_steps=50).fit(x, y).dof_ == math.inf


def test_a_fixed_dof_is_used_and_recorded():
    x, y, _ = tasks.student_t(2000, dim_x=2, dim_y=2, dof=2.0, seed=4)
    est = MINE(random_state=4, n_bootstrap=0, max_steps=25, dof=2.0, transform="gaussianize").fit(x, y)
    assert est.dof_ == 2.0 and float(est.critic_.dof) == 2.0


@pytest.mark.parametrize("kwargs, match", [
    ({"dof": 0}, "dof == 0, must be 'auto', a number > 0"),
    ({"dof": "heavy"}, "dof == 'heavy'"),
    ({"dof": 3.0, "transform": "standardize"}, "use transform='gaussianize'"),
    ({"dof": 3.0}, "use transform='gaussianize'"),  # the default transform='auto' may standardise
    ({"dof": 3.0, "rank": 1, "transform": "gaussianize"}, "rank='auto'"),
])
def test_bad_dof_is_refused_with_the_fix(kwargs, match):
    x, y, _ = tasks.correlated_gaussian(200, d=2, mi=0.5, seed=0)
    with pytest.raises(ValueError, match=match):
        MINE(**kwargs).fit(x, y)
