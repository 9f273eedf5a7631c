"""The full-batch engine: K stacked networks trained by gradient descent until each reaches every loss level.

The 2-D toy of George, Lajoie & Baratin (arXiv 2209.09658): many seeds of a small network,
plain gradient descent on ``L(f_alpha) / alpha^2``, each network's parameters stored when its
own training loss first reaches each level. Step-based (no epochs): one step is one gradient
of the whole training set of every network, computed by hand for ReLU MLPs.

Cookbook::

    import torch
    from deepscope.dynamics.alpha_scaling import AlphaScaled
    from deepscope.dynamics.full_batch import train_full_batch, snapshot_outputs
    from deepscope.nets import MLP
    from deepscope.nets.batched import BatchedMLP

    nets = [MLP(2, [60, 60, 60], 1) for _ in range(100)]
    model = AlphaScaled(BatchedMLP.stack(nets + nets), 1.0)
    x = torch.rand(200, 50, 2) * 2 - 1                      # (K, N, 2): each network its data
    y = (x.norm(dim=-1) < 0.8).long()
    res = train_full_batch(model, x, y, levels=[0.5, 0.4, 0.3], lr=0.1,
                           alpha=[1.0] * 100 + [100.0] * 100)   # both regimes as one stack
    res.steps                                               # (3, 200) step of each crossing
    snapshot_outputs(model, res.snapshots[-1], torch.rand(500, 2))   # (200, 500, 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from deepscope.dynamics.alpha_scaling import AlphaScaled
from deepscope.dynamics.ladder import example_losses
from deepscope.train.config import check_float, check_int, require
from deepscope.train.loop import TrainOptions, setup
from deepscope.train.run import Run

__all__ = ["train_full_batch", "FullBatchResult", "snapshot_outputs", "full_batch_step",
           "STEP_BLOCK"]


@dataclass
class FullBatchResult:
    """What :func:`train_full_batch` returns.

    Attributes
    ----------
    levels : list of float
    steps : (L, K) long tensor
        Step at which network k's training loss first reached ``levels[l]`` (-1: never).
    snapshots : list of dict
        Per level, ``{parameter name: (K, ...) tensor}``: each network's parameters at the step
        it reached the level (its final parameters where it never did).
    final : dict
        ``{parameter name: (K, ...)}`` at the end.
    record_steps : (R,) long tensor
        The steps at which every network's training loss was recorded (``record_steps``).
    loss_history : (K, R) tensor
        Network k's mean training loss after ``record_steps[r]`` updates; NaN once it has
        stopped (or when nothing was asked: R == 0).
    """

    levels: list[float]
    steps: torch.Tensor
    snapshots: list[dict[str, torch.Tensor]]
    final: dict[str, torch.Tensor]
    record_steps: torch.Tensor = None  # type: ignore[assignment]
    loss_history: torch.Tensor = None  # type: ignore[assignment]


def _loss_and_dloss(f: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`example_losses`'s loss of ``f`` (K, N, C) and its derivative ``d loss / d f``.

    One output: ``softplus(z)`` with ``z = -s f``, derivative ``-s sigmoid(z)``. ``C >= 2``:
    cross-entropy ``logsumexp(f) - f_y``, derivative ``softmax(f) - onehot(y)``.
    """
    if f.shape[-1] == 1:
        s = (2.0 * y.to(f.dtype) - 1.0).unsqueeze(-1)
        z = -s * f
        return F.softplus(z).squeeze(-1), -s * torch.sigmoid(z)
    logp = torch.log_softmax(f, -1)
    loss = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    grad = logp.exp_()
    grad.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(loss, -1.0).unsqueeze(-1))
    return loss, grad


#: Networks per block of the hand-written step, so that a block's activations stay in cache
#: (400 toy networks: ~5 MB per activation). Measured on a loaded machine (load ~5, one
#: thread), so only roughly: one short benchmark at K = 400 gave 62 ms per step in blocks
#: against 115 ms in one pass, a second one no clear difference; the recipe's first 400 steps
#: (K = 400 -> ~200) took 20.0-22.5 s in blocks of 64 against 22.8-23.2 s in one pass. 100:
#: the toy's 100-seed stacks run in one pass, the 400-network stack in four.
STEP_BLOCK = 100


