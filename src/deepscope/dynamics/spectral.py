"""Spectral bias: the Fourier (or kernel-eigenbasis) spectrum of the function a network computes.

Rahaman et al., "On the Spectral Bias of Neural Networks", ICML 2019, arXiv 1806.08734:
networks fit the low frequencies of a target first, and the parameters that give
high-frequency functions are fragile to perturbation.

Cookbook::

    import math, torch
    from deepscope.dynamics.spectral import (
        fourier_spectrum, eigenbasis_spectrum, perturbation_spectrum,
        SpectrumRecorder, first_crossing, spearman, plot_spectrum_heatmap,
    )
    from deepscope.nets import MLP

    # 1. the amplitude of each integer frequency of a function sampled on z_j = j / N
    z = torch.arange(200) / 200
    f = 0.7 * torch.sin(2 * math.pi * 5 * z) + 0.2 * torch.cos(2 * math.pi * 40 * z)
    fourier_spectrum(f, freqs=[5, 40])                # tensor([0.7000, 0.2000])

    # 2. no grid: project f(X) on the eigenvectors of an RBF kernel on X (largest eigenvalue first)
    x = torch.randn(300, 5)
    coef = eigenbasis_spectrum(torch.randn(300), x, kernel="rbf", gamma=0.1)   # (300,)

    # 3. record the normalised spectrum every 100 steps of a training loop
    net = MLP(1, [256] * 5, 1)
    rec = SpectrumRecorder(z[:, None], every=100, freqs=[5, 40], scale=[0.7, 0.2])
    for step in range(1, 1001):
        ...                                           # one optimiser step
        rec(step, net)                                # also logs through log=run.log if given
    steps, spectra = rec.steps_, rec.spectra_         # (T,), (T, F)
    learned_at = first_crossing(spectra, steps, threshold=0.5)     # (F,) NaN: never
    spearman([5, 40], learned_at, missing=1100)       # {"rho": ..., "p": ...}; never = last
    plot_spectrum_heatmap(spectra, steps, [5, 40], path="heatmap.png")

    # 4. how fast each frequency collapses when the parameters are perturbed
    ratio = perturbation_spectrum(net, z[:, None], eps=[0.0, 1.0, 2.0], n_directions=10,
                                  seed=0, freqs=[5, 40])                # (3, 2)

Conventions: spectra are amplitudes (non-negative) unless stated; every array argument
accepts a ``torch.Tensor`` or a NumPy array and the result comes back in the same kind.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope.train.config import check_int

__all__ = [
    "fourier_spectrum",
    "kernel_eigenbasis",
    "eigenbasis_spectrum",
    "perturbation_spectrum",
    "first_crossing",
    "spearman",
    "SpectrumRecorder",
    "plot_spectrum_heatmap",
    "EIGEN_SOLVERS",
    "sum_of_sinusoids",
    "flower_curve",
]


# --------------------------------------------------------------------------------------
# Targets of the paper's experiments
# --------------------------------------------------------------------------------------
def sum_of_sinusoids(
    t: torch.Tensor, freqs: Sequence[float], amplitudes: Any, phases: Any, *, period: float = 1.0
) -> torch.Tensor:
    """``sum_i A_i sin(2 pi k_i t / period + phi_i)``: the paper's target (arXiv 1806.08734).

    Parameters
    ----------
    t : (N,) tensor
        Positions (``z`` in [0, 1) with ``period=1``, or the angle ``phi`` with ``period=2 pi``).
    freqs, amplitudes, phases : (F,) sequences or tensors

    Returns
    -------
    (N,) tensor, dtype and device of ``t``
    """
    k = torch.as_tensor(np.asarray(freqs, dtype=np.float64), dtype=t.dtype, device=t.device)
    a = torch.as_tensor(np.asarray(amplitudes, dtype=np.float64), dtype=t.dtype, device=t.device)
    p = torch.as_tensor(np.asarray(phases, dtype=np.float64), dtype=t.dtype, device=t.device)
    if not (k.shape == a.shape == p.shape and k.ndim == 1):
        raise ValueError(
            f"freqs, amplitudes, phases have shapes {tuple(k.shape)}, {tuple(a.shape)}, "
            f"{tuple(p.shape)}; they must be 1-D of one length"
        )
    return (a * torch.sin(2 * math.pi * k * t[:, None] / period + p)).sum(-1)


def flower_curve(phi: torch.Tensor, L: float) -> torch.Tensor:
    """The paper's 2-D manifold ``gamma_L(phi) = (1 + sin(L phi) / 2) (cos phi, sin phi)``.

    Larger ``L`` wraps the curve more tightly in the plane, so a function with frequency k
    along ``phi`` needs lower frequencies in input space (arXiv 1806.08734, manifold experiment).

    Parameters
    ----------
    phi : (N,) tensor
        Angles, e.g. ``2 pi j / N``.
    L : float
        Number of petals (0: the unit circle).

    Returns
    -------
    (N, 2) tensor
    """
    r = 1 + 0.5 * torch.sin(L * phi)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi)], dim=-1)


# --------------------------------------------------------------------------------------
# Fourier spectrum on a uniform grid
# --------------------------------------------------------------------------------------
def _check_freqs(freqs: Any, n: int) -> torch.Tensor | None:
    """Validate integer frequencies in [0, n // 2] and return them as a long tensor."""
    if freqs is None:
        return None
    arr = np.asarray(freqs.detach().cpu() if isinstance(freqs, torch.Tensor) else freqs)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"freqs has shape {arr.shape}, must be a non-empty 1-D sequence of integers, e.g. [5, 10]"
        )
    if not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(
            f"freqs == {arr.tolist()} holds non-integers; the DFT of N samples over one period "
            f"resolves integer frequencies 0..N//2 only"
        )
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() > n // 2:
        raise ValueError(
            f"freqs == {arr.tolist()} is out of range for N == {n} grid points; allowed 0..{n // 2} "
            f"(Nyquist); sample the function on more points to resolve higher frequencies"
        )
    return torch.from_numpy(arr)


