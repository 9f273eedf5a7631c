import math

import numpy as np
import pytest
import torch

from deepscope.mi import MILoss, adaptive_gradient_clip, tasks
from deepscope.mi.critics import ConcatCritic, SeparableCritic, joint_scores, pairwise_scores
from deepscope.mi.knn import gaussian_mi, gaussian_mi_estimate, ksg


def test_gaussian_closed_form_matches_task_formula():
    rho, d = 0.7, 3
    cov = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
    assert gaussian_mi(cov, d) == pytest.approx(tasks.gaussian_mi_closed_form(d, rho))
    assert tasks.rho_for_mi(tasks.gaussian_mi_closed_form(d, rho), d) == pytest.approx(rho)


def test_ksg_accurate_in_low_dimension_and_biased_in_high():
    x, y, truth = tasks.correlated_gaussian(3000, d=2, rho=0.8, seed=0)
    assert ksg(x, y) == pytest.approx(truth, abs=0.05)
    x, y, truth = tasks.correlated_gaussian(3000, d=20, rho=0.5, seed=0)
    assert ksg(x, y) < 0.5 * truth  # the degradation the MINE paper reports
    assert gaussian_mi_estimate(x, y) == pytest.approx(truth, abs=0.1)


def test_ksg_independent_and_uniform_noise_task():
    rng = np.random.default_rng(0)
    assert abs(ksg(rng.normal(size=2000), rng.normal(size=2000))) < 0.03
    x, y, truth = tasks.uniform_noise(4000, d=1, eps=0.3, seed=0)
    assert truth == pytest.approx(0.15 - math.log(0.3))
    assert ksg(x, y) == pytest.approx(truth, abs=0.06)


def test_ksg_errors():
    with pytest.raises(ValueError, match="k == 0"):
        ksg(np.zeros(10), np.zeros(10), k=0)
    with pytest.raises(ValueError, match="x has 10 rows and y has 9"):
        ksg(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match="NaN"):
        ksg(np.array([np.nan, 1.0]), np.zeros(2))


def test_tasks_shapes_and_invariance():
    x, y, mi = tasks.transformed_gaussian(500, d=3, mi=2.0, transform="cubic", seed=0)
    x0, y0, mi0 = tasks.correlated_gaussian(500, d=3, mi=2.0, seed=0)
    assert x.shape == (500, 3) and mi == mi0 == pytest.approx(2.0)
    np.testing.assert_allclose(x, x0.astype(np.float64) ** 3, rtol=1e-5)
    steps, truth = tasks.staircase_schedule()
    assert len(steps) == 20000 and truth[0] == 2 and truth[-1] == 10 and truth[4000] == 4
    with pytest.raises(ValueError, match="exactly one of rho= or mi="):
        tasks.correlated_gaussian(10, d=2)
    with pytest.raises(ValueError, match="transform == 'log'"):
        tasks.transformed_gaussian(10, d=2, mi=1.0, transform="log")


def test_critics_pairwise_agree_with_forward():
    x, y = torch.randn(7, 3), torch.randn(7, 2)
    for c in (ConcatCritic(3, 2, (16, 16)), SeparableCritic(3, 2, (16,), embed=4)):
        s = c.pairwise(x, y)
        ref = torch.stack([torch.stack([c(x[i : i + 1], y[j : j + 1])[0] for j in range(7)]) for i in range(7)])
        torch.testing.assert_close(s, ref, rtol=1e-5, atol=1e-5)
        perm = torch.randperm(7)
        tj, tm = joint_scores(c, x, y, perm)
        torch.testing.assert_close(tj, s.diagonal())
        torch.testing.assert_close(tm, s[torch.arange(7), perm])

    class Plain(torch.nn.Module):  # a user critic with only forward(x, y) -> (K, 1)
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(5, 1)

        def forward(self, a, b):
            return self.lin(torch.cat([a, b], 1))

    p = Plain()
    s = pairwise_scores(p, x, y)
    assert s.shape == (7, 7)
    torch.testing.assert_close(s[2, 5], p(x[2:3], y[5:6])[0, 0])


def test_miloss_trains_critic_and_tracks_ema():
    torch.manual_seed(0)
    x, y, truth = tasks.correlated_gaussian(4000, d=2, mi=1.0, seed=0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    mi = MILoss(dim_x=2, dim_y=2, hidden=(64, 64))
    opt = torch.optim.Adam(mi.parameters(), lr=1e-3)
    assert torch.isnan(mi.log_ema)
    for _ in range(1500):
        idx = torch.randint(0, 4000, (256,))
        loss = -mi(x[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(mi.log_ema)
    mi.eval()
    with torch.no_grad():
        vals = [mi(x[i : i + 1000], y[i : i + 1000]).item() for i in range(0, 4000, 1000)]
    assert np.mean(vals) == pytest.approx(truth, abs=0.25)
    # gradient reaches the inputs (a GAN generator or an encoder needs it)
    xi = x[:64].clone().requires_grad_()
    mi(xi, y[:64]).backward()
    assert xi.grad is not None and xi.grad.abs().sum() > 0


def test_miloss_errors():
    with pytest.raises(ValueError, match="either critic"):
        MILoss()
    with pytest.raises(ValueError, match="bound == 'x'"):
        MILoss(dim_x=1, dim_y=1, bound="x")
    with pytest.raises(ValueError, match="x has 4 rows and y has 3"):
        MILoss(dim_x=1, dim_y=1)(torch.zeros(4), torch.zeros(3))


def test_miloss_takes_float64_numpy_and_integer_inputs():
    x, y, _ = tasks.correlated_gaussian(64, d=2, rho=0.5, seed=0)
    mi = MILoss(dim_x=2, dim_y=2, hidden=(8,))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    want = mi(torch.from_numpy(x), torch.from_numpy(y), generator=g())
    # float64 tensors (cast, differentiably), numpy arrays, integer labels
    x64 = torch.from_numpy(x).double().requires_grad_()
    got = mi(x64, torch.from_numpy(y).double(), generator=g())
    torch.testing.assert_close(got, want)
    got.backward()
    assert x64.grad is not None and x64.grad.dtype == torch.float64
    torch.testing.assert_close(mi(x.astype("float64"), y, generator=g()), want)
    assert torch.isfinite(mi((torch.arange(128) % 3).reshape(64, 2), y, generator=g()))


def test_adaptive_gradient_clip_caps_mi_gradient():
    w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    main = (w * torch.tensor([1.0, 0.0])).sum()          # g_u = (1, 0), |g_u| = 1
    mi_term = (w * torch.tensor([0.0, 10.0])).sum()      # g_m = (0, 10), |g_m| = 10
    norms = adaptive_gradient_clip(main, mi_term, [w])
    torch.testing.assert_close(w.grad, torch.tensor([1.0, 1.0]))  # g_m scaled to norm 1
    assert norms == {"grad_main_norm": 1.0, "grad_mi_norm": 10.0}
    small = (w * torch.tensor([0.0, 0.5])).sum()
    adaptive_gradient_clip((w * torch.tensor([1.0, 0.0])).sum(), small, [w])
    torch.testing.assert_close(w.grad, torch.tensor([1.0, 0.5]))  # smaller g_m passes unchanged
