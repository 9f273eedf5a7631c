import json

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from deepscope.data import Dataset, load_dataset
from deepscope.mi.bottleneck import IBClassifier, error_rate, estimate_mi_xz, train_ib, vib_kl
from deepscope.train import Run
from deepscope.train.loop import TrainOptions
from deepscope.train.rng import make_generator


@pytest.mark.parametrize("noise", ["none", "gaussian", "additive", "propagated"])
def test_shapes_and_stochasticity(noise):
    model = IBClassifier(12, 3, hidden=(16, 16), code_dim=5, noise=noise, sigma=0.5)
    x = torch.randn(7, 12)
    logits, z, (mu, std) = model(x)
    assert logits.shape == (7, 3) and z.shape == (7, 5)
    assert (mu is None) == (noise != "gaussian")
    if noise == "gaussian":
        assert mu.shape == std.shape == (7, 5) and bool((std > 0).all())
    p = model.predict_proba(x, n_samples=4, generator=torch.Generator())
    torch.testing.assert_close(p.sum(1), torch.ones(7))
    same = torch.equal(model.encode(x)[0], model.encode(x)[0])
    assert same == (noise == "none")
    # with a generator the noise is reproducible and the global RNG is left alone
    before = torch.get_rng_state()
    a = model.encode(x, generator=torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, model.encode(x, generator=torch.Generator().manual_seed(1))[0])
    assert torch.equal(before, torch.get_rng_state())


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
        g = make_generator(0, method)
        res = train_ib(ds, generator=g, run=run, method=method, beta=1e-3, hidden=(32, 32), code_dim=4,
                       options={"epochs": 15, "batch_size": 20, "lr": 3e-3}, critic_hidden=(16,))
        model = res.model
        assert (res.info["mi_loss"] is not None) == (method == "mine")
        assert res.last_test_acc == 1 - res.history[-1]["test_error"] and len(res.history) == 15
        assert error_rate(model, ds.x_test, ds.y_test, generator=g) < 0.2
        rec = run.metrics()
        assert len(rec) == 15 and ("mi" in rec[-1]) == (method == "mine") and ("kl" in rec[-1]) == (method == "vib")


def test_error_rate_counts_mistakes():
    model = IBClassifier(2, 2, hidden=(), code_dim=2, noise="none")
    with torch.no_grad():  # class = argmax of the input
        model.head.weight.copy_(torch.eye(2))
        model.head.bias.zero_()
        model.decoder.weight.copy_(torch.eye(2))
        model.decoder.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    assert error_rate(model, x, torch.tensor([0, 1, 1, 1]), generator=torch.Generator()) == 0.25