def fourier_spectrum(values: Any, *, freqs: Sequence[int] | None = None) -> Any:
    """Amplitude spectrum of a real function sampled on a uniform grid over one period.

    The samples are taken at ``z_j = j / N``, ``j = 0..N-1`` (or at equally spaced values of a
    curve's periodic parameter). The amplitude of integer frequency ``k`` is
    ``2 |DFT(values)[k]| / N`` for ``0 < k < N/2`` and ``|DFT(values)[k]| / N`` at ``k = 0``
    and at the Nyquist frequency ``k = N/2``, so that ``A sin(2 pi k z + phi)`` reads ``|A|``
    at ``k`` and 0 elsewhere, and a constant ``c`` reads ``|c|`` at 0. This is the paper's
    normalised spectrum before division by the target amplitudes (arXiv 1806.08734).

    Parameters
    ----------
    values : (..., N) tensor or array, real
        Function values on the grid; leading dimensions are batch dimensions (seeds, models).
        A tensor stays on its device and the result is differentiable.
    freqs : sequence of int, optional
        Integer frequencies to return, each in ``0..N//2``. Default: all of ``0..N//2``.

    Returns
    -------
    (..., F) tensor or array
        Amplitudes, ``F = len(freqs)`` or ``N//2 + 1``; same kind (tensor/array) as ``values``.

    Examples
    --------
    >>> z = torch.arange(200, dtype=torch.float64) / 200
    >>> fourier_spectrum(3 * torch.sin(2 * math.pi * 7 * z), freqs=[6, 7, 8]).round(decimals=6)
    tensor([0., 3., 0.], dtype=torch.float64)
    """
    is_tensor = isinstance(values, torch.Tensor)
    v = values if is_tensor else torch.as_tensor(np.asarray(values))
    if v.is_complex():
        raise ValueError(
            f"values has complex dtype {v.dtype}; pass a real function (e.g. values.real)"
        )
    if v.ndim == 0 or v.shape[-1] < 2:
        raise ValueError(
            f"values has shape {tuple(v.shape)}, must be (..., N) with N >= 2 grid points "
            f"along the last dimension"
        )
    if not v.is_floating_point():
        v = v.to(torch.get_default_dtype())
    n = v.shape[-1]
    idx = _check_freqs(freqs, n)
    amp = torch.fft.rfft(v, dim=-1).abs() / n
    # one-sided spectrum: every bin except DC (and Nyquist for even N) holds half the power
    weight = torch.full((amp.shape[-1],), 2.0, dtype=amp.dtype, device=amp.device)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    amp = amp * weight
    if idx is not None:
        amp = amp[..., idx.to(amp.device)]
    return amp if is_tensor else amp.numpy()


