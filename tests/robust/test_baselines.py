"""Baselines: cross-entropy (+ early stopping), co-teaching, DivideMix, confident learning (cleanlab)."""

import json

import pytest
import torch

from deepscope.data.noise import make_label_noise
from deepscope.robust.baselines import (
    coteaching_keep_rate,
    train_ce,
    train_ce_early_stopping,
    train_confident_learning,
    train_coteaching,
    train_dividemix,
)
from deepscope.train import Run
from tests.killing import KillAt, Killed


def _problem(n=240, k=3, seed=0, noise="sym40", spread=2.0):
    g = torch.Generator().manual_seed(seed)
    mu = spread * torch.randn(k, 40, generator=g)
    y = torch.arange(n) % k
    x = mu[y] + torch.randn(n, 40, generator=g)
    yt = torch.arange(90) % k
    xt = mu[yt] + torch.randn(90, 40, generator=g)
    noisy = make_label_noise(y, noise, num_classes=k, generator=g)
    return x, noisy.labels, y, xt, yt


NET = dict(net="mlp", net_kwargs={"hidden": (32,)})


def _opts(**kw):
    return {"options": {"lr": 0.05, **kw}}


def _g(seed=1):
    return torch.Generator().manual_seed(seed)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def _metrics(path):
    return [{k: v for k, v in json.loads(s).items() if k != "time"}
            for s in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["ce", "coteaching", "dividemix", "dividemix-loss-window"])
def test_kill_and_resume_gives_identical_numbers(tmp_path, method):
    # overlapping classes for the loss window: clean probabilities short of 0 and 1
    x, y, y_true, xt, yt = _problem(n=120, spread=0.5 if "window" in method else 2.0)
    train, kw = {
        "ce": (train_ce, dict(x_val=xt[:30], y_val=yt[:30])),
        "coteaching": (train_coteaching, dict(forget_rate=0.4, num_gradual=2, y_true=y_true)),
        "dividemix": (train_dividemix, dict(warmup_epochs=1, y_true=y_true)),
        # killed after the 2nd co-divide: the resumed 3rd averages the checkpointed losses
        "dividemix-loss-window": (train_dividemix, dict(warmup_epochs=1, y_true=y_true,
                                                        loss_window=3)),
    }[method]
    kw = {**NET, **kw, **_opts(epochs=5 if "window" in method else 4, batch_size=20),
          "x_test": xt, "y_test": yt}
    full = train(x, y, num_classes=3, generator=_g(), run=Run(tmp_path / "a", progress=False), **kw)
    with pytest.raises(Killed):
        train(x, y, num_classes=3, generator=_g(), run=KillAt(tmp_path / "b", progress=False, kill_at=3), **kw)
    torch.manual_seed(99)
    resumed = train(x, y, num_classes=3, generator=_g(), run=Run(tmp_path / "b", progress=False), **kw)
    for name in full.models:
        torch.testing.assert_close(_weights(full.models[name]), _weights(resumed.models[name]),
                                   rtol=0, atol=0)
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b") and full.history == resumed.history
    if method == "ce":
        torch.testing.assert_close(_weights(full.info["best_val_state"]),
                                   _weights(resumed.info["best_val_state"]), rtol=0, atol=0)


def test_early_stopping_selects_the_best_noisy_validation_epoch():
    x, y, _, xt, yt = _problem(n=200)
    res = train_ce_early_stopping(x, y, num_classes=3, generator=_g(), x_test=xt, y_test=yt,
                                  val_fraction=0.2, **NET, **_opts(epochs=5, batch_size=20))
    val = res.info["val_index"]
    assert len(val) == 40 and len(set(val.tolist())) == 40
    accs = [r["val_acc"] for r in res.history]
    best = res.info["best_val_epoch"]
    assert accs[best - 1] == max(accs) and accs.index(max(accs)) == best - 1
    assert res.info["test_acc_at_best_val"] == res.history[best - 1]["test_acc"]
    # the kept network is the one of the selected epoch: it reproduces that epoch's val accuracy
    xv, yv = x[val], y[val]
    acc = float((res.info["best_val_state"](xv).argmax(1) == yv).double().mean())
    assert round(acc, 5) == res.info["best_val_acc"]
    with pytest.raises(ValueError, match=r"val_fraction == 0.7, must be a number > 0.0 and <= 0.5"):
        train_ce_early_stopping(x, y, num_classes=3, generator=_g(), val_fraction=0.7)


def test_coteaching_schedule_and_small_loss_selection_prefers_clean_labels():
    assert [coteaching_keep_rate(t, 0.4, 10) for t in (0, 5, 10, 50)] == [1.0, 0.8, 0.6, 0.6]
    assert coteaching_keep_rate(3, 0.5, 0) == 0.5
    x, y, y_true, xt, yt = _problem(n=300)
    res = train_coteaching(x, y, num_classes=3, generator=_g(), forget_rate=0.4, num_gradual=2,
                           y_true=y_true, x_test=xt, y_test=yt, **NET,
                           **_opts(epochs=4, batch_size=20))
    clean_rate = float((y == y_true).double().mean())  # ~0.73
    # once it drops 40%, the kept small-loss examples are mostly the clean ones
    assert res.history[-1]["keep_rate"] == 0.6
    assert res.history[-1]["kept_precision"] > clean_rate + 0.15


def test_dividemix_co_divide_finds_the_clean_examples():
    x, y, y_true, xt, yt = _problem(n=300)
    res = train_dividemix(x, y, num_classes=3, generator=_g(), warmup_epochs=2, y_true=y_true,
                          x_test=xt, y_test=yt, **NET, **_opts(epochs=4, batch_size=20))
    clean_rate = float((y == y_true).double().mean())
    last = res.history[-1]
    assert last["phase"] == "dividemix" and res.history[0]["phase"] == "warmup"
    for name in ("net_a", "net_b"):
        assert last[f"labelled_precision_{name}"] > clean_rate + 0.15
        assert 0.3 < last[f"labelled_fraction_{name}"] < 0.95
        assert last[f"clean_auc_{name}"] > 0.8  # the clean probabilities rank clean examples first


