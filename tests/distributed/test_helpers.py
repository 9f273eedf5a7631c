"""train.distributed's pieces that need no process group (the rest: test_loops.py under torchrun)."""

import pytest
import torch
from torch import nn

from deepscope.train.distributed import Dist, Sharded, shard, sharded_draws
from deepscope.train.loop import evaluating


def test_sharded_draws_give_each_process_its_rows_of_the_global_draw():
    full = torch.Generator().manual_seed(0)
    ref_u, ref_n, ref_r = torch.rand(6, 3, generator=full), torch.randn(6, generator=full), \
        torch.rand((6, 2), generator=full)
    for rank in (0, 1):
        g = torch.Generator().manual_seed(0)
        rows = shard(torch.arange(6), Dist(rank, 2))
        with sharded_draws(g, rows, 6):
            u = torch.rand(3, 3, generator=g)
            n = torch.randn(torch.Size([3]), generator=g)
            r = torch.rand(size=(3, 2), generator=g)
            other = torch.randn(5, generator=torch.Generator().manual_seed(1))  # not sharded
        assert torch.equal(u, ref_u[rank::2]) and torch.equal(n, ref_n[rank::2])
        assert torch.equal(r, ref_r[rank::2]) and other.shape == (5,)
        assert torch.equal(g.get_state(), full.get_state())  # the generator stays in step


def test_sharded_draws_refuse_what_they_cannot_shard():
    g = torch.Generator().manual_seed(0)
    with sharded_draws(g, torch.tensor([0, 2]), 4):
        with pytest.raises(RuntimeError, match="randperm draws from a sharded generator"):
            torch.randperm(4, generator=g)
        with pytest.raises(RuntimeError, match=r"first dimension must be this process's 2 rows"):
            torch.rand(3, generator=g)
    with sharded_draws(g, torch.arange(4), 4):  # one process: no mode at all
        torch.randperm(4, generator=g)


def test_uneven_shards_and_their_message():
    idx = torch.arange(7)
    assert shard(idx, Dist(0, 2), even=False).tolist() == [0, 2, 4, 6]
    assert shard(idx, Dist(1, 2), even=False).tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="batch of 7 examples does not split over world_size == 2"):
        shard(idx, Dist(0, 2))
    with pytest.raises(ValueError, match="batch of 1 examples leaves a process of world_size == 2"):
        shard(idx[:1], Dist(1, 2), even=False)


def test_sharded_wrapper_is_the_module_on_one_process_and_mirrors_its_mode():
    net = nn.Sequential(nn.Linear(3, 2))
    w = Sharded(net)
    x = torch.randn(4, 3)
    assert torch.equal(w(x), net(x))
    net.eval()
    assert not w.training
    with evaluating(w):  # saves and restores the wrapped module's own mode
        assert not net.training
    assert not net.training
    net.train()
    with evaluating(w):
        assert not net.training
    assert net.training and w.training
