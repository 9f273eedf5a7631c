"""Neural feature alignment: the loop (resume, labels, augmentation) and the recipe at its quick budget."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

from deepscope.dynamics.feature_alignment import train_feature_alignment
from deepscope.runner import execute_recipe
from deepscope.train import Run
from tests.killing import Killed


def _digits(n_train=160, n_test=60):
    from deepscope.data import load_dataset

    ds = load_dataset("digits", seed=0)
    return ds.x_train[:n_train], ds.y_train[:n_train], ds.x_test[:n_test], ds.y_test[:n_test]


# -- pieces ---------------------------------------------------------------------------------------

def test_random_labels_are_redrawn_over_all_classes_with_shared_probes_and_init():
    # the loop's labels: symmetric_noise(include_true=True), a fraction of each class re-drawn
    x, y, xt, yt = _digits()
    kw = dict(net="mlp", net_kwargs={"hidden": (8,)}, options={"epochs": 1, "batch_size": 32},
              n_probe=6, per_layer=False)
    r2 = train_feature_alignment(x, y, xt, yt, generator=torch.Generator().manual_seed(0),
                                 random_labels=0.2, **kw)
    r5 = train_feature_alignment(x, y, xt, yt, generator=torch.Generator().manual_seed(0),
                                 random_labels=0.5, **kw)
    ch2, ch5 = r2.info["changed"], r5.info["changed"]
    assert torch.equal(ch2, r2.info["labels"] != y) and r2.info["labels"].dtype == torch.int64
    assert 0 < int(ch2.sum()) <= 32 and int(ch5.sum()) > int(ch2.sum())  # 160 labels, ~1/10 kept
    # the same generator: the same probes and initialisation, whatever the fraction
    h2, h5 = r2.history[0], r5.history[0]
    assert h2["align_test"] == h5["align_test"] and h2["top_eigenvalue"] == h5["top_eigenvalue"]


def test_crop_flip_augmentation_is_robust_augment_image_transform():
    from deepscope.data.augment import ImageTransform

    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float64).reshape(2, 3, 5, 6) + 1
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    out = ImageTransform(crop_padding=2, flip=True)(x, generator=g)
    g.set_state(state)
    dy, dx = torch.randint(0, 5, (2,), generator=g), torch.randint(0, 5, (2,), generator=g)
    flip = torch.rand(2, generator=g) < 0.5
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        win = xp[i, :, dy[i]:dy[i] + 5, dx[i]:dx[i] + 6]
        assert torch.equal(out[i], win.flip(-1) if flip[i] else win)


def test_loop_rejects_bad_arguments():
    x, y, xt, yt = _digits()
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"random_labels == 1.2, must be a number >= 0.0 and <= 1.0"):
        train_feature_alignment(x, y, xt, yt, generator=g, random_labels=1.2)
    with pytest.raises(ValueError, match=r"batch_size == 500, must be <= the 160 training"):
        train_feature_alignment(x, y, xt, yt, generator=g, options={"batch_size": 500})
    with pytest.raises(ValueError, match=r"options has 'batchsize', must be among"):
        train_feature_alignment(x, y, xt, yt, generator=g, options={"batchsize": 5})
    with pytest.raises(ValueError, match=r"x_train examples have shape \(64,\) and x_test \(8, 8\)"):
        train_feature_alignment(x, y, xt.reshape(-1, 8, 8), yt, generator=g)


def test_loop_trains_until_it_fits_then_a_set_number_of_epochs():
    x, y, xt, yt = _digits()  # 160 examples, batch 32: 5 steps per epoch
    kw = dict(net="mlp", net_kwargs={"hidden": (64,)}, options={"epochs": 60, "batch_size": 32,
                                                                "lr": 0.1}, n_probe=8,
              per_layer=False)
    res = train_feature_alignment(x, y, xt, yt, generator=torch.Generator().manual_seed(2),
                                  fit_threshold=0.99, epochs_after_fit=3, **kw)
    fit = res.info["fit_epoch"]
    assert fit is not None and 1 <= fit < 57
    # the run stopped 3 epochs after fitting, with a record at its last step
    assert res.history[-1]["epoch"] == fit + 3 and res.history[-1]["step"] == 5 * (fit + 3)
    # a record at the fitting point: the first with training accuracy >= 0.99, in the fitting epoch
    first = next(h for h in res.history if h["train_acc"] >= 0.99)
    assert first["epoch"] == fit and all(h["train_acc"] < 0.99 for h in res.history if h["epoch"] < fit)
    # the same run without the threshold trains to the cap and matches it step for step until the stop
    capped = train_feature_alignment(x, y, xt, yt, generator=torch.Generator().manual_seed(2), **kw)
    assert capped.info["fit_epoch"] is None and capped.history[-1]["epoch"] == 60
    on_schedule = {h["step"]: h for h in capped.history}
    for h in res.history:
        if h["step"] in on_schedule:
            assert h["align_train"] == on_schedule[h["step"]]["align_train"]
    assert res.info["tracker_seconds"] > 0 and res.info["train_seconds"] > 0


def test_kaiming_init_and_augmented_probes():
    from deepscope.data.augment import ImageTransform
    from deepscope.dynamics.feature_alignment import kaiming_init
    from deepscope.nets import MLP

    net = kaiming_init(MLP(400, [300], 10), torch.Generator().manual_seed(0))
    for m in net.modules():
        if isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0)
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / m.in_features), rel=0.05)
    x, y, xt, yt = _digits(64, 24)
    x, xt = x.reshape(-1, 1, 8, 8), xt.reshape(-1, 1, 8, 8)
    kw = dict(net="small-cnn", net_kwargs={"channels": (4, 8), "hidden": 16},
              options={"epochs": 1, "batch_size": 32}, n_probe=6, per_layer=False,
              augment=ImageTransform(crop_padding=1, flip=True), init="kaiming")
    plain = train_feature_alignment(x, y, xt, yt, generator=torch.Generator().manual_seed(0), **kw)
    aug = train_feature_alignment(x, y, xt, yt, generator=torch.Generator().manual_seed(0),
                                  probe_augmented=True, **kw)
    # the same training (the probes' augmentation draws from its own generator), other probes
    assert aug.history[-1]["train_acc"] == plain.history[-1]["train_acc"]
    assert aug.history[0]["align_train"] != plain.history[0]["align_train"]
    assert aug.history[0]["align_test"] == plain.history[0]["align_test"]
    with pytest.raises(ValueError, match=r"init == 'xavier', must be one of default, kaiming"):
        train_feature_alignment(x, y, xt, yt, generator=torch.Generator(), init="xavier")
    with pytest.raises(ValueError, match=r"probe_augmented == True needs augment"):
        train_feature_alignment(x, y, xt, yt, generator=torch.Generator(), probe_augmented=True)


def _record(step, epoch, acc, test, path, gamma, *, stored_as_path_sum=False):
    """A tracker record; ``stored_as_path_sum``: the form of runs finished before the measure was
    named ``complexity`` (``path_sum`` the measure, ``complexity`` the per-margin variant)."""
    per_margin = path / gamma if gamma > 0 else None
    names = {"path_sum": path, "complexity": per_margin} if stored_as_path_sum else \
        {"complexity": path, "complexity_per_margin": per_margin}
    return {"step": step, "epoch": epoch, "train_acc": acc, "test_acc": test, **names,
            "norm_dw": float(epoch), "margin": gamma,
            "align_train": 0.1 * epoch, "align_test": 0.05 * epoch, "top_eigenvalue": 1.0 + epoch,
            "effective_rank": 10.0 - epoch}


@pytest.mark.parametrize("stored_as_path_sum", [False, True])
def test_matched_training_readout_on_a_hand_made_trajectory(stored_as_path_sum):
    from deepscope.dynamics.alignment_experiment import per_run, readout, spearman_interval

    def rec(*args):
        return _record(*args, stored_as_path_sum=stored_as_path_sum)

    h = [rec(0, 0, 0.1, 0.1, 0.0, -1.0), rec(5, 1, 0.7, 0.6, 2.0, -0.2), rec(9, 2, 0.985, 0.7, 3.0, 0.1),
         rec(12, 3, 0.991, 0.72, 4.0, 0.5), rec(20, 4, 0.98, 0.7, 5.0, 0.4), rec(30, 6, 1.0, 0.75, 6.0, 2.0)]
    assert readout(h, 0.99)["step"] == 12 and readout(h, 1.0)["step"] == 30 and readout(h[:3], 0.99) is None
    r = per_run({"history": h, "final": {"gap": 0.25, "loss_gap": 0.0, "train_acc": 1.0, "test_acc": 0.75},
                 "fit_threshold": 0.99})
    assert r["fitted"] and r["fit_epoch"] == 3
    # the measure C and its margin-normalised variant C / gamma, read where the run fits
    assert r["complexity_fit"] == 4.0 and r["gap_fit"] == pytest.approx(0.991 - 0.72)
    assert r["complexity_per_margin_fit"] == pytest.approx(8.0) and r["margin_fit"] == 0.5
    assert r["align_train_fit"] == pytest.approx(0.3)
    assert r["complexity_end"] == 6.0 and r["complexity"] == 6.0
    assert r["complexity_per_margin_end"] == pytest.approx(3.0) and r["gap_end"] == pytest.approx(0.25)
    assert r["path_length_fit"] == 0 + 1 + 2 + 3 and r["path_length_end"] == 16
    never = per_run({"history": h[:3], "final": {"gap": 0.285, "loss_gap": 0.0, "train_acc": 0.985,
                                                 "test_acc": 0.7}, "fit_threshold": 0.99})
    assert not never["fitted"] and math.isnan(never["complexity_fit"]) and math.isnan(never["gap_fit"])
    assert math.isnan(never["complexity_per_margin_fit"])
    # the Spearman with its bootstrap interval; NaN pairs dropped
    up = spearman_interval([1, 2, 3, 4, 5, float("nan")], [0.1, 0.2, 0.3, 0.5, 0.9, 0.0])
    assert up["rho"] == pytest.approx(1.0) and up["ci95"] == (pytest.approx(1.0), pytest.approx(1.0))
    assert up["n"] == 5
    mixed = spearman_interval([1, 2, 3, 4, 5, 6, 7, 8, 9], [2, 1, 4, 3, 6, 5, 9, 7, 8])
    assert 0.8 < mixed["rho"] < 1 and mixed["ci95"][0] < mixed["rho"] <= mixed["ci95"][1]


def test_output_independent_kernels_align_at_most_one_over_sqrt_o_o_minus_1():
    """Why alignments near 0.1 are not small: K = A (x) I_O reaches only 1/sqrt(O(O-1)).

    By Cauchy-Schwarz the best A is Y Y^T, giving ||Y^T Y||_F / (sqrt(O) ||Y||_F^2), which is
    1/sqrt(O(O-1)) for balanced classes; the last layer's kernel (and the infinite-width NTK)
    has this form, so the full alignment exceeds ~0.105 at 10 classes only through
    cross-output structure.
    """
    from deepscope.dynamics.alignment import kernel_alignment, label_targets

    y = torch.arange(60) % 6
    t = label_targets(y)
    eye = torch.eye(6, dtype=t.dtype)
    best = kernel_alignment(torch.einsum("nm,op->nmop", t @ t.T, eye), y)
    assert float(best) == pytest.approx(1 / math.sqrt(6 * 5), rel=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        f = torch.randn(60, 20, generator=g, dtype=t.dtype)
        assert float(kernel_alignment(torch.einsum("nm,op->nmop", f @ f.T, eye), y)) < float(best)


# -- the loop: kill and resume ---------------------------------------------------------------------

class _KilledRun(Run):
    """A Run that 'dies' right after logging step ``kill_at`` (the loop checkpoints per epoch)."""

    kill_at = 0

    def log(self, step, **metrics):
        super().log(step, **metrics)
        if step == self.kill_at and "align_train" in metrics:
            raise Killed


def _train(x, y, xt, yt, run, **kw):
    return train_feature_alignment(
        x, y, xt, yt, generator=torch.Generator().manual_seed(7), net="mlp",
        net_kwargs={"hidden": (32,)}, run=run, random_labels=0.25,
        options={"epochs": 3, "batch_size": 32}, n_probe=12, **kw)


def test_loop_killed_and_resumed_gives_identical_numbers(tmp_path):
    x, y, xt, yt = _digits()  # 5 steps per epoch; records at 0, 5, 6, 7, 8, 10, 11, 13, 15
    full = _train(x, y, xt, yt, Run(tmp_path / "a", seed=0, progress=False))
    assert [h["step"] for h in full.history] == [0, 5, 6, 7, 8, 10, 11, 13, 15]
    run = _KilledRun(tmp_path / "b", seed=0, progress=False)
    run.kill_at = 13  # in epoch 3; the last checkpoint is the end of epoch 2 (step 10)
    with pytest.raises(Killed):
        _train(x, y, xt, yt, run)
    res = _train(x, y, xt, yt, Run(tmp_path / "b", seed=0, progress=False))
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(res.model.state_dict()[k], v, rtol=0, atol=0)
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}  # noqa: E731
    a = [strip(json.loads(s)) for s in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [strip(json.loads(s)) for s in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert a == b and res.history == full.history and res.info["final"] == full.info["final"]
    assert torch.equal(res.info["labels"], full.info["labels"])
    # the per-epoch lines and the records: complexity accumulates, step norms are >= 0
    assert [(r["step"], r["epoch"]) for r in a if "loss" in r] == [(5, 1), (10, 2), (15, 3)]
    recs = [r for r in a if "align_train" in r]
    assert recs[0]["complexity"] == 0 and recs[-1]["complexity"] > recs[1]["complexity"] > 0
    # the variant is complexity / margin where the margin is positive, else undefined
    for r in recs:
        assert (r["complexity_per_margin"] is None) == (r["margin"] <= 0)
        if r["margin"] > 0:
            assert r["complexity_per_margin"] == pytest.approx(r["complexity"] / r["margin"], rel=1e-12)
    assert set(recs[0]["layer_align_train"]) == {"1", "3"}
    # the final record's gap is its accuracies' difference
    assert full.info["final"]["gap"] == full.history[-1]["train_acc"] - full.history[-1]["test_acc"]


def test_loop_runs_without_a_run_and_leaves_the_global_rng_alone():
    x, y, xt, yt = _digits(64, 24)
    state = torch.get_rng_state()
    res = train_feature_alignment(x, y, xt, yt, generator=torch.Generator().manual_seed(1),
                                  net="mlp", net_kwargs={"hidden": (8,)},
                                  options={"epochs": 1, "batch_size": 16}, n_probe=6, per_layer=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert [h["step"] for h in res.history] == [0, 4] and "layer_align_train" not in res.history[0]


class _TinyNet(nn.Module):
    """A user's own network: not from deepscope.nets."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 16)
        self.b = nn.Linear(16, 10)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("kind", ["module", "factory"])