def _relu_mlp_step(layers: int, *, block: int = STEP_BLOCK):
    """Loss and gradients of a ReLU :class:`~deepscope.nets.batched.BatchedMLP`, written out.

    Returns ``grad(params, x, h0, y, alpha) -> (loss (K,), grads)`` for ``params = [W_1, b_1,
    ...]`` (W: (K, in, out), b: (K, out)) and ``alpha`` (K, 1, 1): the mean loss of each
    network and the gradient of ``sum_k loss_k / alpha_k**2`` (the :meth:`AlphaScaled.objective`
    rule, one alpha per network), computed ``block`` networks at a time. The same products
    autograd takes (``a^T delta`` and ``delta W^T`` per layer, ``threshold_backward`` for the
    ReLU), without building a graph: at K = 100 the toy step is ~25 tensor operations.
    """

    def grad(params: list[torch.Tensor], x: torch.Tensor, h0: torch.Tensor, y: torch.Tensor,
             alpha: torch.Tensor):
        k = x.shape[0]
        if k <= block:
            return one(params, x, h0, y, alpha)
        parts = [one([p[i:i + block] for p in params], x[i:i + block], h0[i:i + block],
                     y[i:i + block], alpha[i:i + block]) for i in range(0, k, block)]
        return (torch.cat([loss for loss, _ in parts]),
                [torch.cat(g) for g in zip(*(grads for _, grads in parts))])

    def one(params: list[torch.Tensor], x: torch.Tensor, h0: torch.Tensor, y: torch.Tensor,
            alpha: torch.Tensor):
        ws, bs = params[0::2], params[1::2]
        # one output (the toy's logistic loss): the last layer's products are matrix-vector
        # products, which elementwise products and sums do ~4x faster than bmm at K = 100
        vec = ws[-1].shape[2] == 1
        acts = [x]
        for i in range(layers - 1):
            acts.append(torch.baddbmm(bs[i].unsqueeze(1), acts[-1], ws[i]).relu_())
        if vec:
            w_row = ws[-1].transpose(1, 2)                                   # (K, 1, H)
            h = torch.linalg.vecdot(acts[-1], w_row).add_(bs[-1]).unsqueeze(-1)
        else:
            h = torch.baddbmm(bs[-1].unsqueeze(1), acts[-1], ws[-1])
        loss, dloss = _loss_and_dloss(alpha * (h - h0), y)
        # d(sum_k mean_n loss / alpha^2) / dh = dloss/df * alpha / (N alpha^2)
        delta = dloss.div_(alpha * y.shape[1])
        grads: list[torch.Tensor] = [None] * (2 * layers)  # type: ignore[list-item]
        for i in range(layers - 1, -1, -1):
            last = vec and i == layers - 1
            if last:
                grads[2 * i] = torch.linalg.vecdot(acts[i], delta, dim=1).unsqueeze(-1)
            else:
                grads[2 * i] = torch.bmm(acts[i].transpose(1, 2), delta)
            grads[2 * i + 1] = delta.sum(1)
            if i:
                back = delta * w_row if last else torch.bmm(delta, ws[i].transpose(1, 2))
                delta = torch.ops.aten.threshold_backward(back, acts[i], 0.0)
        return loss.mean(1), grads

    return grad


def _autograd_step(model: AlphaScaled, names: list[str]):
    """``grad(params, x, h0, y, alpha) -> (loss (K,), grads)`` for any stacked network, by autograd."""
    from torch.func import functional_call

    buffers = dict(model.model.named_buffers())

    def grad(params: list[torch.Tensor], x: torch.Tensor, h0: torch.Tensor, y: torch.Tensor,
             alpha: torch.Tensor):
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_(True) for p in params]
            h = functional_call(model.model, {**dict(zip(names, leaves)), **buffers}, (x,))
            loss = example_losses(alpha * (h - h0), y)[0].mean(-1)
            # the objective rule L / alpha^2, per network
            grads = torch.autograd.grad((loss / alpha.view(-1) ** 2).sum(), leaves)
        return loss.detach(), list(grads)

    return grad


