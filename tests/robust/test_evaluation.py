import json
import sys

import pytest
import torch
from torch import nn

from deepscope.robust.evaluation import (
    ATTACKS,
    clean_accuracy,
    evaluate,
    large_eps,
    masking_checks,
    robust_accuracy,
)
from deepscope.train.rng import make_generator


def _linear_problem(n=120, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, d, generator=g))
        lin.bias.zero_()
    x = torch.rand(n, d, generator=g)
    with torch.no_grad():
        margin = x @ (lin.weight[1] - lin.weight[0])
        lin.bias.copy_(torch.tensor([margin.median().item(), 0.0]))
        margin = margin - margin.median()
    y = (margin > 0).long()
    flip = torch.rand(n, generator=g) < 0.1  # some clean mistakes
    y[flip] = 1 - y[flip]
    return lin, x, y


def _exact_robust_accuracy(lin, x, y, eps, norm):
    # Binary linear model, no active bounds: x is robust iff it is correct and its margin
    # exceeds eps times the dual norm of w = w1 - w0.
    with torch.no_grad():
        w = lin.weight[1] - lin.weight[0]
        m = x @ w + lin.bias[1] - lin.bias[0]
        signed = torch.where(y == 1, m, -m)
        dual = w.abs().sum() if norm == "linf" else w.norm()
    return (signed > eps * dual).float().mean().item()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_attack_finds_the_exact_robust_accuracy_of_a_binary_linear_model(norm):
    lin, x, y = _linear_problem()
    eps = 0.02 if norm == "linf" else 0.1
    exact = _exact_robust_accuracy(lin, x, y, eps, norm)
    # bounds wide enough never to bind, so the closed form holds
    rep = robust_accuracy(lin, x, y, eps=eps, norm=norm, bounds=(-5.0, 6.0),
                          generator=make_generator(0, "eval"), surrogate=lin,
                          attacks=("fgsm", "pgd20", "pgd100", "foolbox-pgd", "transfer"), restarts=2)
    assert rep["unavailable"] == {}
    assert 0.2 < exact < rep["clean"]
    for name, acc in rep["attacks"].items():
        if norm == "linf" or name == "fgsm":
            assert acc == pytest.approx(exact, abs=1e-9), name
        else:
            # L2 PGD from a random start keeps a component orthogonal to w that 2.5·eps of
            # travel does not fully rotate away: it may miss an example on the edge, never
            # break a certified one.
            assert exact - 1e-9 <= acc <= exact + 2 / len(y), name
    assert rep["robust"] == pytest.approx(exact, abs=1e-9)
    assert all(v == 0 for v in rep["violations"].values())


def test_autoattack_finds_the_exact_robust_accuracy_of_a_four_class_linear_model():
    # With K classes a linear model is robust at x iff every pairwise margin f_y - f_j exceeds
    # eps·||w_y - w_j||_1 (L∞, no active bounds). Cross-entropy PGD need not find the worst
    # pair; AutoAttack's targeted attacks do. No attack may go below the exact value.
    g = torch.Generator().manual_seed(0)
    n, d, k, eps = 150, 10, 4, 0.05
    lin = nn.Linear(d, k)
    x = torch.rand(n, d, generator=g)
    with torch.no_grad():
        f = lin(x)
        y = f.argmax(1)
        flip = torch.rand(n, generator=g) < 0.1
        y[flip] = (y[flip] + 1) % k
        robust = f.argmax(1) == y
        for j in range(k):
            margin = f[torch.arange(n), y] - f[:, j]
            dual = (lin.weight[y] - lin.weight[j]).abs().sum(1)
            robust &= (y == j) | (margin > eps * dual)
    exact = robust.float().mean().item()
    rep = robust_accuracy(lin, x, y, eps=eps, bounds=(-5.0, 6.0), generator=make_generator(0),
                          attacks=("pgd20", "autoattack"), restarts=1)
    assert rep["unavailable"] == {}
    assert rep["attacks"]["autoattack"] == pytest.approx(exact, abs=1e-9)
    assert rep["robust"] == pytest.approx(exact, abs=1e-9)
    assert rep["attacks"]["pgd20"] >= exact - 1e-9
    assert bool((rep["per_example"]["worst"] == robust).all())
    with pytest.warns(UserWarning, match="judged without autoattack"):
        three = robust_accuracy(nn.Linear(d, 3), x, y % 3, eps=eps, bounds=(-5.0, 6.0),
                                generator=make_generator(0), attacks=("autoattack",))
    assert three["unavailable"]["autoattack"].startswith("needs >= 4 classes")


