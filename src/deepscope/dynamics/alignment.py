"""Tangent-kernel alignment with the labels, its spectrum, and a path complexity measure.

Baratin et al., "Implicit Regularization via Neural Feature Alignment", AISTATS 2021,
arXiv 2008.00938: during training the tangent kernel aligns with the label kernel along a few
directions; the alignment, the spectrum and a complexity measure along the training path
follow that.

Cookbook::

    import torch
    from deepscope.dynamics.ntk import empirical_ntk
    from deepscope.dynamics.alignment import (
        kernel_alignment, cka, center_kernel, eigen_stats, yky, path_complexity,
    )
    from deepscope.nets import MLP

    net = MLP(40, [256, 256], 10).eval()
    x, y = torch.randn(100, 40), torch.randint(0, 10, (100,))

    K = empirical_ntk(net, x)                               # (100, 100, 10, 10)
    kernel_alignment(K, y)                                  # 0-d tensor, A in [0, 1]
    kernel_alignment(empirical_ntk(net, x, mode="trace"), y)           # traced convention
    layers = empirical_ntk(net, x, per_layer=True)
    {k: kernel_alignment(v, y).item() for k, v in layers.items()}      # per-layer alignment
    cka(K, empirical_ntk(net, x, implementation="jacobian"))            # 1 up to rounding
    eigen_stats(center_kernel(K))    # {'top_eigenvalue': ..., 'effective_rank': ..., ...}
    yky(net, x, y)                   # y^T K_c y = ||J^T y_c||^2, one vjp, K never formed

    # the complexity measure from per-checkpoint step lengths and kernel traces
    path_complexity([0.0, 1.2, 0.8], [50.0, 80.0, 95.0], n=100)     # C, cumulative, (3,)
    gamma = margin(net(x), y)                     # 10th percentile of f_y(x) - max_(j != y) f_j(x)
    path_complexity([0.0, 1.2, 0.8], [50.0, 80.0, 95.0], n=100, margin=gamma)  # variant C / gamma

Label convention (as the paper's code computes it): ``y`` is one-hot ``(N, O)``, centred over the
examples, and flattened output-major, ``y_vec[o * N + n] = y[n, o]``; the full kernel is the
``(O N) x (O N)`` matrix ``K[(o, n), (p, m)] = K[n, m, o, p]``. All functions here index the
kernel as ``empirical_ntk`` returns it, so no flattening is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vjp

from deepscope.dynamics.ntk import center_axes_, check_ntk_model

__all__ = [
    "center_kernel",
    "label_targets",
    "kernel_alignment",
    "cka",
    "eigen_stats",
    "kernel_matrix",
    "yky",
    "path_complexity",
    "output_margins",
    "margin",
    "linear_rademacher_bound",
]


def _kernel_kind(k: torch.Tensor, name: str = "K") -> str:
    if not isinstance(k, torch.Tensor) or k.ndim not in (2, 3, 4) or k.shape[0] != k.shape[1]:
        shape = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        raise ValueError(
            f"{name} has shape {shape}; pass a kernel on one set of N examples: full (N, N, O, O), "
            f"trace (N, N) or diagonal (N, N, O), as empirical_ntk(model, x) returns"
        )
    if k.ndim == 4 and k.shape[2] != k.shape[3]:
        raise ValueError(f"{name} has shape {tuple(k.shape)}; a full kernel is (N, N, O, O)")
    return {2: "trace", 3: "diagonal", 4: "full"}[k.ndim]


def center_kernel(k: torch.Tensor) -> torch.Tensor:
    """``(I_O (x) H) K (I_O (x) H)``, ``H = I - 11^T / N``: centre over the examples (a new tensor).

    Parameters
    ----------
    k : (N1, N2, O, O), (N1, N2) or (N1, N2, O) tensor
        A kernel as ``empirical_ntk`` returns it (the first two axes index the examples).

    Returns
    -------
    tensor of the same shape; centring twice changes nothing (``H^2 = H``).
    """
    if not isinstance(k, torch.Tensor) or k.ndim not in (2, 3, 4):
        raise ValueError(f"k has shape {getattr(k, 'shape', type(k).__name__)}, must be a 2-, 3- or 4-D kernel")
    return center_axes_(k.clone(), 0, 1)


def label_targets(y: Any, n_classes: int | None = None, *, centered: bool = True,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """One-hot targets ``(N, O)`` from labels, centred over the examples by default.

    Parameters
    ----------
    y : (N,) integer labels, or (N, O) float targets (used as given)
    n_classes : int, optional
        ``O`` for integer labels; default ``max(y) + 1``.
    centered : bool
        Subtract the mean over the examples (``H y``).
    """
    y = torch.as_tensor(y)
    if y.ndim == 1 and not y.is_floating_point():
        o = int(y.max()) + 1 if n_classes is None else int(n_classes)
        if y.min() < 0 or y.max() >= o:
            raise ValueError(f"labels span {int(y.min())}..{int(y.max())}; with n_classes == {o} they must be in 0..{o - 1}")
        t = torch.nn.functional.one_hot(y.long(), o).to(dtype)
    elif y.ndim == 2:
        t = y.to(dtype)
    else:
        raise ValueError(
            f"y has shape {tuple(y.shape)} and dtype {y.dtype}; pass integer labels (N,) or float targets (N, O)"
        )
    return t - t.mean(0, keepdim=True) if centered else t


def kernel_alignment(k: torch.Tensor, y: Any, *, centered: bool = True,
                     n_classes: int | None = None) -> torch.Tensor:
    """Centred alignment of a kernel with the labels: ``<K_c, T>_F / (||K_c||_F ||T||_F)``.

    The paper's ``A = y^T K_c y / (||K_c||_F ||y||^2)`` (arXiv 2008.00938, as its code computes
    it), with ``y`` the centred one-hot labels flattened output-major and ``T = y y^T``, so that
    ``||T||_F = ||y||^2``. By the kernel's shape:

    - full ``(N, N, O, O)``: ``sum_(n,m,o,p) y[n,o] K_c[n,m,o,p] y[m,p] / (||K_c||_F ||y||^2)``;
    - diagonal ``(N, N, O)``: the same with ``K[n,m,o,p] = delta_op K[n,m,o]`` (block diagonal);
    - trace ``(N, N)``: ``tr(Y^T K_c Y) / (||K_c||_F ||Y Y^T||_F)``, the alignment of the
      output-traced kernel with the traced label kernel ``Y Y^T = sum_o y_o y_o^T``.

    Each is 1 when ``K`` is a positive multiple of the matching label kernel, 0 for a kernel
    orthogonal to it, and in [0, 1] for a PSD kernel. The full and the traced alignments are
    different numbers for one network (the traced one ignores which output a gradient belongs
    to and is usually larger): compare runs within one convention.

    Parameters
    ----------
    k : kernel tensor (above), on the same ``N`` examples as ``y``
    y : (N,) integer labels or (N, O) float targets
    centered : bool
        Centre the kernel and the targets over the examples (the paper's choice).
    n_classes : int, optional
        ``O`` for a traced kernel and integer labels (default ``max(y) + 1``).

    Returns
    -------
    0-d tensor, float64; NaN if the centred kernel is zero.

    Examples
    --------
    >>> y = torch.tensor([0, 1, 1, 2])
    >>> t = label_targets(y)                                   # (4, 3), centred
    >>> kernel_alignment(3.0 * torch.einsum("no,mp->nmop", t, t), y)
    tensor(1., dtype=torch.float64)
    """
    kind = _kernel_kind(k)
    n = k.shape[0]
    o = k.shape[2] if kind != "trace" else n_classes
    t = label_targets(y, o, centered=centered).to(k.device)
    if t.shape[0] != n or (kind != "trace" and t.shape[1] != k.shape[2]):
        raise ValueError(
            f"y gives targets of shape {tuple(t.shape)} but the kernel is {tuple(k.shape)}; "
            f"they must share N (and O)"
        )
    kd = k.to(torch.float64, copy=centered)  # centring writes into its own copy
    kc = center_axes_(kd, 0, 1) if centered else kd
    if kind == "full":
        num = torch.einsum("no,nmop,mp->", t, kc, t)
        den = t.pow(2).sum()
    elif kind == "diagonal":
        num = torch.einsum("no,nmo,mo->", t, kc, t)
        den = t.pow(2).sum()
    else:
        num = torch.einsum("no,nm,mo->", t, kc, t)
        den = torch.linalg.matrix_norm(t.T @ t)  # ||Y Y^T||_F = ||Y^T Y||_F
    return num / (torch.linalg.vector_norm(kc) * den)


def cka(k1: torch.Tensor, k2: torch.Tensor, *, centered: bool = True) -> torch.Tensor:
    """Centred kernel alignment of two kernels: ``<K1_c, K2_c>_F / (||K1_c||_F ||K2_c||_F)``.

    Parameters
    ----------
    k1, k2 : kernels of one shape, (N, N, O, O), (N, N) or (N, N, O)
    centered : bool
        Centre both over the examples first.

    Returns
    -------
    0-d tensor, float64, in [-1, 1] ([0, 1] for PSD kernels); 1 iff ``K2_c = c K1_c``, c > 0.
    """
    _kernel_kind(k1, "k1")
    _kernel_kind(k2, "k2")
    if k1.shape != k2.shape:
        raise ValueError(f"k1 has shape {tuple(k1.shape)} and k2 {tuple(k2.shape)}; they must match")
    a, b = k1.to(torch.float64, copy=centered), k2.to(torch.float64, copy=centered)
    if centered:
        a, b = center_axes_(a, 0, 1), center_axes_(b, 0, 1)
    return (a * b).sum() / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))


def kernel_matrix(k: torch.Tensor) -> torch.Tensor:
    """The kernel as a square matrix, output-major: full -> ``(O N, O N)``, ``[(o, n), (p, m)]``.

    A diagonal kernel becomes the block-diagonal ``(O N, O N)`` matrix; a traced one is returned
    as is.
    """
    kind = _kernel_kind(k)
    n = k.shape[0]
    if kind == "trace":
        return k
    if kind == "full":
        o = k.shape[2]
        return k.permute(2, 0, 3, 1).reshape(o * n, o * n)
    return torch.block_diag(*k.permute(2, 0, 1))


def eigen_stats(k: torch.Tensor, *, top_k: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Spectrum statistics of a kernel: top, mean, median eigenvalue, effective rank, trace ratios.

    Parameters
    ----------
    k : (N, N, O, O), (N, N) or (N, N, O) tensor
        Use ``center_kernel(k)`` for the centred kernel's spectrum.
    top_k : sequence of int
        ``trace_ratio_top{k}`` is the fraction of the trace in the ``k`` largest eigenvalues.

    Returns
    -------
    dict of float
        ``top_eigenvalue``, ``mean_eigenvalue``, ``median_eigenvalue``, ``effective_rank``
        (``exp`` of the entropy of the normalised eigenvalues, negatives from rounding set to 0:
        1 for rank one, ``M`` for ``M`` equal eigenvalues) and ``trace_ratio_top{k}``.
    """
    if isinstance(top_k, int) or any(not isinstance(j, int) or j < 1 for j in top_k):
        raise ValueError(f"top_k == {top_k!r}, must be a sequence of integers >= 1, e.g. (1, 5, 10)")
    kind = _kernel_kind(k)
    kd = k.detach().to(torch.float64)
    if kind == "diagonal":
        w = torch.cat([torch.linalg.eigvalsh(kd[:, :, o]) for o in range(kd.shape[2])])
    else:
        w = torch.linalg.eigvalsh(kernel_matrix(kd))
    w = torch.sort(w, descending=True).values.cpu()
    pos = w.clamp(min=0)
    total = pos.sum()
    p = pos / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    out = {
        "top_eigenvalue": float(w[0]),
        "mean_eigenvalue": float(w.mean()),
        "median_eigenvalue": float(w.median()),
        "effective_rank": float(entropy.exp()),
    }
    for j in top_k:
        out[f"trace_ratio_top{j}"] = float(pos[:j].sum() / total)
    return out


def yky(model: nn.Module, x: torch.Tensor, y: Any, *, centered: bool = True,
        per_layer: bool = False, chunk_size: int | None = None) -> torch.Tensor | dict[str, torch.Tensor]:
    """``y^T K y = ||J^T y||^2`` through one vector-Jacobian product, never forming ``K``.

    ``J`` is the ``(N O) x P`` Jacobian of the outputs on ``x``; ``J^T y`` is the gradient of
    ``sum_(n, o) y[n, o] f_o(x_n)``. With ``centered`` the targets are centred, which gives
    ``y^T K_c y`` for the centred kernel ``K_c`` (the numerator of ``kernel_alignment``).

    Parameters
    ----------
    model : nn.Module
        ``(N, *features) -> (N, O)``; BatchNorm and dropout in eval mode.
    x : (N, *features) tensor
    y : (N,) integer labels (one-hot over the model's ``O`` outputs) or (N, O) float targets
    centered : bool
    per_layer : bool
        Return ``{module name: ||J_l^T y||^2}`` over the modules owning trainable parameters.
    chunk_size : int, optional
        Examples per vjp (``J^T y`` is a sum over examples); default all at once.

    Returns
    -------
    0-d tensor (or dict of them), the parameters' dtype.
    """
    check_ntk_model(model)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model has no parameters with requires_grad=True")
    fixed = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    fixed.update(dict(model.named_buffers()))
    dtype = next(iter(params.values())).dtype
    n = x.shape[0]
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size == {chunk_size!r}, must be an integer >= 1")
    c = chunk_size or n
    with torch.no_grad():
        o = functional_call(model, (params, fixed), (x[:1],)).reshape(1, -1).shape[1]
    t = label_targets(y, o, centered=centered, dtype=dtype).to(x.device)
    if t.shape != (n, o):
        raise ValueError(f"y gives targets of shape {tuple(t.shape)}, the model's outputs are ({n}, {o})")
    grads: dict[str, torch.Tensor] = {}
    for i in range(0, n, c):
        xi, ti = x[i:i + c], t[i:i + c]
        _, pull = vjp(lambda p, xi=xi: functional_call(model, (p, fixed), (xi,)).reshape(xi.shape[0], o), params)
        for k, g in pull(ti)[0].items():
            grads[k] = grads[k] + g if k in grads else g
    sq = {k: g.pow(2).sum() for k, g in grads.items()}
    if not per_layer:
        return torch.stack(list(sq.values())).sum()
    out: dict[str, torch.Tensor] = {}
    for k, v in sq.items():
        owner = k.rpartition(".")[0]
        out[owner] = out[owner] + v if owner in out else v
    return out


def output_margins(logits: torch.Tensor, labels: Any) -> torch.Tensor:
    """Per-example multiclass margins ``f_y(x) - max_(j != y) f_j(x)`` (negative where misclassified).

    Parameters
    ----------
    logits : (N, O) tensor
    labels : (N,) integer labels in ``0..O-1`` (the labels trained on)
    """
    logits = torch.as_tensor(logits).detach()
    labels = torch.as_tensor(labels).long().to(logits.device)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[1] < 2:
        raise ValueError(f"logits has shape {tuple(logits.shape)} and labels {tuple(labels.shape)}; "
                         f"pass (N, O) logits with O >= 2 and (N,) labels")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels span {int(labels.min())}..{int(labels.max())}; they must be in "
                         f"0..{logits.shape[1] - 1}")
    true = logits.gather(1, labels[:, None])[:, 0]
    other = logits.scatter(1, labels[:, None], float("-inf")).max(1).values
    return true - other


