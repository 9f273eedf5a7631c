import json
import math

import pytest
import torch
from torch import nn

from deepscope.mi.gan import (
    Discriminator,
    GANGenerator,
    evaluate_generator,
    make_toy,
    mode_metrics,
    train_gan,
)
from deepscope.mi.loss import MILoss
from deepscope.train import Run
from deepscope.train.jsonio import to_jsonable
from deepscope.train.rng import make_generator


def test_toy_sets_shapes():
    grid, ring, roll = make_toy("grid"), make_toy("ring"), make_toy("swissroll")
    assert grid.centers.shape == (25, 2) and ring.centers.shape == (8, 2) and roll.centers is None
    assert sorted(set(grid.centers[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    torch.testing.assert_close(ring.centers.norm(dim=1), torch.full((8,), 2.0))
    for d in (grid, ring, roll):
        a = d.sample(7, generator=torch.Generator().manual_seed(1))
        assert a.shape == (7, 2) and torch.equal(a, d.sample(7, generator=torch.Generator().manual_seed(1)))


def test_samples_exactly_at_the_25_modes_count_25():
    c = make_toy("grid").centers
    m = mode_metrics(c.repeat(40, 1), c, 0.05)
    assert m["modes"] == 25 and m["high_quality"] == 1.0 and m["kl"] == pytest.approx(0.0, abs=1e-12)
    assert m["counts"] == [40] * 25


def test_all_samples_at_one_mode():
    c = make_toy("grid").centers
    m = mode_metrics(c[7].repeat(1000, 1), c, 0.05)
    assert m["modes"] == 1 and m["high_quality"] == 1.0
    assert m["kl"] == pytest.approx(math.log(25))


def test_partial_coverage_threshold_and_quality():
    c = make_toy("grid").centers
    # 20 modes with 48 samples each (4.8%), 5 modes with 5 samples each (0.5% < 1%),
    # and 15 points far from every mode.
    x = torch.cat([c[:20].repeat(48, 1), c[20:].repeat(5, 1), torch.full((15, 2), 10.0)])
    m = mode_metrics(x, c, 0.05)
    assert x.shape[0] == 1000
    assert m["modes"] == 20
    assert m["high_quality"] == pytest.approx(985 / 1000)
    p = torch.tensor([48.0] * 20 + [5.0] * 5) / 985
    assert m["kl"] == pytest.approx(float((p * torch.log(p * 25)).sum()))
    # points 2.9 sigma off a centre count, 3.1 sigma off do not
    near = c[:1] + torch.tensor([[2.9 * 0.05, 0.0]])
    far = c[:1] + torch.tensor([[3.1 * 0.05, 0.0]])
    assert mode_metrics(near, c, 0.05)["modes"] == 1
    assert mode_metrics(far, c, 0.05)["high_quality"] == 0.0
    assert mode_metrics(far, c, 0.05)["kl"] == math.inf


def test_true_data_covers_every_mode():
    data = make_toy("grid")
    x = data.sample(10_000, generator=torch.Generator().manual_seed(0))
    m = mode_metrics(x, data.centers, data.sigma)
    # P(|e| <= 3 sigma) for a 2-D Gaussian is 1 - exp(-4.5) = 0.989
    assert m["modes"] == 25 and abs(m["high_quality"] - (1 - math.exp(-4.5))) < 0.005
    assert m["kl"] < 0.01


def test_network_shapes():
    g = GANGenerator(3, code_dim=2, hidden=(8,))
    z, c = g.noise(5, generator=torch.Generator().manual_seed(0))
    assert z.shape == (5, 3) and c.shape == (5, 2) and bool((c.abs() <= 1).all())
    assert g(z, c).shape == (5, 2) and g.sample(4, generator=torch.Generator()).shape == (4, 2)
    assert Discriminator(hidden=(8,))(torch.randn(6, 2)).shape == (6,)


def _train(run=None, seed=4, steps=30):
    return train_gan(
        make_toy("grid"), generator=make_generator(seed, "gan"), run=run, steps=steps, beta=1.0,
        hidden=(16, 16), critic_hidden=(16,), batch_size=32, checkpoint_every=10, log_every=5,
    ).model


def _records(run):
    return [{k: v for k, v in r.items() if k != "time"} for r in run.metrics()]


def test_killed_run_resumes_to_identical_numbers(tmp_path):
    cfg = {"what": "gan"}
    full = Run(tmp_path / "a", config=cfg, seed=4, progress=False)
    g_full = _train(full)

    killed = Run(tmp_path / "b", config=cfg, seed=4, progress=False)
    log = killed.log

    def log_then_die(step, **kw):
        log(step, **kw)
        if step == 25:  # after the checkpoint at step 20
            raise KeyboardInterrupt

    killed.log = log_then_die
    with pytest.raises(KeyboardInterrupt):
        _train(killed)
    blob = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert blob["step"] == 20 and set(blob["objects"]["models"]) == {"gen", "disc", "mi"}

    resumed = Run(tmp_path / "b", config=cfg, seed=4, progress=False)
    torch.randn(10)  # the loop does not draw from the global RNG
    g_res = _train(resumed)
    for (k, a), b in zip(g_full.state_dict().items(), g_res.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert _records(full) == _records(resumed) and len(_records(full)) == 6
    data = make_toy("grid")
    assert evaluate_generator(g_full, data, n=500) == evaluate_generator(g_res, data, n=500)


def test_explicit_generator_same_numbers_and_global_rng_untouched():
    before = torch.get_rng_state()
    a = _train(steps=10, seed=1)
    assert torch.equal(before, torch.get_rng_state())
    b, c = _train(steps=10, seed=1), _train(steps=10, seed=2)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0)
    assert not torch.equal(a.state_dict()["net.1.weight"], c.state_dict()["net.1.weight"])


def test_mine_term_covers_at_least_the_plain_gans_modes():
    # The paper's claim (sec. 5.1) at a budget of seconds: 300 steps on a ring of 8 wide modes,
    # seed 0. The plain GAN collapses onto one or two modes; GAN+MINE spreads over the ring.
    data = make_toy("ring", sigma=0.2)
    m = {}
    for beta in (0.0, 1.0):
        gen = train_gan(data, generator=make_generator(0, "gan"), steps=300, beta=beta, hidden=(32, 32),
                        batch_size=64, checkpoint_every=300, log_every=300).model
        m[beta] = evaluate_generator(gen, data, n=2000, seed=0)
    assert m[1.0]["modes"] >= max(m[0.0]["modes"], 6), m
    assert m[1.0]["kl"] < m[0.0]["kl"], m


def test_trains_a_users_own_networks():
    # a researcher's generator (z -> x, no code) and discriminator: plain nn.Modules
    class MyGen(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))

        def forward(self, z):
            return self.body(z)

    disc = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1), nn.Flatten(0))
    data = make_toy("grid")
    res = train_gan(data, net=MyGen, discriminator=disc, latent_dim=3, beta=1.0, steps=20,
                    critic_hidden=(8,), batch_size=32, log_every=10, generator=make_generator(0, "gan"))
    assert isinstance(res.model, MyGen) and res.models["disc"] is disc
    assert isinstance(res.info["mi_loss"], MILoss) and [r["step"] for r in res.history] == [10, 20]
    m = evaluate_generator(res.model, data, n=200, latent_dim=3)
    assert 0 <= m["high_quality"] <= 1
    # without a generator: PyTorch's default one, as torch.randn does
    assert train_gan(data, steps=2, hidden=(4,), batch_size=8).info["mi_loss"] is None


