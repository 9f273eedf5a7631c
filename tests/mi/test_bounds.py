"""Bounds against closed forms: with the optimal critic log dP/dQ each bound reads the true MI."""

import math

import pytest
import torch

from deepscope.mi import bounds


def gaussian_log_ratio(x, y, rho):
    """log p(x, y) / (p(x) p(y)) for unit-variance 1-D Gaussians with correlation rho."""
    q = 1 - rho**2
    return -0.5 * math.log(q) - (rho**2 * x**2 - 2 * rho * x * y + rho**2 * y**2) / (2 * q)


def sample(n, rho, gen):
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, generator=gen, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_dv_and_nwj_read_true_mi_at_optimal_critic(rho):
    g = torch.Generator().manual_seed(0)
    x, y = sample(200_000, rho, g)
    y_shuf = y[torch.randperm(len(y), generator=g)]
    tj, tm = gaussian_log_ratio(x, y, rho), gaussian_log_ratio(x, y_shuf, rho)
    truth = -0.5 * math.log(1 - rho**2)
    assert bounds.dv(tj, tm).item() == pytest.approx(truth, abs=0.02)
    # NWJ is tight at T* + 1, DV at T* + any constant.
    assert bounds.nwj(tj + 1, tm + 1).item() == pytest.approx(truth, abs=0.02)
    assert bounds.dv(tj + 3.0, tm + 3.0).item() == pytest.approx(bounds.dv(tj, tm).item(), abs=1e-9)
    # A sub-optimal critic gives less (they are lower bounds in expectation).
    assert bounds.dv(0.5 * tj, 0.5 * tm).item() < truth
    assert bounds.nwj(tj, tm).item() < truth


def test_infonce_at_optimal_critic_and_its_log_k_ceiling():
    g = torch.Generator().manual_seed(1)
    rho, k = 0.5, 512
    x, y = sample(k, rho, g)
    s = gaussian_log_ratio(x[:, None], y[None, :], rho)
    truth = -0.5 * math.log(1 - rho**2)
    assert bounds.infonce(s).item() == pytest.approx(truth, abs=0.06)
    # A perfect critic on near-deterministic pairs still cannot exceed log K.
    s = -1e3 * (torch.arange(8.0)[:, None] - torch.arange(8.0)[None, :]) ** 2
    assert bounds.infonce(s).item() == pytest.approx(math.log(8), abs=1e-6)


def test_smile_value_is_clipped_dv_and_gradient_is_js():
    tj = torch.randn(64, requires_grad=True)
    tm = (3 * torch.randn(64)).requires_grad_()
    v = bounds.smile(tj, tm, tau=1.0)
    ref = tj.mean() - bounds.logmeanexp(tm.clamp(-1, 1))
    assert v.item() == pytest.approx(ref.item(), rel=1e-6)
    assert bounds.smile(tj, tm, tau=math.inf).item() == pytest.approx(bounds.dv(tj, tm).item(), rel=1e-6)
    g = torch.autograd.grad(v, [tj, tm])
    gref = torch.autograd.grad(bounds.js(tj, tm), [tj, tm])
    for a, b in zip(g, gref):
        torch.testing.assert_close(a, b)


def test_mine_ema_value_is_dv_and_gradient_is_papers_formula():
    torch.manual_seed(0)
    feats_j, feats_m = torch.randn(32, 4), torch.randn(48, 4)
    theta = torch.randn(4, requires_grad=True)
    tj, tm = feats_j @ theta, feats_m @ theta
    log_ema = torch.tensor(0.3)
    alpha = 0.1
    v, new = bounds.mine_ema(tj, tm, log_ema=log_ema, alpha=alpha)
    assert v.item() == pytest.approx(bounds.dv(tj, tm).item(), rel=1e-6)
    ema = (1 - alpha) * math.exp(0.3) + alpha * torch.exp(tm).mean().item()
    assert new.item() == pytest.approx(math.log(ema), rel=1e-6)
    (g,) = torch.autograd.grad(v, theta, retain_graph=True)
    # Paper: E_B[dT_joint] - E_B[dT e^T] / ema, with ema the updated moving average.
    w = torch.exp(tm.detach())
    expected = feats_j.mean(0) - (feats_m * w[:, None]).mean(0) / ema
    torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-6)
    # alpha = 1 is the plain DV gradient.
    v1, _ = bounds.mine_ema(tj, tm, log_ema=log_ema, alpha=1.0)
    g1 = torch.autograd.grad(v1, theta, retain_graph=True)[0]
    gdv = torch.autograd.grad(bounds.dv(tj, tm), theta)[0]
    torch.testing.assert_close(g1, gdv)


def test_bounds_are_stable_for_large_scores():
    tj = torch.full((10,), 500.0)
    tm = torch.full((10,), 800.0)
    assert torch.isfinite(bounds.dv(tj, tm))
    v, e = bounds.mine_ema(tj, tm, log_ema=torch.tensor(900.0), alpha=0.01)
    assert torch.isfinite(v) and torch.isfinite(e)


def test_split_scores_and_errors():
    s = torch.arange(9.0).reshape(3, 3)
    d, off = bounds.split_scores(s)
    assert d.tolist() == [0, 4, 8] and sorted(off.tolist()) == [1, 2, 3, 5, 6, 7]
    with pytest.raises(ValueError, match=r"scores.shape == \(2, 3\)"):
        bounds.split_scores(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="alpha == 0"):
        bounds.mine_ema(torch.zeros(2), torch.zeros(2), log_ema=None, alpha=0)
    with pytest.raises(ValueError, match="tau == 0"):
        bounds.smile(torch.zeros(2), torch.zeros(2), tau=0)
    with pytest.raises(ValueError, match="bound == 'infonce'"):
        bounds.evaluate("infonce", torch.zeros(2), torch.zeros(2))


