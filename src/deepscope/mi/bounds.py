"""Variational lower bounds on mutual information, as pure functions of critic scores.

A critic T(x, y) scores pairs. *Joint* scores come from pairs drawn together
(x_i, y_i); *marginal* scores from pairs drawn independently (x_i, y_j), i != j,
or x_i with a shuffled y. Every function here is differentiable and stateless
(``mine_ema`` takes its moving-average state as an argument and returns the
new one). Values are in nats.

>>> import math, torch
>>> from deepscope.mi import bounds
>>> g = torch.Generator().manual_seed(0)
>>> tj, tm = torch.randn(256, generator=g) + 1, torch.randn(256, generator=g)
>>> dv = bounds.dv(tj, tm)                 # Donsker-Varadhan (MINE's bound), a 0-d tensor
>>> bool(bounds.nwj(tj, tm) <= dv)         # f-divergence bound (MINE-f, NWJ): never above DV
True
>>> s = torch.randn(64, 64, generator=g)   # s[i, j] = T(x_i, y_j)
>>> bool(bounds.infonce(s) <= math.log(64))
True
>>> smile = bounds.smile(*bounds.split_scores(s), tau=5.0)
>>> value, log_ema = bounds.mine_ema(tj, tm, log_ema=None, alpha=0.01)
>>> value, log_ema = bounds.objective("smile", tj, tm, tau=5.0)   # any bound by name
>>> bool(bounds.evaluate("mine", tj, tm) == dv)   # the value a bound reports ('mine' reports DV)
True

Choosing a bound by name goes through one table, :func:`objective` (what a bound trains
with: value and gradient) and :func:`evaluate` (the value it reports); ``MINE``, ``MILoss``
and the staircase all call them, and a test checks every path against the formulas.

References: MINE, Belghazi et al. 2018 (arXiv 1801.04062); NWJ, Nguyen, Wainwright
& Jordan 2010; InfoNCE, van den Oord et al. 2018 and Poole et al. 2019 (arXiv
1905.06922); SMILE, Song & Ermon 2020 (arXiv 1910.06222).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F

__all__ = [
    "Bound",
    "BOUNDS",
    "check_bound",
    "objective",
    "pair_scores",
    "infonce_rows",
    "logmeanexp",
    "split_scores",
    "dv",
    "nwj",
    "infonce",
    "js",
    "smile",
    "mine_ema",
    "evaluate",
]

#: A bound chosen by name: ``'mine'`` (DV value, moving-average corrected gradient), ``'dv'``,
#: ``'nwj'`` (MINE-f), ``'infonce'`` (at most log K), ``'smile'`` (JS gradient, clipped DV value).
Bound = Literal["mine", "dv", "nwj", "infonce", "smile"]

#: The names accepted wherever a bound is chosen by name.
BOUNDS: tuple[str, ...] = get_args(Bound)


def check_bound(bound: str) -> str:
    """Return ``bound`` if it names a bound, else raise ``ValueError`` listing the names."""
    if bound not in BOUNDS:
        raise ValueError(f"bound == {bound!r}; choose one of {', '.join(BOUNDS)}")
    return bound


def logmeanexp(t: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """log(mean(exp(t))) computed stably with logsumexp, over ``dim`` or all elements."""
    if dim is None:
        return torch.logsumexp(t.reshape(-1), 0) - math.log(t.numel())
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


def split_scores(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a (K, K) score matrix into joint scores (diagonal, K) and marginal ones (off-diagonal, K(K-1))."""
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores.shape == {tuple(scores.shape)}, must be square (K, K)")
    k = scores.shape[0]
    if k < 2:
        raise ValueError(f"scores.shape == {tuple(scores.shape)}, need K >= 2 for marginal pairs")
    off = ~torch.eye(k, dtype=torch.bool, device=scores.device)
    return scores.diagonal(), scores[off]