def test_worst_case_is_per_example_and_strongest_is_named():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    x, y = torch.rand(200, 8), torch.randint(4, (200,))
    rep = robust_accuracy(net, x, y, eps=0.1, bounds=(0.0, 1.0), generator=make_generator(0),
                          attacks=("fgsm", "pgd20"), restarts=1)
    pe = rep["per_example"]
    expected = (pe["fgsm"] & pe["pgd20"]).float().mean().item()
    assert rep["robust"] == expected <= min(rep["attacks"].values()) <= rep["clean"]
    assert rep["strongest"] == min(rep["attacks"], key=rep["attacks"].get)
    assert rep["clean"] == clean_accuracy(net, x, y)


def test_a_missing_library_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "foolbox", None)      # import foolbox -> ImportError
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    lin, x, y = _linear_problem(n=30)
    with pytest.warns(UserWarning, match="attacks that ran: fgsm"):
        rep = robust_accuracy(lin, x, y, eps=0.02, bounds=(-5.0, 6.0), generator=make_generator(0),
                              attacks=("fgsm", "foolbox-pgd", "square", "transfer"))
    assert set(rep["unavailable"]) == {"foolbox-pgd", "square", "transfer"}
    assert "pip install 'deepscope[attacks]'" in rep["unavailable"]["foolbox-pgd"]
    assert "torchattacks is not installed" in rep["unavailable"]["square"]
    assert rep["unavailable"]["transfer"] == "no surrogate model given"
    assert list(rep["attacks"]) == ["fgsm"]


def test_per_feature_bounds_run_every_library_through_the_affine_map():
    # Per-feature bounds wide enough never to bind: the closed form of the binary linear model
    # holds, and every judge, foolbox and torchattacks included, must find it exactly.
    lin, x, y = _linear_problem(n=60)
    lo, hi = torch.full((10,), -5.0), torch.linspace(2.0, 6.0, 10)
    exact = _exact_robust_accuracy(lin, x, y, 0.02, "linf")
    rep = robust_accuracy(lin, x, y, eps=0.02, bounds=(lo, hi), generator=make_generator(0),
                          attacks=("pgd20", "foolbox-pgd", "square"), restarts=1)
    assert rep["unavailable"] == {} and rep["ran"] == ["pgd20", "foolbox-pgd", "square"]
    assert all(v == 0 for v in rep["violations"].values())   # inside our eps-ball and box
    for name in ("pgd20", "foolbox-pgd"):
        assert rep["attacks"][name] == pytest.approx(exact, abs=1e-9), name
    assert rep["attacks"]["square"] >= exact - 1e-9          # a black box: never below exact


def test_the_affine_map_keeps_the_threat_model():
    from deepscope.robust.evaluation import _UnitBox

    lo, hi = torch.tensor([0.0, -1.0, 2.0]), torch.tensor([1.0, 3.0, 2.5])
    unit = _UnitBox(nn.Identity(), lo, hi, (3,))
    assert unit.scale == 4.0                                   # the widest range
    x = torch.stack([lo, hi, (lo + hi) / 2])
    torch.testing.assert_close(unit.from_image(unit.to_image(x)), x)
    # a step of eps/S in u is a step of eps in every feature, clamped to the box
    u = unit.to_image(x[2:]) + 0.1 / unit.scale
    torch.testing.assert_close(unit.from_image(u), x[2:] + 0.1)
    assert torch.equal(unit.from_image(torch.ones(1, 1, 2, 2)), hi[None])


def test_a_judge_that_cannot_run_is_named_and_warned_about():
    lin, x, y = _linear_problem(n=30)
    lo, hi = torch.full((10,), -float("inf")), torch.full((10,), float("inf"))
    with pytest.warns(UserWarning, match=r"robust accuracy judged without foolbox-pgd \(needs "
                                         r"finite bounds.*attacks that ran: pgd20"):
        rep = robust_accuracy(lin, x, y, eps=0.02, bounds=(lo, hi), generator=make_generator(0),
                              attacks=("pgd20", "foolbox-pgd"))
    assert rep["ran"] == ["pgd20"] and "foolbox-pgd" in rep["unavailable"]


