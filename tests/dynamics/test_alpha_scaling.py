"""The alpha knob against the linearised model, and the linearity probes against closed forms."""

import copy
import math

import pytest
import torch
from torch import nn

from deepscope.dynamics.alignment import cka
from deepscope.dynamics.alpha_scaling import (
    AlphaScaled,
    linearize,
    relu_sign_agreement,
    tangent_kernel,
)
from deepscope.dynamics.ladder import (
    example_losses,
)
from deepscope.nets import MLP, build_net
from deepscope.train.rng import fork_seeded, make_generator


def _net(seed=0, dims=(3, [16, 16], 2), dtype=torch.float64, activation="relu"):
    with fork_seeded(make_generator(seed, "model")):
        return MLP(*dims, activation=activation).to(dtype)


def _perturb(net, delta, scale):
    with torch.no_grad():
        for p, d in zip(net.parameters(), delta):
            p.add_(scale * d)



# --- AlphaScaled and linearize ---------------------------------------------------------------

def test_alpha_one_is_the_model_minus_its_initial_output():
    net = _net()
    net0 = copy.deepcopy(net)
    f = AlphaScaled(net, 1.0)
    x = torch.randn(7, 3, dtype=torch.float64)
    torch.testing.assert_close(f(x), torch.zeros(7, 2, dtype=torch.float64), rtol=0, atol=0)
    opt = torch.optim.SGD(f.model.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        f.objective(f(x).pow(2).sum() + f(x).sum()).backward()
        opt.step()
    torch.testing.assert_close(f(x), net(x) - net0(x), rtol=0, atol=0)
    assert f(x).abs().max() > 1e-3  # it trained
    assert all(not p.requires_grad for p in f.init.parameters())


def test_large_alpha_matches_the_linearisation_to_first_order():
    # theta = theta0 + delta / alpha: f_alpha = J delta + O(|delta|^2 / alpha) (Taylor: a smooth
    # activation; a ReLU network's kinks make the remainder non-smooth at finite alpha)
    x = torch.randn(20, 3, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    base = _net(activation="tanh")
    delta = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in base.parameters()]
    lin = linearize(base)
    errs = {}
    for alpha in (10.0, 100.0, 1000.0):
        f = AlphaScaled(copy.deepcopy(base), alpha)
        _perturb(f.model, delta, 1 / alpha)
        lin_a = AlphaScaled(copy.deepcopy(lin), alpha)
        _perturb(lin_a.model.model, delta, 1 / alpha)
        with torch.no_grad():
            errs[alpha] = float((f(x) - lin_a(x)).abs().max())
            scale = float(lin_a(x).abs().max())
    assert 7 < errs[10.0] / errs[100.0] < 13 and 7 < errs[100.0] / errs[1000.0] < 13
    assert errs[1000.0] < 1e-2 * scale


def test_linearize_is_the_exact_jvp():
    net = _net()
    lin = linearize(net)
    x = torch.randn(9, 3, dtype=torch.float64)
    torch.testing.assert_close(lin(x), net(x), rtol=0, atol=1e-14)
    g = torch.Generator().manual_seed(0)
    delta = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in net.parameters()]
    _perturb(lin.model, delta, 1.0)
    eps = 1e-5
    plus, minus = copy.deepcopy(net), copy.deepcopy(net)
    _perturb(plus, delta, eps)
    _perturb(minus, delta, -eps)
    jd = (plus(x) - minus(x)) / (2 * eps)  # central difference of the network along delta
    torch.testing.assert_close(lin(x), net(x) + jd, rtol=1e-6, atol=1e-7)
    # differentiable in theta: one SGD step changes the output
    lin(x).sum().backward()
    assert all(p.grad is not None for p in lin.model.parameters())