def test_dividemix_loss_window_fits_the_gmm_to_the_mean_of_the_last_normalised_losses(monkeypatch):
    # the released Train_cifar.py at 90% noise: the GMM sees the mean of the last 5 epochs'
    # min-max-normalised losses of the dividing network, not the current epoch's alone
    from deepscope.robust import baselines

    seen: dict[str, list] = {"loss": [], "gmm": []}
    normalised, gmm = baselines._normalised_loss, baselines._gmm_clean_probability
    monkeypatch.setattr(baselines, "_normalised_loss",
                        lambda *a, **k: seen["loss"].append(normalised(*a, **k)) or seen["loss"][-1])
    monkeypatch.setattr(baselines, "_gmm_clean_probability",
                        lambda loss, **k: seen["gmm"].append(loss) or gmm(loss, **k))
    x, y, _, _, _ = _problem(n=120)
    train_dividemix(x, y, num_classes=3, generator=_g(), warmup_epochs=1, loss_window=2, **NET,
                    **_opts(epochs=4, batch_size=20))
    losses, inputs = seen["loss"], seen["gmm"]
    assert len(losses) == len(inputs) == 6  # 3 co-divides x 2 networks, in the order a, b
    for i, loss in enumerate(losses):
        assert 0.0 <= float(loss.min()) and float(loss.max()) == pytest.approx(1.0)
        expected = loss if i < 2 else (losses[i - 2] + loss) / 2  # the same network's last two
        torch.testing.assert_close(inputs[i], expected, rtol=0, atol=0)
    assert not torch.equal(inputs[2], losses[2])  # the window changes what the GMM sees
    with pytest.raises(ValueError, match=r"loss_window == 0, must be an integer >= 1"):
        train_dividemix(x, y, num_classes=3, generator=_g(), loss_window=0)


def test_dividemix_without_mixup_trains_on_unmixed_views(monkeypatch):
    from deepscope.robust import baselines

    calls = []
    mix = baselines.mix
    monkeypatch.setattr(baselines, "mix", lambda *a: calls.append(1) or mix(*a))
    x, y, y_true, _, _ = _problem(n=300)
    kw = dict(num_classes=3, warmup_epochs=2, y_true=y_true, **NET, **_opts(epochs=4, batch_size=20))
    train_dividemix(x, y, generator=_g(), **kw)
    assert calls  # MixUp, by default
    calls.clear()
    res = train_dividemix(x, y, generator=_g(), mixup=False, **kw)
    assert not calls
    clean_rate = float((y == y_true).double().mean())
    assert res.history[-1]["labelled_precision_net_a"] > clean_rate + 0.15


def test_confident_learning_through_cleanlab_finds_obvious_flips(tmp_path):
    # well separated classes, 15% of labels moved to another class: obvious to cleanlab
    x, y, y_true, xt, yt = _problem(n=300, noise="symother15", spread=3.0)
    kw = dict(num_classes=3, folds=3, cv_epochs=3, y_true=y_true, x_test=xt, y_test=yt, **NET,
              **_opts(epochs=3, batch_size=20))
    res = train_confident_learning(x, y, generator=_g(), run=Run(tmp_path, progress=False), **kw)
    wrong = y != y_true
    assert int(wrong.sum()) == 45
    assert res.info["removed_recall"] >= 0.9 and res.info["removed_precision"] >= 0.9
    assert res.info["n_removed"] == int(res.info["removed"].sum())
    assert res.last_test_acc > 0.9
    # cleanlab itself, on the same out-of-fold probabilities, flags exactly these examples
    from cleanlab.filter import find_label_issues

    again = find_label_issues(y.numpy(), res.info["pred_probs"].double().numpy(), n_jobs=1)
    assert torch.equal(torch.from_numpy(again), res.info["removed"])
    # stages are sub-runs: a second call resumes from them and gives the same numbers
    for d in ("fold0", "fold1", "fold2", "retrain"):
        assert (tmp_path / d / "result.json").exists()
    res2 = train_confident_learning(x, y, generator=_g(), run=Run(tmp_path, progress=False), **kw)
    assert torch.equal(res2.info["removed"], res.info["removed"]) and res2.history == res.history


def test_bad_arguments_name_the_fix():
    x, y, _, _, _ = _problem(n=60)
    with pytest.raises(ValueError, match=r"forget_rate == 1.5, must be a number >= 0.0 and <= 0.99"):
        train_coteaching(x, y, num_classes=3, generator=_g(), forget_rate=1.5)
    with pytest.raises(ValueError, match=r"folds == 1, must be an integer >= 2"):
        train_confident_learning(x, y, num_classes=3, generator=_g(), folds=1)
    with pytest.raises(ValueError, match=r"epochs == 0, must be an integer >= 1"):
        train_ce(x, y, num_classes=3, generator=_g(), options={"epochs": 0})
    with pytest.raises(ValueError, match=r"options has 'epoch', must be among"):
        train_ce(x, y, num_classes=3, options={"epoch": 3})
    with pytest.raises(ValueError, match=r"net_kwargs is given with a module or factory"):
        train_ce(x, y, num_classes=3, net=torch.nn.Linear(40, 3), net_kwargs={"hidden": (8,)})
    with pytest.raises(ValueError, match=r"p_threshold == 2, must be a number >= 0.0 and <= 1.0"):
        train_dividemix(x, y, num_classes=3, generator=_g(), p_threshold=2)