def test_bad_inputs():
    with pytest.raises(ValueError, match="dataset == 'moons'"):
        make_toy("moons")
    c = make_toy("grid").centers
    with pytest.raises(ValueError, match=r"samples.shape == \(4, 3\)"):
        mode_metrics(torch.zeros(4, 3), c, 0.05)
    with pytest.raises(ValueError, match="sigma == 0"):
        mode_metrics(torch.zeros(4, 2), c, 0)
    g = torch.Generator()
    with pytest.raises(ValueError, match="code_dim == 0, must be >= 1 with mi_target == 'code'"):
        train_gan(make_toy("grid"), generator=g, steps=1, beta=1.0, mi_target="code")
    with pytest.raises(ValueError, match="beta == -1.0, must be >= 0"):
        train_gan(make_toy("grid"), generator=g, steps=1, beta=-1.0)
    with pytest.raises(ValueError, match="checkpoint_every == 0, must be an integer >= 1"):
        train_gan(make_toy("grid"), generator=g, steps=1, checkpoint_every=0)
    with pytest.raises(ValueError, match="has no modes"):
        evaluate_generator(GANGenerator(2), make_toy("swissroll"))


def test_recipe_quick_end_to_end_and_reuses_finished_sub_runs(tmp_path):
    from deepscope.recipes.mine_gan import Config
    from deepscope.runner import execute_recipe

    cfg = Config(out=tmp_path / "r", quick=True, progress=False, seed=0)
    res = execute_recipe("mine-gan", cfg, quiet=True)
    assert [e["beta"] for e in res["table"]] == [0.0, 1.0] and all(e["runs"] == 2 for e in res["table"])
    for e in res["table"]:  # the table summarises the per-seed results
        modes = [r["modes"] for r in res["runs"][f"{e['beta']:g}"]]
        assert e["modes"] == pytest.approx(sum(modes) / 2)
        lo, hi = e["modes_ci95"]
        assert lo <= e["modes"] <= hi
    assert (tmp_path / "r" / "figures" / "samples_grid.png").exists()
    assert json.loads((tmp_path / "r" / "result.json").read_text())["num_modes"] == 25
    assert "modes covered" in res["summary"]
    sub = tmp_path / "r" / "beta1" / "seed1"
    assert set(torch.load(sub / "checkpoint.pt", weights_only=True)["objects"]["models"]) == {"gen", "disc", "mi"}
    # a second call with the same --out reuses the finished sub-runs: same numbers, no training
    (sub / "checkpoint.pt").unlink()
    again = execute_recipe("mine-gan", cfg, quiet=True)
    assert json.dumps(to_jsonable(again["table"])) == json.dumps(to_jsonable(res["table"]))
    assert not (sub / "checkpoint.pt").exists()


def test_recipe_rejects_bad_config_before_writing(tmp_path, capsys, monkeypatch):
    from deepscope.cli import main
    from deepscope.recipes.mine_gan import Config

    with pytest.raises(ValueError, match=r"betas == \(-1.0,\), must be one or more weights, each >= 0"):
        Config(out=tmp_path, betas=(-1.0,))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "mine-gan", "--steps", "-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deepscope run mine-gan: steps == -5, must be >= 1"]
    assert list(tmp_path.iterdir()) == []  # no run directory
    assert main(["run", "mine-gan", "--mi-target", "code", "--out", str(tmp_path / "x")]) == 2
    assert "code_dim == 0, must be >= 1 with --mi-target code" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
