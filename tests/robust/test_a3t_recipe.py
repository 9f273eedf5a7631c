import json
import math
from pathlib import Path

import pytest
import torch

import deepscope
from deepscope.recipes import a3t as rec
from deepscope.robust import clean_accuracy
from deepscope.runner import execute_recipe
from deepscope.train.run import Run


def _cfg(out, **kw):
    base = dict(mode="methods", datasets=("digits",), methods=("standard", "a3t"), seeds=1, epochs=2, restarts=1,
                eval_max=24, attacks=("fgsm", "pgd20", "foolbox-pgd", "autoattack", "transfer"),
                out=out, progress=False, threads=1)
    return rec.Config(**{**base, **kw})


@pytest.mark.slow  # ~12 s of CPU, most of it AutoAttack's Square (5000 queries)
def test_tiny_end_to_end_run_with_independent_attacks_and_loadable_models(tmp_path):
    res = execute_recipe("a3t", _cfg(tmp_path, methods=("a3t",)), quiet=True)
    digits = res["results"]["digits"]
    assert digits["settings"]["n_eval"] == 24 and digits["settings"]["eps"] == 0.1
    for method in ("a3t",):
        r = digits[method]
        assert r["unavailable"] == []            # foolbox and torchattacks ran
        assert set(r["attacks"]) == {"fgsm", "pgd20", "foolbox-pgd", "autoattack", "transfer"}
        assert r["violations"] == 0
        assert r["robust"]["mean"] <= min(a["mean"] for a in r["attacks"].values()) <= r["clean"]["mean"]
        assert r["checks"]["monotone_in_eps"]["passed"] == 1
        assert r["checks"]["zero_at_large_eps"]["passed"] == 1
    assert (tmp_path / "figures" / "eps_curve_digits.png").stat().st_size > 1000
    assert "a3t" in res["summary"] and "AutoAttack" in res["summary"]

    models = deepscope.load(tmp_path)
    assert sorted(models) == ["digits/a3t/seed0/model", "digits/surrogate/seed0/model"]
    assert models["digits/surrogate/seed0/model"].method == "standard"
    net = models["digits/a3t/seed0/model"]
    assert net.input_bounds == (0.0, 1.0) and net.method == "a3t" and not net.training
    from deepscope.data import load_dataset

    ds = load_dataset("digits", seed=0)
    clean = clean_accuracy(net, ds.x_test[:24], ds.y_test[:24])
    assert clean == pytest.approx(digits["a3t"]["clean"]["mean"], abs=1e-9)
    # a second call skips the finished sub-runs and returns the same numbers
    again = execute_recipe("a3t", _cfg(tmp_path, methods=("a3t",)), quiet=True)
    assert again["results"] == res["results"]


def test_killed_run_resumes_to_identical_numbers(tmp_path, monkeypatch):
    cheap = dict(methods=("fgsm-at", "a3t"), attacks=("fgsm", "pgd20"), eval_max=30)
    full = execute_recipe("a3t", _cfg(tmp_path / "a", **cheap), quiet=True)

    original = Run.log

    def dying_log(self, step, **metrics):
        original(self, step, **metrics)
        if step == 40 and "a3t" in self.dir.parts:   # epoch 2 of A3T; checkpoint at step 23
            raise KeyboardInterrupt

    monkeypatch.setattr(Run, "log", dying_log)
    with pytest.raises(KeyboardInterrupt):
        execute_recipe("a3t", _cfg(tmp_path / "b", **cheap), quiet=True)
    monkeypatch.setattr(Run, "log", original)
    assert (tmp_path / "b" / "digits" / "fgsm-at" / "seed0" / "result.json").exists()
    assert not (tmp_path / "b" / "digits" / "a3t" / "seed0" / "result.json").exists()
    resumed = execute_recipe("a3t", _cfg(tmp_path / "b", **cheap), quiet=True)

    def numbers(res):  # everything but the wall-clock seconds
        return {m: {k: v for k, v in r.items() if k != "seconds"}
                for m, r in res["results"]["digits"].items()}

    assert numbers(resumed) == numbers(full)
    assert numbers(full)["a3t"]["clean"]["mean"] > 0.5
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "time"}  # noqa: E731
                       for x in p.read_text().splitlines()]
    sub = ("digits", "a3t", "seed0", "metrics.jsonl")
    assert strip(tmp_path.joinpath("b", *sub)) == strip(tmp_path.joinpath("a", *sub))
    a = deepscope.load(tmp_path / "a" / "digits" / "a3t" / "seed0")
    b = deepscope.load(tmp_path / "b" / "digits" / "a3t" / "seed0")
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_mnist1d_bounds_are_the_data_range_rounded_outward():
    from deepscope.data import load_dataset

    ds = load_dataset("mnist1d", seed=0)
    x = torch.cat([ds.x_train, ds.x_test])
    lo, hi = rec.DATASETS["mnist1d"]["bounds"]
    assert lo == math.floor(x.min().item() * 100) / 100
    assert hi == math.ceil(x.max().item() * 100) / 100