def test_mi_xz_by_mine_is_near_zero_for_a_code_that_ignores_x_and_high_for_one_that_copies_it():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 2, generator=g)
    model = IBClassifier(2, 3, hidden=(), code_dim=2, noise="additive", sigma=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    fast = dict(max_steps=300, n_bootstrap=0, eval_pairs=10_000)
    assert abs(estimate_mi_xz(model, x, generator=g, **fast).mi_) < 0.1
    with torch.no_grad():  # z = x + noise of std 1/2: I(X;Z) = 2 * log(1 + 4) / 2 = 1.61 nats
        model.head.weight.copy_(torch.eye(2))
    assert 1.0 < estimate_mi_xz(model, x, generator=g, **fast).mi_ < 1.61 + 0.15


def test_killed_run_resumes_to_identical_numbers(tmp_path):
    ds = _tiny_data()
    kw = dict(method="mine", noise="propagated", sigma=0.3, beta=1e-2, hidden=(16, 16), code_dim=4,
              options=TrainOptions(epochs=5, batch_size=25, checkpoint_every=2), critic_hidden=(16,))
    full = Run(tmp_path / "a", config={"x": 1}, seed=2, progress=False)
    m_full = train_ib(ds, generator=make_generator(2, "ib"), run=full, **kw).model

    killed = Run(tmp_path / "b", config={"x": 1}, seed=2, progress=False)
    log = killed.log

    def log_then_die(step, **fields):
        log(step, **fields)
        if step == 3:  # after the checkpoint of epoch 2
            raise KeyboardInterrupt

    killed.log = log_then_die
    with pytest.raises(KeyboardInterrupt):
        train_ib(ds, generator=make_generator(2, "ib"), run=killed, **kw)
    blob = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert blob["step"] == 2 and set(blob["objects"]["models"]) == {"model", "mi"}
    resumed = Run(tmp_path / "b", config={"x": 1}, seed=2, progress=False)
    m_res = train_ib(ds, generator=make_generator(2, "ib"), run=resumed, **kw).model
    for a, b in zip(m_full.state_dict().values(), m_res.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(full.metrics()) == strip(resumed.metrics()) and len(full.metrics()) == 5


def test_without_a_run_the_global_rng_is_untouched():
    before = torch.get_rng_state()
    train_ib(_tiny_data(), generator=make_generator(0, "ib"), method="mine", hidden=(8,), code_dim=2,
             options={"epochs": 1, "batch_size": 50}, critic_hidden=(8,))
    assert torch.equal(before, torch.get_rng_state())


def test_trains_a_users_own_encoder():
    # a researcher's encoder (here a small CNN over the 10 features seen as a 1-D signal), as a
    # module and as a factory; the stochastic code and the decoder go on top
    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 4, 3)

        def forward(self, x):
            return torch.relu(self.conv(x[:, None, :])).flatten(1)  # (K, 4 * 8)

    ds = _tiny_data()
    for net in (Conv(), Conv):
        res = train_ib(ds, net=net, method="mine", noise="additive", sigma=0.3, code_dim=4,
                       critic_hidden=(8,), options={"epochs": 3, "batch_size": 20, "lr": 3e-3},
                       generator=make_generator(0, "ib"))
        assert isinstance(res.model.encoder, Conv) and res.model.head.in_features == 32
        assert len(res.history) == 3 and error_rate(res.model, ds.x_test.numpy(), ds.y_test.numpy()) < 0.7
    assert estimate_mi_xz(res.model, ds.x_train.numpy(), max_steps=20, n_bootstrap=0, eval_pairs=100).mi_ > -1
    # no generator: PyTorch's default one, as torch.randn does
    assert train_ib(ds, method="plain", hidden=(8,), code_dim=2, options={"epochs": 1}).info["mi_loss"] is None


def test_bad_inputs():
    ds = _tiny_data()
    g = torch.Generator()
    with pytest.raises(ValueError, match="method == 'ib', must be one of plain, vib, mine"):
        train_ib(ds, generator=g, method="ib")
    with pytest.raises(ValueError, match="noise == 'additive', must be 'gaussian' .* with method == 'vib'"):
        train_ib(ds, generator=g, method="vib", noise="additive")
    with pytest.raises(ValueError, match="noise == 'none', must be .* with method == 'mine' \\(a stochastic code\\)"):
        train_ib(ds, generator=g, method="mine", noise="none")
    with pytest.raises(ValueError, match="checkpoint_every == 0"):
        train_ib(ds, generator=g, method="plain", options={"checkpoint_every": 0})
    with pytest.raises(ValueError, match=r"batch_size == 1000, must be in \[2, 200\]"):
        train_ib(ds, generator=g, method="plain", options={"batch_size": 1000})
    with pytest.raises(ValueError, match="options has 'epoch', must be among"):
        train_ib(ds, generator=g, method="plain", options={"epoch": 3})
    with pytest.raises(ValueError, match="noise == 'propagated' adds noise after every hidden layer"):
        train_ib(ds, net=torch.nn.Linear(10, 8), method="mine", noise="propagated")
    with pytest.raises(ValueError, match="noise == 'dropout'"):
        IBClassifier(4, 2, noise="dropout")


def test_recipe_quick_end_to_end(tmp_path):
    from deepscope.recipes.mine_ib import Config
    from deepscope.runner import execute_recipe

    cfg = Config(out=tmp_path / "r", dataset="digits", quick=True, progress=False, sweep_methods=("mine",))
    res = execute_recipe("mine-ib", cfg, quiet=True)
    table = {e["method"]: e for e in res["table"]}
    assert list(table) == ["plain", "vib", "mine"] and all(e["runs"] == 2 for e in table.values())
    for e in table.values():
        errs = [100 * r["test_error"] for r in res["runs"][e["method"]]]
        assert e["test_error_pct"] == pytest.approx(sum(errs) / 2)
        assert e["test_error_pct_ci95"][0] <= e["test_error_pct"] <= e["test_error_pct_ci95"][1]
    assert {(s["method"], s["beta"]) for s in res["sweep"]} == {("mine", 1e-3), ("mine", 1e-1)}
    assert (tmp_path / "r" / "figures" / "beta_sweep_digits.png").exists()
    assert json.loads((tmp_path / "r" / "result.json").read_text())["dataset"] == "digits"
    blob = torch.load(tmp_path / "r" / "mine" / "beta0.01" / "seed0" / "checkpoint.pt", weights_only=True)
    assert set(blob["objects"]["models"]) == {"model", "mi"}


def test_recipe_vib_beta_trades_information_for_accuracy(tmp_path):
    # The bottleneck's premise (Alemi et al. 2017; Belghazi et al. 2018 sec. 5.3) on digits at a
    # budget of seconds: a small beta learns (chance is 90% error) and keeps information about x;
    # beta = 1 squeezes the code to almost no information (held-out MINE estimate of I(X;Z)).
    from deepscope.recipes.mine_ib import Config
    from deepscope.runner import execute_recipe

    cfg = Config(out=tmp_path, dataset="digits", methods=("vib",), seeds=1, epochs=10, hidden=(32, 32),
                 code_dim=8, sweep_betas=(1e-3, 1.0), sweep_methods=("vib",), probe_steps=200, progress=False)
    vib = {s["beta"]: s for s in execute_recipe("mine-ib", cfg, quiet=True)["sweep"]}
    assert vib[1e-3]["test_error"] < 0.5 < vib[1.0]["test_error"], vib
    assert vib[1.0]["mi_xz"] < 0.5 < 1.5 < vib[1e-3]["mi_xz"], vib


def test_recipe_rejects_bad_config(tmp_path, capsys):
    from deepscope.cli import main
    from deepscope.recipes.mine_ib import Config

    with pytest.raises(ValueError, match="methods == \\('dropout',\\), must be one or more of"):
        Config(out=tmp_path / "a", methods=("dropout",))
    with pytest.raises(ValueError, match="data_root == None, must be an existing folder"):
        Config(out=tmp_path / "b", dataset="mnist")
    assert main(["run", "mine-ib", "--epochs", "0", "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.strip() == "deepscope run mine-ib: epochs == 0, must be >= 1"
    assert not (tmp_path / "c").exists()


def test_digits_loader_is_what_the_recipe_expects():
    ds = load_dataset("digits", seed=0)
    assert ds.x_train.flatten(1).shape[1] == 64 and ds.num_classes == 10
