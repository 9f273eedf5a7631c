"""The hard task families: each sampler's truth checked against an oracle."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma

from deepscope.mi import tasks
from deepscope.mi.knn import gaussian_mi, ksg


def test_digamma_matches_scipy():
    for z in (0.1, 0.5, 1.0, 1.5, 2.5, 7.0, 40.0):
        assert tasks._digamma(z) == pytest.approx(float(digamma(z)), abs=1e-11)


@pytest.mark.parametrize("dx, dy, dof, rho", [(1, 1, 3.0, 0.0), (2, 3, 2.0, 0.6), (1, 1, 1.0, 0.0)])
def test_student_t_mi_equals_monte_carlo_log_density_ratio(dx, dy, dof, rho):
    # I = E[log p(x, y) - log p(x) - log p(y)] with scipy's multivariate t densities: an oracle
    # independent of the entropy formula. 200k draws give a standard error of ~0.003 nats.
    x, y, truth = tasks.student_t(200_000, dim_x=dx, dim_y=dy, dof=dof, rho=rho, seed=1)
    d = dx + dy
    scale = np.eye(d)
    for i in range(min(dx, dy)):
        scale[i, dx + i] = scale[dx + i, i] = rho
    xy = np.hstack([x, y]).astype(np.float64)
    ratio = (stats.multivariate_t(np.zeros(d), scale, df=dof).logpdf(xy)
             - stats.multivariate_t(np.zeros(dx), np.eye(dx), df=dof).logpdf(xy[:, :dx].reshape(-1, dx))
             - stats.multivariate_t(np.zeros(dy), np.eye(dy), df=dof).logpdf(xy[:, dx:].reshape(-1, dy)))
    se = ratio.std() / math.sqrt(len(ratio))
    assert truth == pytest.approx(ratio.mean(), abs=4 * se + 1e-3)
    assert truth > tasks.gaussian_mi_closed_form(min(dx, dy), rho)  # the tails add information


def test_student_t_tends_to_the_gaussian_and_ksg_agrees_in_low_dimension():
    assert tasks.student_t_mi(2, 2, 1e6, 0.5) == pytest.approx(tasks.gaussian_mi_closed_form(2, 0.5), abs=1e-4)
    assert tasks.student_t_mi(2, 2, 1e6, 0.0) == pytest.approx(0.0, abs=1e-5)
    x, y, truth = tasks.student_t(4000, dim_x=1, dim_y=1, dof=3.0, rho=0.5, seed=0)
    assert ksg(x, y) == pytest.approx(truth, abs=0.06)
    with pytest.raises(ValueError, match="dof == -1, must be > 0"):
        tasks.student_t(10, dof=-1)


@pytest.mark.parametrize("name", sorted(tasks.MAPS))
def test_maps_are_invertible_and_volume_preserving(name):
    f = tasks.MAPS[name]
    a = np.random.default_rng(0).standard_normal((50, 5))
    np.testing.assert_allclose(f(f(a), inverse=True), a, atol=1e-12)
    # det J = 1 at every point (central differences, float64)
    h = 1e-6
    for row in a[:10]:
        jac = np.stack([(f((row + h * e)[None]) - f((row - h * e)[None]))[0] / (2 * h) for e in np.eye(5)], 1)
        assert np.linalg.det(jac) == pytest.approx(1.0, abs=1e-6)
    assert not np.allclose(f(a), a)  # and it is not the identity
    with pytest.raises(ValueError, match="d >= 2"):
        f(a[:, :1])


@pytest.mark.parametrize("name", sorted(tasks.MAPS))
def test_mapped_gaussian_is_the_map_of_the_gaussian_and_ksg_agrees(name):
    x, y, truth = tasks.mapped_gaussian(3000, d=2, mi=1.0, map=name, seed=0)
    x0, y0, truth0 = tasks.correlated_gaussian(3000, d=2, mi=1.0, seed=0)
    assert truth == truth0 == pytest.approx(1.0)
    np.testing.assert_allclose(x, tasks.MAPS[name](x0.astype(np.float64)), rtol=1e-5, atol=1e-5)
    # invariance: mapping back recovers the Gaussian pair, whose MI is the closed form
    xb = tasks.MAPS[name](x.astype(np.float64), inverse=True)
    np.testing.assert_allclose(xb, x0, atol=1e-4)
    assert ksg(x, y) == pytest.approx(truth, abs=0.15)  # KSG at 2 + 2 dimensions: a loose check
    with pytest.raises(ValueError, match="map == 'twist'"):
        tasks.mapped_gaussian(10, map="twist")


def test_sparse_gaussian_truth_is_the_closed_form_of_its_covariance():
    x, y, truth = tasks.sparse_gaussian(20_000, d=6, k=2, mi=1.2, seed=0)
    assert truth == pytest.approx(1.2)
    rho = tasks.rho_for_mi(1.2, 2)
    cov = np.eye(12)
    for i in range(2):
        cov[i, 6 + i] = cov[6 + i, i] = rho
    assert gaussian_mi(cov, 6) == pytest.approx(truth)
    emp = np.corrcoef(np.hstack([x, y]), rowvar=False)
    np.testing.assert_allclose(emp, cov, atol=0.03)
    with pytest.raises(ValueError, match="k == 7, must be in \\[1, d\\]"):
        tasks.sparse_gaussian(10, d=6, k=7)


def test_families_are_seeded_and_shaped():
    for name, sample in tasks.FAMILIES.items():
        x, y, truth = sample(200, 3)
        x2, y2, truth2 = sample(200, 3)
        assert x.dtype == y.dtype == np.float32 and x.shape[0] == y.shape[0] == 200, name
        assert np.array_equal(x, x2) and np.array_equal(y, y2) and truth == truth2 > 0, name
        assert not np.array_equal(x, sample(200, 4)[0]), name
