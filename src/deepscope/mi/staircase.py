"""Song & Ermon's MI staircase: variational bounds tracking a stepped true MI, online.

Every bound in ``estimators`` trains its own critic on the same fresh batch each step, while
the true MI of the correlated Gaussians steps through ``levels`` (2, 4, 6, 8, 10 nats by
default, ``steps_per_level`` steps each). The ``'cubic'`` variant feeds the critic y^3 (same
MI, a harder critic). Song & Ermon, "Understanding the Limitations of Variational Mutual
Information Estimators", ICLR 2020, arXiv 1910.06222, Figure 1.

>>> from deepscope.mi.staircase import train_staircase
>>> from deepscope.train.rng import make_generator
>>> est = train_staircase(generator=make_generator(0, "staircase"), levels=(2.0, 4.0),
...                       steps_per_level=50, hidden=(32,), variants=("gaussian",))
>>> sorted(est), est["gaussian/infonce"].shape
(['gaussian/infonce', 'gaussian/mine', 'gaussian/nwj', 'gaussian/smile'], (100,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import torch

from deepscope.mi import bounds, tasks
from deepscope.mi.critics import make_critic
from deepscope.mi.loss import bound_on_batch
from deepscope.train.config import check_int, require
from deepscope.train.loop import TrainOptions, generator_or_default, optimiser_step, setup
from deepscope.train.rng import fork_seeded
from deepscope.train.run import Run

__all__ = ["Variant", "VARIANTS", "train_staircase"]

#: ``'gaussian'``: the critic sees (x, y); ``'cubic'``: it sees (x, y^3), the same MI.
Variant = Literal["gaussian", "cubic"]
VARIANTS: tuple[str, ...] = get_args(Variant)


def train_staircase(
    *,
    generator: torch.Generator | None = None,
    run: Run | None = None,
    device: str | torch.device | None = None,
    estimators: Sequence[bounds.Bound] = ("mine", "nwj", "infonce", "smile"),
    variants: Sequence[Variant] = ("gaussian", "cubic"),
    levels: Sequence[float] = (2.0, 4.0, 6.0, 8.0, 10.0),
    steps_per_level: int = 4000,
    d: int = 20,
    batch_size: int = 64,
    lr: float = 5e-4,
    critic: Literal["separable", "concat"] = "separable",
    hidden: Sequence[int] = (256, 256, 256),
    tau: float = 5.0,
    ema_alpha: float = 0.01,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    desc: str = "mi-staircase",
) -> dict[str, np.ndarray]:
    """Train one critic per (variant, bound) on the staircase; the estimate at every step.

    Parameters
    ----------
    generator : torch.Generator, optional
        The only source of randomness (critic initialisation, the batches); checkpointed.
        Default: PyTorch's default generator.
    run : deepscope.train.Run, optional
        Metrics every ``log_every`` steps (the mean estimate since the last line and the
        truth), checkpoints (critics named ``'<variant>/<bound>'``), resume.
    estimators : sequence of {'mine', 'dv', 'nwj', 'infonce', 'smile'}
        Bounds, each trained on all K x K pairs of the batch (InfoNCE's rows, the others'
        K(K-1) off-diagonal marginal pairs) through :func:`~deepscope.mi.loss.bound_on_batch`.
    variants : sequence of {'gaussian', 'cubic'}
    levels : sequence of float
        True MI of each stair, nats.
    steps_per_level, d, batch_size, lr :
        Steps per stair; dimension of X and Y; pairs per step (InfoNCE <= log batch_size);
        Adam learning rate. The defaults are the paper's.
    critic, hidden :
        ``'separable'`` (g(x)^T h(y), 32-d embedding) or ``'concat'``; hidden widths.
    tau, ema_alpha :
        SMILE's clipping; MINE's moving-average weight.

    Returns
    -------
    dict
        ``'<variant>/<bound>'`` -> ``(len(levels) * steps_per_level,)`` float64 array of the
        training estimate at each step (the truth is ``tasks.staircase_schedule(levels,
        steps_per_level)[1]``).
    """
    for e in estimators:
        bounds.check_bound(e)
    require(set(variants) <= set(VARIANTS), "variants", tuple(variants), f"a subset of {VARIANTS}")
    require(len(levels) >= 1 and min(levels) >= 0, "levels", tuple(levels), "non-empty, every level >= 0 nats")
    check_int("steps_per_level", steps_per_level, 1)
    check_int("batch_size", batch_size, 2)
    check_int("checkpoint_every", checkpoint_every, 1)
    run, _, dev = setup(run, TrainOptions(device=device))
    generator = generator_or_default(generator)
    total = len(levels) * steps_per_level
    _, truth = tasks.staircase_schedule(tuple(levels), steps_per_level)
    rhos = [tasks.rho_for_mi(m, d) for m in levels]
    names = [f"{v}/{e}" for v in variants for e in estimators]
    with fork_seeded(generator):
        critics = {n: make_critic(critic, d, d, hidden=hidden).to(dev) for n in names}
    opts = {n: torch.optim.Adam(critics[n].parameters(), lr=lr) for n in names}
    log_ema: dict[str, torch.Tensor | None] = {n: None for n in names}  # MINE's moving averages
    estimates = {n: torch.full((total,), math.nan, dtype=torch.float64) for n in names}
    state = run.restore(models=critics, opts=opts, generator=generator, log_ema=log_ema, estimates=estimates)
    start = state["step"]
    log_ema, estimates = state.get("log_ema", log_ema), state.get("estimates", estimates)

    with run.progress(total, desc=desc, start=start) as advance:
        for step in range(start, total):
            rho = rhos[step // steps_per_level]
            x = torch.randn(batch_size, d, generator=generator)
            y = rho * x + math.sqrt(1 - rho * rho) * torch.randn(batch_size, d, generator=generator)
            x, y = x.to(dev), y.to(dev)
            for n in names:
                variant, bound = n.split("/")
                value, log_ema[n] = bound_on_batch(
                    critics[n], x, y**3 if variant == "cubic" else y, bound=bound, pairs="all",
                    log_ema=log_ema[n], alpha=ema_alpha, tau=tau)
                optimiser_step(opts[n], None, -value)
                estimates[n][step] = value.item()
            done = step + 1
            if done % log_every == 0:
                lo = done - log_every
                run.log(done, truth=float(truth[step]), **{n: float(a[lo:done].mean()) for n, a in estimates.items()})
            if done % checkpoint_every == 0 or done == total:
                run.save(done, models=critics, opts=opts, generator=generator, log_ema=log_ema,
                         estimates=estimates)
            advance(1)
    return {n: a.numpy() for n, a in estimates.items()}