def test_loop_trains_a_users_module_or_factory(kind):
    x, y, xt, yt = _digits(64, 24)
    net = _TinyNet() if kind == "module" else _TinyNet
    res = train_feature_alignment(x, y, xt, yt, net=net, generator=torch.Generator().manual_seed(1),
                                  options={"epochs": 2, "batch_size": 16, "lr": 0.1}, n_probe=6)
    assert isinstance(res.model, _TinyNet) and (kind == "factory" or res.model is net)
    assert set(res.history[0]["layer_align_train"]) == {"a", "b"}
    assert res.history[-1]["step"] == 8 and res.last_test_acc == res.info["final"]["test_acc"]


# -- the recipe ----------------------------------------------------------------------------------

def _cfg(rec, out, **kw):
    return rec.Config(quick=True, progress=False, threads=1, device="cpu", out=out, **kw)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from deepscope.recipes import feature_alignment as rec

    out = tmp_path_factory.mktemp("fa") / "quick"
    return out, execute_recipe("feature-alignment", _cfg(rec, out), quiet=True)


def test_quick_run_writes_the_grid_figures_and_numbers(quick):
    out, result = quick
    stored = json.loads((out / "result.json").read_text())
    assert stored["system"] == "Neural feature alignment"
    assert stored["verdict"]["verdict"] in ("reproduced", "partly", "not reproduced")
    r = stored["results"]["digits-small-cnn"]
    assert set(r["by_fraction"]) == {"0", "0.5"}
    for key in ("initial", "final", "final_over_initial"):
        assert r["align_train"][key]["n"] == 1 and len(r["align_train"][key]["ci95"]) == 2
    for name in ("alignment", "layers", "spectrum", "complexity_gap"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    for frac in ("random00", "random50"):
        sub = out / "digits-small-cnn" / frac / "seed0"
        assert (sub / "model.pt").exists() and (sub / "result.json").exists()
    import deepscope

    net = deepscope.load(out / "digits-small-cnn" / "random00" / "seed0")
    assert net(torch.zeros(2, 64)).shape == (2, 10)
    sub = json.loads((out / "digits-small-cnn" / "random50" / "seed0" / "result.json").read_text())
    assert 0.4 < sub["changed_fraction"] < 0.5


def test_quick_run_measures_the_papers_trends(quick):
    """At 4 epochs on clean labels: the kernel aligns with the labels and its top eigenvalue grows."""
    _, result = quick
    r = result["results"]["digits-small-cnn"]
    assert r["align_train"]["final"]["mean"] > 1.2 * r["align_train"]["initial"]["mean"]
    assert r["align_test"]["final"]["mean"] > r["align_test"]["initial"]["mean"]
    assert r["top_eigenvalue_growth"]["mean"] > 5
    assert r["effective_rank"]["change"]["mean"] < 0


def test_recipe_resumes_a_killed_sub_run_to_the_same_numbers(quick, tmp_path, monkeypatch):
    from deepscope.recipes import feature_alignment as rec

    quick_dir, _ = quick
    # the quick grid's clean-label sub-run alone (same sub-run config, half the cost)
    cfg = rec.Config(**{**rec.Config.QUICK, "fractions": (0.0,)}, progress=False, threads=1,
                     device="cpu", out=tmp_path / "b")
    original = Run.log

    def dying(self, step, **metrics):  # dies at step 30; the last checkpoint is step 22
        original(self, step, **metrics)
        if step == 30 and "align_train" in metrics:
            raise Killed

    monkeypatch.setattr(Run, "log", dying)
    with pytest.raises(Killed):
        execute_recipe("feature-alignment", cfg, quiet=True)
    monkeypatch.setattr(Run, "log", original)
    sub = tmp_path / "b" / "digits-small-cnn" / "random00" / "seed0"
    assert not (sub / "result.json").exists()
    assert torch.load(sub / "checkpoint.pt", weights_only=True)["step"] == 22
    execute_recipe("feature-alignment", cfg, quiet=True)
    want = json.loads((quick_dir / sub.relative_to(tmp_path / "b") / "result.json").read_text())
    got = json.loads((sub / "result.json").read_text())
    assert got["history"] == want["history"] and got["final"] == want["final"]
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}  # noqa: E731
    lines = lambda d: [strip(json.loads(x)) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert lines(sub) == lines(quick_dir / "digits-small-cnn" / "random00" / "seed0")


def test_skip_missing_aggregates_a_partial_grid_without_training(quick):
    from deepscope.recipes import feature_alignment as rec

    out, full = quick
    cfg = rec.Config(**{**rec.Config.QUICK, "fractions": (0.0, 0.2, 0.5), "seeds": 2},
                     skip_missing=True, progress=False, threads=1, device="cpu", out=out)
    res = execute_recipe("feature-alignment", cfg, quiet=True)
    assert not (out / "digits-small-cnn" / "random20").exists()  # nothing trained or created
    r, q = res["results"]["digits-small-cnn"], full["results"]["digits-small-cnn"]
    assert set(r["by_fraction"]) == {"0", "0.5"} and r["align_train"] == q["align_train"]


def test_cli_rejects_bad_options_in_one_line_before_writing(tmp_path, monkeypatch, capsys):
    from deepscope.cli import main
    from deepscope.recipes import feature_alignment as rec

    monkeypatch.chdir(tmp_path)
    assert main(["run", "feature-alignment", "--epochs", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "deepscope run feature-alignment: epochs == -1, must be >= 0 (0: the setting's default)"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"data_root == None, must be a folder holding cifar-10-batches-py/"):
        rec.Config(settings=("cifar10-vgg19",))
    with pytest.raises(ValueError, match=r"fractions == \(0.0, 1.0\), must be fractions in \[0, 1\)"):
        rec.Config(fractions=(0.0, 1.0))
    (tmp_path / "cifar-10-batches-py").mkdir()
    cfg = rec.Config(settings=("cifar10-resnet18",), data_root=tmp_path)
    opts = rec.resolved(cfg, "cifar10-resnet18")
    assert opts["net_kwargs"] == {"norm": "none"} and opts["augment"] and opts["lr"] == 0.01
    # the checkpoint schedule's growth: recorded (and compared on resume) only when changed
    assert "kernel_ratio" not in opts
    assert rec.resolved(rec.Config(kernel_ratio=1.5), "digits-small-cnn")["kernel_ratio"] == 1.5
    with pytest.raises(ValueError, match=r"kernel_ratio == 1.0, must be > 1 \(the paper's 1.15\)"):
        rec.Config(kernel_ratio=1.0)


# -- the verdict --------------------------------------------------------------------------------

def _setting(rise=5.0, eig=1e3, d_rank=-50.0, a_clean=0.2, a_random=0.1, rho=0.9, lo=0.5, fitted=9):
    iv = lambda m: {"mean": m, "std": 0.0, "ci95": [m, m], "n": 3}  # noqa: E731
    return {"align_train": {"final_over_initial": iv(rise)}, "top_eigenvalue_growth": iv(eig),
            "effective_rank": {"change": iv(d_rank)},
            "by_fraction": {"0": {"align_test_final": iv(a_clean)},
                            "0.2": {"align_test_final": iv((a_clean + a_random) / 2)},
                            "0.5": {"align_test_final": iv(a_random)}},
            "runs": 9, "runs_fitted": fitted,
            "complexity_gap": {"at_fit": {"rho": rho, "ci95": (lo, 1.0), "n": fitted}}}


def test_verdict_judges_every_setting_and_says_which_claims_hold():
    from deepscope.recipes.feature_alignment import CPU_SETTINGS, verdict

    every = {"results": {s: _setting() for s in CPU_SETTINGS}}
    assert verdict(every)["verdict"] == "reproduced"
    # one favourable setting alone is not the paper's claim reproduced: the others are named
    alone = verdict({"results": {"digits-small-cnn": _setting()}})
    assert alone["verdict"] == "partly" and "settings not run here: mnist1d-cnn1d, mnist1d-mlp" in alone["measured"]
    one_fails = verdict({"results": {**every["results"], "mnist1d-mlp": _setting(rho=0.1)}})
    assert one_fails["verdict"] == "partly"
    assert "mnist1d-mlp: " in one_fails["measured"] and "fails: complexity ranks runs like their gap" in one_fails["measured"]
    # a rho above the threshold whose interval reaches 0 does not hold
    wide = verdict({"results": {**every["results"], "mnist1d-mlp": _setting(rho=0.6, lo=-0.2)}})
    assert wide["verdict"] == "partly"
    # runs that did not fit: the complexity claim is not judged
    unfit = verdict({"results": {**every["results"], "mnist1d-mlp": _setting(fitted=7)}})
    assert "not judged: complexity ranks runs like their gap" in unfit["measured"]
    flat = {"results": {"digits-small-cnn": _setting(rise=1.1, eig=3.0, d_rank=5.0, a_random=0.3, rho=-0.5)}}
    assert verdict(flat)["verdict"] == "not reproduced"
    assert verdict({"results": {}})["verdict"] == "not run"
    assert "x5.0 alignment" in verdict(every)["measured"]



@pytest.mark.parametrize("stored_as_path_sum", [False, True])
def test_verdict_judges_the_complexity_not_its_margin_normalised_variant(stored_as_path_sum):
    """Hand-made runs where C ranks like the gap and C / gamma against it, and the reverse."""
    from deepscope.dynamics.alignment_experiment import cell_name, summarise_setting
    from deepscope.recipes.feature_alignment import setting_checks, verdict
    from deepscope.train.grid import Grid

    fractions, seeds = (0.0, 0.2, 0.5), [0, 1, 2]

    def grid(c_follows_gap: bool) -> Grid:
        cells = {}
        for i, f in enumerate(fractions):
            for sd in seeds:
                gap = 0.1 + 0.2 * i + 0.01 * sd
                gamma = (0.5, 2.0, 6.0)[i] if c_follows_gap else (6.0, 2.0, 0.5)[i]
                c = (1.0 + i + 0.1 * sd) if c_follows_gap else (3.0 - i - 0.1 * sd)
                h = [_record(0, 0, 0.1, 0.1, 0.0, -1.0, stored_as_path_sum=stored_as_path_sum),
                     _record(10, 5, 1.0, 1.0 - gap, c, gamma, stored_as_path_sum=stored_as_path_sum)]
                cells[(cell_name("digits-small-cnn", f), sd)] = {
                    "history": h, "fit_threshold": 0.99,
                    "final": {"gap": gap, "loss_gap": 0.0, "train_acc": 1.0, "test_acc": 1.0 - gap}}
        return Grid([cell_name("digits-small-cnn", f) for f in fractions], seeds, cells)

    for c_follows_gap in (True, False):
        r = summarise_setting(grid(c_follows_gap), "digits-small-cnn", fractions=fractions, seeds=seeds)
        cg = r["complexity_gap"]
        sign = 1 if c_follows_gap else -1
        assert sign * cg["at_fit"]["rho"] == pytest.approx(1.0)
        assert sign * cg["per_margin_at_fit"]["rho"] < 0  # the two forms disagree
        assert setting_checks(r)["complexity"] is c_follows_gap
        text = verdict({"results": {"digits-small-cnn": r}})["measured"]
        claim = "complexity ranks runs like their gap"
        assert (claim in text.split("fails:")[0]) is c_follows_gap
        assert f"rho(C, gap) at fit {sign:+.2f} [" in text and "rho(C/gamma, gap) " in text


# -- torchrun --------------------------------------------------------------------------------------

@pytest.mark.distributed
def test_recipe_under_torchrun_gives_the_single_process_numbers(tmp_path):
    args = ["run", "feature-alignment", "--settings", "digits-small-cnn", "--fractions", "0.5",
            "--seeds", "1", "--epochs", "2", "--n-probe", "20", "--batch-size", "64",
            "--threads", "1", "--no-progress", "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    one = subprocess.run([sys.executable, "-m", "deepscope.cli", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(port),
                          "-m", "deepscope.cli", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    ha = json.loads((tmp_path / "one" / "digits-small-cnn" / "random50" / "seed0" / "result.json").read_text())
    hb = json.loads((tmp_path / "two" / "digits-small-cnn" / "random50" / "seed0" / "result.json").read_text())
    assert [h["step"] for h in ha["history"]] == [h["step"] for h in hb["history"]]
    for a, b in zip(ha["history"], hb["history"]):
        for key in ("align_train", "align_test", "top_eigenvalue", "train_acc", "complexity"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key

