import json
import math

import pytest
import torch

from deepscope.mi.gan import (
    Discriminator,
    Generator,
    evaluate_generator,
    make_toy,
    mode_metrics,
    train_gan,
)
from deepscope.train import Run
from deepscope.train.run import to_jsonable


def test_toy_sets_shapes():
    grid, ring, roll = make_toy("grid"), make_toy("ring"), make_toy("swissroll")
    assert grid.centers.shape == (25, 2) and ring.centers.shape == (8, 2) and roll.centers is None
    assert sorted(set(grid.centers[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    torch.testing.assert_close(ring.centers.norm(dim=1), torch.full((8,), 2.0))
    for d in (grid, ring, roll):
        assert d.sample(7).shape == (7, 2)


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
    g = Generator(3, code_dim=2, hidden=(8,))
    z, c = g.noise(5)
    assert z.shape == (5, 3) and c.shape == (5, 2) and bool((c.abs() <= 1).all())
    assert g(z, c).shape == (5, 2) and g.sample(4).shape == (4, 2)
    assert Discriminator(hidden=(8,))(torch.randn(6, 2)).shape == (6,)


def _train(run, **kw):
    return train_gan(
        run, make_toy("grid"), steps=30, beta=1.0, hidden=(16, 16), critic_hidden=(16,),
        batch_size=32, checkpoint_every=10, log_every=5, **kw,
    )


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
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 20

    resumed = Run(tmp_path / "b", config=cfg, seed=4, progress=False)
    g_res = _train(resumed)
    for (k, a), b in zip(g_full.state_dict().items(), g_res.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert _records(full) == _records(resumed) and len(_records(full)) == 6
    data = make_toy("grid")
    assert evaluate_generator(g_full, data, n=500) == evaluate_generator(g_res, data, n=500)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="dataset == 'moons'"):
        make_toy("moons")
    c = make_toy("grid").centers
    with pytest.raises(ValueError, match=r"samples.shape == \(4, 3\)"):
        mode_metrics(torch.zeros(4, 3), c, 0.05)
    with pytest.raises(ValueError, match="sigma == 0"):
        mode_metrics(torch.zeros(4, 2), c, 0)
    run = Run(tmp_path, seed=0, progress=False)
    with pytest.raises(ValueError, match="mi_target == 'code' needs code_dim >= 1"):
        train_gan(run, make_toy("grid"), steps=1, beta=1.0, mi_target="code")
    with pytest.raises(ValueError, match="beta == -1"):
        train_gan(run, make_toy("grid"), steps=1, beta=-1.0)
    with pytest.raises(ValueError, match="checkpoint_every == 0"):
        train_gan(run, make_toy("grid"), steps=1, checkpoint_every=0)
    with pytest.raises(ValueError, match="has no modes"):
        evaluate_generator(Generator(2), make_toy("swissroll"))


def test_recipe_quick_end_to_end(tmp_path):
    from deepscope.recipes.mine_gan import Config
    from deepscope.runner import execute_recipe

    cfg = Config(out=tmp_path / "r", quick=True, progress=False, seed=0)
    res = execute_recipe("mine-gan", cfg, quiet=True)
    assert [e["beta"] for e in res["table"]] == [0.0, 1.0]
    assert all(e["runs"] == 2 and 0 <= e["modes"] <= 25 for e in res["table"])
    assert (tmp_path / "r" / "figures" / "samples_grid.png").exists()
    assert json.loads((tmp_path / "r" / "result.json").read_text())["num_modes"] == 25
    assert "modes covered" in res["summary"]
    # a second call with the same --out reuses the finished sub-runs: same numbers
    again = execute_recipe("mine-gan", cfg, quiet=True)
    assert json.dumps(to_jsonable(again["table"])) == json.dumps(to_jsonable(res["table"]))


def test_recipe_rejects_bad_config(tmp_path):
    from deepscope.recipes.mine_gan import Config
    from deepscope.runner import execute_recipe

    with pytest.raises(ValueError, match="betas == "):
        execute_recipe("mine-gan", Config(out=tmp_path, quick=True, progress=False, betas=(-1.0,)), quiet=True)
