"""Information-bottleneck classifiers: MINE-IB, the variational IB and a plain network.

Belghazi et al. 2018 (MINE, arXiv 1801.04062, section 5.3) train an encoder X -> Z
(stochastic code) and a softmax decoder Z -> Y with the loss H(Y|Z) + beta I(X;Z), I(X;Z)
estimated by MINE: the statistics network ascends the bound while the encoder descends
it. The baselines are the deep variational information bottleneck (Alemi et al. 2017,
arXiv 1612.00410: Gaussian encoder, KL to N(0, I) as the I(X;Z) surrogate) and the same
network without noise or penalty.

>>> import torch
>>> from deepscope.mi.bottleneck import IBClassifier, vib_kl
>>> model = IBClassifier(40, 10, hidden=(64, 64), code_dim=16, noise="gaussian")
>>> logits, z, (mu, std) = model(torch.randn(8, 40))
>>> logits.shape, z.shape, vib_kl(mu, std).shape
(torch.Size([8, 10]), torch.Size([8, 16]), torch.Size([8]))

Training (an optional :class:`~deepscope.train.Run` adds checkpoints every epoch and resume)::

    from deepscope.train.rng import make_generator
    g = make_generator(0, "ib")
    model, mi = train_ib(ds, generator=g, method="mine", noise="gaussian", beta=1e-3, epochs=50)
    error_rate(model, ds.x_test, ds.y_test, generator=g)   # in [0, 1]
    estimate_mi_xz(model, ds.x_test, generator=g).mi_       # held-out MINE estimate of I(X;Z), nats

Encoders (``noise=``), our reading of the paper's three stochastic codes:

- ``'gaussian'``: the encoder outputs a mean and a standard deviation, z = mu + std * eps
  (reparameterised, as in the VIB);
- ``'additive'``: a deterministic encoder plus fixed-variance noise, z = f(x) + sigma * eps;
- ``'propagated'``: noise of standard deviation ``sigma`` added after every hidden layer and
  to the code, so it propagates through the encoder;
- ``'none'``: deterministic (the plain network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.mi.loss import MILoss
from deepscope.train.config import require
from deepscope.train.distributed import (
    all_reduce_grads,
    all_reduce_mean,
    gather_rows,
    init_distributed,
    shard,
    sharded_draws,
)
from deepscope.train.rng import fork_seeded, spawn
from deepscope.train.run import Run, as_run

if TYPE_CHECKING:
    from deepscope.mi.estimator import MINE

__all__ = [
    "Method",
    "Noise",
    "METHODS",
    "NOISES",
    "IBClassifier",
    "vib_kl",
    "train_ib",
    "error_rate",
    "estimate_mi_xz",
]

#: Training objectives: cross-entropy only, VIB, MINE-IB.
Method = Literal["plain", "vib", "mine"]
METHODS: tuple[str, ...] = get_args(Method)
#: Encoder noise models.
Noise = Literal["none", "gaussian", "additive", "propagated"]
NOISES: tuple[str, ...] = get_args(Noise)


def _randn_like(t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # Drawn on the CPU from the generator, then moved; without one, torch's global RNG
    # (PyTorch's convention for noise inside a module, as for dropout).
    if generator is None:
        return torch.randn_like(t)
    return torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)


class IBClassifier(nn.Module):
    """Encoder MLP (ReLU hidden layers) -> stochastic code Z -> linear softmax decoder.

    Parameters
    ----------
    dim_in : int
        Input features (inputs with more dimensions are flattened).
    num_classes : int
    hidden : sequence of int
        Encoder hidden widths (two layers in the paper: 1024, 1024 on MNIST).
    code_dim : int
        Size of Z (256 in the paper).
    noise : str
        ``'none'``, ``'gaussian'``, ``'additive'`` or ``'propagated'`` (see the module docs).
    sigma : float
        Noise standard deviation of ``'additive'`` and ``'propagated'``.

    ``forward(x)`` returns ``(logits (K, C), z (K, code_dim), (mu, std))`` where ``mu`` and
    ``std`` are the Gaussian encoder's parameters, ``(None, None)`` for the other encoders.
    Noise is drawn in training and evaluation mode alike (the code *is* stochastic) from the
    ``generator`` passed to ``forward``/``encode``/``predict_proba`` (torch's global RNG when
    it is omitted); :meth:`predict_proba` averages over draws.
    """

    def __init__(
        self,
        dim_in: int,
        num_classes: int,
        *,
        hidden: Sequence[int] = (1024, 1024),
        code_dim: int = 256,
        noise: Noise = "gaussian",
        sigma: float = 1.0,
    ) -> None:
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"noise == {noise!r}; choose one of {', '.join(NOISES)}")
        if code_dim < 1:
            raise ValueError(f"code_dim == {code_dim}, must be >= 1")
        if noise in ("additive", "propagated") and not sigma > 0:
            raise ValueError(f"sigma == {sigma}, must be > 0 for noise == {noise!r}")
        self.noise, self.sigma, self.code_dim = noise, float(sigma), code_dim
        layers = []
        d = dim_in
        for h in hidden:
            layers.append(nn.Linear(d, h))
            d = h
        self.hidden = nn.ModuleList(layers)
        self.head = nn.Linear(d, 2 * code_dim if noise == "gaussian" else code_dim)
        self.decoder = nn.Linear(code_dim, num_classes)

    def encode(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """``x (K, ...) -> z (K, code_dim), (mu, std)``; noise from ``generator``."""
        h = x.flatten(1)
        for layer in self.hidden:
            h = F.relu(layer(h))
            if self.noise == "propagated":
                h = h + self.sigma * _randn_like(h, generator)
        out = self.head(h)
        if self.noise == "gaussian":
            mu, s = out.chunk(2, dim=1)
            std = F.softplus(s - 5.0)  # starts small, as in the VIB of Alemi et al.
            return mu + std * _randn_like(std, generator), (mu, std)
        if self.noise in ("additive", "propagated"):
            out = out + self.sigma * _randn_like(out, generator)
        return out, (None, None)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None):
        z, stats = self.encode(x, generator=generator)
        return self.decoder(z), z, stats

    @torch.no_grad()
    def predict_proba(
        self, x: torch.Tensor, *, n_samples: int = 12, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Class probabilities ``(K, C)`` averaged over ``n_samples`` draws of the code."""
        n = 1 if self.noise == "none" else n_samples
        return torch.stack([F.softmax(self(x, generator=generator)[0], dim=1) for _ in range(n)]).mean(0)


