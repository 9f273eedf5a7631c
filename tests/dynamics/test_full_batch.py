"""The full-batch engine: a stack equals its single runs, snapshots sit at the levels, resume, the hand-written step."""


import pytest
import torch

from deepscope.dynamics.alpha_scaling import (
    AlphaScaled,
)
from deepscope.dynamics.full_batch import train_full_batch
from deepscope.dynamics.ladder import (
    example_losses,
)
from deepscope.nets import MLP
from deepscope.nets.batched import BatchedMLP
from deepscope.train import Run
from deepscope.train.rng import fork_seeded, make_generator
from tests.killing import KillAt as _KillAt
from tests.killing import Killed as _Killed


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
    from deepscope.dynamics.full_batch import _autograd_step, _relu_mlp_step

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


def test_full_batch_records_each_networks_training_loss_at_the_asked_steps():
    seeds = [0, 1]
    x, y = _toy_data(seeds)
    levels = [0.3, 0.2]  # reached after ~700-1000 steps
    model = AlphaScaled(_toy_stack(seeds), 10.0)
    res = train_full_batch(model, x, y, levels=levels, lr=0.5, max_steps=3000,
                           record_steps=[7, 0, 3, 2999])
    assert res.record_steps.tolist() == [0, 3, 7, 2999]
    assert res.loss_history.shape == (2, 4)
    for i, s in enumerate(seeds):
        for r, steps in enumerate((0, 3, 7)):  # the loss after that many updates, as a short run gives
            short = AlphaScaled(_toy_stack([s]), 10.0)
            if steps:
                train_full_batch(short, x[i:i + 1], y[i:i + 1], levels=[1e-9], lr=0.5, max_steps=steps)
            from torch.func import functional_call

            with torch.no_grad():
                h = functional_call(short.model, dict(short.model.named_parameters()), (x[i:i + 1],))
                loss = example_losses(10.0 * (h - short.init(x[i:i + 1])), y[i:i + 1])[0].mean()
            assert float(res.loss_history[i, r]) == pytest.approx(float(loss), rel=1e-5)
    # a network stops once it reaches the last level: no loss recorded after that
    assert (res.steps[-1] < 2999).all() and res.loss_history[:, -1].isnan().all()
    with pytest.raises(ValueError, match="record_steps"):
        train_full_batch(model, x, y, levels=levels, record_steps=[-1])