# -- one dispatch: every path that picks a bound by name gives the same value and gradient ----


class FixedScores(torch.nn.Module):
    """A critic whose scores are a fixed matrix: T(x_i, y_j) = S[x_i, y_j] for index columns."""

    def __init__(self, s):
        super().__init__()
        self.s = torch.nn.Parameter(s.clone())

    def forward(self, x, y):
        return self.s[x[:, 0].long(), y[:, 0].long()]


def _lme(t):
    return torch.log(torch.exp(t).mean())


def _reference(bound, s, tj, tm, log_ema=None, alpha=0.01, tau=1.0):
    """Value and surrogate (whose gradient is the bound's training gradient), from the formulas."""
    if bound == "infonce":
        v = (s.diagonal() - torch.log(torch.exp(s).mean(1))).mean()
        return v, v
    dv_value = tj.mean() - _lme(tm)
    if bound == "dv":
        return dv_value, dv_value
    if bound == "nwj":
        v = tj.mean() - torch.exp(tm - 1).mean()
        return v, v
    if bound == "smile":
        js = -torch.nn.functional.softplus(-tj).mean() - torch.nn.functional.softplus(tm).mean()
        return tj.mean() - _lme(tm.clamp(-tau, tau)), js
    # mine: d tj.mean() - E[dT e^T] / ema with ema the updated moving average (the first batch: its own mean)
    mean_exp = torch.exp(tm).mean()
    ema = mean_exp.detach() if log_ema is None else (1 - alpha) * math.exp(log_ema) + alpha * mean_exp.detach()
    return dv_value, tj.mean() - mean_exp / ema


def _value_and_grad(fn, s):
    critic = FixedScores(s)
    value = fn(critic)
    (grad,) = torch.autograd.grad(value, critic.s)
    return value.detach(), grad


@pytest.mark.parametrize("bound", bounds.BOUNDS)
@pytest.mark.parametrize("log_ema", [None, 0.3])
def test_every_bound_path_agrees_on_fixed_scores(bound, log_ema):
    from deepscope.mi.loss import MILoss, bound_on_batch

    k, alpha, tau = 6, 0.2, 1.0
    s = 2 * torch.randn(k, k, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    idx = torch.arange(k, dtype=torch.float64)[:, None]
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(7))
    state = None if log_ema is None else torch.tensor(log_ema, dtype=torch.float64)
    kw = dict(log_ema=state, alpha=alpha, tau=tau)

    def ref(tj_of, tm_of):
        return _value_and_grad(lambda c: _reference(bound, c.s, tj_of(c.s), tm_of(c.s), log_ema, alpha, tau)[1], s)[1]

    shuffled = (lambda m: m.diagonal(), lambda m: m[torch.arange(k), perm])
    every = (lambda m: m.diagonal(), lambda m: m[~torch.eye(k, dtype=torch.bool)])
    paths = {
        # MINE.fit's and MILoss's step: marginal pairs from one permutation drawn from the generator
        "bound_on_batch": (shuffled, lambda c: bound_on_batch(
            c, idx, idx, bound=bound, generator=torch.Generator().manual_seed(7), **kw)[0]),
        "objective": (shuffled, lambda c: bounds.objective(
            bound, *(c.s.diagonal(), c.s) if bound == "infonce" else (c.s.diagonal(), c.s[torch.arange(k), perm]),
            **kw)[0]),
        # the staircase's step: all K(K-1) off-diagonal marginal pairs
        "all_pairs": (every, lambda c: bound_on_batch(c, idx, idx, bound=bound, pairs="all", **kw)[0]),
        "pair_scores": (every, lambda c: bounds.objective(bound, *bounds.pair_scores(bound, c.s), **kw)[0]),
    }

    def miloss(c):
        m = MILoss(c, bound=bound, alpha=alpha, tau=tau).double()
        if log_ema is not None:
            m.log_ema.fill_(log_ema)
        return m(idx, idx, generator=torch.Generator().manual_seed(7))

    paths["MILoss"] = (shuffled, miloss)
    for name, ((tj_of, tm_of), fn) in paths.items():
        value, grad = _value_and_grad(fn, s)
        want = _reference(bound, s, tj_of(s), tm_of(s), log_ema, alpha, tau)[0]
        torch.testing.assert_close(value, want.detach(), rtol=1e-12, atol=1e-12, msg=f"{name} value")
        torch.testing.assert_close(grad, ref(tj_of, tm_of), rtol=1e-10, atol=1e-12, msg=f"{name} gradient")
        # the reported value ('mine' reports DV) is the same through evaluate()
        if name in ("objective", "pair_scores"):
            tj, tm = (s.diagonal(), s) if bound == "infonce" else (tj_of(s), tm_of(s))
            torch.testing.assert_close(bounds.evaluate(bound, tj, tm, tau=tau), want, rtol=1e-12, atol=1e-12)


def test_mine_estimator_reports_through_the_same_dispatch():
    from deepscope.mi import MINE

    g = torch.Generator().manual_seed(0)
    tj, tm = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, 4, generator=g, dtype=torch.float64)
    for b in ("mine", "dv", "nwj", "smile"):
        got = MINE(bound=b, tau=1.0)._bound_value(tj, tm)
        torch.testing.assert_close(got, bounds.evaluate(b, tj, tm.reshape(-1), tau=1.0), rtol=0, atol=0)
    assert bounds.evaluate("mine", tj, tm.reshape(-1)).item() == pytest.approx(bounds.dv(tj, tm.reshape(-1)).item())
    with pytest.raises(ValueError, match="bound == 'mutual'; choose one of mine, dv, nwj, infonce, smile"):
        bounds.objective("mutual", tj, tj)