def test_training_rule_objective_form_equals_rate_form():
    # SGD with momentum on L / alpha^2 at lr == SGD with momentum on L at lr / alpha^2
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randint(2, (16,))
    alpha, lr = 50.0, 0.3
    a = AlphaScaled(_net(), alpha)
    b = AlphaScaled(_net(), alpha)
    oa = torch.optim.SGD(a.model.parameters(), lr=lr, momentum=0.9)
    ob = torch.optim.SGD(b.model.parameters(), lr=lr / alpha**2, momentum=0.9)
    for _ in range(10):
        oa.zero_grad()
        a.objective(example_losses(a(x), y)[0].mean()).backward()
        oa.step()
        ob.zero_grad()
        example_losses(b(x), y)[0].mean().backward()
        ob.step()
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_lazy_training_follows_the_linearised_model_and_keeps_its_features():
    x = torch.randn(32, 3, dtype=torch.float64)
    y = torch.randint(2, (32,))
    base = _net()
    gaps, signs = {}, {}
    for alpha in (1.0, 1000.0):
        f = AlphaScaled(copy.deepcopy(base), alpha)
        f_lin = AlphaScaled(linearize(base), alpha)
        for m in (f, f_lin):
            opt = torch.optim.SGD(m.model.parameters(), lr=1.0)
            for _ in range(100):
                opt.zero_grad()
                m.objective(example_losses(m(x), y)[0].mean()).backward()
                opt.step()
        with torch.no_grad():
            gaps[alpha] = float((f(x) - f_lin(x)).abs().max() / f_lin(x).abs().max())
        signs[alpha] = relu_sign_agreement(f, x)
    assert gaps[1000.0] < 1e-2 < gaps[1.0]
    assert signs[1000.0] > 0.999 and signs[1.0] < 0.99


def test_alpha_scaled_rejects_bad_alpha():
    with pytest.raises(ValueError, match=r"alpha == 0, must be a finite number > 0"):
        AlphaScaled(_net(), 0)
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        AlphaScaled(lambda x: x, 1.0)



# --- linearity probes --------------------------------------------------------------------------

def test_sign_agreement_is_one_at_init_and_zero_for_flipped_first_layer():
    net = _net(dims=(3, [32, 32], 2))
    x = torch.randn(50, 3, dtype=torch.float64)
    f = AlphaScaled(net, 1.0)
    assert relu_sign_agreement(f, x) == 1.0
    with torch.no_grad():
        net[1].weight.neg_()
        net[1].bias.neg_()
    per = relu_sign_agreement(f, x, per_layer=True)
    assert len(per) == 2 and per[0] == 0.0 and 0 < per[1] < 1
    # F.relu inside ResNet blocks is seen as well: stem + 8 blocks x 2
    res = build_net("resnet18", input_shape=(3, 8, 8), num_classes=10, width=2)
    assert len(relu_sign_agreement(res, torch.randn(2, 3, 8, 8), copy.deepcopy(res), per_layer=True)) == 17
    with pytest.raises(ValueError, match="calls no ReLU"):
        relu_sign_agreement(nn.Linear(3, 2), x.float(), nn.Linear(3, 2))


def test_tangent_kernel_of_a_linear_model_is_closed_form():
    # f(x) = W x + b with O outputs: sum_o <df_o(x_i), df_o(x_j)> = O (x_i . x_j + 1)
    lin = nn.Linear(4, 3).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    k = tangent_kernel(lin, x, chunk_size=4)
    torch.testing.assert_close(k, 3 * (x @ x.T + 1), rtol=1e-12, atol=1e-12)
    # the kernel of f_alpha is alpha^2 that of h; the alignment does not see the scale
    f = AlphaScaled(_net(), 7.0)
    xs = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(tangent_kernel(f, xs), 49 * tangent_kernel(f.model, xs))
    assert float(cka(tangent_kernel(f, xs), tangent_kernel(f.model, xs), centered=False)) == pytest.approx(1.0)


def test_kernel_rotation_is_uncentred_cka():
    # the tangent kernel's rotation since initialisation: <K1, K2>_F / (||K1|| ||K2||)
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    rot = lambda k1, k2: float(cka(k1, k2, centered=False))  # noqa: E731
    assert rot(a, b) == 0.0 and rot(a, 3 * a) == pytest.approx(1.0)
    assert rot(a, a + b) == pytest.approx(1 / math.sqrt(2))


