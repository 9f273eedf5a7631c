"""The alpha knob against the linearised model, the loss ladder on scripted curves, learning times
on scripted histories, the linearity probes against closed forms, and the two loops' resumes."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.dynamics.regimes import (
    AlphaScaled,
    LossLadder,
    example_losses,
    group_gap,
    kernel_alignment,
    ladder_levels,
    learning_times,
    linearize,
    relu_sign_agreement,
    tangent_kernel,
    train_alpha,
    train_full_batch,
)
from deepscope.nets import MLP, build_net
from deepscope.nets.batched import BatchedMLP
from deepscope.train import Run
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


# --- per-example losses, the ladder, learning times ------------------------------------------

def test_example_losses_match_torch():
    out = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    loss, correct = example_losses(out, y)
    torch.testing.assert_close(loss, F.cross_entropy(out, y, reduction="none"))
    assert torch.equal(correct, out.argmax(1) == y)
    f = torch.tensor([[1.5], [-0.5], [0.2]])
    yb = torch.tensor([1, 1, 0])
    loss, correct = example_losses(f, yb)
    torch.testing.assert_close(loss, torch.log1p(torch.exp(torch.tensor([-1.5, 0.5, 0.2]))))
    assert correct.tolist() == [True, False, False]
    # batched: (K, N, 1) outputs with shared (N,) labels
    lk, ck = example_losses(f.expand(2, 3, 1), yb)
    assert lk.shape == (2, 3) and torch.equal(ck[1], correct)
    with pytest.raises(TypeError, match="must be integer class indices"):
        example_losses(out, y.float())


def test_ladder_levels_are_ln_c_times_powers():
    lv = ladder_levels(10)
    assert lv[0] == pytest.approx(math.log(10)) and lv[1] == pytest.approx(math.log(10) * 0.96)
    assert lv[-1] >= 1e-2 > lv[-1] * 0.96
    assert len(lv) == 1 + math.floor(math.log(1e-2 / math.log(10)) / math.log(0.96))
    with pytest.raises(ValueError, match=r"ratio == 1.2, must be in \(0, 1\)"):
        ladder_levels(10, ratio=1.2)


def test_ladder_fires_at_the_right_steps_on_a_scripted_curve():
    # L(t) = L0 exp(-t / 50): rung k fires at the first t >= 50 k ln(1 / 0.96)
    levels = ladder_levels(10, min_loss=0.5)
    ladder = LossLadder(levels)
    fired = {}
    for t in range(0, 400):
        for rung in ladder.update(t, math.log(10) * math.exp(-t / 50)):
            fired[rung] = t
    expect = {k: math.ceil(50 * k * math.log(1 / 0.96) - 1e-9) for k in range(len(levels))}
    assert fired == expect and ladder.done and ladder.steps_ == [expect[k] for k in range(len(levels))]


def test_ladder_running_mean_window_jumps_and_no_refiring():
    ladder = LossLadder([1.0, 0.9, 0.8, 0.5], window=3)
    # running means 1.25, 1.125, 1.0 (rung 0 at step 3), 1.0, 0.75 (rungs 1 and 2 at once),
    # then 1.5, 1.125, 1.083: the loss rises again and nothing fires twice
    values = [1.25, 1.0, 0.75, 1.25, 0.25, 3.0, 0.125, 0.125]
    out = [ladder.update(s, v) for s, v in enumerate(values, 1)]
    assert out == [[], [], [0], [], [1, 2], [], [], []]
    assert ladder.steps_ == [3, 5, 5] and ladder.next_ == 3
    with pytest.raises(ValueError, match="strictly decreasing"):
        LossLadder([0.5, 0.6])
    with pytest.raises(ValueError, match="training diverged"):
        ladder.update(9, float("nan"))


def test_ladder_records_and_state_roundtrip():
    ladder = LossLadder([0.6, 0.5, 0.4], window=2)
    for s, v in enumerate([0.7, 0.5, 0.45, 0.3], 1):
        for rung in ladder.update(s, v):
            ladder.record(rung, loss=torch.full((3,), v), correct=torch.tensor([v < 0.5] * 3))
    assert ladder.stack("loss").shape == (3, 3) and ladder.recorded_levels == [0.6, 0.5, 0.4]
    other = LossLadder([0.6, 0.5, 0.4], window=2)
    other.load_state_dict(ladder.state_dict())
    assert torch.equal(other.stack("correct"), ladder.stack("correct"))
    assert other.steps_ == ladder.steps_ and other.running_mean == ladder.running_mean
    with pytest.raises(ValueError, match="rung == 0, must be 3"):
        ladder.record(0, loss=torch.zeros(3), correct=torch.zeros(3, dtype=torch.bool))


def test_learning_times_on_scripted_histories():
    hist = np.array([
        [1, 1, 1, 1, 1],   # learned from the start -> 0
        [0, 0, 1, 1, 1],   # -> 2
        [0, 1, 0, 1, 1],   # learned, forgotten, relearned -> 3
        [1, 1, 1, 1, 0],   # forgotten at the end -> inf
        [0, 0, 0, 0, 0],   # never -> inf
        [0, 0, 0, 0, 1],   # at the last point -> 4
    ], dtype=bool).T
    assert learning_times(hist).tolist() == [0, 2, 3, math.inf, math.inf, 4]
    levels = [0.69, 0.6, 0.5, 0.4, 0.3]
    assert learning_times(torch.as_tensor(hist), times=levels).tolist()[:3] == [0.69, 0.5, 0.4]
    with pytest.raises(ValueError, match=r"times has shape \(2,\), must be \(5,\)"):
        learning_times(hist, times=[1, 2])


def test_group_gap():
    losses = np.array([[1.0, 1.0, 2.0, 4.0], [0.5, 0.0, 1.0, 1.0]])
    hard = np.array([False, False, True, True])
    assert group_gap(losses, hard, ~hard).tolist() == [2.0, 0.75]
    with pytest.raises(ValueError, match="both groups must be non-empty"):
        group_gap(losses, hard, np.zeros(4, bool))


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
    assert kernel_alignment(tangent_kernel(f, xs), tangent_kernel(f.model, xs)) == pytest.approx(1.0)


def test_kernel_alignment_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert kernel_alignment(a, b) == 0.0 and kernel_alignment(a, 3 * a) == pytest.approx(1.0)
    assert kernel_alignment(a, a + b) == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(ValueError, match="identically zero"):
        kernel_alignment(a, torch.zeros(2, 2))


# --- the loops ---------------------------------------------------------------------------------

class _Killed(Exception):
    pass


class _KillAt(Run):
    def __init__(self, *a, kill_at, **kw):
        super().__init__(*a, **kw)
        self.kill_at = kill_at

    def log(self, step, **metrics):
        super().log(step, **metrics)
        if step == self.kill_at:
            raise _Killed


def _alpha_setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    with fork_seeded(make_generator(1)):
        net = MLP(5, [16], 3)
    return x, y, net


def _train_alpha(run, alpha=1.0):
    x, y, net = _alpha_setup()
    model = AlphaScaled(net, alpha)
    ladder = LossLadder(ladder_levels(3, min_loss=0.3), window=4)
    train_alpha(model, x, y, generator=make_generator(0, "order"), ladder=ladder, run=run, epochs=12,
                batch_size=16, lr=0.05, momentum=0.9, linearity_x=x[:20], kernel_x=x[:6],
                linearity_every=5)
    return model, ladder


def test_train_alpha_records_the_ladder_and_probes(tmp_path):
    model, ladder = _train_alpha(Run(tmp_path, seed=0, progress=False))
    recs = [r for r in Run(tmp_path, seed=0).metrics() if "rung" in r]
    assert [r["rung"] for r in recs] == list(range(ladder.next_)) and ladder.next_ > 10
    assert ladder.stack("loss").shape == (ladder.next_, 60)
    # rung 0 of an alpha-scaled model: f = 0 at init, so kernel alignment and signs start at 1
    assert recs[0]["sign_agreement"] > 0.97 and recs[0]["kernel_alignment"] > 0.97
    assert recs[-1]["train_loss"] <= ladder.levels[ladder.next_ - 1]
    assert all("kernel_alignment" in r for r in recs if r["rung"] % 5 == 0)


def test_train_alpha_killed_and_resumed_equals_uninterrupted(tmp_path):
    full, full_ladder = _train_alpha(Run(tmp_path / "a", seed=0, progress=False))
    with pytest.raises(_Killed):
        _train_alpha(_KillAt(tmp_path / "b", seed=0, progress=False, kill_at=20))
    torch.randn(7)  # the global RNG plays no part
    res, res_ladder = _train_alpha(Run(tmp_path / "b", seed=0, progress=False))
    for p, q in zip(full.parameters(), res.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert torch.equal(full_ladder.stack("loss"), res_ladder.stack("loss"))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(Run(tmp_path / "a").metrics()) == strip(Run(tmp_path / "b").metrics())


def _toy_stack(seeds):
    nets = []
    for s in seeds:
        with fork_seeded(make_generator(s, "model")):
            nets.append(MLP(2, [24, 24], 1))
    return BatchedMLP.stack(nets)


def _toy_data(seeds):
    xs, ys = [], []
    for s in seeds:
        g = make_generator(s, "data")
        x = torch.rand(30, 2, generator=g) * 2 - 1
        xs.append(x)
        ys.append((x.norm(dim=1) < 0.8).long())
    return torch.stack(xs), torch.stack(ys)


def test_full_batch_stack_equals_single_runs_and_snapshots_sit_at_the_levels():
    seeds = [0, 1, 2]
    x, y = _toy_data(seeds)
    levels = [0.6, 0.5, 0.4]
    model = AlphaScaled(_toy_stack(seeds), 10.0)
    res = train_full_batch(model, x, y, levels=levels, lr=0.5, max_steps=3000)
    assert (res.steps >= 0).all()
    for i, s in enumerate(seeds):
        one = train_full_batch(AlphaScaled(_toy_stack([s]), 10.0), x[i:i + 1], y[i:i + 1],
                               levels=levels, lr=0.5, max_steps=3000)
        assert one.steps[:, 0].tolist() == res.steps[:, i].tolist()
        for n, v in one.snapshots[-1].items():
            torch.testing.assert_close(res.snapshots[-1][n][i], v[0], rtol=1e-4, atol=1e-5)
    # each snapshot's training loss is at or below its level
    from torch.func import functional_call

    h0 = model.init(x)
    for li, lv in enumerate(levels):
        h = functional_call(model.model, res.snapshots[li], (x,))
        loss = example_losses(10.0 * (h - h0), y)[0].mean(1)
        assert (loss <= lv + 1e-6).all()
    assert res.steps[0].lt(res.steps[-1]).all()


def test_full_batch_killed_and_resumed_equals_uninterrupted(tmp_path):
    seeds = [3, 4]
    x, y = _toy_data(seeds)

    def go(run):
        return train_full_batch(AlphaScaled(_toy_stack(seeds), 10.0), x, y, levels=[0.6, 0.45],
                                lr=0.5, max_steps=2000, run=run, checkpoint_every=20, log_every=10)

    full = go(Run(tmp_path / "a", progress=False))
    with pytest.raises(_Killed):
        go(_KillAt(tmp_path / "b", progress=False, kill_at=50))
    res = go(Run(tmp_path / "b", progress=False))
    assert torch.equal(full.steps, res.steps)
    for n in full.final:
        torch.testing.assert_close(full.final[n], res.final[n], rtol=0, atol=0)
        torch.testing.assert_close(full.snapshots[0][n], res.snapshots[0][n], rtol=0, atol=0)
    with pytest.raises(ValueError, match="levels == \\[0.4, 0.5\\], must be a non-empty strictly"):
        train_full_batch(AlphaScaled(_toy_stack(seeds), 1.0), x, y, levels=[0.4, 0.5])


def test_full_batch_manual_step_equals_autograd():
    seeds = [5, 6, 7, 8]
    x, y = _toy_data(seeds)
    kw = dict(levels=[0.6, 0.5, 0.45], lr=0.5, max_steps=1500)
    a = train_full_batch(AlphaScaled(_toy_stack(seeds), 3.0), x, y, implementation="manual", **kw)
    b = train_full_batch(AlphaScaled(_toy_stack(seeds), 3.0), x, y, implementation="autograd", **kw)
    assert torch.equal(a.steps, b.steps) and (a.steps >= 0).all()
    for li in range(3):
        for n in a.final:
            torch.testing.assert_close(a.snapshots[li][n], b.snapshots[li][n], rtol=1e-5, atol=1e-6)


def test_manual_gradients_equal_autograd_for_cross_entropy():
    from deepscope.dynamics.regimes import _autograd_step, _relu_mlp_step

    nets = []
    for s in range(3):
        with fork_seeded(make_generator(s, "ce")):
            nets.append(MLP(4, [12, 10], 5))
    model = AlphaScaled(BatchedMLP.stack(nets), 2.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 9, 4, generator=g)
    y = torch.randint(5, (3, 9), generator=g)
    with torch.no_grad():
        model.model[0].weight.add_(0.3 * torch.randn(3, 4, 12, generator=g))  # f != 0
        h0 = model.init(x)
    names = [n for n, _ in model.model.named_parameters()]
    params = [p.detach().clone() for p in model.model.parameters()]
    alpha = torch.tensor([2.0, 0.5, 30.0]).view(3, 1, 1)  # one alpha per network
    loss_m, grads_m = _relu_mlp_step(3)(params, x, h0, y, alpha)
    loss_a, grads_a = _autograd_step(model, names)(params, x, h0, y, alpha)
    torch.testing.assert_close(loss_m, loss_a, rtol=1e-6, atol=1e-7)
    for gm, ga in zip(grads_m, grads_a):
        torch.testing.assert_close(gm, ga, rtol=1e-5, atol=1e-7)
    assert min(float(gm.abs().max()) for gm in grads_m) > 0
    # in blocks of networks (the cache-sized passes of a large stack): the same numbers
    loss_b, grads_b = _relu_mlp_step(3, block=2)(params, x, h0, y, alpha)
    torch.testing.assert_close(loss_b, loss_m, rtol=1e-6, atol=1e-7)
    for gb, gm in zip(grads_b, grads_m):
        torch.testing.assert_close(gb, gm, rtol=1e-6, atol=1e-8)


def test_full_batch_implementation_errors():
    from deepscope.nets.batched import VmapStack

    x, y = _toy_data([0, 1])
    with pytest.raises(ValueError, match="implementation == 'fast', must be one of"):
        train_full_batch(AlphaScaled(_toy_stack([0, 1]), 1.0), x, y, levels=[0.5],
                         implementation="fast")
    vm = AlphaScaled(VmapStack([MLP(2, [8], 1), MLP(2, [8], 1)]), 1.0)
    with pytest.raises(ValueError, match="'manual' needs a ReLU BatchedMLP, model.model is a VmapStack"):
        train_full_batch(vm, x, y, levels=[0.5], implementation="manual")
    res = train_full_batch(vm, x, y, levels=[0.6], lr=0.5, max_steps=50)  # auto: autograd
    assert res.steps.shape == (1, 2)


def test_full_batch_per_network_alpha_equals_one_stack_per_alpha():
    seeds = [0, 1, 2]
    x, y = _toy_data(seeds)
    kw = dict(levels=[0.6, 0.5], lr=0.5, max_steps=2500)
    both = train_full_batch(AlphaScaled(_toy_stack(seeds + seeds), 1.0), torch.cat([x, x]),
                            torch.cat([y, y]), alpha=[1.0] * 3 + [10.0] * 3, **kw)
    for j, a in enumerate((1.0, 10.0)):
        alone = train_full_batch(AlphaScaled(_toy_stack(seeds), a), x, y, **kw)
        assert torch.equal(both.steps[:, 3 * j:3 * j + 3], alone.steps)
        for n, v in alone.snapshots[-1].items():
            torch.testing.assert_close(both.snapshots[-1][n][3 * j:3 * j + 3], v, rtol=1e-5, atol=1e-6)
    assert (both.steps[-1, 3:] != both.steps[-1, :3]).sum() >= 2  # the alphas do differ
    with pytest.raises(ValueError, match="alpha has 2 values .*, must be 6 finite numbers > 0"):
        train_full_batch(AlphaScaled(_toy_stack(seeds + seeds), 1.0), torch.cat([x, x]),
                         torch.cat([y, y]), alpha=[1.0, 2.0], **kw)
