"""Flow critic for ``MINE``: invertible maps of X and of Y towards a joint Gaussian.

>>> from deepscope.mi import MINE, tasks
>>> x, y, truth = tasks.mapped_gaussian(5000, d=5, mi=1.0, map="shear", seed=50)
>>> est = MINE(critic="flow", random_state=50).fit(x, y)  # seconds of flow training  # doctest: +SKIP
>>> round(est.mi_, 3)                 # the fit above is skipped  # doctest: +SKIP
0.938
>>> est.flows_, est.flow_history_     # the fit above is skipped  # doctest: +SKIP
>>> est = MINE(critic="select", random_state=50).fit(x, y)  # hybrid or flow; seconds  # doctest: +SKIP
>>> est.selection_["chosen"]          # the fit above is skipped  # doctest: +SKIP
'flow/standardize'

Mutual information does not change under an invertible map of X or of Y. Butakov et al.
(*Mutual Information Estimation via Normalizing Flows*, NeurIPS 2024, arXiv 2403.02187) use
this: learn flows f_x, f_y so that (f_x(X), f_y(Y)) is (close to) jointly Gaussian, where
the MI has a closed form. Here the flows are trained by maximum likelihood of the *joint*
model  log N([f_x(x), f_y(y)]; 0, S) + log|det J_fx(x)| + log|det J_fy(y)|  (a full
learnable covariance S; the paper's N-MIENF) on the training rows, with early stopping on
the validation rows. Then every split is mapped, and the usual hybrid critic (the Gaussian
log ratio fitted to the mapped training rows, its shrinkage and rank chosen on validation,
plus the MLP residual) is fitted and read out **on the held-out mapped rows** exactly as
``MINE(critic="hybrid")`` does. So:

- the reported value is the same held-out DV-type bound as every other critic's (the flow is
  one more part of the critic, T(x, y) = T_hybrid(f_x(x), f_y(y)); the Jacobians cancel in
  the model's log density ratio), with the same bootstrap interval and warnings;
- the flows start at the identity (their hyper-networks' last layers are zero) and S at the
  covariance of the (Gaussianised) training rows, so the untrained flow model *is* the hybrid
  critic's Gaussian part, and training only moves it where the likelihood improves;
- training must be joint: a marginal fit (each flow making its own variable Gaussian) can be
  useless, e.g. BMI's spiral maps an isotropic Gaussian onto itself, so X is already
  Gaussian and a marginal flow learns nothing while the pair is not jointly Gaussian.

One-dimensional variables are not mapped: every invertible continuous map of R is monotone,
and the per-column Gaussianisation already makes the estimate invariant to those.

The flows are zuko's masked autoregressive flows (zuko.flows.MAF, Papamakarios et al. 2017,
arXiv 1705.07057): a maintained PyTorch library whose transforms are plain ``nn.Module``s
with ``call_and_ladj``; ``zuko`` is imported only when a flow is built.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FlowCritic", "FlowPair", "check_flow_options", "fit_flow_pair", "map_splits"]

_BLOCK = 16384  # rows per block when mapping or scoring many rows


def _maf(features: int, transforms: int, hidden: Sequence[int]) -> nn.Module:
    """A zuko MAF's lazy transform (x -> z), started at the identity."""
    import zuko

    flow = zuko.flows.MAF(features, transforms=transforms, hidden_features=tuple(hidden))
    for t in flow.transform.transforms:
        last = [m for m in t.hyper.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():  # shift 0 and log-scale 0: every layer starts as the identity
            last.weight.zero_()
            last.bias.zero_()
    return flow.transform


class FlowPair(nn.Module):
    """Invertible maps f_x, f_y and the Gaussian they map the pair towards.

    The joint model is [f_x(x), f_y(y)] ~ N(0, S) with S = L L^T learnable; ``log_prob`` is its
    log density of (x, y) (change of variables). A variable with one column is not mapped.

    Parameters
    ----------
    dim_x, dim_y : int
    cov : (dim_x + dim_y, dim_x + dim_y) tensor
        The starting S (the covariance of the training rows).
    transforms : int
        Autoregressive layers per flow.
    hidden : sequence of int
        Hidden widths of each layer's masked MLP.
    """

    def __init__(self, dim_x: int, dim_y: int, *, cov: torch.Tensor, transforms: int = 6,
                 hidden: Sequence[int] = (32,)):
        super().__init__()
        self.dim_x, self.dim_y = dim_x, dim_y
        self.fx = _maf(dim_x, transforms, hidden) if dim_x > 1 else None
        self.fy = _maf(dim_y, transforms, hidden) if dim_y > 1 else None
        self.chol = nn.Parameter(torch.linalg.cholesky(cov.double()).float())
        # the range of the mapped training rows (set by fit_flow_pair): mapped rows are clamped
        # to it, as the Gaussianiser clamps inputs to the training range (see map_x)
        self.register_buffer("lo", torch.full((dim_x + dim_y,), -torch.inf))
        self.register_buffer("hi", torch.full((dim_x + dim_y,), torch.inf))

    @staticmethod
    def _map(f, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if f is None:
            return t, torch.zeros(t.shape[0], dtype=t.dtype, device=t.device)
        return f().call_and_ladj(t)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mapped rows: (K, dx), (K, dy) -> (K, dx), (K, dy)."""
        return self.map_x(x), self.map_y(y)

    def map_x(self, x: torch.Tensor) -> torch.Tensor:
        """f_x(x), clamped to the mapped training rows' range: (K, dx) -> (K, dx).

        A flow's shift and scale networks extrapolate linearly beyond the training rows, so a
        held-out row there can be mapped far out (|z| = 16 where the training rows stay within
        4.5) and score -100 nats on its own. Clamping is a monotone map of each mapped
        coordinate: it changes only rows outside the training range and can only lower the
        MI (data processing), so the read-out stays a bound.
        """
        dx = self.dim_x
        return torch.maximum(torch.minimum(self._map(self.fx, x)[0], self.hi[:dx]), self.lo[:dx])

    def map_y(self, y: torch.Tensor) -> torch.Tensor:
        """f_y(y), clamped to the mapped training rows' range: (K, dy) -> (K, dy)."""
        dx = self.dim_x
        return torch.maximum(torch.minimum(self._map(self.fy, y)[0], self.hi[dx:]), self.lo[dx:])

    def log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Joint log density of the model at aligned pairs: (K,)."""
        zx, lx = self._map(self.fx, x)
        zy, ly = self._map(self.fy, y)
        z = torch.cat([zx, zy], dim=1)
        low = torch.tril(self.chol)
        sol = torch.linalg.solve_triangular(low, z.T, upper=False)
        d = z.shape[1]
        log_norm = torch.log(torch.diagonal(low).abs()).sum() + 0.5 * d * math.log(2 * math.pi)
        return -0.5 * (sol * sol).sum(0) - log_norm + lx + ly

    def gaussian_mi(self) -> float:
        """The closed-form MI of the model's Gaussian, 1/2 (log det S_xx + log det S_yy - log det S)."""
        with torch.no_grad():
            low = torch.tril(self.chol).double()
            s = low @ low.T
            dx = self.dim_x
            return float(0.5 * (torch.logdet(s[:dx, :dx]) + torch.logdet(s[dx:, dx:]) - torch.logdet(s)))


def fit_flow_pair(
    splits: dict, *, transforms: int = 6, hidden: Sequence[int] = (32,), lr: float = 5e-3,
    batch_size: int = 512, max_steps: int = 1500, eval_every: int = 50, patience: int = 4,
    clamp: bool = True, seed: int = 0,
) -> tuple[FlowPair, list[dict]]:
    """Train a :class:`FlowPair` by maximum likelihood on ``splits["train"]``.

    The defaults were chosen on the spiral, shear, additive-noise and Student-t families of
    :data:`deepscope.mi.tasks.FAMILIES`, seeds 20, 21, 30 and 31 only (docs/mine.md, "Flow
    critic"): depth matters more than width (6 layers of one 32-wide hidden layer learn the
    spiral, 3-4 layers of 64 x 64 or 32 x 32 stay at the identity on it), and the spiral needs
    up to ~1,000 steps; evaluating every 50 steps rather than 100 stops the families with
    nothing to learn after 200 steps at the same accuracy. ``clamp`` (see
    :meth:`FlowPair.map_x`) came from a held-out spiral sample (seed 42) read 0.57 of its truth
    because one test row was mapped to |z| = 16.

    Early stopping on the mean log likelihood of ``splits["val"]`` (every ``eval_every``
    steps, stop after ``patience`` evaluations without improvement; the untrained pair, i.e.
    the Gaussian fitted to the training rows, is the first candidate). Deterministic given
    ``seed``; torch's global RNG is left untouched.

    Parameters
    ----------
    splits : dict with ``"train"`` and ``"val"`` entries, each ``(x (N, dx), y (N, dy))`` tensors

    Returns
    -------
    pair : FlowPair
        The best pair on validation, in eval mode, parameters frozen.
    history : list of dict
        ``{"step", "train_nll", "val_nll"}`` per evaluation (nats per row).
    """
    from deepscope.mi.critics import gaussian_moments
    from deepscope.train.rng import derive_seed, make_generator

    xtr, ytr = splits["train"]
    xv, yv = splits["val"]
    dev = xtr.device
    _, cov = gaussian_moments(xtr, ytr)
    cov = cov + 1e-4 * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "flow/init"))
        pair = FlowPair(xtr.shape[1], ytr.shape[1], cov=cov.cpu(), transforms=transforms,
                        hidden=hidden).to(dev)
    opt = torch.optim.Adam(pair.parameters(), lr=lr)  # the flow path imports zuko: no start-up to save
    gen = make_generator(seed, "flow/batches")
    n = xtr.shape[0]
    bs = min(batch_size, n)

    @torch.no_grad()
    def val_nll() -> float:
        return float(-torch.cat([pair.log_prob(xv[s : s + _BLOCK], yv[s : s + _BLOCK])
                                 for s in range(0, xv.shape[0], _BLOCK)]).mean())

    best = val_nll()
    history = [{"step": 0, "train_nll": math.nan, "val_nll": best}]
    best_state = copy.deepcopy(pair.state_dict())
    since, running, count = 0, 0.0, 0
    for step in range(1, max_steps + 1):
        idx = torch.randint(0, n, (bs,), generator=gen).to(dev)
        loss = -pair.log_prob(xtr[idx], ytr[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        running += loss.item()
        count += 1
        if step % eval_every == 0 or step == max_steps:
            v = val_nll()
            history.append({"step": step, "train_nll": running / count, "val_nll": v})
            running, count = 0.0, 0
            if not math.isfinite(v):
                break
            if v < best:
                best, since = v, 0
                best_state = copy.deepcopy(pair.state_dict())
            else:
                since += 1
                if since >= patience:
                    break
    pair.load_state_dict(best_state)
    pair.eval()
    pair.requires_grad_(False)
    if clamp:
        with torch.no_grad():
            z = torch.cat([torch.cat([pair.map_x(xtr[s : s + _BLOCK]), pair.map_y(ytr[s : s + _BLOCK])], 1)
                           for s in range(0, n, _BLOCK)])
            mapped = torch.tensor([pair.fx is not None] * pair.dim_x + [pair.fy is not None] * pair.dim_y,
                                  device=z.device)
            pair.lo.copy_(torch.where(mapped, z.min(0).values, -torch.inf))
            pair.hi.copy_(torch.where(mapped, z.max(0).values, torch.inf))
    return pair, history


@torch.no_grad()
def map_splits(pair: FlowPair, splits: dict) -> dict:
    """Each split's rows mapped by the pair's flows (float32, in blocks of rows)."""
    out = {}
    for name, (x, y) in splits.items():
        mx = torch.cat([pair.map_x(x[s : s + _BLOCK]) for s in range(0, x.shape[0], _BLOCK)])
        my = torch.cat([pair.map_y(y[s : s + _BLOCK]) for s in range(0, y.shape[0], _BLOCK)])
        out[name] = (mx.float().contiguous(), my.float().contiguous())
    return out


class FlowCritic(nn.Module):
    """T(x, y) = critic(f_x(x), f_y(y)): a critic read on flow-mapped rows.

    ``forward``, ``scores_at`` and ``pairwise`` map each row once and pass the mapped rows to
    the inner critic (its own ``scores_at``/``pairwise`` when it has them).

    Parameters
    ----------
    flows : FlowPair
    critic : nn.Module
        Any critic with ``forward(x, y) -> (K,)`` on mapped rows (``MINE`` uses its hybrid critic).
    """

    def __init__(self, flows: FlowPair, critic: nn.Module):
        super().__init__()
        self.flows = flows
        self.critic = critic

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.critic(*self.flows(x, y))

    def scores_at(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        mx, my = self.flows(x, y)
        if hasattr(self.critic, "scores_at"):
            return self.critic.scores_at(mx, my, rows, cols)
        return self.critic(mx[rows], my[cols])

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from deepscope.mi.critics import pairwise_scores

        return pairwise_scores(self.critic, self.flows.map_x(x), self.flows.map_y(y))


def check_flow_options(options) -> None:
    """Raise ``ValueError`` unless ``options`` is a dict of :func:`fit_flow_pair` keywords."""
    import inspect

    allowed = [p for p in inspect.signature(fit_flow_pair).parameters if p not in ("splits", "seed")]
    if not isinstance(options, dict):
        raise ValueError(f"flow_options == {options!r}, must be None or a dict with keys among {allowed}")
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"flow_options has unknown key(s) {bad}; allowed: {allowed}")
