"""The hybrid critic: its Gaussian part against torch.distributions, and its paths agree."""

import numpy as np
import pytest
import torch

from deepscope.mi.critics import (
    ConcatCritic,
    HybridCritic,
    canonical_pairs,
    canonical_terms,
    gaussian_log_ratio,
    gaussian_moments,
)
from deepscope.mi.knn import gaussian_mi


def _data(n=4000, dx=3, dy=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dx, generator=g)
    y = 0.6 * x[:, :dy] + 0.8 * torch.randn(n, dy, generator=g) + 0.3
    return x, y


def test_gaussian_log_ratio_is_the_fitted_gaussians_log_density_ratio():
    x, y = _data()
    mu, m, c = gaussian_log_ratio(x, y)
    z = torch.cat([x, y], 1).double()
    cov = torch.cov(z.T)
    assert float(c) == pytest.approx(gaussian_mi(cov.numpy(), 3), abs=1e-5)
    mvn = torch.distributions.MultivariateNormal
    joint = mvn(z.mean(0), cov)
    px, py = mvn(z.mean(0)[:3], cov[:3, :3]), mvn(z.mean(0)[3:], cov[3:, 3:])
    pts = torch.randn(50, 5, dtype=torch.float64)
    want = joint.log_prob(pts) - px.log_prob(pts[:, :3]) - py.log_prob(pts[:, 3:])
    critic = HybridCritic(3, 2, (8,), mu=mu, m=m, c=c)
    got = critic(pts[:, :3].float(), pts[:, 3:].float())
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_full_shrinkage_means_independence_and_bad_values_are_refused():
    x, y = _data()
    _, m, c = gaussian_log_ratio(x, y, shrinkage=1.0)
    assert torch.count_nonzero(m) == 0 and float(c) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="shrinkage == 1.5, must be in \\[0, 1\\]"):
        gaussian_log_ratio(x, y, shrinkage=1.5)


@pytest.mark.parametrize("radial", [False, True])
def test_hybrid_paths_agree(radial):
    x, y = _data(n=9)
    mu, m, c = gaussian_log_ratio(*_data())
    torch.manual_seed(0)
    critic = HybridCritic(3, 2, (16, 16), mu=mu, m=m, c=c, radial=radial)
    torch.testing.assert_close(critic(x, y), critic.parametric(x, y))  # the MLP starts at zero
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.1 * torch.randn_like(p))
    s = critic.pairwise(x, y)
    rows, cols = torch.tensor([0, 3, 8, 8]), torch.tensor([5, 3, 0, 8])
    torch.testing.assert_close(critic.scores_at(x, y, rows, cols), s[rows, cols])
    torch.testing.assert_close(critic(x, y), s.diagonal())
    perm = torch.randperm(9)
    tj, tm = critic.joint_and_shuffled(x, y, perm)
    torch.testing.assert_close(tj, s.diagonal())
    torch.testing.assert_close(tm, s[torch.arange(9), perm])
    plain = ConcatCritic(3, 2, (16, 16))
    torch.testing.assert_close(plain.scores_at(x, y, rows, cols), plain.pairwise(x, y)[rows, cols])
    assert np.isfinite(s.detach().numpy()).all()


def test_full_rank_canonical_ratio_is_the_full_gaussian_ratio_and_rank_zero_is_independence():
    x, y = _data(dx=4, dy=3)
    pts_x, pts_y = torch.randn(20, 4), torch.randn(20, 3)
    mu, m, c = gaussian_log_ratio(x, y, shrinkage=0.1)
    mu3, m3, c3 = gaussian_log_ratio(x, y, shrinkage=0.1, rank=3)
    torch.testing.assert_close(mu3, mu)
    torch.testing.assert_close(c3, c, rtol=1e-5, atol=1e-6)
    want = HybridCritic(4, 3, (8,), mu=mu, m=m, c=c).parametric(pts_x, pts_y)
    got = HybridCritic(4, 3, (8,), mu=mu3, m=m3, c=c3).parametric(pts_x, pts_y)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    _, m0, c0 = gaussian_log_ratio(x, y, rank=0)
    assert torch.count_nonzero(m0) == 0 and float(c0) == 0.0
    with pytest.raises(ValueError, match="rank == 4, must be in \\[0, min\\(dx, dy\\)\\] = \\[0, 3\\]"):
        gaussian_log_ratio(x, y, rank=4)


def test_rank_k_ratio_is_the_sum_of_the_k_strongest_canonical_pairs():
    # y's first two coordinates follow x's with different strengths: two canonical pairs, r1 > r2
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20_000, 4, generator=g)
    noise = torch.randn(20_000, 3, generator=g)
    y = torch.cat([0.9 * x[:, :1] + 0.44 * noise[:, :1], 0.5 * x[:, 1:2] + 0.87 * noise[:, 1:2],
                   noise[:, 2:]], 1)
    mom = gaussian_moments(x, y)
    wx, wy, r = canonical_pairs(mom[1], 4)
    assert r[0] > r[1] > 0.4 > 0.05 > r[2]
    torch.testing.assert_close(wx @ torch.cov(x.T.double()) @ wx.T, torch.eye(3, dtype=torch.float64),
                               rtol=1e-6, atol=1e-6)
    a, b = (x.double() - mom[0][:4]) @ wx.T, (y.double() - mom[0][4:]) @ wy.T
    assert torch.corrcoef(torch.cat([a, b], 1).T)[0, 3] == pytest.approx(float(r[0]), abs=1e-6)
    mu, m, c = gaussian_log_ratio(x, y, rank=2)
    assert float(c) == pytest.approx(float(-0.5 * torch.log1p(-r[:2] ** 2).sum()), rel=1e-6)
    q = HybridCritic(4, 3, (8,), mu=mu, m=m, c=c).parametric(x[:50], y[:50])
    torch.testing.assert_close(q.double(), canonical_terms(a[:50], b[:50], r)[:, :2].sum(1),
                               rtol=1e-4, atol=1e-4)
