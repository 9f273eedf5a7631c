"""K networks as one model: outputs and whole training runs equal K separate runs, both ways."""

import copy

import pytest
import torch
import torch.nn.functional as F

from deepscope.nets import CNN1D, MLP
from deepscope.nets.batched import (
    STACK_IMPLEMENTATIONS,
    BatchedLinear,
    BatchedMLP,
    VmapStack,
    stack_models,
)
from deepscope.train.rng import fork_seeded, make_generator


def _mlps(k, dims=(2, [60, 60, 60], 1), activation="relu"):
    nets = []
    for s in range(k):
        with fork_seeded(make_generator(s, "model")):
            nets.append(MLP(dims[0], dims[1], dims[2], activation=activation))
    return nets


@pytest.mark.parametrize("impl", sorted(STACK_IMPLEMENTATIONS))
def test_outputs_equal_the_single_networks(impl):
    nets = _mlps(5, (3, [16, 8], 2), activation="tanh")
    stack = stack_models(nets, implementation=impl)
    x = torch.randn(5, 7, 3)
    out = stack(x)
    assert out.shape == (5, 7, 2)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(x[k]), rtol=1e-5, atol=1e-6)
    shared = torch.randn(7, 3)
    out = stack(shared if impl == "bmm" else shared.expand(5, 7, 3))
    torch.testing.assert_close(out[3], nets[3](shared), rtol=1e-5, atol=1e-6)


def _train_separately(nets, xs, ys, steps, make_opt):
    out = []
    for net, x, y in zip(copy.deepcopy(nets), xs, ys):
        opt = make_opt(net.parameters())
        for _ in range(steps):
            loss = F.softplus(-y * net(x).squeeze(-1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append(net)
    return out


@pytest.mark.parametrize("impl", sorted(STACK_IMPLEMENTATIONS))
@pytest.mark.parametrize("optim", ["sgd", "momentum", "adam"])
def test_batched_training_equals_k_separate_runs(impl, optim):
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1),
            "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
            "adam": lambda p: torch.optim.Adam(p, lr=1e-2)}[optim]
    k, steps = 4, 30
    nets = _mlps(k, (2, [32, 32], 1))
    g = torch.Generator().manual_seed(1)
    xs = torch.rand(k, 20, 2, generator=g) * 2 - 1
    ys = torch.where(xs.norm(dim=-1) < 0.8, 1.0, -1.0)
    singles = _train_separately(nets, xs, ys, steps, make)
    stack = stack_models(nets, implementation=impl)
    opt = make(stack.parameters())
    for _ in range(steps):
        # sum of the per-network mean losses: each network gets its own gradient
        loss = F.softplus(-ys * stack(xs).squeeze(-1)).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k_, (single, back) in enumerate(zip(singles, stack.unstack())):
        for (name, a), b in zip(single.named_parameters(), back.parameters()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"net {k_} {name}")
    # and the networks did move (the test compares trained weights, not initial ones)
    assert not torch.allclose(singles[0][1].weight, nets[0][1].weight, atol=1e-3)


def test_unstack_gives_independent_mlp_copies():
    nets = _mlps(3, (4, [5], 3))
    stack = BatchedMLP.stack(nets)
    back = stack.unstack()
    assert all(type(b) is MLP for b in back)
    x = torch.randn(6, 4)
    torch.testing.assert_close(back[1](x), nets[1](x), rtol=0, atol=0)
    with torch.no_grad():
        back[1][1].weight.zero_()
    assert stack[0].weight[1].abs().sum() > 0  # copies: the stack is untouched


def test_vmap_stack_handles_any_architecture():
    nets = []
    for s in range(3):
        with fork_seeded(make_generator(s)):
            nets.append(CNN1D(10, channels=4))
    stack = VmapStack(nets)
    x = torch.randn(3, 5, 40)
    out = stack(x)
    for k in range(3):
        torch.testing.assert_close(out[k], nets[k](x[k]), rtol=1e-5, atol=1e-6)
    back = stack.unstack()
    torch.testing.assert_close(back[2](x[2]), nets[2](x[2]), rtol=0, atol=0)
    assert stack_models(nets).__class__ is VmapStack  # auto: vmap for non-MLPs


def test_fresh_batched_mlp_is_reproducible_and_initialised_like_linear():
    with fork_seeded(make_generator(0)):
        a = BatchedMLP(10, 2, [60], 1)
    with fork_seeded(make_generator(0)):
        b = BatchedMLP(10, 2, [60], 1)
    torch.testing.assert_close(a[0].weight, b[0].weight, rtol=0, atol=0)
    bound = 1 / 60**0.5
    w = a[2].weight.detach()
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert abs(float(w.std()) - bound / 3**0.5) < 0.1 * bound  # U(-b, b) has std b / sqrt(3)


def test_errors_name_the_problem():
    stack = BatchedMLP(3, 2, [4], 1)
    with pytest.raises(ValueError, match=r"input.shape == \(2, 5, 2\), must be \(N, 2\)"):
        stack(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="all must share one architecture"):
        BatchedMLP.stack([MLP(2, [4], 1), MLP(2, [5], 1)])
    with pytest.raises(TypeError, match="use VmapStack for other architectures"):
        BatchedMLP.stack([CNN1D(10)])
    with pytest.raises(ValueError, match="implementation == 'jax'"):
        stack_models(_mlps(2), implementation="jax")
    with pytest.raises(ValueError, match=r"k == 0, must be an integer >= 1"):
        BatchedMLP(0, 2, [4], 1)
    with pytest.raises(ValueError, match=r"must be \(K, N, ...\) with K == 2; .*expand"):
        VmapStack(_mlps(2))(torch.randn(5, 2))
    with pytest.raises(ValueError, match="k == -1"):
        BatchedLinear(-1, 2, 2)


def test_shared_unstack_follows_the_stack_and_writes_into_it():
    nets = _mlps(3, (2, [8, 8], 1))
    stack = BatchedMLP.stack(nets)
    views = stack.unstack(share=True)
    x = torch.randn(5, 2)
    opt = torch.optim.SGD(stack.parameters(), lr=0.5)
    stack(x).pow(2).sum().backward()
    opt.step()
    out = stack(x)
    for k, v in enumerate(views):  # the views see the trained weights, not a copy of the old
        torch.testing.assert_close(v(x), out[k], rtol=1e-6, atol=1e-6)
        assert not any(p.requires_grad for p in v.parameters())
    assert not torch.allclose(views[0](x), nets[0](x), atol=1e-4)
    views[2].load_state_dict(nets[0].state_dict())  # loading into a view writes the stack
    torch.testing.assert_close(stack(x)[2], nets[0](x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stack(x)[1], out[1], rtol=0, atol=0)
