"""lazy-vs-hasty end to end at the quick budget (toy, MNIST-1D, CIFAR-10 on tiny fake data), a
killed run's resume, and the CLI's one-line errors."""

import json

import numpy as np
import pytest
import torch

from deepscope.recipes import lazy_vs_hasty as rec
from deepscope.runner import execute_recipe
from deepscope.train import Run
from tests.killing import Killed


def _cfg(out, **kw):
    return rec.Config(quick=True, progress=False, threads=1, device="cpu", out=out, **kw)


def test_toy_quick_writes_maps_and_mean_map_statistics(tmp_path):
    res = execute_recipe("lazy-vs-hasty", _cfg(tmp_path), quiet=True)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["settings"]["toy_runs"] == 10
    assert set(stored["toy"]) == {"disk", "yinyang1", "disk_flip_diagonal"}
    for name in stored["toy"]:
        assert set(stored["toy"][name]) == {"extra0", "extra5"}
        e = res["toy"][name]["extra5"]["0.6"]  # quick levels: 0.65, 0.6
        assert e["n_runs"] >= 5 and -1 <= e["spearman"] <= 1
        lo, hi = e["contrast_ci95"]
        assert lo <= e["contrast"] <= hi and e["holds"] == (e["contrast"] > 0 and lo > 0)
        assert e["contrast"] == pytest.approx(e["near"] - e["far"])
        assert set(e["per_seed_spearman"]) == {"mean", "std", "ci95", "n", "n_missing", "values"}
    assert res["verdict"]["verdict"] in ("reproduced", "partly", "not reproduced")
    assert (tmp_path / "figures" / "toy_delta_maps.png").stat().st_size > 20000
    # one sub-run per (toy, extra dims, alpha), with its snapshot losses on the grid and curves
    sub = json.loads((tmp_path / "toy" / "disk" / "extra0" / "alpha100" / "result.json").read_text())
    assert len(sub["steps"]) == 2 and len(sub["steps"][0]) == 10
    blob = torch.load(tmp_path / "toy" / "disk" / "extra5" / "alpha1" / "grid_losses.pt", weights_only=True)
    assert blob["losses"].shape == (2, 10, 21 * 21)
    assert blob["loss_history"].shape == (10, len(blob["record_steps"]))
    first = blob["loss_history"][:, 0]  # step 0: every run starts at loss ln 2 (f = 0)
    assert torch.allclose(first, torch.full_like(first, float(np.log(2))), atol=1e-6)


def test_toy_and_mnist1d_in_one_run_give_one_verdict(tmp_path):
    cfg = _cfg(tmp_path, mode="toy+mnist1d", measures=("noise",), toy_levels=(0.65,))
    res = execute_recipe("lazy-vs-hasty", cfg, quiet=True)
    assert set(res["toy"]) == {"disk"} and set(res["toy"]["disk"]) == {"extra0"}
    assert res["mnist1d"]["delta"]["noise"]["n"] == 2
    v = res["verdict"]
    assert "toy (" in v["measured"] and "MNIST-1D (" in v["measured"]
    assert (tmp_path / "noise" / "alpha100" / "seed1" / "result.json").exists()
    assert (tmp_path / "toy" / "disk" / "extra0" / "alpha1" / "result.json").exists()


def test_reproduce_quick_plan_runs_toy_and_mnist1d():
    from deepscope.runner import parse_config

    cfg = parse_config(rec.Config, list(rec.REPRODUCE.options("quick")), prog="x")
    assert cfg.mode == "toy+mnist1d" and cfg.seeds == 2 and not cfg.quick
    assert set(cfg.measures) == {"cscore", "noise", "spurious"}
    assert cfg.toys == ("disk", "yinyang1", "disk_flip_diagonal") and cfg.toy_extra_dims == (0, 5)
    assert cfg.toy_runs == 25 and cfg.toy_points == 100 and cfg.toy_max_steps == 25_000
    assert rec.Config().toy_runs == 100  # the toy mode's default: the paper's 100 runs per alpha