def vib_kl(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag std^2) || N(0, I) ) per row, in nats.

    Parameters
    ----------
    mu, std : (K, D) tensors

    Returns
    -------
    (K,) tensor: 0.5 * sum(mu^2 + std^2 - 1 - log std^2).
    """
    return 0.5 * (mu.pow(2) + std.pow(2) - 1.0 - 2.0 * torch.log(std)).sum(dim=1)


def error_rate(
    model: IBClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    n_samples: int = 12,
    batch_size: int = 2048,
) -> float:
    """Misclassification rate in [0, 1] of the prediction averaged over ``n_samples`` codes.

    Parameters
    ----------
    model : IBClassifier
    x : (N, ...) tensor
    y : (N,) int tensor
    generator : torch.Generator
        Draws the codes' noise.
    """
    dev = next(model.parameters()).device
    wrong = 0
    for i in range(0, len(x), batch_size):
        p = model.predict_proba(x[i : i + batch_size].to(dev), n_samples=n_samples, generator=generator)
        wrong += int((p.argmax(1).cpu() != y[i : i + batch_size]).sum())
    return wrong / len(x)


def _standardize(z: torch.Tensor) -> torch.Tensor:
    return (z - z.mean(0)) / (z.std(0) + 1e-6)


def _noise_for(method: str, noise: str | None) -> str:
    """The encoder noise ``method`` trains with; validates the pair."""
    require(method in METHODS, "method", method, f"one of {', '.join(METHODS)}")
    fixed = {"plain": "none", "vib": "gaussian"}
    if method in fixed:
        require(noise in (None, fixed[method]), "noise", noise,
                f"{fixed[method]!r} (or None) with method == {method!r}")
        return fixed[method]
    noise = noise or "gaussian"
    require(noise in NOISES[1:], "noise", noise,
            "'gaussian', 'additive' or 'propagated' with method == 'mine' (a stochastic code)")
    return noise


def train_ib(
    data,
    *,
    generator: torch.Generator,
    run: Run | None = None,
    device: str | torch.device | None = None,
    method: Method = "mine",
    noise: Noise | None = None,
    beta: float = 1e-3,
    hidden: Sequence[int] = (1024, 1024),
    code_dim: int = 256,
    sigma: float = 1.0,
    epochs: int = 50,
    batch_size: int = 100,
    lr: float = 1e-3,
    critic_lr: float = 1e-4,
    critic_hidden: Sequence[int] = (256, 256),
    standardize_code: bool = True,
    checkpoint_every: int = 1,
    eval_samples: int = 12,
    desc: str = "",
) -> tuple[IBClassifier, MILoss | None]:
    """Train an information-bottleneck classifier (Belghazi et al. 2018, arXiv 1801.04062, sec. 5.3).

    Parameters
    ----------
    data : deepscope.data.Dataset
        Train/test tensors (inputs are flattened).
    generator : torch.Generator
        The only source of randomness: initialisation, batches, the code's noise, MINE's
        permutations. Checkpointed with the run.
    run : deepscope.train.Run, optional
        Metrics per epoch, checkpoints at epoch ends (``models={"model", "mi"}``), resume.
    device : str or torch.device, optional
        Default: the run's device, else the CPU.
    method : {'plain', 'vib', 'mine'}
        ``'plain'`` (cross-entropy, ``noise='none'``), ``'vib'`` (cross-entropy +
        beta * KL, ``noise='gaussian'``) or ``'mine'`` (cross-entropy + beta * I(X;Z) by MINE;
        any stochastic ``noise``, default ``'gaussian'``).
    noise : {'gaussian', 'additive', 'propagated'}, optional
        Encoder noise for ``'mine'``.
    beta : float
        Weight of the bottleneck term (ignored by ``'plain'``).
    epochs : int
        Passes over the training set; the budget is the same for every method.
    lr, critic_lr : float
        Adam learning rates of the classifier and of MINE's statistics network.
    standardize_code : bool
        For ``'mine'``: feed the critic the code standardised per dimension with batch
        statistics. I(X;Z) does not change under such an affine map, but without it the
        encoder can lower the *estimate* by inflating the code's scale until the critic
        cannot keep up, instead of lowering the information (observed on digits at beta=0.1).
    checkpoint_every : int
        Checkpoint period in epochs (the last epoch is always saved).

    Returns
    -------
    (IBClassifier, MILoss or None)
        The trained model (eval mode) and, for ``'mine'``, the MI term with its critic.

    Each epoch logs the training cross-entropy, the bottleneck term (``mi`` for MINE, ``kl``
    for VIB) and the test error.

    Under ``torchrun`` (``batch_size`` a multiple of the number of processes) every process
    draws the same global batch and encodes its slice with its rows of the global batch's
    noise (:func:`~deepscope.train.distributed.sharded_draws`); MINE's estimate, a
    log-mean-exp over the batch with shuffled pairs, is computed on the gathered codes
    (:func:`~deepscope.train.distributed.gather_rows`) identically on every process, and the
    gradients are averaged explicitly (``torch.autograd.grad`` never runs DDP's hooks): the
    single-process updates up to float summation order. The test error is computed by
    every process (the generator stays in step).
    """
    noise = _noise_for(method, noise)
    n_train = data.x_train.shape[0]
    require(beta >= 0, "beta", beta, ">= 0")
    require(epochs >= 1, "epochs", epochs, ">= 1")
    require(checkpoint_every >= 1, "checkpoint_every", checkpoint_every, ">= 1 (epochs)")
    require(2 <= batch_size <= n_train, "batch_size", batch_size, f"in [2, {n_train}] (the training set size)")
    run = as_run(run, device)
    dist, dev = init_distributed(run.device)
    require(batch_size % dist.world_size == 0, "batch_size", batch_size,
            f"a multiple of the {dist.world_size} processes")
    x_train, y_train = data.x_train.flatten(1), data.y_train
    dim_in = x_train.shape[1]
    with fork_seeded(generator):
        model = IBClassifier(dim_in, data.num_classes, hidden=hidden, code_dim=code_dim, noise=noise,
                             sigma=sigma).to(dev)
        mi = MILoss(dim_x=dim_in, dim_y=code_dim, hidden=critic_hidden).to(dev) if method == "mine" else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    models, opts = {"model": model}, {"model": opt}
    if mi is not None:
        models["mi"], opts["mi"] = mi, torch.optim.Adam(mi.parameters(), lr=critic_lr)
    start = run.restore(models=models, opts=opts, generator=generator)["step"]

    params = list(model.parameters())
    m_params = list(mi.parameters()) if mi is not None else []
    per_epoch = n_train // batch_size  # drop the last partial batch: every step sees batch_size rows
    with run.progress(epochs, desc=desc, start=start) as advance:
        for epoch in range(start + 1, epochs + 1):
            model.train()
            perm = torch.randperm(n_train, generator=generator)
            sums = {"ce": 0.0, "term": 0.0}
            for b in range(per_epoch):
                idx = perm[b * batch_size : (b + 1) * batch_size]  # the global batch
                rows = shard(torch.arange(batch_size), dist)
                xb, yb = x_train[idx[rows]].to(dev), y_train[idx[rows]].to(dev)
                with sharded_draws(generator, rows, batch_size):
                    logits, z, (mu, std) = model(xb, generator=generator)
                ce = F.cross_entropy(logits, yb)
                if method == "mine":
                    z = gather_rows(z, dist)  # the estimate is not a mean over examples
                    term = mi(x_train[idx].to(dev), _standardize(z) if standardize_code else z,
                              generator=generator)
                    # The encoder descends beta * I(X;Z); the critic ascends the same estimate.
                    grads = torch.autograd.grad(ce + beta * term, params, retain_graph=True)
                    for p, g in zip(m_params, torch.autograd.grad(-term, m_params)):
                        p.grad = g
                    all_reduce_grads(m_params, dist)
                    opts["mi"].step()
                elif method == "vib":
                    term = vib_kl(mu, std).mean()
                    grads = torch.autograd.grad(ce + beta * term, params)
                else:
                    term = torch.zeros(())
                    grads = torch.autograd.grad(ce, params)
                for p, g in zip(params, grads):
                    p.grad = g
                all_reduce_grads(params, dist)
                opt.step()
                sums["ce"] += ce.item()
                sums["term"] += term.item()
            model.eval()
            err = error_rate(model, data.x_test.flatten(1), data.y_test, generator=generator,
                             n_samples=eval_samples)
            sums_t = torch.tensor([sums["ce"], sums["term"]], dtype=torch.float64)
            ce_mean, term_mean = all_reduce_mean(sums_t, dist).tolist()
            rec = {"ce": ce_mean / per_epoch, "test_error": err}
            if method != "plain":
                rec["mi" if method == "mine" else "kl"] = term_mean / per_epoch
            run.log(epoch, **rec)
            if epoch % checkpoint_every == 0 or epoch == epochs:
                run.save(epoch, models=models, opts=opts, generator=generator)
            advance(1, test_error=err)
    model.eval()
    return model, mi


def _varying(t: torch.Tensor) -> torch.Tensor:
    # Constant columns carry no information (and MINE rejects them): drop them.
    return t[:, (t != t[:1]).any(0)]


def estimate_mi_xz(model: IBClassifier, x: torch.Tensor, *, generator: torch.Generator, **mine_params) -> MINE:
    """MINE's held-out estimate of I(X;Z) for a trained (frozen) encoder: a fitted ``MINE``.

    One code z ~ p(z | x) is drawn per row of ``x`` (from ``generator``); constant columns of
    x and z are dropped (they carry no information); :class:`~deepscope.mi.MINE` is fitted on
    the pairs with its own train / validation / test split, so ``.mi_`` is a held-out lower
    bound in nats and ``.ci_`` its bootstrap interval. For the deterministic plain network
    the true I(X;Z) is infinite; the estimate is then bounded by what the critic can
    separate (and by log of the test rows).

    Parameters
    ----------
    model : IBClassifier
    x : (N, ...) tensor
        Inputs (N >= 50; flattened).
    generator : torch.Generator
        Draws the codes and MINE's ``random_state`` (unless given).
    **mine_params
        Passed to ``MINE`` (e.g. ``max_steps=1000``); ``device`` defaults to the model's. Unset
        options come from ``PRESETS["concat-mine"]`` (concatenation critic, MINE bound, up to 10,000
        steps), not from ``MINE``'s defaults: those are tuned for estimates on up to 25 + 25
        dimensions within seconds, while X and Z here have hundreds of dimensions, and the
        documented bottleneck results were measured with this configuration.
    """
    from deepscope.mi.estimator import MINE, PRESETS

    dev = next(model.parameters()).device
    x = x.flatten(1).to(dev)
    with torch.no_grad():
        z, _ = model.encode(x, generator=generator)
    mine_params.setdefault("random_state", spawn(generator))
    mine_params.setdefault("device", str(dev))
    for key, value in PRESETS["concat-mine"].items():
        mine_params.setdefault(key, value)
    return MINE(**mine_params).fit(_varying(x), _varying(z))
