import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.robust.attacks import FGSM, PGD, eval_mode, kl_divergence


def _mlp(d=6, k=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, k))


def _gen(s=0):
    return torch.Generator().manual_seed(s)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("per_feature", [False, True])
def test_perturbation_stays_in_ball_and_bounds(norm, per_feature):
    d, n, eps = 6, 50, 0.4
    net = _mlp(d)
    if per_feature:
        lo, hi = torch.linspace(-2.0, 0.0, d), torch.linspace(0.5, 3.0, d)
    else:
        lo, hi = torch.tensor(-1.0), torch.tensor(2.0)
    x = lo + (hi - lo) * torch.rand(n, d, generator=_gen(1))
    x[:5] = lo  # examples sitting on the boundary
    y = torch.randint(3, (n,), generator=_gen(2))
    bounds = (lo, hi) if per_feature else (-1.0, 2.0)
    for attack in (FGSM(net, eps=eps, norm=norm, bounds=bounds),
                   PGD(net, eps=eps, norm=norm, bounds=bounds, steps=15, restarts=2)):
        x_adv = attack(x, y, generator=_gen(3))
        delta = (x_adv - x).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert size.max() <= eps + 1e-5
        assert (x_adv >= lo - 1e-6).all() and (x_adv <= hi + 1e-6).all()
        assert size.mean() > 0.3 * eps  # it did move
        assert not x_adv.requires_grad


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_on_a_linear_model_equals_the_closed_form(norm):
    torch.manual_seed(0)
    lin = nn.Linear(5, 4)
    x = torch.rand(20, 5, generator=_gen(1))
    y = torch.randint(4, (20,), generator=_gen(2))
    eps = 0.05
    # d CE / dx = W^T (softmax(Wx + b) - onehot(y))
    with torch.no_grad():
        p = F.softmax(lin(x), 1)
        g = (p - F.one_hot(y, 4).float()) @ lin.weight
    step = eps * g.sign() if norm == "linf" else eps * g / g.norm(dim=1, keepdim=True)
    expected = (x + step).clamp(0.0, 1.0)
    got = FGSM(lin, eps=eps, norm=norm, bounds=(0.0, 1.0))(x, y)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_pgd_reaches_the_worst_case_of_a_binary_linear_model():
    # Two classes: CE depends on the margin m = (w_y - w_other)·x + b, which is smallest at
    # x - eps·sign(w_y - w_other) in L∞ (no bounds): the known maximiser.
    torch.manual_seed(0)
    lin = nn.Linear(7, 2)
    x = torch.randn(30, 7, generator=_gen(1))
    y = torch.randint(2, (30,), generator=_gen(2))
    eps = 0.2
    with torch.no_grad():
        w = lin.weight[y] - lin.weight[1 - y]
        worst = F.cross_entropy(lin(x - eps * w.sign()), y, reduction="none")
        clean = F.cross_entropy(lin(x), y, reduction="none")
    x_adv = PGD(lin, eps=eps, bounds=(-torch.inf, torch.inf), steps=10)(x, y, generator=_gen(3))
    with torch.no_grad():
        got = F.cross_entropy(lin(x_adv), y, reduction="none")
    assert (got > clean).all()
    torch.testing.assert_close(got, worst, rtol=1e-5, atol=1e-6)


def test_pgd_increases_the_loss_beyond_fgsm_on_a_nonlinear_model():
    net = _mlp(10, 4)
    x = torch.rand(200, 10, generator=_gen(1))
    y = torch.randint(4, (200,), generator=_gen(2))

    def loss(z):
        with torch.no_grad():
            return F.cross_entropy(net(z), y, reduction="none")

    clean = loss(x)
    fgsm = loss(FGSM(net, eps=0.1)(x, y))
    pgd = loss(PGD(net, eps=0.1, steps=30)(x, y, generator=_gen(3)))
    assert (pgd > clean).all()
    assert pgd.mean() > fgsm.mean() > clean.mean()