@pytest.fixture(scope="module")
def mnist1d_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("lvh") / "m"
    return out, execute_recipe("lazy-vs-hasty", _cfg(out, mode="mnist1d"), quiet=True)


def test_mnist1d_quick_all_four_groupings(mnist1d_quick):
    out, res = mnist1d_quick
    assert set(res["delta"]) == set(rec.MEASURES)
    for m in rec.MEASURES:
        d = res["delta"][m]
        assert d["n"] == 2 and len(d["per_seed"]) == 2 and min(d["shared_rungs"]) >= 1
        for per_rung, delta, rungs in zip(d["per_rung"], d["per_seed"], d["shared_rungs"]):
            assert len(per_rung) == rungs and np.mean(per_rung) == pytest.approx(delta)
        dm = res["delta_matched_loss"][m]
        assert len(dm["per_seed"]) == 2 and len(dm["levels_compared"]) == 2
        assert set(res["spearman"][m]) == {"1", "100"}
    assert res["groups"]["noise"] == ["clean labels", "noisy labels"]
    assert 0 <= res["cscore_reliability"]["n_seeds"] == 2
    for name in ("group_losses", "learning_times"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
    # sub-runs per (condition, alpha, seed) and per hold-out fold
    assert (out / "noise" / "alpha100" / "seed1" / "result.json").exists()
    assert (out / "cscore" / "seed1" / "fold1" / "result.json").exists()
    lad = torch.load(out / "clean" / "alpha1" / "seed0" / "ladder.pt", weights_only=True)
    assert lad["loss"].shape[1] == 480 and lad["correct"].dtype == torch.bool


def test_mnist1d_quick_lazy_run_stays_linear(mnist1d_quick):
    # the premise of the comparison, measurable even at the quick budget: alpha = 100 keeps its
    # ReLU pattern and tangent kernel closer to initialisation than alpha = 1
    _, res = mnist1d_quick
    c = res["conditions"]["clean"]
    assert min(c["100"]["final_sign_agreement"]) > max(c["1"]["final_sign_agreement"])
    assert min(c["100"]["final_kernel_alignment"]) > 0.99
    assert min(c["100"]["final_kernel_alignment"]) > max(c["1"]["final_kernel_alignment"])


def test_lazy_lr_reaches_the_lazy_runs_only(mnist1d_quick, tmp_path):
    # --lazy-lr 1: the alpha = 100 networks train at step 1, the alpha = 1 networks (and the
    # hold-out c-score models) at --lr, so alpha = 1 trains exactly as without the option
    base_out, base = mnist1d_quick
    out = tmp_path / "eta"
    res = execute_recipe("lazy-vs-hasty", _cfg(out, mode="mnist1d", measures=("noise",), lazy_lr=1.0),
                         quiet=True)
    assert base["lr"] == {"1": 0.1, "100": 0.1}
    assert res["lr"] == {"1": 0.1, "100": 1.0} and res["settings"]["lazy_lr"] == 1.0
    assert "alpha=100: 1" in res["summary"]
    for a, lr in (("1", 0.1), ("100", 1.0)):
        sub = json.loads((out / "noise" / f"alpha{a}" / "seed0" / "config.json").read_text())
        assert sub["options"]["lr"] == lr
    curve = lambda root, a: [r["running_loss"] for r in map(json.loads, (  # noqa: E731
        root / "noise" / f"alpha{a}" / "seed0" / "metrics.jsonl").open()) if "running_loss" in r]
    assert curve(out, 1) == curve(base_out, 1) and len(curve(out, 1)) == 3
    assert curve(out, 100) != curve(base_out, 100)


def test_compare_real_rejects_a_rate_for_an_alpha_it_does_not_train():
    from deepscope.dynamics.lazy_vs_hasty import compare_real

    with pytest.raises(ValueError, match=r"lr_per_alpha == \{10.0: 1.0\}, must map some of alphas"):
        compare_real(None, None, alphas=(1.0, 100.0), lr_per_alpha={10: 1.0})
    with pytest.raises(ValueError, match="rates > 0"):
        compare_real(None, None, alphas=(1.0, 100.0), lr_per_alpha={100: 0.0})


class _KillingRun(Run):
    """A run whose sub-run 'noise/alpha100/seed1' dies logging step 30, the end of epoch 2 (480
    examples, batch 32: 15 steps an epoch), just before that epoch's checkpoint; the last
    checkpoint is step 15."""

    def child(self, name, *, config=None, seed=None):
        if name != "noise/alpha100/seed1":
            return super().child(name, config=config, seed=seed)
        parent = self

        class _Child(Run):
            def log(self, step, **metrics):
                super().log(step, **metrics)
                if step == 30:
                    raise Killed

        return _Child(parent.dir / name, config=config, seed=self.seed if seed is None else seed,
                      device=self.device, progress=False)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_numbers(tmp_path):
    from dataclasses import fields

    kw = dict(mode="mnist1d", measures=("noise",))
    full = execute_recipe("lazy-vs-hasty", _cfg(tmp_path / "a", **kw), quiet=True)
    cfg = _cfg(tmp_path / "b", **kw).with_preset()
    config = {"recipe": "lazy-vs-hasty", **{f.name: getattr(cfg, f.name) for f in fields(cfg)}}
    with pytest.raises(Killed):
        rec.run(cfg, _KillingRun(cfg.out, config=config, seed=0, device="cpu", progress=False))
    assert not (tmp_path / "b" / "noise" / "alpha100" / "seed1" / "result.json").exists()
    resumed = execute_recipe("lazy-vs-hasty", _cfg(tmp_path / "b", **kw), quiet=True)
    assert resumed["delta"]["noise"]["per_seed"] == full["delta"]["noise"]["per_seed"]
    assert resumed["spearman"] == full["spearman"]
    a = tmp_path / "a" / "noise" / "alpha100" / "seed1"
    b = tmp_path / "b" / "noise" / "alpha100" / "seed1"
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "time"}  # noqa: E731
                       for x in (p / "metrics.jsonl").open()]
    assert strip(a) == strip(b)
    la, lb = (torch.load(p / "ladder.pt", weights_only=True) for p in (a, b))
    assert torch.equal(la["loss"], lb["loss"])


