"""Alignment, CKA, spectrum statistics, y^T K y by one vjp, the complexity measure, the tracker."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.dynamics.alignment import (
    center_kernel,
    cka,
    eigen_stats,
    kernel_alignment,
    kernel_matrix,
    label_targets,
    linear_rademacher_bound,
    margin,
    output_margins,
    path_complexity,
    yky,
)
from deepscope.dynamics.ntk import empirical_ntk
from deepscope.dynamics.ntk_tracker import AlignmentTracker, log_steps
from deepscope.nets import MLP
from deepscope.train import Run

D = torch.float64


def _net_and_data(n=12, o=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = MLP(4, [8], o, activation="tanh").to(D)
    x = torch.randn(n, 4, generator=g, dtype=D)
    y = torch.arange(n) % o
    return net, x, y


def test_label_kernel_aligns_perfectly_at_any_scale():
    y = torch.tensor([0, 2, 1, 1, 0, 2, 2])
    t = label_targets(y)
    assert torch.allclose(t.sum(0), torch.zeros(3, dtype=D))
    full = torch.einsum("no,mp->nmop", t, t)
    trace = t @ t.T  # the traced label kernel Y Y^T = sum_o y_o y_o^T
    for c in (1e-3, 1.0, 7.5e4):
        assert kernel_alignment(c * full, y).item() == pytest.approx(1.0, abs=1e-12)
        assert kernel_alignment(c * trace, y).item() == pytest.approx(1.0, abs=1e-12)
        # uncentred one-hot labels, uncentred convention
        u = label_targets(y, centered=False)
        assert kernel_alignment(c * torch.einsum("no,mp->nmop", u, u), y, centered=False).item() == pytest.approx(1.0)
    # adding a constant (removed by centring) changes nothing
    assert kernel_alignment(full + 5.0, y).item() == pytest.approx(1.0, abs=1e-12)


def test_alignment_of_the_identity_kernel_has_its_closed_form():
    n, o = 9, 3
    y = torch.arange(n) % o
    eye = torch.eye(n, dtype=D)[:, :, None, None] * torch.eye(o, dtype=D)  # K = I_(N O)
    # K_c = I_O (x) H, ||K_c||_F = sqrt(O (N - 1)), y^T K_c y = ||y||^2
    assert kernel_alignment(eye, y).item() == pytest.approx(1 / math.sqrt(o * (n - 1)), rel=1e-12)


def test_alignment_matches_the_papers_flattened_formula():
    net, x, y = _net_and_data()
    k = empirical_ntk(net, x)
    n, o = 12, 3
    mat = kernel_matrix(k)  # (O N, O N), output-major
    h = torch.eye(n, dtype=D) - 1.0 / n
    ih = torch.kron(torch.eye(o, dtype=D), h)
    kc = ih @ mat @ ih
    yv = label_targets(y).T.reshape(-1)  # output-major: y_vec[o * N + n]
    expect = yv @ kc @ yv / (torch.linalg.matrix_norm(kc) * yv.dot(yv))
    assert kernel_alignment(k, y).item() == pytest.approx(expect.item(), rel=1e-12)
    assert 0 < kernel_alignment(k, y).item() < 1
    # the diagonal kernel is the block-diagonal full kernel
    kd = empirical_ntk(net, x, mode="diagonal")
    block = torch.einsum("nmo,op->nmop", kd, torch.eye(o, dtype=D))
    assert kernel_alignment(kd, y).item() == pytest.approx(kernel_alignment(block, y).item(), rel=1e-12)
    # trace convention: tr(Y^T K_c Y) / (||K_c|| ||Y Y^T||)
    kt = empirical_ntk(net, x, mode="trace")
    t = label_targets(y)
    ktc = h @ kt @ h
    expect_t = torch.trace(t.T @ ktc @ t) / (torch.linalg.matrix_norm(ktc) * torch.linalg.matrix_norm(t @ t.T))
    assert kernel_alignment(kt, y).item() == pytest.approx(expect_t.item(), rel=1e-12)


def test_cka_properties():
    net, x, y = _net_and_data()
    k = empirical_ntk(net, x)
    assert cka(k, k).item() == pytest.approx(1.0, abs=1e-12)
    assert cka(k, 3.0 * k + 2.0).item() == pytest.approx(1.0, abs=1e-12)
    k2 = empirical_ntk(net, x, per_layer=True)["1"]
    assert cka(k, k2).item() == pytest.approx(cka(k2, k).item(), rel=1e-12)
    t = label_targets(y)
    assert cka(k, torch.einsum("no,mp->nmop", t, t)).item() == pytest.approx(kernel_alignment(k, y).item(), rel=1e-12)
    c = center_kernel(k)
    assert torch.allclose(center_kernel(c), c)  # H^2 = H


def test_eigen_stats_of_a_known_spectrum():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=D))
    lam = torch.tensor([8.0, 4.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0], dtype=D)
    s = eigen_stats(q @ torch.diag(lam) @ q.T, top_k=(1, 2))
    assert s["top_eigenvalue"] == pytest.approx(8.0)
    assert s["mean_eigenvalue"] == pytest.approx(18 / 8)
    assert s["median_eigenvalue"] == pytest.approx(1.0)  # torch: the lower of the two middle values
    p = lam[lam > 0] / 18
    assert s["effective_rank"] == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert s["trace_ratio_top1"] == pytest.approx(8 / 18) and s["trace_ratio_top2"] == pytest.approx(12 / 18)
    assert eigen_stats(3.0 * torch.eye(5, dtype=D))["effective_rank"] == pytest.approx(5.0)
    v = torch.randn(6, generator=g, dtype=D)
    assert eigen_stats(torch.outer(v, v))["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    # a full kernel: the eigenvalues of its (O N, O N) matrix
    net, x, _ = _net_and_data()
    k = empirical_ntk(net, x)
    w = torch.linalg.eigvalsh(kernel_matrix(k))
    assert eigen_stats(k)["top_eigenvalue"] == pytest.approx(w.max().item(), rel=1e-12)
    with pytest.raises(ValueError, match=r"top_k == 0, must be a sequence of integers >= 1"):
        eigen_stats(k, top_k=0)


@pytest.mark.parametrize("centered", [True, False])
def test_yky_through_one_vjp_equals_the_formed_kernel(centered):
    net, x, y = _net_and_data()
    t = label_targets(y, 3, centered=centered)
    k = empirical_ntk(net, x)
    expect = torch.einsum("no,nmop,mp->", t, k, t)
    assert yky(net, x, y, centered=centered).item() == pytest.approx(expect.item(), rel=1e-12)
    assert yky(net, x, y, centered=centered, chunk_size=5).item() == pytest.approx(expect.item(), rel=1e-12)
    layers = yky(net, x, y, centered=centered, per_layer=True)
    kl = empirical_ntk(net, x, per_layer=True)
    assert list(layers) == list(kl)
    for name, v in layers.items():
        assert v.item() == pytest.approx(torch.einsum("no,nmop,mp->", t, kl[name], t).item(), rel=1e-12)
    if centered:  # the numerator of the alignment: y^T K_c y
        assert expect.item() == pytest.approx(torch.einsum("no,nmop,mp->", t, center_kernel(k), t).item(), rel=1e-12)


def test_path_complexity_by_hand():
    c = path_complexity([0.0, 2.0, 1.0], [4.0, 9.0, 16.0], n=2)
    np.testing.assert_allclose(c, [0.0, 3.0, 5.0])
    with pytest.raises(ValueError, match=r"step_norms has shape \(2,\) and kernel_traces \(3,\)"):
        path_complexity([0.0, 1.0], [1.0, 2.0, 3.0], n=2)
    with pytest.raises(ValueError, match=r"n == 0, must be the number of probe examples"):
        path_complexity([0.0], [1.0], n=0)


def _exact_rademacher_of_the_ball(x: torch.Tensor, b: float) -> float:
    """E_sigma sup_(||w|| <= b) (1/n) sum_i sigma_i <w, x_i> = (b/n) E ||sum_i sigma_i x_i||, all 2^n signs."""
    n = x.shape[0]
    signs = torch.tensor([[1.0 if (k >> i) & 1 else -1.0 for i in range(n)] for k in range(2**n)], dtype=D)
    return float(b * torch.linalg.vector_norm(signs @ x, dim=1).mean() / n)


def test_complexity_on_a_linear_model_is_its_closed_form_rademacher_complexity():
    """A linear model's tangent kernel is X X^T; one step from w0 to w1 adds ||w1 - w0|| sqrt(Tr K) / n,
    which is the exact empirical Rademacher complexity of the ball of radius ||w1 - w0|| when the
    inputs are orthogonal, and an upper bound on it otherwise."""
    g = torch.Generator().manual_seed(0)
    n, d = 8, 12
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=D))
    scales = torch.linspace(0.5, 3.0, n, dtype=D)
    orthogonal = scales[:, None] * q[:n]                 # orthogonal rows, unequal norms
    generic = torch.randn(n, d, generator=g, dtype=D)
    for x, exact in ((orthogonal, True), (generic, False)):
        net = nn.Linear(d, 1, bias=False).to(D)
        tracker = AlignmentTracker(x, torch.zeros(n, dtype=torch.long), n_probe=n, steps=[0, 1],
                                   per_layer=False)
        w0 = net.weight.detach().clone()
        tracker(0, net)
        with torch.no_grad():
            net.weight.add_(torch.randn(1, d, generator=g, dtype=D))
        rec = tracker(1, net)
        step = float(torch.linalg.vector_norm(net.weight.detach() - w0))
        assert rec["norm_dw"] == pytest.approx(step, rel=1e-12)
        assert rec["trace_k"] == pytest.approx(float(x.pow(2).sum()), rel=1e-10)  # Tr X X^T
        term = linear_rademacher_bound(step, rec["trace_k"], n)
        assert rec["complexity"] == pytest.approx(term, rel=1e-10)
        rad = _exact_rademacher_of_the_ball(x, step)
        if exact:
            assert rad == pytest.approx(term, rel=1e-10)
        else:
            assert rad < 0.99 * term  # Jensen: strict for correlated features
        # the margin normalisation divides the whole path by gamma
        c = path_complexity([0.0, rec["norm_dw"]], [rec["trace_k"]] * 2, n=n, margin=0.5)
        assert c[-1] == pytest.approx(term / 0.5, rel=1e-10)


def test_margins_and_the_margin_normalised_complexity():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 2.5], [1.0, 1.0, 4.0], [5.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 2, 0])
    m = output_margins(logits, y)
    torch.testing.assert_close(m, torch.tensor([2.0, -0.5, 3.0, 4.0]))
    assert margin(logits, y, quantile=0.0) == pytest.approx(-0.5)
    assert margin(logits, y, quantile=0.5) == pytest.approx(2.5)  # median of -0.5, 2, 3, 4
    c = path_complexity([0.0, 2.0, 1.0], [4.0, 9.0, 16.0], n=2, margin=2.0)
    np.testing.assert_allclose(c, [0.0, 1.5, 2.5])
    assert np.isnan(path_complexity([0.0, 2.0], [4.0, 9.0], n=2, margin=-0.1)).all()
    with pytest.raises(ValueError, match=r"labels span 0\.\.3; they must be in 0\.\.2"):
        output_margins(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"quantile == 1.0, must be in \[0, 1\)"):
        margin(logits, y, quantile=1.0)


def test_alignment_errors():
    k = torch.zeros(4, 4, 3, 3)
    with pytest.raises(ValueError, match=r"y gives targets of shape \(5, 3\) but the kernel is \(4, 4, 3, 3\)"):
        kernel_alignment(k, torch.arange(5) % 3)
    with pytest.raises(ValueError, match=r"K has shape \(4, 3\); pass a kernel on one set of N examples"):
        kernel_alignment(torch.zeros(4, 3), torch.arange(4) % 3)
    with pytest.raises(ValueError, match=r"labels span 0\.\.3; with n_classes == 3 they must be in 0\.\.2"):
        label_targets(torch.arange(4), 3)
    with pytest.raises(ValueError, match=r"k1 has shape \(4, 4\) and k2 \(3, 3\); they must match"):
        cka(torch.eye(4), torch.eye(3))


def test_log_steps_follow_the_paper():
    assert log_steps(100) == [0, 5, 6, 7, 8, 10, 11, 13, 15, 17, 20, 23, 26, 30, 35, 40, 46, 53, 61, 71, 81, 94]
    s = log_steps(10**6, include_zero=False)
    assert s == sorted(set(math.floor(5 * 1.15**k) for k in range(200) if 5 * 1.15**k <= 10**6))
    with pytest.raises(ValueError, match=r"max_step == -1, must be an integer >= 0"):
        log_steps(-1)


def test_tracker_logs_on_schedule_without_the_global_rng(tmp_path):
    g = torch.Generator().manual_seed(5)
    x_tr, y_tr = torch.randn(40, 4, generator=g, dtype=D), torch.randint(0, 3, (40,), generator=g)
    x_te, y_te = torch.randn(30, 4, generator=g, dtype=D), torch.randint(0, 3, (30,), generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 3)).to(D)
    run = Run(tmp_path / "run", config={"test": "tracker"}, seed=0, progress=False)
    rng_before = torch.get_rng_state()
    tracker = AlignmentTracker(x_tr, y_tr, x_te, y_te, n_probe=20, seed=3, run=run)
    assert torch.equal(torch.get_rng_state(), rng_before)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    recorded = []
    for step in range(12):
        state = torch.get_rng_state()
        rec = tracker(step, net)
        assert torch.equal(torch.get_rng_state(), state)  # the tracker draws nothing
        assert net.training  # put back in train mode (dropout)
        if rec is not None:
            recorded.append(step)
        if step == 11:
            break  # the last record is of the network as it is now
        with torch.random.fork_rng():
            torch.manual_seed(100 + step)  # dropout draws here, in the training step
            loss = nn.functional.cross_entropy(net(x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert recorded == [0, 5, 6, 7, 8, 10, 11]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == recorded
    first, last = lines[0], lines[-1]
    assert set(first["layer_align_train"]) == {"0", "3"} and set(first["layer_align_test"]) == {"0", "3"}
    for key in ("align_train", "align_test", "top_eigenvalue", "effective_rank", "trace_ratio_top5", "trace_k"):
        assert math.isfinite(first[key]), key
    assert first["norm_dw"] == 0.0 and first["complexity"] == 0.0 and last["complexity"] > 0
    # the logged numbers are the library's on the same probes
    net.eval()
    k = empirical_ntk(net, tracker.x_train)
    assert last["align_train"] == pytest.approx(kernel_alignment(k, tracker.y_train).item(), rel=1e-9)
    assert last["trace_k"] == pytest.approx(torch.einsum("nnoo->", k).item(), rel=1e-9)
    c = path_complexity([h["norm_dw"] for h in tracker.history_], [h["trace_k"] for h in tracker.history_], n=20)
    assert last["complexity"] == pytest.approx(c[-1], rel=1e-12)
    assert tracker.seconds_ > 0
    # probes: a fixed draw from the given seed, reproducible
    again = AlignmentTracker(x_tr, y_tr, x_te, y_te, n_probe=20, seed=3)
    assert torch.equal(again.probe_train_, tracker.probe_train_) and len(set(tracker.probe_train_.tolist())) == 20
    # resume
    fresh = AlignmentTracker(x_tr, y_tr, x_te, y_te, n_probe=20, seed=3)
    fresh.load_state_dict(tracker.state_dict())
    assert fresh.history_ == tracker.history_


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_alignment_and_cka_centre_a_copy_never_the_callers_kernel(dtype):
    # the centring runs in place on a float64 copy; a float64 kernel must not be that copy
    g = torch.Generator().manual_seed(0)
    k = torch.randn(6, 6, 3, 3, generator=g, dtype=dtype)
    before = k.clone()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    a = kernel_alignment(k, y)
    c = cka(k, k.transpose(0, 1))
    center_kernel(k)
    torch.testing.assert_close(k, before, rtol=0, atol=0)
    assert float(kernel_alignment(k, y)) == float(a) and float(cka(k, k.transpose(0, 1))) == float(c)