def test_cli_bad_option_prints_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from deepscope.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "a3t", "--epochs", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "deepscope run a3t: epochs == -1, must be >= 1"
    assert main(["run", "a3t", "--datasets", "mnist", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepscope run a3t: data_root == None, must be a folder") and "\n" not in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"layer == 3, must be <= 2"):
        rec.Config(layer=3)
    with pytest.raises(ValueError, match=r"alpha == 2.0, must be in \[0, 1\]"):
        rec.Config(alpha=2.0)


@pytest.mark.slow  # a 421k-parameter CNN on 28x28 inputs: ~6 s of CPU
def test_paper_scale_code_path_on_mnist_shaped_data(tmp_path, monkeypatch):
    # No MNIST files here (and no torchvision): random 28x28 images stand in, so the MNIST
    # settings run end to end: small CNN, eps 0.3, A3T on its features, eval_max.
    import deepscope.data as data

    g = torch.Generator().manual_seed(0)
    fake = data.Dataset(torch.rand(96, 1, 28, 28, generator=g), torch.arange(96) % 10,
                        torch.rand(40, 1, 28, 28, generator=g), torch.arange(40) % 10, 10, "mnist")
    monkeypatch.setattr(data, "load_dataset", lambda name, **kw: fake)
    res = execute_recipe("a3t", _cfg(tmp_path / "run", datasets=("mnist",), data_root=tmp_path,
                                     layers=(0,),
                                     methods=("a3t",), epochs=1, eval_max=8,
                                     attacks=("fgsm", "pgd20")), quiet=True)
    st = res["results"]["mnist"]["settings"]
    assert st["eps"] == 0.3 and st["net"] == "small-cnn" and st["n_eval"] == 8
    assert st["pgd_steps"] == 40 and st["pgd_step_size"] == 0.01   # Madry et al.'s training attack
    net = deepscope.load(tmp_path / "run" / "mnist" / "a3t" / "seed0")
    assert type(net).__name__ == "SmallCNN" and net.input_bounds == (0.0, 1.0)


def test_paired_mode_pairs_each_beta_with_beta_zero_seed_by_seed(tmp_path):
    cfg = rec.Config(datasets=("digits",), seeds=2, epochs=1, restarts=1, eval_max=24,
                     attacks=("fgsm", "pgd20"), betas=(0.5,), layers=(1, 2), out=tmp_path,
                     progress=False, threads=1)
    res = execute_recipe("a3t", cfg, quiet=True)
    p = res["paired"]["digits"]
    assert sorted(p["cells"]) == ["fgsm/layer1/beta0.5", "fgsm/layer2/beta0", "fgsm/layer2/beta0.5"]
    rows = {r["cell"]: r for r in p["rows"]}
    assert set(rows) == {"fgsm/layer1/beta0.5", "fgsm/layer2/beta0.5"}
    for cell, row in rows.items():
        treated = p["cells"][cell]["robust"]["values"]
        control = p["cells"]["fgsm/layer2/beta0"]["robust"]["values"]
        expect = [100 * (a - b) for a, b in zip(treated, control)]
        assert row["diff_pp"]["values"] == pytest.approx(expect) and row["diff_pp"]["n"] == 2
        assert row["reference"] == "beta0" and row["diff_pp"]["seeds"] == [0, 1]
    curve = p["cells"]["fgsm/layer2/beta0.5"]["train_curve"]
    assert len(curve["disc_acc"]) == len(curve["step"]) >= 1 and 0 <= curve["cka"][-1] <= 1
    gap = p["cells"]["fgsm/layer2/beta0"]["test_gap"]
    assert {"layer1/fgsm/cka", "layer2/pgd20/shift", "layer2/fgsm/disc_acc"} <= set(gap)
    assert "attacks that ran: fgsm, pgd20" in res["summary"]
    assert res["verdict"]["verdict"] in ("reproduced", "partly", "not reproduced")
    assert (tmp_path / "figures" / "a3t_invariance_digits.png").stat().st_size > 1000


def test_paired_cells_of_the_variants():
    pgd = rec._paired_settings(rec.Config(datasets=("digits",), a3t_attack="pgd", betas=(0.1,),
                                          layers=(2,), encoder_loss="reversal"))
    assert pgd == [("digits", "paired", "pgd", "layer2", "beta0"),
                   ("digits", "paired", "pgd", "layer2", "beta0.1-reversal"),
                   ("digits", "paired", "pgd-at")]
    with pytest.raises(ValueError, match=r"betas == \(0.0,\), must be one or more values > 0"):
        rec.Config(betas=(0.0,))
    with pytest.raises(ValueError, match=r"layers == \(3,\), must be one or more of 0..2"):
        rec.Config(layers=(3,))
    with pytest.raises(ValueError, match=r"layers == \(1, 2\), must be \(0,\) with --datasets mnist"):
        rec.Config(datasets=("mnist",), data_root=Path("."))