@pytest.mark.slow
def test_cifar10_mode_on_tiny_fake_data(tmp_path, monkeypatch):
    from deepscope.data import Dataset

    g = torch.Generator().manual_seed(0)
    y = torch.arange(100) % 10
    x = torch.rand(100, 3, 8, 8, generator=g) * 0.5 + 0.05 * y[:, None, None, None]
    fake = Dataset(x, y, x[:10], y[:10], 10, "cifar10")
    from deepscope.dynamics import lazy_vs_hasty as pipeline

    monkeypatch.setattr(pipeline, "_load_cifar", lambda root: fake)
    monkeypatch.setattr(pipeline, "CIFAR_TRAIN", 80)
    scores = np.linspace(0, 1, 50_000)
    np.savez(tmp_path / "cs.npz", scores=scores, labels=np.r_[y.numpy(), np.zeros(49_900, int)])
    (tmp_path / "data").mkdir()
    cfg = _cfg(tmp_path / "run", mode="cifar10", data_root=str(tmp_path / "data"),
               cscores=tmp_path / "cs.npz", measures=("cscore", "spurious"))
    res = execute_recipe("lazy-vs-hasty", cfg, quiet=True)
    assert res["n_train"] == 80 and res["n_probe"] == 64 and res["cscore_source"].endswith("cs.npz")
    assert res["delta"]["cscore"]["n"] == 2 and "cscore_reliability" not in res
    # labels in the c-score file that disagree with the data are refused
    np.savez(tmp_path / "bad.npz", scores=scores, labels=np.ones(50_000, int))
    with pytest.raises(ValueError, match="labels that differ from CIFAR-10's"):
        execute_recipe("lazy-vs-hasty", rec.Config(**{**cfg.__dict__, "cscores": tmp_path / "bad.npz",
                                                      "out": tmp_path / "bad"}), quiet=True)


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "-1"], "epochs == -1, must be >= 0 (0: the mode's default)"),
    (["--alphas", "1"], "alphas == (1.0,), must be at least two distinct values > 0"),
    (["--mode", "mnist1d", "--cscores", "x.npz"], "cscores == 'x.npz', must be given with --mode cifar10"),
    (["--mode", "cifar10"], "data_root == None, must be a folder holding cifar-10-batches-py"),
    (["--mode", "mnist1d", "--lazy-lr", "-1"], "lazy_lr == -1.0, must be >= 0 (0: the same as --lr)"),
    (["--lazy-lr", "10"], "lazy_lr == 10.0, must be given with --mode mnist1d, cifar10 or toy+mnist1d only"),
])
def test_cli_bad_option_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    from deepscope.cli import main

    out = tmp_path / "never"
    assert main(["run", "lazy-vs-hasty", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_cli_rejects_a_bad_cscores_file(tmp_path, capsys):
    from deepscope.cli import main

    np.savez(tmp_path / "c.npz", scores=np.full(10, 0.5))
    (tmp_path / "data").mkdir()
    code = main(["run", "lazy-vs-hasty", "--mode", "cifar10", "--data-root", str(tmp_path / "data"),
                 "--cscores", str(tmp_path / "c.npz"), "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "has 10 scores, must have 50000" in err
    assert not (tmp_path / "never").exists()


def test_rowwise_correlations_equal_scipy_row_by_row():
    from scipy.stats import pearsonr, spearmanr

    g = np.random.default_rng(0)
    rows = g.normal(size=(5, 40))
    rows[2, :10] = rows[2, 10:20]  # ties: average ranks, as scipy
    v = np.round(g.normal(size=40), 1)
    from deepscope.dynamics.lazy_vs_hasty import _rowwise_corr

    rho = _rowwise_corr(rows, v, rank=True)
    r = _rowwise_corr(rows, v, rank=False)
    for i in range(5):
        assert rho[i] == pytest.approx(spearmanr(rows[i], v).statistic, abs=1e-12)
        assert r[i] == pytest.approx(pearsonr(rows[i], v).statistic, abs=1e-12)


class _KillingToyRun(Run):
    """A run whose combined toy training dies logging step 300 (last checkpoint: step 200)."""

    def child(self, name, *, config=None, seed=None):
        if name != "toy/batched":
            return super().child(name, config=config, seed=seed)

        class _Child(Run):
            def log(self, step, **metrics):
                super().log(step, **metrics)
                if step == 300:
                    raise Killed

        return _Child(self.dir / name, config=config, seed=self.seed, device=self.device,
                      progress=False)


def test_toy_killed_run_resumes_to_identical_numbers(tmp_path):
    from dataclasses import fields

    kw = dict(toy_runs=3, toy_grid=11, checkpoint_every=100, toys=("disk", "yinyang1"))
    full = execute_recipe("lazy-vs-hasty", _cfg(tmp_path / "a", **kw), quiet=True)
    cfg = _cfg(tmp_path / "b", **kw).with_preset()
    config = {"recipe": "lazy-vs-hasty", **{f.name: getattr(cfg, f.name) for f in fields(cfg)}}
    with pytest.raises(Killed):
        rec.run(cfg, _KillingToyRun(cfg.out, config=config, seed=0, device="cpu", progress=False))
    assert not (tmp_path / "b" / "toy" / "disk" / "extra0" / "alpha1" / "result.json").exists()
    resumed = execute_recipe("lazy-vs-hasty", _cfg(tmp_path / "b", **kw), quiet=True)
    assert resumed["toy"] == full["toy"]
    for p in ("toy/disk/extra0/alpha100", "toy/yinyang1/extra5/alpha1"):
        a, b = (torch.load(d / p / "grid_losses.pt", weights_only=True)
                for d in (tmp_path / "a", tmp_path / "b"))
        assert torch.equal(a["losses"], b["losses"]) and torch.equal(a["steps"], b["steps"])
        assert torch.equal(a["loss_history"].nan_to_num(-1), b["loss_history"].nan_to_num(-1))


def test_mean_map_statistics_on_a_hand_made_map():
    from deepscope.dynamics.lazy_vs_hasty import mean_map_statistics

    # grid distances 0..1 in 100 steps; every run: Delta = 0.05 - 0.1 d plus run noise of
    # mean 0 per point: the mean map's near band (d <= 0.2) averages 0.05 - 0.1 * 0.1 = 0.04
    # and the far band (d >= 0.8) 0.05 - 0.1 * 0.9 = -0.04; contrast 0.08, Spearman -1
    d = np.linspace(0, 1, 101)
    g = np.random.default_rng(0)
    noise = g.normal(0, 0.02, size=(200, 101))
    runs = 0.05 - 0.1 * d + noise - noise.mean(0)   # the noise averages to 0 at each point
    st = mean_map_statistics(runs, d, bands=5, resamples=400, seed=1)
    assert st["near"] == pytest.approx(0.04, abs=1e-12) and st["far"] == pytest.approx(-0.04, abs=1e-12)
    assert st["contrast"] == pytest.approx(0.08, abs=1e-12) and st["spearman"] == pytest.approx(-1.0)
    lo, hi = st["contrast_ci95"]
    assert 0 < lo < 0.08 < hi and st["holds"] and st["n_runs"] == 200
    # the interval's width follows the run noise: sd of the band means over runs / sqrt(K)
    se = (runs[:, d <= 0.2].mean(1) - runs[:, d >= 0.8].mean(1)).std() / np.sqrt(200)
    assert (hi - lo) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.2)
    # no effect: a map of pure run noise; the interval covers 0 and the claim does not hold
    st0 = mean_map_statistics(g.normal(0, 0.02, size=(200, 101)), d, resamples=400, seed=1)
    assert st0["contrast_ci95"][0] < 0 < st0["contrast_ci95"][1] and not st0["holds"]
    # the opposite effect (larger far from the boundary): contrast < 0, Spearman +1
    st1 = mean_map_statistics(-runs, d, resamples=100)
    assert st1["contrast"] == pytest.approx(-0.08) and st1["spearman"] == pytest.approx(1.0)
    assert not st1["holds"]
    with pytest.raises(ValueError, match="delta has shape"):
        mean_map_statistics(runs[:, :50], d)
    with pytest.raises(ValueError, match="bands == 1"):
        mean_map_statistics(runs, d, bands=1)


def test_real_data_verdict_reads_delta_at_matched_actual_loss():
    iv = lambda m, lo, hi: {"mean": m, "ci95": [lo, hi], "n": 3}  # noqa: E731
    result = {"delta": {"cscore": iv(0.18, 0.01, 0.35), "noise": iv(0.57, 0.34, 0.80)},
              "delta_matched_loss": {"cscore": iv(0.045, -0.21, 0.30), "noise": iv(0.32, 0.07, 0.57)}}
    v = rec._real_verdict(result)
    # rung by rung both intervals clear 0; at matched loss only label noise's does
    assert v["verdict"] == "partly" and "cscore: Delta 0.045" in v["measured"]
    del result["delta_matched_loss"]  # results written before the matched-loss read-out
    assert rec._real_verdict(result)["verdict"] == "reproduced"