# --------------------------------------------------------------------------------------
# Kernel eigenbasis spectrum (data without a grid)
# --------------------------------------------------------------------------------------
def _eig_dense(k: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.linalg import eigh

    n = k.shape[0]
    w, v = eigh(k, subset_by_index=[n - m, n - 1])
    return w, v


def _eig_lanczos(k: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.sparse.linalg import eigsh

    n = k.shape[0]
    if m >= n:
        raise ValueError(
            f"solver == 'eigsh' needs n_components < N, got n_components == {m} with N == {n}; "
            f"use solver='eigh' for the full basis"
        )
    # a fixed start vector makes ARPACK deterministic
    v0 = np.ones(n) / math.sqrt(n)
    w, v = eigsh(k, k=m, which="LA", v0=v0)
    return w, v


EIGEN_SOLVERS: dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]] = {
    "eigh": _eig_dense,  # LAPACK, all or the top-m eigenpairs (default; exact)
    "eigsh": _eig_lanczos,  # ARPACK Lanczos, top-m only: faster when m << N
}
"""Ways to diagonalise the kernel matrix; all return the same basis up to numerical error."""


def kernel_eigenbasis(
    x: Any,
    *,
    kernel: str | Callable = "rbf",
    gamma: float | None = None,
    kernel_params: dict | None = None,
    n_components: int | None = None,
    solver: str = "eigh",
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of a data kernel matrix, largest eigenvalue first.

    The eigenvectors of a smooth kernel play the role of Fourier modes for data without a
    grid: the top ones vary slowly over the data, the bottom ones oscillate
    (arXiv 1806.08734, real-data experiment). The sign of each eigenvector is fixed so that its
    largest-magnitude entry is positive, which makes projections reproducible.

    Parameters
    ----------
    x : (N, D) tensor or array
        The data (flattened after the first dimension if it has more).
    kernel : str or callable
        Any metric of ``sklearn.metrics.pairwise.pairwise_kernels``: ``'rbf'`` (default),
        ``'laplacian'``, ``'polynomial'``, ``'cosine'``, ``'linear'``, ... or a callable.
    gamma : float, optional
        Kernel width for ``'rbf'``/``'laplacian'``/``'polynomial'``; default scikit-learn's
        ``1 / D``.
    kernel_params : dict, optional
        Further keyword arguments of the kernel (``degree``, ``coef0``).
    n_components : int, optional
        Keep the top ``n_components`` eigenpairs (default all ``N``).
    solver : {'eigh', 'eigsh'}
        ``'eigh'``: dense LAPACK (default). ``'eigsh'``: Lanczos for the top few, needs
        ``n_components < N``. See ``EIGEN_SOLVERS``.

    Returns
    -------
    eigenvalues : (M,) array, descending
    eigenvectors : (N, M) array, orthonormal columns
    """
    from sklearn.metrics.pairwise import pairwise_kernels

    if solver not in EIGEN_SOLVERS:
        raise ValueError(f"solver == {solver!r}; choose one of {sorted(EIGEN_SOLVERS)}")
    xa = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if xa.ndim < 2 or xa.shape[0] < 2:
        raise ValueError(
            f"x has shape {xa.shape}, must be (N, D) with N >= 2 points; "
            f"for 1-D data pass x[:, None]"
        )
    xa = xa.reshape(xa.shape[0], -1)
    n = xa.shape[0]
    m = n if n_components is None else int(n_components)
    if not 1 <= m <= n:
        raise ValueError(f"n_components == {n_components}, must be in 1..N == {n}")
    params = dict(kernel_params or {})
    if gamma is not None:
        if not gamma > 0:
            raise ValueError(f"gamma == {gamma}, must be > 0")
        params["gamma"] = gamma
    k = pairwise_kernels(xa, metric=kernel, filter_params=not callable(kernel), **params)
    k = 0.5 * (k + k.T)
    w, v = EIGEN_SOLVERS[solver](k, m)
    order = np.argsort(w)[::-1]
    w, v = w[order], v[:, order]
    flip = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    flip[flip == 0] = 1.0
    return w, v * flip


def eigenbasis_spectrum(
    f_x: Any,
    x: Any = None,
    *,
    kernel: str | Callable = "rbf",
    gamma: float | None = None,
    kernel_params: dict | None = None,
    n_components: int | None = None,
    solver: str = "eigh",
    basis: tuple[Any, Any] | None = None,
    normalize: bool = False,
) -> Any:
    """Coefficients of a function on data in a kernel's eigenbasis, largest eigenvalue first.

    ``coef = V.T @ f_x`` where the columns of ``V`` are the kernel matrix's eigenvectors in
    descending eigenvalue order (see :func:`kernel_eigenbasis`): the "spectrum" of a function
    known only at data points (arXiv 1806.08734, real-data experiment). Low index = smooth direction.

    Parameters
    ----------
    f_x : (N,) or (N, C) tensor or array
        Function values at the N points (C outputs are projected column by column).
    x : (N, D) tensor or array, optional
        The points; needed unless ``basis`` is given.
    kernel, gamma, kernel_params, n_components, solver
        As in :func:`kernel_eigenbasis`.
    basis : (eigenvalues, eigenvectors), optional
        A precomputed ``kernel_eigenbasis(x, ...)``, to project many functions (e.g. every
        n training steps) without diagonalising again.
    normalize : bool
        Divide by ``||f_x||`` (per column), so that with the full basis the squared
        coefficients are the fractions of the function's energy in each direction.

    Returns
    -------
    (M,) or (M, C) tensor or array
        Signed coefficients (same kind as ``f_x``; a tensor comes back on its device).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(50, 3))
    >>> w, v = kernel_eigenbasis(x, gamma=0.5)
    >>> np.abs(eigenbasis_spectrum(v[:, 2], basis=(w, v))[:4]).round(6)
    array([0., 0., 1., 0.])
    """
    is_tensor = isinstance(f_x, torch.Tensor)
    f = np.asarray(f_x.detach().cpu() if is_tensor else f_x, dtype=np.float64)
    if f.ndim not in (1, 2):
        raise ValueError(
            f"f_x has shape {f.shape}, must be (N,) or (N, C); reshape network outputs to (N, C)"
        )
    if basis is None:
        if x is None:
            raise ValueError("x is None and basis is None: pass the points x or basis=kernel_eigenbasis(x)")
        basis = kernel_eigenbasis(
            x, kernel=kernel, gamma=gamma, kernel_params=kernel_params,
            n_components=n_components, solver=solver,
        )
    v = np.asarray(basis[1], dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != f.shape[0]:
        raise ValueError(
            f"f_x has {f.shape[0]} rows but the eigenbasis is for {v.shape[0] if v.ndim else '?'} "
            f"points; evaluate f at the same points x the kernel was built on"
        )
    coef = v.T @ f
    if normalize:
        norm = np.linalg.norm(f, axis=0)
        coef = coef / np.where(norm > 0, norm, 1.0)
    if is_tensor:
        return torch.as_tensor(coef, dtype=f_x.dtype if f_x.is_floating_point() else None,
                               device=f_x.device)
    return coef


# --------------------------------------------------------------------------------------
# Perturbation spectrum (robustness of the learned frequencies)
# --------------------------------------------------------------------------------------
def _as_grid(grid: torch.Tensor) -> torch.Tensor:
    if not isinstance(grid, torch.Tensor):
        grid = torch.as_tensor(np.asarray(grid), dtype=torch.get_default_dtype())
    if grid.ndim == 1:
        grid = grid[:, None]
    if grid.ndim != 2 or grid.shape[0] < 2:
        raise ValueError(
            f"grid has shape {tuple(grid.shape)}, must be (N, D) model inputs ordered along the "
            f"periodic parameter, N >= 2 (a 1-D grid (N,) is read as (N, 1))"
        )
    return grid


def _scalar_output(out: torch.Tensor, n: int) -> torch.Tensor:
    if out.shape not in ((n,), (n, 1)):
        raise ValueError(
            f"the model maps the grid to shape {tuple(out.shape)}; the spectrum needs one scalar "
            f"per grid point, (N,) or (N, 1) with N == {n}; wrap the model to select an output"
        )
    return out.reshape(n)


def perturbation_spectrum(
    model: nn.Module,
    grid: Any,
    *,
    eps: float | Sequence[float],
    n_directions: int = 10,
    seed: int = 0,
    freqs: Sequence[int] | None = None,
    reduce: str = "mean",
) -> torch.Tensor:
    """Spectrum of ``f(.; theta + eps * delta)`` divided by the spectrum of ``f(.; theta)``.

    ``delta`` are random directions in parameter space: a standard Gaussian over all
    parameters, scaled to unit Euclidean norm (all parameters concatenated). The paper finds
    that the high frequencies collapse at smaller ``eps`` than the low ones: the parameters
    that express them occupy less volume (arXiv 1806.08734, robustness experiment). The
    model is evaluated with ``torch.func.functional_call`` and is never modified; it is
    evaluated in its current train/eval mode, without gradients.

    Parameters
    ----------
    model : nn.Module
        Maps ``grid`` to one scalar per point, ``(N,)`` or ``(N, 1)``.
    grid : (N, D) or (N,) tensor
        Inputs at equally spaced values of the periodic parameter (on the model's device).
    eps : float or sequence of float
        Perturbation sizes, each >= 0 (``eps == 0`` gives exactly 1 wherever the unperturbed
        amplitude is non-zero).
    n_directions : int
        Random directions per ``eps`` (the same directions are reused for every ``eps``).
    seed : int
        Seed of the directions (a private generator; global RNGs are untouched).
    freqs : sequence of int, optional
        Frequencies to report (default all ``0..N//2``).
    reduce : {'mean', 'none'}
        Average over directions, or return every direction.

    Returns
    -------
    (E, F) tensor, or (E, n_directions, F) with ``reduce='none'``
        Normalised amplitudes; NaN where the unperturbed amplitude is exactly 0.
    """
    from torch.func import functional_call

    if reduce not in ("mean", "none"):
        raise ValueError(f"reduce == {reduce!r}; choose 'mean' or 'none'")
    check_int("n_directions", n_directions, 1)
    eps_t = torch.as_tensor(np.atleast_1d(np.asarray(eps, dtype=np.float64)))
    if eps_t.ndim != 1 or not torch.all(torch.isfinite(eps_t)) or torch.any(eps_t < 0):
        raise ValueError(f"eps == {eps!r}, must be a finite number >= 0 or a 1-D sequence of them")
    grid = _as_grid(grid)
    n = grid.shape[0]
    idx = _check_freqs(freqs, n)
    params = {k: p.detach() for k, p in model.named_parameters()}
    if not params:
        raise ValueError("model has no parameters to perturb")
    device = next(iter(params.values())).device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    def spectrum(p: dict[str, torch.Tensor]) -> torch.Tensor:
        out = _scalar_output(functional_call(model, p, (grid,)), n)
        s = fourier_spectrum(out.double())
        return s if idx is None else s[..., idx.to(s.device)]

    with torch.no_grad():
        base = spectrum(params)
        result = torch.empty(len(eps_t), n_directions, base.shape[-1], dtype=torch.float64)
        for d in range(n_directions):
            noise = {k: torch.randn(p.shape, generator=gen, dtype=torch.float64) for k, p in params.items()}
            norm = torch.sqrt(sum((z**2).sum() for z in noise.values()))
            for e, ep in enumerate(eps_t.tolist()):
                moved = {
                    k: p + (ep / norm * noise[k]).to(device=device, dtype=p.dtype)
                    for k, p in params.items()
                }
                result[e, d] = spectrum(moved).cpu()
        ratio = result / base.cpu()
        ratio[:, :, base.cpu() == 0] = float("nan")
    return ratio.mean(1) if reduce == "mean" else ratio


# --------------------------------------------------------------------------------------
# Helpers for training loops and results
# --------------------------------------------------------------------------------------
def first_crossing(curves: Any, at: Any, *, threshold: float = 0.5, above: bool = True) -> np.ndarray:
    """For each column, the first ``at`` value where the curve crosses ``threshold``.

    Used for the paper's "learning step" (first recorded step where a frequency's normalised
    magnitude exceeds 0.5, ``above=True``) and for the robustness "collapse eps" (first eps
    where it falls below 0.5, ``above=False``).

    Parameters
    ----------
    curves : (T, F) tensor or array
        One curve per column (frequency), sampled at ``at``.
    at : (T,) tensor or array
        Increasing sample positions (steps, eps).
    threshold : float
    above : bool
        ``True``: first value ``> threshold``; ``False``: first value ``< threshold``.

    Returns
    -------
    (F,) float array
        NaN for a column that never crosses.
    """
    c = np.asarray(curves.detach().cpu() if isinstance(curves, torch.Tensor) else curves, dtype=float)
    a = np.asarray(at.detach().cpu() if isinstance(at, torch.Tensor) else at, dtype=float)
    if c.ndim != 2 or a.ndim != 1 or c.shape[0] != a.shape[0]:
        raise ValueError(
            f"curves has shape {c.shape} and at has shape {a.shape}; need curves (T, F) and at (T,)"
        )
    hit = c > threshold if above else c < threshold
    first = np.argmax(hit, axis=0)
    out = a[first].astype(float)
    out[~hit.any(axis=0)] = np.nan
    return out


def spearman(x: Any, values: Any, *, missing: float) -> dict[str, float]:
    """Spearman's rho (scipy) between ``x`` and ``values``, NaN values read as ``missing``.

    Used with ``missing`` past the last step (a frequency never learned ranks last).
    Constant input gives ``{"rho": nan, "p": nan}``.
    """
    from scipy.stats import spearmanr

    v = np.where(np.isnan(np.asarray(values, dtype=float)), missing, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: rho is NaN, reported as null
        res = spearmanr(x, v)
    return {"rho": float(res.statistic), "p": float(res.pvalue)}


class SpectrumRecorder:
    """Record a model's Fourier spectrum on a grid every ``every`` steps of a training loop.

    Not a hook system: call it once per step, it does something on every ``every``-th step.

    Parameters
    ----------
    grid : (N, D) or (N,) tensor
        Model inputs at equally spaced values of the periodic parameter.
    every : int
        Record when ``step % every == 0``.
    freqs : sequence of int, optional
        Frequencies to keep (default all ``0..N//2``).
    scale : (F,) sequence of float, optional
        Divide the amplitudes by these (the target's amplitudes ``A_i``), giving the paper's
        normalised spectrum: 1 means the frequency is fully learned.
    log : callable, optional
        ``log(step, **fields)``, e.g. ``run.log``: each record is written as ``{key: [F floats]}``.
    key : str
        Field name used with ``log``.

    Attributes
    ----------
    steps_ : (T,) int array
    spectra_ : (T, F) float array

    Examples
    --------
    >>> rec = SpectrumRecorder(grid, every=100, freqs=[5, 10], log=run.log)  # your loop  # doctest: +SKIP
    >>> for step in range(1, steps + 1):  # your loop and run  # doctest: +SKIP
    ...     train_step(); rec(step, net)
    """

    def __init__(
        self,
        grid: Any,
        *,
        every: int = 100,
        freqs: Sequence[int] | None = None,
        scale: Sequence[float] | None = None,
        log: Callable[..., Any] | None = None,
        key: str = "spectrum",
    ) -> None:
        check_int("every", every, 1)  # record every this many steps
        self.grid = _as_grid(grid)
        self.every = every
        self.freqs = None if freqs is None else [int(k) for k in _check_freqs(freqs, self.grid.shape[0])]
        nf = len(self.freqs) if self.freqs is not None else self.grid.shape[0] // 2 + 1
        if scale is not None:
            s = np.asarray(scale, dtype=np.float64)
            if s.shape != (nf,) or np.any(s == 0):
                raise ValueError(
                    f"scale has shape {s.shape} (zeros: {int(np.sum(s == 0))}), must be ({nf},) "
                    f"non-zero: one target amplitude per recorded frequency"
                )
            self.scale = torch.as_tensor(s)
        else:
            self.scale = None
        self.log = log
        self.key = key
        self._steps: list[int] = []
        self._spectra: list[np.ndarray] = []

    def spectrum(self, model: nn.Module) -> torch.Tensor:
        """The (normalised) spectrum of ``model`` now, ``(F,)`` float64 on the CPU."""
        with torch.no_grad():
            out = _scalar_output(model(self.grid), self.grid.shape[0])
            s = fourier_spectrum(out.double().cpu(), freqs=self.freqs)
        return s / self.scale if self.scale is not None else s

    def __call__(self, step: int, model: nn.Module) -> torch.Tensor | None:
        """Record (and log) if ``step % every == 0``; return the spectrum then, else ``None``."""
        if step % self.every:
            return None
        s = self.spectrum(model)
        self._steps.append(int(step))
        self._spectra.append(s.numpy())
        if self.log is not None:
            self.log(step, **{self.key: [round(float(v), 6) for v in s]})
        return s

    @property
    def steps_(self) -> np.ndarray:
        return np.asarray(self._steps, dtype=np.int64)

    @property
    def spectra_(self) -> np.ndarray:
        nf = len(self.freqs) if self.freqs is not None else self.grid.shape[0] // 2 + 1
        return np.stack(self._spectra) if self._spectra else np.zeros((0, nf))

    def state_dict(self) -> dict:
        """History for a checkpoint (so a resumed loop keeps the earlier records)."""
        return {"steps": list(self._steps), "spectra": [s.tolist() for s in self._spectra]}

    def load_state_dict(self, state: dict) -> None:
        self._steps = [int(s) for s in state["steps"]]
        self._spectra = [np.asarray(s, dtype=np.float64) for s in state["spectra"]]


def plot_spectrum_heatmap(
    spectra: Any,
    steps: Any,
    freqs: Sequence[float],
    *,
    ax: Any = None,
    title: str | None = None,
    ylabel: str = "training step",
    xlabel: str = "frequency k",
    colorbar: bool = True,
    path: str | Path | None = None,
):
    """Heatmap of normalised magnitudes: rows = steps (or eps), columns = frequencies, 0..1.

    Parameters
    ----------
    spectra : (T, F) tensor or array
        Normalised magnitudes; values above 1 show as 1.
    steps : (T,) tensor or array
        Row labels (training steps, or perturbation sizes with ``ylabel='eps'``).
    freqs : (F,) sequence
        Column labels.
    ax : matplotlib Axes, optional
        Draw into it; otherwise a new figure is made.
    title, ylabel, xlabel : str
    colorbar : bool
    path : path, optional
        Save the figure there as PNG (and close it).

    Returns
    -------
    matplotlib Figure
    """
    from deepscope.report.figures import plt, save

    s = np.asarray(spectra.detach().cpu() if isinstance(spectra, torch.Tensor) else spectra, dtype=float)
    t = np.asarray(steps.detach().cpu() if isinstance(steps, torch.Tensor) else steps, dtype=float)
    f = np.asarray(freqs, dtype=float)
    if s.ndim != 2 or s.shape != (t.size, f.size):
        raise ValueError(
            f"spectra has shape {s.shape}, must be (len(steps), len(freqs)) == ({t.size}, {f.size})"
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.4))
    else:
        fig = ax.figure
    df = (f[1] - f[0]) if f.size > 1 else 1.0
    dt = (t[1] - t[0]) if t.size > 1 else 1.0
    im = ax.imshow(
        s, aspect="auto", origin="lower", vmin=0.0, vmax=1.0, cmap="viridis",
        extent=(f[0] - df / 2, f[-1] + df / 2, t[0] - dt / 2, t[-1] + dt / 2),
        interpolation="nearest",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, label="normalised magnitude")
    if path is not None:
        save(fig, path)
    return fig