def full_batch_step(model: AlphaScaled, implementation: str = "auto"):
    """The gradient step of :func:`train_full_batch`, for benchmarks and tests.

    Returns ``grad(params, x, h0, y, alpha) -> (loss (K,), grads)`` for ``params`` the list of
    ``model.model``'s parameters in order, ``x`` (K, N, D), ``h0 = model.init(x)``, ``y`` (K, N)
    and ``alpha`` (K, 1, 1): each network's mean loss and the gradient of
    ``sum_k loss_k / alpha_k**2``. ``implementation`` as in :func:`train_full_batch`.
    """
    require(implementation in ("auto", "manual", "autograd"), "implementation", implementation,
            "one of ['auto', 'manual', 'autograd']")
    from deepscope.nets.batched import BatchedLinear, BatchedMLP

    names = [n for n, _ in model.model.named_parameters()]
    net = model.model
    relu_mlp = type(net) is BatchedMLP and net.activation == "relu"
    if implementation == "auto":
        implementation = "manual" if relu_mlp else "autograd"
    if implementation == "autograd":
        return _autograd_step(model, names)
    if not relu_mlp:
        raise ValueError(f"implementation == 'manual' needs a ReLU BatchedMLP, model.model is a "
                         f"{type(net).__name__}; use 'autograd' (or 'auto')")
    order = [f"{i}.{p}" for i, m in enumerate(net) if isinstance(m, BatchedLinear)
             for p in ("weight", "bias")]
    if order != names:
        raise ValueError(f"BatchedMLP parameters are {names}, expected {order}")
    return _relu_mlp_step(len(order) // 2)


def train_full_batch(
    model: AlphaScaled,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    levels: Sequence[float],
    lr: float = 0.1,
    max_steps: int = 20_000,
    run: Run | None = None,
    device: str | torch.device | None = None,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    alpha: torch.Tensor | Sequence[float] | None = None,
    implementation: str = "auto",
    record_steps: Sequence[int] = (),
    desc: str = "",
) -> FullBatchResult:
    """Full-batch gradient descent of K stacked networks until each reaches every loss level.

    The 2-D toy of arXiv 2209.09658: many seeds of a small network trained by plain gradient
    descent on ``model.objective(L(f_alpha))``; each network's parameters are stored when its
    own training loss first reaches each level. A network stops training once it has reached
    the last level, and finished networks are dropped from the batched computation, so the
    cost follows the slowest seeds only as long as they run.

    Parameters
    ----------
    model : AlphaScaled
        Wrapping a stacked network (:mod:`deepscope.nets.batched`) whose every parameter has
        the number of networks K as its first dimension and which maps (K, N, D) to (K, N, 1)
        or (K, N, C).
    x : (K, N, D) or (N, D) tensor
        Training inputs per network (or shared).
    y : (K, N) or (N,) int tensor
    levels : sequence of float
        Decreasing training losses at which to snapshot (e.g. 0.5, 0.4, 0.3).
    lr : float
        Gradient-descent step on the objective (the paper's toy: 0.1).
    max_steps : int
        Networks that have not reached the last level by then stop there (their ``steps`` stay
        -1 for the levels not reached).
    alpha : (K,) tensor or sequence of float, optional
        One alpha per network, in place of ``model.alpha``: several regimes (and several
        datasets, through ``x``) trained as one stack, e.g. alpha 1 and 100 side by side.
        Network k follows ``f = alpha_k (h - h_0)`` on ``L / alpha_k**2`` exactly as it would
        alone. None: ``model.alpha`` for all.
    implementation : {'auto', 'manual', 'autograd'}
        How each step's gradient is computed. ``'manual'``: the backward pass of a ReLU
        :class:`~deepscope.nets.batched.BatchedMLP` written out with batched matrix products
        (no autograd graph; the cheaper step when few networks are left). ``'autograd'``:
        ``torch.func.functional_call`` and ``torch.autograd.grad``, any stacked network.
        ``'auto'`` (default): ``'manual'`` where it applies. Both are tested equal to float
        rounding, and to K separate runs.
    record_steps : sequence of int
        Steps (numbers of updates, 0 = the initial parameters) at which each network's mean
        training loss is kept in ``loss_history`` (e.g. log-spaced, for the figure of all runs'
        training curves); the recording costs one indexed copy at those steps only.

    Returns
    -------
    FullBatchResult
        The networks' ``model.model`` parameters are left at ``final``.
    """
    if not isinstance(model, AlphaScaled):
        raise TypeError(f"model is a {type(model).__name__}, must be an AlphaScaled")
    lv = [float(v) for v in levels]
    require(bool(lv) and all(b < a for a, b in zip(lv, lv[1:])), "levels", lv,
            "a non-empty strictly decreasing sequence")
    for name, v in (("max_steps", max_steps), ("checkpoint_every", checkpoint_every),
                    ("log_every", log_every)):
        check_int(name, v, 1)
    check_float("lr", lr, 0.0, open_low=True)
    grad = full_batch_step(model, implementation)
    run, _, dev = setup(run, TrainOptions(device=device))
    model.to(dev)
    params = dict(model.model.named_parameters())
    names = list(params)
    k = next(iter(params.values())).shape[0]
    if any(p.shape[0] != k for p in params.values()):
        raise ValueError("model.model is not a stack of networks: every parameter's first "
                         "dimension must be the number of networks K")
    x = (x if x.ndim == 3 else x.unsqueeze(0).expand(k, *x.shape)).to(dev)
    y = (y if y.ndim == 2 else y.unsqueeze(0).expand(k, *y.shape)).to(dev)
    if x.shape[0] != k or y.shape != x.shape[:2]:
        raise ValueError(f"x has shape {tuple(x.shape)} and y {tuple(y.shape)}; need (K, N, D) and "
                         f"(K, N) with K == {k} networks")
    if alpha is None:
        alphas = torch.full((k,), model.alpha)
    else:
        alphas = torch.as_tensor(alpha, dtype=torch.float64).flatten()
        if alphas.shape != (k,) or not bool((alphas > 0).all() & alphas.isfinite().all()):
            raise ValueError(f"alpha has {alphas.numel()} values (min {float(alphas.min()):g}), "
                             f"must be {k} finite numbers > 0: one per network")
    dtype = next(iter(params.values())).dtype
    alphas = alphas.to(device=dev, dtype=dtype).view(k, 1, 1)
    with torch.no_grad():
        h0 = model.init(x)  # fixed inputs: the frozen network's output is computed once

    # state: full-size parameters, crossing steps, snapshots
    full = {n: p.detach().clone() for n, p in params.items()}
    steps = torch.full((len(lv), k), -1, dtype=torch.long)
    snaps = [{n: v.clone() for n, v in full.items()} for _ in lv]
    rec_steps = torch.as_tensor(sorted({int(r) for r in record_steps}), dtype=torch.long)
    require(bool((rec_steps >= 0).all()), "record_steps", list(record_steps), "steps >= 0")
    rec_at = {int(r): i for i, r in enumerate(rec_steps.tolist())}
    history = torch.full((k, len(rec_steps)), float("nan"))
    state = run.restore(full=dict(full), steps=steps, snaps=list(snaps), history=history)
    start = state["step"]
    if start:
        full, steps, snaps = state["full"], state["steps"], state["snaps"]
        history = state["history"]
        full = {n: v.to(dev) for n, v in full.items()}
        snaps = [{n: v.to(dev) for n, v in s.items()} for s in snaps]

    # The unfinished networks train as one compact stack: ``cur`` (their parameters), their
    # data and initial outputs; it shrinks when networks finish and is written back to ``full``
    # only then and at checkpoints (no per-step scatter of all parameters).
    active = torch.nonzero(steps[-1] < 0).squeeze(1)        # CPU indices into the K networks
    ia = active.to(dev)
    cur = [full[n][ia].clone() for n in names]
    xa, ya, h0a, aa = x[ia], y[ia], h0[ia], alphas[ia]
    level_col = torch.tensor(lv)[:, None]
    shown = start
    with run.progress(max_steps, desc=desc, start=start) as advance, torch.no_grad():
        for step in range(start + 1, max_steps + 1):
            if active.numel() == 0:
                break
            loss, grads = grad(cur, xa, h0a, ya, aa)                # loss (K_active,)
            lc = loss.cpu()
            if step - 1 in rec_at:  # the loss after step - 1 updates
                history[active, rec_at[step - 1]] = lc.to(history.dtype)
            # which networks reached which level *before* this update (their loss is now)
            reached = (lc[None, :] <= level_col) & (steps[:, active] < 0)
            finished = None
            if reached.any():
                for li in torch.nonzero(reached.any(1)).squeeze(1).tolist():
                    hit = torch.nonzero(reached[li]).squeeze(1)
                    steps[li, active[hit]] = step - 1
                    hd, gd = hit.to(dev), active[hit].to(dev)
                    for n, v in zip(names, cur):
                        snaps[li][n][gd] = v[hd]
                done_now = steps[-1, active] >= 0
                if done_now.any():
                    finished = done_now
                    # a network that has reached the last level stops where it reached it
                    fd = torch.nonzero(done_now).squeeze(1)
                    for n, v in zip(names, cur):
                        full[n][active[fd].to(dev)] = v[fd.to(dev)]
            torch._foreach_add_(cur, grads, alpha=-lr)
            if finished is not None:
                keep = torch.nonzero(~finished).squeeze(1)
                kd = keep.to(dev)
                active = active[keep]
                cur = [v[kd] for v in cur]
                xa, ya, h0a, aa = xa[kd], ya[kd], h0a[kd], aa[kd]
            if step % log_every == 0:
                run.log(step, mean_loss=round(float(lc.mean()), 6), active=int(active.numel()),
                        reached={f"{lv[i]:g}": int((steps[i] >= 0).sum()) for i in range(len(lv))})
                advance(step - shown)
                shown = step
            if step % checkpoint_every == 0 or step == max_steps or active.numel() == 0:
                for n, v in zip(names, cur):
                    full[n][active.to(dev)] = v
                run.save(step, full=full, steps=steps, snaps=snaps, history=history)
        for n, v in zip(names, cur):
            full[n][active.to(dev)] = v
    # networks that never reached a level keep their final parameters in that snapshot
    for li in range(len(lv)):
        never = torch.nonzero(steps[li] < 0).squeeze(1).to(dev)
        for n in full:
            snaps[li][n][never] = full[n][never]
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(full[n])
    return FullBatchResult(lv, steps, snaps, {n: v.clone() for n, v in full.items()},
                           rec_steps, history)


def snapshot_outputs(model: AlphaScaled, params: Mapping[str, torch.Tensor], x: torch.Tensor, *,
                     batch: int = 512, init_output: torch.Tensor | None = None) -> torch.Tensor:
    """``f_alpha`` of a stacked network at stored parameters (e.g. a :class:`FullBatchResult` snapshot).

    Parameters
    ----------
    model : AlphaScaled
        The stacked model the parameters belong to (its ``init`` gives ``h(theta_0)``).
    params : dict
        ``{name: (K, ...)}`` parameters of ``model.model``.
    x : (G, D) tensor
        Inputs shared by the K networks (a grid).
    batch : int
        Rows of ``x`` per forward pass (512: the K networks' activations stay in cache; 2x
        faster than 4096 for the toy's 100 networks on a 61 x 61 grid).
    init_output : (K, G, out) tensor, optional
        ``model.init(x)``, when several snapshots are read on the same ``x`` (computed here
        when None).

    Returns
    -------
    (K, G, out) tensor
    """
    from torch.func import functional_call

    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            h = functional_call(model.model, dict(params), (xb,))
            h0 = model.init(xb) if init_output is None else init_output[:, i:i + batch]
            outs.append(model.alpha * (h - h0))
    return torch.cat(outs, 1)
