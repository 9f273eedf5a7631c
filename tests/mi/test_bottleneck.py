import json

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from deepscope.data import Dataset, load_dataset
from deepscope.mi.bottleneck import IBClassifier, estimate_mi_xz, test_error, train_ib, vib_kl
from deepscope.train import Run


@pytest.mark.parametrize("noise", ["none", "gaussian", "additive", "propagated"])
def test_shapes_and_stochasticity(noise):
    model = IBClassifier(12, 3, hidden=(16, 16), code_dim=5, noise=noise, sigma=0.5)
    x = torch.randn(7, 12)
    logits, z, (mu, std) = model(x)
    assert logits.shape == (7, 3) and z.shape == (7, 5)
    assert (mu is None) == (noise != "gaussian")
    if noise == "gaussian":
        assert mu.shape == std.shape == (7, 5) and bool((std > 0).all())
    p = model.predict_proba(x, n_samples=4)
    torch.testing.assert_close(p.sum(1), torch.ones(7))
    same = torch.equal(model.encode(x)[0], model.encode(x)[0])
    assert same == (noise == "none")


def test_vib_kl_matches_closed_form():
    mu = torch.randn(6, 4)
    std = torch.rand(6, 4) + 0.1
    want = kl_divergence(Normal(mu, std), Normal(torch.zeros(4), torch.ones(4))).sum(1)
    torch.testing.assert_close(vib_kl(mu, std), want)
    assert vib_kl(torch.zeros(2, 3), torch.ones(2, 3)).abs().max() == 0


def _tiny_data(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    x = torch.nn.functional.one_hot(y, 3).float() @ torch.randn(3, 10, generator=g) + 0.3 * torch.randn(n, 10, generator=g)
    return Dataset(x[:200], y[:200], x[200:], y[200:], 3, "tiny")


def test_bottleneck_learns_a_separable_task(tmp_path):
    ds = _tiny_data()
    for method in ("plain", "vib", "mine"):
        run = Run(tmp_path / method, seed=0, progress=False)
        model, mi = train_ib(run, ds, method=method, beta=1e-3, hidden=(32, 32), code_dim=4,
                             epochs=15, batch_size=20, lr=3e-3, critic_hidden=(16,))
        assert (mi is not None) == (method == "mine")
        assert test_error(model, ds.x_test, ds.y_test) < 0.2
        rec = run.metrics()
        assert len(rec) == 15 and ("mi" in rec[-1]) == (method == "mine") and ("kl" in rec[-1]) == (method == "vib")


def test_held_out_mi_is_near_zero_for_a_code_that_ignores_x():
    model = IBClassifier(10, 3, hidden=(16,), code_dim=4, noise="additive", sigma=1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    x = torch.randn(600, 10)
    assert abs(estimate_mi_xz(model, x[:500], x[500:], steps=200, hidden=(32,))) < 0.15


def test_killed_run_resumes_to_identical_numbers(tmp_path):
    ds = _tiny_data()
    kw = dict(method="mine", noise="propagated", sigma=0.3, beta=1e-2, hidden=(16, 16), code_dim=4,
              epochs=5, batch_size=25, critic_hidden=(16,), checkpoint_every=2)
    full = Run(tmp_path / "a", config={"x": 1}, seed=2, progress=False)
    m_full, _ = train_ib(full, ds, **kw)

    killed = Run(tmp_path / "b", config={"x": 1}, seed=2, progress=False)
    log = killed.log

    def log_then_die(step, **fields):
        log(step, **fields)
        if step == 3:  # after the checkpoint of epoch 2
            raise KeyboardInterrupt

    killed.log = log_then_die
    with pytest.raises(KeyboardInterrupt):
        train_ib(killed, ds, **kw)
    resumed = Run(tmp_path / "b", config={"x": 1}, seed=2, progress=False)
    m_res, _ = train_ib(resumed, ds, **kw)
    for a, b in zip(m_full.state_dict().values(), m_res.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(full.metrics()) == strip(resumed.metrics()) and len(full.metrics()) == 5


def test_bad_inputs(tmp_path):
    ds = _tiny_data()
    run = Run(tmp_path, seed=0, progress=False)
    with pytest.raises(ValueError, match="method == 'ib'"):
        train_ib(run, ds, method="ib")
    with pytest.raises(ValueError, match="method == 'vib' uses noise == 'gaussian', got noise == 'additive'"):
        train_ib(run, ds, method="vib", noise="additive")
    with pytest.raises(ValueError, match="needs a stochastic code"):
        train_ib(run, ds, method="mine", noise="none")
    with pytest.raises(ValueError, match="checkpoint_every == 0"):
        train_ib(run, ds, method="plain", checkpoint_every=0)
    with pytest.raises(ValueError, match=r"batch_size == 1000, must be in \[2, 200\]"):
        train_ib(run, ds, method="plain", batch_size=1000)
    with pytest.raises(ValueError, match="noise == 'dropout'"):
        IBClassifier(4, 2, noise="dropout")


def test_recipe_quick_end_to_end(tmp_path):
    from deepscope.recipes.mine_ib import Config
    from deepscope.runner import execute_recipe

    cfg = Config(out=tmp_path / "r", dataset="digits", quick=True, progress=False)
    res = execute_recipe("mine-ib", cfg, quiet=True)
    assert [e["method"] for e in res["table"]] == ["plain", "vib", "mine"]
    assert all(e["runs"] == 2 and 0 <= e["test_error_pct"] <= 100 for e in res["table"])
    assert {(s["method"], s["beta"]) for s in res["sweep"]} == {("mine", 1e-3), ("mine", 1e-1), ("vib", 1e-3), ("vib", 1e-1)}
    assert (tmp_path / "r" / "figures" / "beta_sweep_digits.png").exists()
    assert json.loads((tmp_path / "r" / "result.json").read_text())["dataset"] == "digits"


def test_recipe_rejects_bad_config(tmp_path):
    from deepscope.recipes.mine_ib import Config
    from deepscope.runner import execute_recipe

    with pytest.raises(ValueError, match="method 'dropout'"):
        execute_recipe("mine-ib", Config(out=tmp_path / "a", methods=("dropout",), quick=True, progress=False), quiet=True)
    with pytest.raises(ValueError, match="data_root"):
        execute_recipe("mine-ib", Config(out=tmp_path / "b", dataset="mnist", quick=True, progress=False), quiet=True)


def test_digits_loader_is_what_the_recipe_expects():
    ds = load_dataset("digits", seed=0)
    assert ds.x_train.flatten(1).shape[1] == 64 and ds.num_classes == 10
