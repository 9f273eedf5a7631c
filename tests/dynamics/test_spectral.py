"""Closed-form oracles for the spectrum math (arXiv 1806.08734)."""

import math

import numpy as np
import pytest
import torch

from deepscope.dynamics.spectral import (
    EIGEN_SOLVERS,
    SpectrumRecorder,
    eigenbasis_spectrum,
    first_crossing,
    flower_curve,
    fourier_spectrum,
    kernel_eigenbasis,
    perturbation_spectrum,
    plot_spectrum_heatmap,
    sum_of_sinusoids,
)
from deepscope.nets import MLP

N = 200
Z = torch.arange(N, dtype=torch.float64) / N


@pytest.mark.parametrize("k", [1, 5, 37, 99])
@pytest.mark.parametrize("amp", [0.3, 1.0, 4.0])
def test_pure_sinusoid_reads_its_amplitude_at_k_and_zero_elsewhere(k, amp):
    phase = 0.7 * k  # any phase
    s = fourier_spectrum(amp * torch.sin(2 * math.pi * k * Z + phase))
    assert s.shape == (N // 2 + 1,)
    assert s[k].item() == pytest.approx(amp, abs=1e-10)
    rest = torch.cat([s[:k], s[k + 1 :]])
    assert rest.abs().max().item() < 1e-10


def test_dc_and_nyquist_read_their_amplitude():
    s = fourier_spectrum(2.5 + 1.5 * torch.cos(math.pi * torch.arange(N, dtype=torch.float64)))
    assert s[0].item() == pytest.approx(2.5)
    assert s[N // 2].item() == pytest.approx(1.5)


def test_sum_of_sinusoids_is_read_back_exactly_batched_and_numpy():
    rng = np.random.default_rng(0)
    ks = np.arange(5, 55, 5)
    amps = rng.uniform(0.1, 2.0, size=(3, ks.size))  # a batch of 3 functions
    phases = rng.uniform(0, 2 * math.pi, size=(3, ks.size))
    z = np.arange(N) / N
    f = (amps[..., None] * np.sin(2 * np.pi * ks[None, :, None] * z + phases[..., None])).sum(1)
    s = fourier_spectrum(f, freqs=ks)
    assert isinstance(s, np.ndarray) and s.shape == (3, ks.size)
    np.testing.assert_allclose(s, amps, atol=1e-12)
    others = np.setdiff1d(np.arange(N // 2 + 1), ks)
    assert np.abs(fourier_spectrum(f)[:, others]).max() < 1e-12


def test_fourier_spectrum_is_differentiable():
    a = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    s = fourier_spectrum(a * torch.sin(2 * math.pi * 3 * Z), freqs=[3])
    s.sum().backward()
    assert a.grad.item() == pytest.approx(1.0)


def test_fourier_spectrum_errors():
    with pytest.raises(ValueError, match=r"freqs == \[150\] is out of range for N == 200 grid points; allowed 0..100"):
        fourier_spectrum(torch.zeros(N), freqs=[150])
    with pytest.raises(ValueError, match="freqs == .* holds non-integers"):
        fourier_spectrum(torch.zeros(N), freqs=[2.5])
    with pytest.raises(ValueError, match=r"values has shape \(1,\), must be \(\.\.\., N\) with N >= 2"):
        fourier_spectrum(torch.zeros(1))
    with pytest.raises(ValueError, match="values has complex dtype"):
        fourier_spectrum(torch.zeros(N, dtype=torch.complex64))


@pytest.mark.parametrize("solver", sorted(EIGEN_SOLVERS))
def test_eigenbasis_spectrum_of_an_eigenvector_is_a_unit_vector(solver):
    x = np.random.default_rng(1).normal(size=(80, 3))
    w, v = kernel_eigenbasis(x, gamma=0.3, n_components=10, solver=solver)
    assert np.all(np.diff(w) <= 0)
    for i in (0, 3, 9):
        c = eigenbasis_spectrum(v[:, i], basis=(w, v))
        np.testing.assert_allclose(c, np.eye(10)[i], atol=1e-10)
    # and through x directly, full basis, as tensors
    c = eigenbasis_spectrum(torch.as_tensor(v[:, 4]), torch.as_tensor(x), gamma=0.3)
    assert isinstance(c, torch.Tensor) and c.shape == (80,)
    torch.testing.assert_close(c.abs(), torch.as_tensor(np.eye(80)[4]), atol=1e-8, rtol=0)


def test_eigen_solvers_agree():
    x = np.random.default_rng(2).normal(size=(120, 4))
    ref_w, ref_v = kernel_eigenbasis(x, kernel="rbf", gamma=0.2, n_components=6, solver="eigh")
    for solver in EIGEN_SOLVERS:
        w, v = kernel_eigenbasis(x, kernel="rbf", gamma=0.2, n_components=6, solver=solver)
        np.testing.assert_allclose(w, ref_w, rtol=1e-8)
        np.testing.assert_allclose(v, ref_v, atol=1e-6)  # same sign convention


def test_eigenbasis_normalize_gives_energy_fractions():
    x = np.random.default_rng(3).normal(size=(40, 2))
    f = np.random.default_rng(4).normal(size=(40, 2))
    c = eigenbasis_spectrum(f, x, kernel="laplacian", normalize=True)
    np.testing.assert_allclose((c**2).sum(0), [1.0, 1.0], atol=1e-10)


def test_eigenbasis_errors():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="solver == 'qr'; choose one of"):
        kernel_eigenbasis(x, solver="qr")
    with pytest.raises(ValueError, match="n_components == 11, must be in 1..N == 10"):
        kernel_eigenbasis(x, n_components=11)
    with pytest.raises(ValueError, match="needs n_components < N"):
        kernel_eigenbasis(x, solver="eigsh")
    with pytest.raises(ValueError, match="x has shape \\(10,\\), must be \\(N, D\\)"):
        kernel_eigenbasis(np.zeros(10))
    with pytest.raises(ValueError, match="f_x has 9 rows but the eigenbasis is for 10 points"):
        eigenbasis_spectrum(np.zeros(9), x)
    with pytest.raises(ValueError, match="x is None and basis is None"):
        eigenbasis_spectrum(np.zeros(9))


def _small_net():
    torch.manual_seed(0)
    return MLP(1, [32, 32], 1).double()


def test_perturbation_spectrum_at_eps_zero_is_one_and_model_untouched():
    net = _small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    r = perturbation_spectrum(net, Z[:, None], eps=[0.0, 0.5, 3.0], n_directions=4, seed=0,
                              freqs=[1, 2, 5])
    assert r.shape == (3, 3)
    torch.testing.assert_close(r[0], torch.ones(3, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(r[2], r[0])
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    full = perturbation_spectrum(net, Z, eps=0.5, n_directions=4, seed=0, freqs=[1, 2, 5],
                                 reduce="none")
    assert full.shape == (1, 4, 3)
    torch.testing.assert_close(full.mean(1)[0], r[1])


def test_perturbation_spectrum_errors():
    net = _small_net()
    with pytest.raises(ValueError, match=r"eps == -1.0, must be a finite number >= 0"):
        perturbation_spectrum(net, Z, eps=-1.0)
    with pytest.raises(ValueError, match="n_directions == 0, must be an integer >= 1"):
        perturbation_spectrum(net, Z, eps=1.0, n_directions=0)
    with pytest.raises(ValueError, match="model maps the grid to shape \\(200, 2\\)"):
        perturbation_spectrum(MLP(1, [4], 2).double(), Z, eps=1.0)
    with pytest.raises(ValueError, match="reduce == 'sum'"):
        perturbation_spectrum(net, Z, eps=1.0, reduce="sum")


def test_recorder_logs_every_n_steps_normalised():
    logged = []

    class Sine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))

        def forward(self, z):
            return self.a * torch.sin(2 * math.pi * 4 * z)

    model = Sine()
    rec = SpectrumRecorder(Z[:, None], every=10, freqs=[4, 6], scale=[2.0, 1.0],
                           log=lambda step, **kw: logged.append((step, kw)))
    for step in range(1, 31):
        with torch.no_grad():
            model.a.fill_(step / 15)
        out = rec(step, model)
        assert (out is None) == (step % 10 != 0)
    np.testing.assert_array_equal(rec.steps_, [10, 20, 30])
    np.testing.assert_allclose(rec.spectra_[:, 0], [1 / 3, 2 / 3, 1.0], atol=1e-6)
    np.testing.assert_allclose(rec.spectra_[:, 1], 0.0, atol=1e-9)
    assert [s for s, _ in logged] == [10, 20, 30] and set(logged[0][1]) == {"spectrum"}
    rec2 = SpectrumRecorder(Z[:, None], every=10, freqs=[4, 6])
    rec2.load_state_dict(rec.state_dict())
    np.testing.assert_allclose(rec2.spectra_, rec.spectra_)
    first = first_crossing(rec.spectra_, rec.steps_, threshold=0.5)
    assert first[0] == 20 and np.isnan(first[1])
    with pytest.raises(ValueError, match="every == 0, must be an integer >= 1"):
        SpectrumRecorder(Z, every=0)
    with pytest.raises(ValueError, match=r"scale has shape \(3,\) .* must be \(2,\)"):
        SpectrumRecorder(Z, freqs=[4, 6], scale=[1, 2, 3])


def test_first_crossing_below_and_errors():
    curves = np.array([[1.0, 1.0], [0.9, 0.4], [0.3, 0.2]])
    np.testing.assert_array_equal(first_crossing(curves, [0, 1, 2], above=False), [2.0, 1.0])
    with pytest.raises(ValueError, match="need curves \\(T, F\\) and at \\(T,\\)"):
        first_crossing(curves, [0, 1])


def test_heatmap_writes_png(tmp_path):
    fig = plot_spectrum_heatmap(np.random.default_rng(0).uniform(size=(5, 3)), [100, 200, 300, 400, 500],
                                [5, 10, 15], title="t", path=tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000 and fig is not None
    with pytest.raises(ValueError, match="spectra has shape \\(5, 3\\), must be"):
        plot_spectrum_heatmap(np.zeros((5, 3)), [1, 2], [1, 2, 3])


def test_targets_along_a_periodic_parameter_read_back():
    phi = 2 * math.pi * torch.arange(1000, dtype=torch.float64) / 1000
    f = sum_of_sinusoids(phi, [20, 140], [1.0, 0.5], [0.3, 2.0], period=2 * math.pi)
    torch.testing.assert_close(fourier_spectrum(f, freqs=[20, 140]),
                               torch.tensor([1.0, 0.5], dtype=torch.float64))
    circle = flower_curve(phi, 0.0)
    torch.testing.assert_close(circle.norm(dim=1), torch.ones(1000, dtype=torch.float64))
    r = flower_curve(phi, 4.0).norm(dim=1)  # radius 1 + sin(4 phi) / 2
    torch.testing.assert_close(r, 1 + 0.5 * torch.sin(4 * phi))
    with pytest.raises(ValueError, match="they must be 1-D of one length"):
        sum_of_sinusoids(phi, [1, 2], [1.0], [0.0, 0.0])
