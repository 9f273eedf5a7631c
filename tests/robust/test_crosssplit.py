"""CrossSplit: label-correction arithmetic, the split, each ablation switch, kill-and-resume."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from deepscope.data.augment import (
    ImageTransform,
    SignalTransform,
    Views,
    cifar_views,
    signal_views,
)
from deepscope.data.noise import make_label_noise
from deepscope.robust.crosssplit import (
    class_minmax,
    clc_soft_labels,
    correction_beta,
    equal_step_schedule,
    gamma_at,
    normalised_jsd,
    train_crosssplit,
)
from deepscope.robust.noisy_training import jsd, nt_xent, prior_penalty, sharpen, split_halves
from deepscope.train import Run
from tests.killing import KillAt, Killed

LOG2 = math.log(2)


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _jsd(p, q):
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return _kl(p, m) / 2 + _kl(q, m) / 2


# -- pure functions ---------------------------------------------------------------------------------

def test_jsd_closed_forms():
    p = torch.tensor([[1.0, 0, 0], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1, 0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=torch.float64)
    d = jsd(p, q)
    torch.testing.assert_close(d, torch.tensor([LOG2, 0.0, _jsd([0.5, 0.5, 0], [1, 0, 0])],
                                               dtype=torch.float64))
    torch.testing.assert_close(jsd(q, p), d)  # symmetric


def test_label_correction_on_hand_made_predictions():
    # Class 0: three examples whose peer says "class 0", "class 1", and "half 0, half 1";
    # class 1: one example (min == max, so w = 0 and beta = 1/2 - gamma/2).
    labels = torch.tensor([0, 0, 0, 1])
    peer = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0], [0.2, 0.2, 0.6]],
                        dtype=torch.float64)
    j3 = _jsd([1, 0, 0], [0.5, 0.5, 0])
    w = normalised_jsd(labels, peer, num_classes=3)
    torch.testing.assert_close(w, torch.tensor([0.0, 1.0, j3 / LOG2, 0.0], dtype=torch.float64))
    lo, hi = class_minmax(jsd(F.one_hot(labels, 3).double(), peer), labels, 3)
    torch.testing.assert_close(lo[:2], torch.tensor([0.0, _jsd([0, 1, 0], [0.2, 0.2, 0.6])],
                                                    dtype=torch.float64))
    assert hi[0] == pytest.approx(LOG2) and (lo[2], hi[2]) == (0.0, 1.0)  # empty class
    gamma = 0.6
    beta = 0.5 + gamma * (w - 0.5)
    torch.testing.assert_close(correction_beta(w, gamma), beta)
    assert beta[1] == pytest.approx(0.8) and beta[0] == pytest.approx(0.2)  # [0.2, 0.8] at γ=0.6
    # T = 1: the plain convex combination of eq. (1)
    soft, b = clc_soft_labels(labels, peer, num_classes=3, gamma=gamma, temperature=1.0)
    onehot = F.one_hot(labels, 3).double()
    torch.testing.assert_close(soft, beta[:, None] * peer + (1 - beta[:, None]) * onehot)
    torch.testing.assert_close(b, beta)
    # example 1: the peer says class 1 with beta 0.8 -> soft label (0.2, 0.8, 0): corrected
    torch.testing.assert_close(soft[1], torch.tensor([0.2, 0.8, 0.0], dtype=torch.float64))
    # T = 0.5 squares and renormalises: (0.04, 0.64, 0) / 0.68
    sharp, _ = clc_soft_labels(labels, peer, num_classes=3, gamma=gamma, temperature=0.5)
    torch.testing.assert_close(sharp[1], torch.tensor([0.04, 0.64, 0.0], dtype=torch.float64) / 0.68)
    # γ = 1: beta = w exactly; the confident agreeing example keeps its one-hot label
    soft1, b1 = clc_soft_labels(labels, peer, num_classes=3, gamma=1.0)
    torch.testing.assert_close(b1, w)
    torch.testing.assert_close(soft1[0], torch.tensor([1.0, 0, 0], dtype=torch.float64))
    # given min/max override the per-batch ones
    w2 = normalised_jsd(labels, peer, num_classes=3, lo=torch.zeros(3), hi=torch.full((3,), 2 * LOG2))
    torch.testing.assert_close(w2[1], torch.tensor(0.5, dtype=torch.float64))


def test_gamma_schedule_matches_the_paper():
    assert [gamma_at(e) for e in (0, 19, 20, 29, 30, 250)] == [0.6, 0.6, 0.8, 0.8, 1.0, 1.0]
    assert gamma_at(5, ((0, 0.2), (3, 0.9))) == 0.9


def test_sharpen_prior_and_contrastive_closed_forms():
    p = torch.tensor([[0.25, 0.75]])
    torch.testing.assert_close(sharpen(p, 0.5), torch.tensor([[0.1, 0.9]]))
    assert float(prior_penalty(torch.zeros(4, 5))) == pytest.approx(0.0, abs=1e-7)
    logits = torch.tensor([[10.0, -10.0], [10.0, -10.0]])  # mean prediction ~ (1, 0)
    assert float(prior_penalty(logits)) == pytest.approx(math.log(0.5) + 10.0, abs=1e-4)
    z = torch.eye(3)  # identical views, orthogonal items: loss = log(1 + 4 e^{-1/T}) at T = 1
    expected = math.log(math.e / (math.e + 4))
    assert float(nt_xent(z, z, 1.0)) == pytest.approx(-expected, rel=1e-6)


def test_split_is_disjoint_covering_and_deterministic():
    a, b = split_halves(11, torch.Generator().manual_seed(3))
    assert len(a) == 6 and len(b) == 5 and not set(a.tolist()) & set(b.tolist())
    assert sorted(a.tolist() + b.tolist()) == list(range(11))
    a2, b2 = split_halves(11, torch.Generator().manual_seed(3))
    assert torch.equal(a, a2) and torch.equal(b, b2)
    a3, _ = split_halves(11, torch.Generator().manual_seed(4))
    assert not torch.equal(a, a3)
    with pytest.raises(ValueError, match=r"n == 1, must be an integer >= 2"):
        split_halves(1, torch.Generator())


# -- augmentations ----------------------------------------------------------------------------------

def test_signal_transform_shifts_scales_and_is_seeded():
    x = torch.arange(1.0, 9.0).repeat(3, 1)  # (3, 8)
    out = SignalTransform(shift=2)(x, generator=torch.Generator().manual_seed(0))
    for row in out:  # each row is x shifted by s in [-2, 2] with zeros coming in
        s = next(s for s in range(-2, 3) if torch.equal(row, _shift(x[0], s)))
        assert -2 <= s <= 2
    again = SignalTransform(shift=2)(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    sc = SignalTransform(scale=0.5)(x, generator=torch.Generator().manual_seed(1))
    ratio = sc / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio)) and ((ratio >= 0.5) & (ratio <= 1.5)).all()
    assert SignalTransform(shift=1)(torch.zeros(2, 3, 8), generator=torch.Generator()).shape == (2, 3, 8)
    with pytest.raises(ValueError, match=r"scale == 1.5, must be in \[0, 1\)"):
        SignalTransform(scale=1.5)
    views = signal_views("none")
    assert torch.equal(views.weak(x, torch.Generator()), x)


def _shift(row, s):
    out = torch.zeros_like(row)
    if s >= 0:
        out[s:] = row[: len(row) - s]
    else:
        out[:s] = row[-s:]
    return out


def test_image_crop_flip_and_normalisation_without_torchvision():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    same = ImageTransform(crop_padding=0, flip=False)(x, generator=torch.Generator())
    assert torch.equal(same, x)
    out = ImageTransform(crop_padding=2, flip=True)(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    views = cifar_views("cifar10", policy="none")
    t = views.test(torch.full((1, 3, 2, 2), 0.4914))
    assert float(t[0, 0].abs().max()) < 1e-6 and float(t[0, 1, 0, 0]) == pytest.approx(
        (0.4914 - 0.4822) / 0.1994, rel=1e-5)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"needs torchvision: pip install 'deepscope\[vision\]'"):
            ImageTransform(policy="autoaugment")(x, generator=torch.Generator())


# -- the loop ------------------------------------------------------------------------------------------

def _problem(n=240, k=3, seed=0, noise="sym40"):
    g = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(k, 40, generator=g)
    y = torch.arange(n) % k
    x = mu[y] + torch.randn(n, 40, generator=g)
    yt = torch.arange(90) % k
    xt = mu[yt] + torch.randn(90, 40, generator=g)
    noisy = make_label_noise(y, noise, num_classes=k, generator=g)
    return x, noisy.labels, y, xt, yt


FAST = dict(net="mlp", net_kwargs={"hidden": (32,)}, warmup_epochs=1, refresh="epoch",
            mixup=False, contrastive_weight=0.0, train_views=1, peer_views=1,
            views=signal_views("none"), gamma_schedule=((0, 0.6), (1, 1.0)))
OPTIONS = {"epochs": 3, "batch_size": 20, "lr": 0.05}


def _train(x, y, options=None, **kw):
    return train_crosssplit(x, y, num_classes=3, generator=torch.Generator().manual_seed(7),
                            options={**OPTIONS, **(options or {})}, **{**FAST, **kw})


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_disjoint_split_hides_the_peer_labels_and_all_does_not():
    x, y, y_true, _, _ = _problem()
    a, b = split_halves(len(x), torch.Generator().manual_seed(7))  # the split the loop draws first
    y2 = y.clone()
    y2[b] = (y2[b] + 1) % 3  # change every label of net_b's half
    kw = dict(label_correction=False)  # CLC would pass b's opinion (trained on those labels) to a
    r1, r2 = _train(x, y, **kw), _train(x, y2, **kw)
    assert torch.equal(_weights(r1.models["net_a"]), _weights(r2.models["net_a"]))
    assert not torch.equal(_weights(r1.models["net_b"]), _weights(r2.models["net_b"]))
    assert torch.equal(r1.info["split"][0], a)
    s1, s2 = _train(x, y, split="all", **kw), _train(x, y2, split="all", **kw)
    assert not torch.equal(_weights(s1.models["net_a"]), _weights(s2.models["net_a"]))
    assert r1.info["mode"] == "disjoint" and s1.info["mode"] == "all"


def test_semi_supervised_switch_decides_whether_the_other_half_is_used():
    x, y, _, _, _ = _problem()
    _, b = split_halves(len(x), torch.Generator().manual_seed(7))
    x2 = x.clone()
    x2[b] = torch.randn(len(b), 40, generator=torch.Generator().manual_seed(99))
    off = dict(label_correction=False, semi_supervised=False)
    r1, r2 = _train(x, y, **off), _train(x2, y, **off)
    assert torch.equal(_weights(r1.models["net_a"]), _weights(r2.models["net_a"]))
    on = dict(label_correction=False, semi_supervised=True)
    s1, s2 = _train(x, y, **on), _train(x2, y, **on)
    assert not torch.equal(_weights(s1.models["net_a"]), _weights(s2.models["net_a"]))
    assert s1.history[-1]["loss_u_net_a"] > 0 and r1.history[-1]["loss_u_net_a"] == 0


def test_label_correction_switch_and_corrected_label_accuracy():
    x, y, y_true, _, _ = _problem()
    noisy_acc = float((y == y_true).double().mean())
    off = _train(x, y, label_correction=False, y_true=y_true)
    assert all(r["label_acc"] == round(noisy_acc, 5) for r in off.history)
    assert "beta_mean" not in off.history[-1]
    on = _train(x, y, y_true=y_true, options={"epochs": 4})
    assert on.history[0]["label_acc"] == round(noisy_acc, 5)  # warm-up: the given labels
    # the peer's opinion corrects labels: clearly better than the 40%-noisy given ones
    assert on.history[-1]["label_acc"] > noisy_acc + 0.1
    assert 0.0 <= on.history[-1]["beta_mean"] <= 1.0 and on.history[-1]["gamma"] == 1.0


def test_mixup_and_contrastive_switches():
    x, y, _, _, _ = _problem()
    off1 = _train(x, y, mixup=False, mixup_alpha=4.0)
    off2 = _train(x, y, mixup=False, mixup_alpha=0.3)  # λ is drawn but unused
    assert torch.equal(_weights(off1.models["net_a"]), _weights(off2.models["net_a"]))
    on1 = _train(x, y, mixup=True, mixup_alpha=4.0)
    on2 = _train(x, y, mixup=True, mixup_alpha=0.3)
    assert not torch.equal(_weights(on1.models["net_a"]), _weights(on2.models["net_a"]))
    con = _train(x, y, contrastive_weight=0.5, train_views=2, refresh="batch", peer_views=2)
    assert con.history[-1]["loss_con_net_a"] > 0 and off1.history[-1]["loss_con_net_a"] == 0


def test_kill_and_resume_gives_identical_numbers(tmp_path):
    x, y, y_true, xt, yt = _problem(n=120)
    # the paper's configuration: per-batch refresh, MixUp, two strong views, contrastive term
    kw = {**FAST, "net": "cnn1d", "net_kwargs": {"channels": 4}, "views": signal_views("weak"),
          "options": {**OPTIONS, "epochs": 4}, "refresh": "batch", "mixup": True, "contrastive_weight": 0.025,
          "train_views": 2, "peer_views": 2, "x_test": xt, "y_test": yt, "y_true": y_true}
    full = train_crosssplit(x, y, num_classes=3, generator=torch.Generator().manual_seed(1),
                            run=Run(tmp_path / "a", progress=False), **kw)
    with pytest.raises(Killed):
        train_crosssplit(x, y, num_classes=3, generator=torch.Generator().manual_seed(1),
                         run=KillAt(tmp_path / "b", progress=False, kill_at=3), **kw)
    torch.manual_seed(1234)  # the global RNG is not what the loop draws from
    resumed = train_crosssplit(x, y, num_classes=3, generator=torch.Generator().manual_seed(1),
                               run=Run(tmp_path / "b", progress=False), **kw)
    for name in ("net_a", "net_b"):
        torch.testing.assert_close(_weights(full.models[name]), _weights(resumed.models[name]),
                                   rtol=0, atol=0)
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}  # noqa: E731
    lines = [[strip(json.loads(s)) for s in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
             for d in ("a", "b")]
    assert lines[0] == lines[1] and len(lines[0]) == 4
    assert full.history == resumed.history


def test_bad_arguments_name_the_fix():
    x, y, _, _, _ = _problem(n=60)
    with pytest.raises(ValueError, match=r"split == 'halves', must be 'disjoint' \(the paper\) or 'all'"):
        _train(x, y, split="halves")
    with pytest.raises(ValueError, match=r"warmup_epochs == 5, must be <= epochs == 3"):
        _train(x, y, warmup_epochs=5)
    with pytest.raises(ValueError, match=r"amp == True needs a CUDA device"):
        _train(x, y, options={"amp": True, "device": "cpu"})
    with pytest.raises(ValueError, match=r"labels of x span 0..2, must be in 0..1"):
        train_crosssplit(x, y, num_classes=2, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"batch_size == 0, must be an integer >= 1"):
        _train(x, y, options={"batch_size": 0})
    assert Views().test(x) is x


def test_paper_configuration_runs_on_images_with_batchnorm():
    # the CIFAR code path at toy size: PreAct-ResNet-18 (width 4, BatchNorm), crop + flip views
    # with normalisation, per-batch targets, MixUp, two strong views, the contrastive head
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 16, 16, generator=g)
    y = torch.arange(48) % 3
    res = train_crosssplit(x, y, num_classes=3, generator=g, net="preact-resnet18",
                           net_kwargs={"norm": "batch", "width": 4},
                           views=cifar_views("cifar10", policy="none"), warmup_epochs=1,
                           options={"epochs": 2, "batch_size": 8}, x_test=x[:12], y_test=y[:12],
                           y_true=y)
    last = res.history[-1]
    assert last["phase"] == "crosssplit" and last["loss_con_net_a"] > 0 and last["lambda_u_net_a"] >= 0
    views = cifar_views("cifar10", policy="none")
    assert res.predict(x[:4], transform=views.test).shape == (4, 3)


@pytest.mark.vision
def test_autoaugment_and_randaugment_views_are_seeded():
    pytest.importorskip("torchvision")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    for policy in ("autoaugment", "randaugment"):
        tf = ImageTransform(4, True, policy)
        a = tf(x, generator=torch.Generator().manual_seed(1))
        b = tf(x, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b) and a.shape == x.shape and 0 <= float(a.min()) <= float(a.max()) <= 1
    assert torch.equal(torch.get_rng_state(), before)  # torchvision drew from a forked RNG
    assert cifar_views("cifar100").strong(x, torch.Generator()).shape == x.shape


# -- the switches of the one-factor study ----------------------------------------------------------

def _counting_net(counts: dict):
    """A factory of small MLPs that count their forward passes by kind."""
    def make():
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 3))

        def hook(module, args, out):
            kind = ("train" if module.training else "eval") + (
                "_grad" if torch.is_grad_enabled() else "_nograd")
            counts[kind] = counts.get(kind, 0) + 1
        net.register_forward_hook(hook)
        return net
    return make


def test_unlabeled_weight_zero_gives_zero_unlabeled_loss():
    x, y, _, _, _ = _problem()
    off = _train(x, y, unlabeled_weight=0.0)
    on = _train(x, y, unlabeled_weight=30.0)
    after = [h for h in off.history if h["phase"] == "crosssplit"]
    assert after and all(h["loss_u_weighted_net_a"] == 0 and h["lambda_u_net_a"] == 0
                         for h in after)
    assert all(h["loss_u_net_a"] > 0 for h in after)  # the MSE is there, weighted by 0
    assert on.history[-1]["loss_u_weighted_net_a"] > 0 and on.history[-1]["lambda_u_net_a"] > 0
    assert not torch.equal(_weights(off.models["net_a"]), _weights(on.models["net_a"]))


def test_per_batch_targets_are_recomputed_every_batch_in_train_mode():
    x, y, _, _, _ = _problem()
    batches_per_epoch = -(-120 // OPTIONS["batch_size"])  # each network's half: 120 rows
    ssl_epochs = OPTIONS["epochs"] - FAST["warmup_epochs"]
    per_batch: dict = {}
    _train(x, y, net=_counting_net(per_batch), net_kwargs=None, refresh="batch", peer_views=2)
    # own targets: 2 weak views in train mode without gradients, every batch, both networks
    assert per_batch["train_nograd"] == 2 * 2 * batches_per_epoch * ssl_epochs
    per_epoch: dict = {}
    _train(x, y, net=_counting_net(per_epoch), net_kwargs=None, refresh="epoch")
    assert per_epoch.get("train_nograd", 0) == 0  # per epoch: eval-mode passes only


def test_labelled_all_changes_only_the_labelled_set(monkeypatch):
    import deepscope.robust.crosssplit as cs

    seen: dict = {"lab": [], "unl": []}
    batches, cycle = cs.batches, cs.cycle_batches
    monkeypatch.setattr(cs, "batches", lambda idx, *a, **k: seen["lab"].append(idx.clone())
                        or batches(idx, *a, **k))
    monkeypatch.setattr(cs, "cycle_batches", lambda idx, *a, **k: seen["unl"].append(idx.clone())
                        or cycle(idx, *a, **k))
    x, y, _, _, _ = _problem()
    a, b = split_halves(len(x), torch.Generator().manual_seed(7))
    res = _train(x, y, labelled="all")
    assert res.info["labelled"] == "all" and res.info["mode"] == "disjoint"
    assert all(torch.equal(idx, torch.arange(len(x))) for idx in seen["lab"])
    # the unlabeled pool stays the peer's half: net_a's is b, net_b's is a
    assert torch.equal(seen["unl"][0], b) and torch.equal(seen["unl"][1], a)
    seen["lab"].clear(), seen["unl"].clear()
    _train(x, y, split="all")  # the released loaders: the unlabeled pool becomes everything too
    assert torch.equal(seen["unl"][0], torch.arange(len(x)))
    with pytest.raises(ValueError, match="labelled == 'all' needs split == 'disjoint'"):
        _train(x, y, labelled="all", split="all")


def test_equal_step_schedule_gives_the_steps_of_training_on_all_the_data():
    x, y, _, _, _ = _problem()
    counts = {}
    for form, kw, epochs in (("disjoint-2x", {}, 2 * OPTIONS["epochs"]),
                             ("labelled-all", {"labelled": "all"}, OPTIONS["epochs"])):
        c: dict = {}
        sched = {}
        if form == "disjoint-2x":
            sched = equal_step_schedule(2, epochs=OPTIONS["epochs"], warmup_epochs=1,
                                        gamma_schedule=FAST["gamma_schedule"])
            assert sched.pop("epochs") == epochs and sched["warmup_epochs"] == 2
        res = _train(x, y, net=_counting_net(c), net_kwargs=None, warmup_batch_size=20,
                     options={"epochs": epochs}, **{**kw, **sched})
        assert len(res.history) == epochs
        counts[form] = c["train_grad"]  # one forward with gradients per optimiser step
    assert counts["disjoint-2x"] == counts["labelled-all"]
    assert equal_step_schedule(2, epochs=40, warmup_epochs=10)["gamma_schedule"] == (
        (0, 0.6), (40, 0.8), (60, 1.0))


def test_contrastive_temperature_is_the_released_value():
    import inspect

    from deepscope.robust.crosssplit import train_crosssplit as t

    # SAITPublic/CrossSplit, Contrastive_loss.py: SupConLoss(temperature=0.05, base_temperature=0.05)
    assert inspect.signature(t).parameters["contrastive_temperature"].default == 0.05