def margin(logits: torch.Tensor, labels: Any, *, quantile: float = 0.1) -> float:
    """The margin ``gamma`` of the margin-normalised complexity: a low quantile of :func:`output_margins`.

    The margin bound (``P(error) <= P_hat(margin < gamma) + 2 R_hat / gamma + ...``) holds for
    any ``gamma > 0``; taking the ``quantile``-th quantile of the training margins (default the
    10th percentile, the convention of Jiang et al., "Fantastic generalization measures", ICLR
    2020, and of Bartlett et al. 2017's figures) makes the empirical margin loss ``quantile``.
    Non-positive while more than ``quantile`` of the examples are misclassified: the
    margin-normalised complexity is then undefined (``path_complexity`` returns NaN), one reason
    to read it only once a run fits its labels.
    """
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile == {quantile}, must be in [0, 1), e.g. 0.1")
    return float(torch.quantile(output_margins(logits, labels).double(), quantile))


def linear_rademacher_bound(norm_bound: float, kernel_trace: float, n: int) -> float:
    """``B sqrt(Tr K) / n``: the bound on the empirical Rademacher complexity of a linear class.

    For ``F = {x -> <w, phi(x)> : ||w|| <= B}`` on ``n`` examples with kernel ``K = Phi Phi^T``,
    ``R_hat(F) = (B / n) E_sigma ||sum_i sigma_i phi(x_i)|| <= (B / n) sqrt(Tr K)`` (Jensen), with
    equality when the features ``phi(x_i)`` are orthogonal (then ``||sum_i sigma_i phi(x_i)||^2 =
    Tr K`` for every sign pattern). The term each checkpoint of :func:`path_complexity` adds.
    """
    if norm_bound < 0 or kernel_trace < 0 or not isinstance(n, int) or n < 1:
        raise ValueError(f"norm_bound == {norm_bound}, kernel_trace == {kernel_trace}, n == {n!r}; "
                         f"need norm_bound >= 0, kernel_trace >= 0 and an integer n >= 1")
    return float(norm_bound) * math.sqrt(kernel_trace) / n


