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
    res = train_ib(ds, method="mine", noise="gaussian", beta=1e-3, options={"epochs": 50}, generator=g)
    model = res.model                                        # an IBClassifier
    error_rate(model, ds.x_test, ds.y_test, generator=g)   # in [0, 1]
    train_ib(ds, net=my_encoder, method="vib")             # your own encoder under the code
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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepscope.mi.loss import MILoss
from deepscope.train.config import check_int, require
from deepscope.train.distributed import (
    all_reduce_grads,
    all_reduce_mean,
    gather_rows,
    shard,
    sharded_draws,
)
from deepscope.train.loop import (
    TrainOptions,
    TrainResult,
    end_epoch,
    evaluating,
    generator_or_default,
    make_optimizer,
    optimiser_step,
    resume,
    setup,
)
from deepscope.train.rng import fork_seeded, spawn
from deepscope.train.run import Run

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
    "DEFAULTS",
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
    encoder : nn.Module, optional
        Your own encoder ``x (K, ...) -> (K, encoder_dim)`` in place of the MLP of ``hidden``
        (any noise but ``'propagated'``); the code's head and the decoder are added on top.
    encoder_dim : int, optional
        The size of ``encoder``'s output (needed with ``encoder``).

    Notes
    -----
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
        encoder: nn.Module | None = None,
        encoder_dim: int | None = None,
    ) -> None:
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"noise == {noise!r}; choose one of {', '.join(NOISES)}")
        check_int("code_dim", code_dim, 1)
        if noise in ("additive", "propagated") and not sigma > 0:
            raise ValueError(f"sigma == {sigma}, must be > 0 for noise == {noise!r}")
        if encoder is not None and noise == "propagated":
            raise ValueError("noise == 'propagated' adds noise after every hidden layer of the built-in "
                             "encoder; with your own encoder use 'gaussian' or 'additive'")
        if encoder is not None and encoder_dim is None:
            raise ValueError("encoder_dim is None with encoder given; pass the size of the encoder's output")
        self.noise, self.sigma, self.code_dim = noise, float(sigma), code_dim
        layers = []
        d = dim_in
        for h in hidden if encoder is None else ():
            layers.append(nn.Linear(d, h))
            d = h
        self.hidden = nn.ModuleList(layers)
        self.encoder = encoder
        d = d if encoder is None else check_int("encoder_dim", encoder_dim, 1)
        self.head = nn.Linear(d, 2 * code_dim if noise == "gaussian" else code_dim)
        self.decoder = nn.Linear(code_dim, num_classes)

    def encode(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """``x (K, ...) -> z (K, code_dim), (mu, std)``; noise from ``generator``."""
        h = x.flatten(1) if self.encoder is None else self.encoder(x)
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
    generator: torch.Generator | None = None,
    n_samples: int = 12,
    batch_size: int = 2048,
) -> float:
    """Misclassification rate in [0, 1] of the prediction averaged over ``n_samples`` codes.

    Parameters
    ----------
    model : IBClassifier
    x : (N, ...) tensor or array
    y : (N,) int tensor or array
    generator : torch.Generator, optional
        Draws the codes' noise (default: torch's global RNG, as dropout does).
    """
    x, y = _as_tensor(x, "x"), _as_tensor(y, "y").long()
    dev = next(model.parameters()).device
    wrong = 0
    for i in range(0, len(x), batch_size):
        p = model.predict_proba(x[i : i + batch_size].to(dev), n_samples=n_samples, generator=generator)
        wrong += int((p.argmax(1).cpu() != y[i : i + batch_size]).sum())
    return wrong / len(x)