def dv(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan bound: E_P[T] - log E_Q[e^T].

    Parameters
    ----------
    t_joint : (K,) tensor
        Critic scores on joint pairs.
    t_marginal : (M,) tensor
        Critic scores on pairs from the product of marginals.

    Notes
    -----
    Tight at T = log dP/dQ + c for any constant c. Its minibatch gradient is biased
    (see :func:`mine_ema`).
    """
    return t_joint.mean() - logmeanexp(t_marginal)


def nwj(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """f-divergence (NWJ, "MINE-f") bound: E_P[T] - E_Q[e^{T-1}].

    Tight only at T = 1 + log dP/dQ (no free constant); looser than DV for a given
    critic but its minibatch gradient is unbiased. The exponent is evaluated as
    ``exp(logmeanexp(T) - 1)`` so large scores overflow no earlier than DV's.
    """
    return t_joint.mean() - torch.exp(logmeanexp(t_marginal) - 1.0)


def infonce_rows(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE's per-row terms s_ii - log (1/K) sum_j s_ij, a (K,) tensor (their mean is :func:`infonce`)."""
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores.shape == {tuple(scores.shape)}, must be square (K, K)")
    return scores.diagonal() - logmeanexp(scores, dim=1)


def infonce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE bound from all K x K pairs: mean_i [s_ii - log (1/K) sum_j s_ij].

    Parameters
    ----------
    scores : (K, K) tensor
        ``scores[i, j] = T(x_i, y_j)``; the diagonal holds the joint pairs.

    Notes
    -----
    Never exceeds log K: with K = 64 it cannot report more than 4.16 nats.
    """
    return infonce_rows(scores).mean()


def js(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon (f-GAN) objective E_P[-softplus(-T)] - E_Q[softplus(T)].

    Not a bound on MI, but a low-variance objective whose maximiser is also
    T* = log dP/dQ; SMILE trains the critic with it.
    """
    return -F.softplus(-t_joint).mean() - F.softplus(t_marginal).mean()


def smile(t_joint: torch.Tensor, t_marginal: torch.Tensor, *, tau: float = 5.0) -> torch.Tensor:
    """SMILE: the DV value with the critic clipped to [-tau, tau] inside the log-mean-exp.

    The returned tensor's *value* is the clipped DV estimate; its *gradient* is the
    gradient of :func:`js` (the training objective of Song & Ermon 2020). ``tau=inf``
    disables clipping. Clipping trades variance for bias: smaller tau, lower variance.
    """
    if not tau > 0:
        raise ValueError(f"tau == {tau}, must be > 0 (use math.inf for no clipping)")
    tm = t_marginal if math.isinf(tau) else t_marginal.clamp(-tau, tau)
    value = t_joint.mean() - logmeanexp(tm)
    obj = js(t_joint, t_marginal)
    return obj + (value - obj).detach()


def mine_ema(
    t_joint: torch.Tensor,
    t_marginal: torch.Tensor,
    *,
    log_ema: torch.Tensor | None,
    alpha: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MINE's bias-corrected DV bound.

    The minibatch gradient of DV, E_B[dT] - E_B[dT e^T] / E_B[e^T], is biased because
    the denominator is estimated on the same batch. MINE replaces it by a moving
    average across batches (Belghazi et al. 2018, section 3.2). This function
    returns a tensor whose **value is the DV bound** on this batch and whose
    **gradient is the corrected one**, E_B[dT_joint] - E_B[dT e^T] / ema, plus the
    updated moving average (kept in log space, so it never overflows).

    Parameters
    ----------
    t_joint : (K,) tensor
    t_marginal : (M,) tensor
    log_ema : scalar tensor or None
        log of the moving average of E[e^T] over past batches; ``None`` on the first
        batch (initialised with this batch's value).
    alpha : float in (0, 1]
        Weight of the new batch: ema <- (1 - alpha) ema + alpha mean(e^T_marginal).
        alpha = 1 recovers the plain (biased) DV gradient.

    Returns
    -------
    value : scalar tensor
        DV bound on this batch, carrying the bias-corrected gradient.
    log_ema : scalar tensor (detached)
        Updated state.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha == {alpha}, must be in (0, 1]")
    lme = logmeanexp(t_marginal)
    with torch.no_grad():
        if log_ema is None or alpha == 1.0:
            new = lme.detach().clone()
        else:
            new = torch.logaddexp(log_ema + math.log1p(-alpha), lme.detach() + math.log(alpha))
    # d/dT exp(lme - c) = e^T / (M e^c): the corrected second term when c = log ema.
    surrogate = t_joint.mean() - torch.exp(lme - new)
    value = t_joint.mean() - lme
    return surrogate + (value - surrogate).detach(), new


# -- one dispatch by name ------------------------------------------------------------
# Every entry: (t_joint (K,), t_marginal, log_ema, alpha, tau) -> (value, new log_ema or None).
# The value carries the gradient the bound trains with. For 'infonce' t_marginal is the
# (K, K) score matrix, row i holding x_i against every y_j (see pair_scores).
_Objective = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", float, float],
                      "tuple[torch.Tensor, torch.Tensor | None]"]


def _mine(tj, tm, log_ema, alpha, tau):
    return mine_ema(tj, tm, log_ema=log_ema, alpha=alpha)


def _dv(tj, tm, log_ema, alpha, tau):
    return dv(tj, tm), None


def _nwj(tj, tm, log_ema, alpha, tau):
    return nwj(tj, tm), None


def _infonce(tj, tm, log_ema, alpha, tau):
    if tm.ndim != 2 or tm.shape[0] != tm.shape[1] or tj.shape != tm.shape[:1]:
        raise ValueError(
            f"bound == 'infonce' needs t_joint (K,) and t_marginal as the (K, K) score matrix; got "
            f"shapes {tuple(tj.shape)} and {tuple(tm.shape)} (use pair_scores('infonce', scores))"
        )
    return (tj - logmeanexp(tm, dim=1)).mean(), None


def _smile(tj, tm, log_ema, alpha, tau):
    return smile(tj, tm, tau=tau), None


_OBJECTIVES: dict[str, _Objective] = {
    "mine": _mine, "dv": _dv, "nwj": _nwj, "infonce": _infonce, "smile": _smile,
}


def objective(
    bound: Bound,
    t_joint: torch.Tensor,
    t_marginal: torch.Tensor,
    *,
    log_ema: torch.Tensor | None = None,
    alpha: float = 0.01,
    tau: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What ``bound`` trains with: its value on these scores, carrying its training gradient.

    Parameters
    ----------
    bound : {'mine', 'dv', 'nwj', 'infonce', 'smile'}
    t_joint : (K,) tensor
        Scores of the joint pairs.
    t_marginal : (M,) tensor, or (K, K) for ``'infonce'``
        Scores of pairs from the product of marginals; for InfoNCE the full score matrix
        (``s[i, j] = T(x_i, y_j)``, diagonal included), as :func:`pair_scores` returns it.
    log_ema, alpha :
        The moving-average state and weight of ``'mine'`` (see :func:`mine_ema`).
    tau : float
        Clipping of ``'smile'``.

    Returns
    -------
    value : scalar tensor
        The bound ('mine': DV with the corrected gradient; 'smile': clipped DV with the JS
        gradient).
    log_ema : scalar tensor or None
        The updated moving average for ``'mine'``, ``None`` for the others.
    """
    return _OBJECTIVES[check_bound(bound)](t_joint, t_marginal, log_ema, alpha, tau)


def pair_scores(bound: Bound, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint and marginal scores of a (K, K) score matrix, in the form :func:`objective` takes.

    ``'infonce'``: the diagonal and the whole matrix; the others: the diagonal and the
    K(K-1) off-diagonal scores (:func:`split_scores`).
    """
    if check_bound(bound) == "infonce":
        return scores.diagonal(), scores
    return split_scores(scores)


def evaluate(name: str, t_joint: torch.Tensor, t_marginal: torch.Tensor, *, tau: float = 5.0) -> torch.Tensor:
    """The *value* a bound reports from joint and marginal scores.

    ``'mine'`` and ``'dv'`` report DV; ``'nwj'`` reports NWJ; ``'smile'`` reports
    clipped DV; ``'infonce'`` takes the (K, K) score matrix as ``t_marginal`` (see
    :func:`objective`).
    """
    return objective("dv" if check_bound(name) == "mine" else name, t_joint, t_marginal, tau=tau)[0]