def path_complexity(step_norms: Any, kernel_traces: Any, n: int, *,
                    margin: float | None = None) -> np.ndarray:
    """The tangent-kernel complexity measure along a training path, cumulated over checkpoints.

    ``C_T = (1 / n) sum_(k : t_k <= T) ||theta_(t_k) - theta_(t_(k-1))||_2 sqrt(Tr K_(t_k))``

    ``K_t`` is the uncentred full tangent kernel on the ``n`` training probe examples at ``t``,
    ``Tr K_t = sum_(i, o) ||d f_o(x_i) / d theta||^2 = ||Phi_t||_F^2``.

    Sources. Baratin et al., "Implicit Regularization via Neural Feature Alignment", AISTATS
    2021 (arXiv 2008.00938), the section on the heuristic complexity measure; its text could
    not be read from this environment (only the abstract is stored), so the form is taken from
    the two readable statements of it:

    - Thomas Walker, "A Survey of Methods for Deriving Bounds on the Generalization of Deep
      Neural Networks" (PDF in github.com/ThomasWalker1/Generalization-of-Neural-Networks,
      commit 4f5873e, folder ``Reports and Presentation/``, section 19.2, p. 54), restating the
      paper: the heuristic is ``C(f_w) = sum_t ||delta w_t|| ||Phi_t||_F``, ``Phi_t`` the
      tangent-feature matrix at iteration ``t``, extrapolated from the Rademacher bound of
      sequences of linear updates with ``||delta w_t|| <= m_t``,
      ``R_hat_S <= sum_t (m_t / n) ||Phi_t||_F`` (each term :func:`linear_rademacher_bound`).
      No margin; the bound has the ``1 / n``, the restated heuristic does not. The same
      author's notebook re-implementation (``Generalization in Deep Learning/Tangent Kernel/
      tangent_kernel_complexity.ipynb``) uses no margin either.
    - The authors' code (github.com/tfjgeorge/ntk_alignment, commit 7132338, ``train.py
      --complexity``) logs the two per-checkpoint quantities at the log-spaced iterations
      0 and ``5 * 1.15^k``: ``norm_dw`` between kernel checkpoints and ``trK``, the trace of
      the full 10-output kernel on 100 fixed training examples divided by ``n`` (nngeometry's
      per-example-averaged Jacobian product, a constant factor from ours). It never assembles
      the measure and computes no margin.

    The ``1 / n`` is kept (the bound's normalisation): with the same probe set size it is one
    constant for every run, so it changes no ranking.

    ``margin=gamma`` gives the margin-normalised variant ``C_T / gamma``, this library's
    reading of the margin bound (a classifier's Rademacher term enters its error bound divided
    by the margin, ``P(error) <= P_hat(margin < gamma) + 2 R_hat / gamma + ...``), with
    ``gamma`` the 10th percentile of the training margins (:func:`margin`). It is reported
    beside the measure, not in its place: no readable source has it, and it is undefined
    (``gamma <= 0``) before a run fits.

    Parameters
    ----------
    step_norms : (T,) array
        ``||theta_(t_k) - theta_(t_(k-1))||`` per checkpoint (0 at the first).
    kernel_traces : (T,) array
        ``Tr K_(t_k)`` per checkpoint.
    n : int
        Number of probe examples the traces were computed on.
    margin : float, optional
        ``gamma`` at the read-out point, for the margin-normalised variant (the whole cumulated
        path is divided by it); NaN when ``gamma <= 0`` (the network does not separate its
        training labels at that margin). ``None``: the measure itself.

    Returns
    -------
    (T,) float64 array: ``C`` (or ``C / gamma``) after each checkpoint.

    Examples
    --------
    >>> path_complexity([0.0, 1.0, 2.0], [4.0, 9.0, 16.0], n=2)
    array([0. , 1.5, 5.5])
    >>> path_complexity([0.0, 1.0, 2.0], [4.0, 9.0, 16.0], n=2, margin=0.5)
    array([ 0.,  3., 11.])
    """
    d = np.asarray(step_norms, dtype=np.float64)
    tr = np.asarray(kernel_traces, dtype=np.float64)
    if d.ndim != 1 or d.shape != tr.shape:
        raise ValueError(f"step_norms has shape {d.shape} and kernel_traces {tr.shape}; they must be (T,) each")
    if np.any(d < 0) or np.any(tr < 0):
        raise ValueError("step_norms and kernel_traces must be >= 0 (norms and traces of a PSD kernel)")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n == {n!r}, must be the number of probe examples (an integer >= 1)")
    c = np.cumsum(d * np.sqrt(tr)) / n
    if margin is None:
        return c
    return c / margin if margin > 0 else np.full_like(c, np.nan)
