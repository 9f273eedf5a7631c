"""train_alpha: the ladder and the probes it records, kill-and-resume, a user's own module."""


import pytest
import torch
from torch import nn

from deepscope.dynamics.alpha_scaling import (
    AlphaScaled,
)
from deepscope.dynamics.alpha_training import train_alpha
from deepscope.dynamics.ladder import (
    LossLadder,
    ladder_levels,
)
from deepscope.nets import MLP
from deepscope.train import Run
from deepscope.train.rng import fork_seeded, make_generator
from tests.killing import KillAt as _KillAt
from tests.killing import Killed as _Killed


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
    res = train_alpha(model, x, y, generator=make_generator(0, "order"), ladder=ladder, run=run,
                      options={"epochs": 12, "batch_size": 16, "lr": 0.05, "momentum": 0.9},
                      linearity_x=x[:20], kernel_x=x[:6], linearity_every=5)
    assert res.model is model and res.info["ladder"] is ladder
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




class _TinyNet(nn.Module):
    """A user's own network: not from deepscope.nets."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize("kind", ["module", "factory", "name"])
def test_train_alpha_takes_a_users_module_a_factory_or_a_name(kind):
    x, y, _ = _alpha_setup()
    net = {"module": _TinyNet(), "factory": _TinyNet, "name": "mlp"}[kind]
    ladder = LossLadder(ladder_levels(3, min_loss=0.5), window=4)
    res = train_alpha(net, x, y, alpha=10.0, ladder=ladder, generator=make_generator(0),
                      options={"epochs": 3, "batch_size": 16, "lr": 0.05},
                      net_kwargs={"hidden": (8,)} if kind == "name" else None)
    assert isinstance(res.model, AlphaScaled) and res.model.alpha == 10.0
    if kind == "module":
        assert res.model.model is net  # trained in place
    assert [r["epoch"] for r in res.history if "epoch" in r] == [1, 2, 3]
    assert ladder.next_ >= 1 and any("rung" in r for r in res.history)
    with pytest.raises(ValueError, match="alpha == 2.0 with an AlphaScaled of alpha 10"):
        train_alpha(res.model, x, y, alpha=2.0)