def test_paired_difference_on_a_hand_made_case():
    from scipy import stats

    from deepscope.robust.evaluation import paired_difference

    treated = {0: 0.84, 1: 0.80, 2: 0.83, 3: 0.85, 5: 0.5}
    control = {0: 0.82, 1: 0.81, 2: 0.80, 3: 0.82, 4: 0.9}
    d = paired_difference(treated, control)
    diffs = [0.02, -0.01, 0.03, 0.03]
    assert d["seeds"] == [0, 1, 2, 3] and d["unpaired"] == [4, 5] and d["n"] == 4
    assert d["mean"] == pytest.approx(0.0175)
    half = stats.t.ppf(0.975, 3) * stats.tstd(diffs) / 2          # paired t, 3 dof
    assert d["ci95"] == pytest.approx((0.0175 - half, 0.0175 + half))
    assert d["values"] == pytest.approx(diffs)
    # pairing removes what the seeds share: the unpaired intervals overlap, the paired one not
    shift = paired_difference({s: v + 0.01 for s, v in control.items()}, control)
    assert shift["ci95"][0] == pytest.approx(0.01) and shift["std"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"treated has seeds \[0\] and control \[1\]; they must share"):
        paired_difference({0: 1.0}, {1: 1.0})


class _Quantise(nn.Module):
    """Rounds inputs to a grid: zero gradient almost everywhere (a gradient-masking defence)."""

    def forward(self, x):
        return torch.round(x * 4) / 4


def test_the_checks_catch_a_gradient_masking_model():
    lin, x, y = _linear_problem(n=200, seed=1)
    masked = nn.Sequential(_Quantise(), lin)
    rep = evaluate(masked, x, y, eps=0.1, bounds=(0.0, 1.0), generator=make_generator(0),
                   attacks=("fgsm", "pgd20", "pgd100", "transfer"), surrogate=lin, restarts=1)
    # white-box gradients are zero (only the random start moves); the transfer attack works
    assert rep["attacks"]["fgsm"] == pytest.approx(rep["clean"])
    assert rep["attacks"]["transfer"] < rep["attacks"]["pgd100"] - 0.1
    assert rep["checks"]["blackbox_not_stronger"]["pass"] is False
    assert rep["checks"]["zero_at_large_eps"]["pass"] is False
    honest = evaluate(lin, x, y, eps=0.1, bounds=(0.0, 1.0), generator=make_generator(0),
                      attacks=("fgsm", "pgd20", "pgd100", "transfer"), surrogate=lin, restarts=1)
    assert all(c["pass"] in (True, None) for c in honest["checks"].values()), honest["checks"]


def test_evaluate_reads_input_bounds_from_the_model_and_returns_json():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    net.input_bounds = (-1.0, 1.0)
    x, y = torch.rand(40, 6) * 2 - 1, torch.randint(3, (40,))
    rep = evaluate(net, x, y, eps=0.1, generator=make_generator(0), attacks=("fgsm", "pgd20"))
    json.dumps(rep)
    assert rep["large_eps"] == 1.0 == large_eps((-1.0, 1.0), "linf", (6,))
    assert [c["eps"] for c in rep["curve"]] == [0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 1.0]
    assert rep["curve"][0]["robust"] == pytest.approx(rep["clean"])
    assert set(rep["checks"]) == {"monotone_in_eps", "zero_at_large_eps", "blackbox_not_stronger"}


def test_masking_checks_on_made_up_numbers():
    rep = {"attacks": {"pgd20": 0.50, "pgd100": 0.55, "transfer": 0.40, "autoattack": 0.45}}
    curve = [{"eps": 0.0, "robust": 0.9}, {"eps": 0.1, "robust": 0.5}, {"eps": 0.2, "robust": 0.6},
             {"eps": 0.5, "robust": 0.2}]
    c = masking_checks(rep, curve, large=0.5)
    assert c["monotone_in_eps"]["pass"] is False and c["monotone_in_eps"]["largest_rise"] == 0.1
    assert c["zero_at_large_eps"]["pass"] is False
    assert c["more_steps_not_weaker"]["pass"] is False
    assert c["blackbox_not_stronger"]["pass"] is False
    assert c["libraries_agree"]["pass"] is False
    assert masking_checks({"attacks": {"pgd20": 0.5}})["blackbox_not_stronger"]["pass"] is None


def test_bad_arguments():
    lin, x, y = _linear_problem(n=10)
    with pytest.raises(ValueError, match=r"attacks contains \['cw'\], must be names from"):
        robust_accuracy(lin, x, y, eps=0.1, bounds=(0, 1), generator=make_generator(0), attacks=("cw",))
    with pytest.raises(ValueError, match="bounds is None and the model has no input_bounds"):
        robust_accuracy(lin, x, y, eps=0.1, generator=make_generator(0))
    assert set(ATTACKS) >= {"fgsm", "pgd20", "pgd100", "foolbox-pgd", "autoattack", "square"}