def _as_tensor(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    t = torch.as_tensor(np.asarray(a))
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.float()  # the networks are float32
    return t


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


#: train_ib's own values of the shared options (Adam at a constant learning rate).
DEFAULTS = TrainOptions(epochs=50, batch_size=100, lr=1e-3, optimizer="adam", schedule="constant",
                        weight_decay=0.0, checkpoint_every=1)


def train_ib(
    data,
    *,
    net: nn.Module | Callable[[], nn.Module] | None = None,
    method: Method = "mine",
    noise: Noise | None = None,
    beta: float = 1e-3,
    hidden: Sequence[int] = (1024, 1024),
    code_dim: int = 256,
    sigma: float = 1.0,
    critic_lr: float = 1e-4,
    critic_hidden: Sequence[int] = (256, 256),
    standardize_code: bool = True,
    eval_samples: int = 12,
    options: TrainOptions | dict | None = None,
    generator: torch.Generator | None = None,
    run: Run | None = None,
    desc: str = "",
) -> TrainResult:
    """Train an information-bottleneck classifier (Belghazi et al. 2018, arXiv 1801.04062, sec. 5.3).

    Parameters
    ----------
    data : deepscope.data.Dataset
        Train/test tensors (inputs are flattened for the built-in encoder).
    net : nn.Module or callable, optional
        Your own encoder ``x (K, ...) -> (K, F)`` (or a function returning one) in place of the
        built-in MLP of ``hidden``; the stochastic code's head and the linear decoder go on
        top (:class:`IBClassifier`'s ``encoder``). ``noise='propagated'`` needs the built-in one.
    method : {'mine', 'plain', 'vib'}
        ``'plain'`` (cross-entropy, ``noise='none'``), ``'vib'`` (cross-entropy +
        beta * KL, ``noise='gaussian'``) or ``'mine'`` (cross-entropy + beta * I(X;Z) by MINE;
        any stochastic ``noise``, default ``'gaussian'``).
    noise : {'gaussian', 'additive', 'propagated'}, optional
        Encoder noise for ``'mine'``.
    beta : float
        Weight of the bottleneck term (ignored by ``'plain'``).
    critic_lr : float
        Adam learning rate of MINE's statistics network.
    standardize_code : bool
        For ``'mine'``: feed the critic the code standardised per dimension with batch
        statistics. I(X;Z) does not change under such an affine map, but without it the
        encoder can lower the *estimate* by inflating the code's scale until the critic
        cannot keep up, instead of lowering the information (observed on digits at beta=0.1).
    options : TrainOptions or dict, optional
        The shared knobs; unset ones take :data:`DEFAULTS` (50 epochs, batch 100, Adam at a
        constant lr 1e-3, a checkpoint every epoch). The budget is the same for every method;
        the last partial batch of an epoch is dropped. ``amp`` is not supported.
    generator : torch.Generator, optional
        The only source of randomness: initialisation, batches, the code's noise, MINE's
        permutations. Checkpointed with the run. Default: PyTorch's default generator.
    run : deepscope.train.Run, optional
        Metrics per epoch, checkpoints at epoch ends (``models={"model", "mi"}``), resume.

    Returns
    -------
    TrainResult
        ``models["net"]``: the trained :class:`IBClassifier` (eval mode); ``history``: per
        epoch the training cross-entropy, the bottleneck term (``mi`` for MINE, ``kl`` for
        VIB), the test error and accuracy; ``info["mi_loss"]``: for ``'mine'`` the MI term
        with its critic (None otherwise).

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
    opts = TrainOptions.resolve(options, DEFAULTS)
    n_train, batch_size = data.x_train.shape[0], opts.batch_size
    require(beta >= 0, "beta", beta, ">= 0")
    require(2 <= batch_size <= n_train, "batch_size", batch_size, f"in [2, {n_train}] (the training set size)")
    require(not opts.amp, "amp", opts.amp, "False (train_ib trains in float32)")
    run, dist, dev = setup(run, opts)
    generator = generator_or_default(generator)
    require(batch_size % dist.world_size == 0, "batch_size", batch_size,
            f"a multiple of the {dist.world_size} processes")
    x_train, y_train = data.x_train.flatten(1) if net is None else data.x_train, data.y_train
    dim_in = data.x_train.flatten(1).shape[1]
    with fork_seeded(generator):
        encoder = _encoder(net, x_train[:2])
        model = IBClassifier(dim_in, data.num_classes, hidden=hidden, code_dim=code_dim, noise=noise,
                             sigma=sigma, encoder=encoder[0], encoder_dim=encoder[1]).to(dev)
        mi = MILoss(dim_x=dim_in, dim_y=code_dim, hidden=critic_hidden).to(dev) if method == "mine" else None
    opt, sched = make_optimizer(model.parameters(), opts)
    models, optims = {"model": model}, {"model": opt}
    if mi is not None:
        models["mi"], optims["mi"] = mi, torch.optim.Adam(mi.parameters(), lr=critic_lr)
    ckpt = {"models": models, "opts": optims, "sched": sched, "generator": generator}
    start, history = resume(run, **ckpt)

    m_params = list(mi.parameters()) if mi is not None else []
    x_flat = data.x_train.flatten(1)  # the critic reads the flattened input
    per_epoch = n_train // batch_size  # drop the last partial batch: every step sees batch_size rows
    with run.progress(opts.epochs, desc=desc, start=start) as advance:
        for epoch in range(start + 1, opts.epochs + 1):
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
                    term = mi(x_flat[idx].to(dev), _standardize(z) if standardize_code else z,
                              generator=generator)
                    # The critic ascends I(X;Z): its own gradient, taken before the encoder's step
                    critic_grads = torch.autograd.grad(-term, m_params, retain_graph=True)
                elif method == "vib":
                    term = vib_kl(mu, std).mean()
                else:
                    term = torch.zeros(())
                # the encoder and decoder descend ce + beta * term
                optimiser_step(opt, None, ce + beta * term if method != "plain" else ce, dist)
                if method == "mine":
                    for p, g in zip(m_params, critic_grads):
                        p.grad = g  # (replaces what the encoder's backward left there)
                    all_reduce_grads(m_params, dist)
                    optims["mi"].step()
                sums["ce"] += ce.item()
                sums["term"] += term.item()
            model.eval()
            err = error_rate(model, data.x_test.flatten(1) if net is None else data.x_test, data.y_test,
                             generator=generator, n_samples=eval_samples)
            sums_t = torch.tensor([sums["ce"], sums["term"]], dtype=torch.float64)
            ce_mean, term_mean = all_reduce_mean(sums_t, dist).tolist()
            rec = {"epoch": epoch, "ce": ce_mean / per_epoch, "test_error": err}
            if method != "plain":
                rec["mi" if method == "mine" else "kl"] = term_mean / per_epoch
            rec["test_acc"] = 1.0 - err
            end_epoch(run, epoch, rec, history, scheds=[sched], options=opts, advance=advance, checkpoint=ckpt)
    model.eval()
    return TrainResult(models={"net": model}, history=history, info={"mi_loss": mi})


def _encoder(net, x_rows: torch.Tensor) -> tuple[nn.Module | None, int | None]:
    """``(encoder, its output size)`` from ``net`` (a module, a factory or None: the built-in MLP)."""
    if net is None:
        return None, None
    if isinstance(net, str):
        raise TypeError(f"net == {net!r}: train_ib takes your own encoder (an nn.Module or a function "
                        "returning one) or None for the built-in MLP encoder of `hidden`")
    enc = net if isinstance(net, nn.Module) else net()
    if not isinstance(enc, nn.Module):
        raise TypeError(f"net() returned a {type(enc).__name__}, must return an nn.Module")
    with evaluating(enc):
        out = enc(x_rows)
    if out.ndim != 2:
        raise ValueError(f"the encoder's output has shape {tuple(out.shape)}, must be (K, F): flatten it")
    return enc, out.shape[1]


def _varying(t: torch.Tensor) -> torch.Tensor:
    # Constant columns carry no information (and MINE rejects them): drop them.
    return t[:, (t != t[:1]).any(0)]


def estimate_mi_xz(model: IBClassifier, x: torch.Tensor, *, generator: torch.Generator | None = None,
                   **mine_params) -> MINE:
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
    x : (N, ...) tensor or array
        Inputs (N >= 50; flattened for the built-in encoder).
    generator : torch.Generator, optional
        Draws the codes and MINE's ``random_state`` (unless given). Default: PyTorch's
        default generator.
    **mine_params
        Passed to ``MINE`` (e.g. ``max_steps=1000``); ``device`` defaults to the model's. Unset
        options come from ``PRESETS["concat-mine"]`` (the MINE paper's concatenation critic and
        bound, up to 10,000 steps), not from ``MINE``'s defaults: those are tuned for estimates on up to 25 + 25
        dimensions within seconds, while X and Z here have hundreds of dimensions, and the
        documented bottleneck results were measured with this configuration.
    """
    from deepscope.mi.estimator import MINE, PRESETS

    generator = generator_or_default(generator)
    dev = next(model.parameters()).device
    x = _as_tensor(x, "x").to(dev)
    x = x.flatten(1) if model.encoder is None else x
    with torch.no_grad():
        z, _ = model.encode(x, generator=generator)
    x = x.flatten(1)
    mine_params.setdefault("random_state", spawn(generator))
    mine_params.setdefault("device", str(dev))
    for key, value in PRESETS["concat-mine"].items():
        mine_params.setdefault(key, value)
    return MINE(**mine_params).fit(_varying(x), _varying(z))