def test_restarts_keep_every_example_the_first_restart_fooled():
    net = _mlp(10, 4)
    x = torch.rand(300, 10, generator=_gen(1))
    y = torch.randint(4, (300,), generator=_gen(2))

    def judge(x_adv):
        with torch.no_grad():
            out = net(x_adv)
            return out.argmax(1) != y, F.cross_entropy(out, y, reduction="none")

    one, loss1 = judge(PGD(net, eps=0.05, steps=3, restarts=1)(x, y, generator=_gen(5)))
    five, loss5 = judge(PGD(net, eps=0.05, steps=3, restarts=5)(x, y, generator=_gen(5)))
    assert (five | ~one).all()          # the same first restart, then four more
    kept = ~five                        # not fooled: the largest loss over restarts is kept
    assert (loss5[kept] >= loss1[kept]).all() and (loss5[kept] > loss1[kept]).any()


def test_randomness_comes_only_from_the_generator():
    net = _mlp()
    x, y = torch.rand(10, 6), torch.randint(3, (10,))
    state = torch.get_rng_state()
    a = PGD(net, eps=0.2, norm="l2", steps=3)(x, y, generator=_gen(7))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)
    b = PGD(net, eps=0.2, norm="l2", steps=3)(x, y, generator=_gen(7))
    assert torch.equal(a, b)
    assert all(p.grad is None for p in net.parameters())  # attacks leave parameter grads alone
    torch.manual_seed(5)
    c = PGD(net, eps=0.2, norm="l2", steps=3)(x, y)   # no generator: PyTorch's default one
    torch.manual_seed(5)
    assert torch.equal(c, PGD(net, eps=0.2, norm="l2", steps=3)(x, y))


class _Spy(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(self.training)
        return x


def test_model_is_attacked_in_eval_mode_and_every_mode_restored():
    spy = _Spy()
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), spy, nn.ReLU(), nn.Linear(8, 3))
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a training model must stay frozen
    before = [m.training for m in net.modules()]
    running = net[1].running_mean.clone()
    x, y = torch.rand(16, 6), torch.randint(3, (16,))
    PGD(net, eps=0.1, steps=2)(x, y, generator=_gen(0))
    assert spy.seen and not any(spy.seen)
    assert [m.training for m in net.modules()] == before
    assert torch.equal(net[1].running_mean, running)
    net.eval()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert not net.training


def test_pgd_with_kl_loss_and_probability_targets():
    net = _mlp()
    x = torch.rand(20, 6)
    with torch.no_grad():
        p = F.softmax(net(x), 1)
    x_adv = PGD(net, eps=0.1, steps=5, loss=kl_divergence, init_std=1e-3)(x, p, generator=_gen(0))
    with torch.no_grad():
        assert (kl_divergence(net(x_adv), p) > 0).all()
        torch.testing.assert_close(kl_divergence(net(x), p), torch.zeros(20), rtol=0, atol=1e-6)


def test_bad_arguments_name_the_argument_and_the_fix():
    net = _mlp()
    x, y = torch.rand(4, 6), torch.randint(3, (4,))
    with pytest.raises(ValueError, match=r"eps == -0.1, must be a finite number >= 0"):
        FGSM(net, eps=-0.1)
    with pytest.raises(ValueError, match=r"norm == 'l1', must be one of \['linf', 'l2'\]"):
        PGD(net, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match=r"steps == 0, must be an integer >= 1"):
        PGD(net, eps=0.1, steps=0)
    with pytest.raises(ValueError, match=r"restarts == 0"):
        PGD(net, eps=0.1, restarts=0)
    with pytest.raises(ValueError, match=r"x lies outside bounds .*pass the data's bounds"):
        FGSM(net, eps=0.1, bounds=(0.0, 0.5))(x + 1.0, y)
    with pytest.raises(ValueError, match="lo > hi"):
        FGSM(net, eps=0.1, bounds=(1.0, 0.0))(x, y)
    with pytest.raises(ValueError, match=r"bounds lo has shape \(5,\), must broadcast"):
        FGSM(net, eps=0.1, bounds=(torch.zeros(5), 1.0))(x, y)
    with pytest.raises(ValueError, match=r"y.shape\[0\] == 3, must equal x.shape\[0\] == 4"):
        FGSM(net, eps=0.1)(x, y[:3])
    with pytest.raises(TypeError, match="model is a str"):
        FGSM("net", eps=0.1)
