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

Training with a :class:`~deepscope.train.Run` (checkpoints every epoch, resume)::

    model, mi = train_ib(run, ds, method="mine", noise="gaussian", beta=1e-3, epochs=50)
    test_error(model, ds.x_test, ds.y_test)            # in [0, 1]
    estimate_mi_xz(model, ds.x_train, ds.x_test)        # held-out MINE estimate, nats

Encoders (``noise=``), our reading of the paper's three stochastic codes:

- ``'gaussian'``: the encoder outputs a mean and a standard deviation, z = mu + std * eps
  (reparameterised, as in the VIB);
- ``'additive'``: a deterministic encoder plus fixed-variance noise, z = f(x) + sigma * eps;
- ``'propagated'``: noise of standard deviation ``sigma`` added after every hidden layer and
  to the code, so it propagates through the encoder;
- ``'none'``: deterministic (the plain network).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.mi.loss import MILoss

__all__ = [
    "METHODS",
    "NOISES",
    "IBClassifier",
    "vib_kl",
    "train_ib",
    "test_error",
    "estimate_mi_xz",
]

#: Training objectives: cross-entropy only, VIB, MINE-IB.
METHODS = ("plain", "vib", "mine")
#: Encoder noise models.
NOISES = ("none", "gaussian", "additive", "propagated")


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
    Noise is drawn in training and evaluation mode alike (the code *is* stochastic);
    :meth:`predict_proba` averages over draws.
    """

    def __init__(
        self,
        dim_in: int,
        num_classes: int,
        *,
        hidden: Sequence[int] = (1024, 1024),
        code_dim: int = 256,
        noise: str = "gaussian",
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

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """``x (K, ...) -> z (K, code_dim), (mu, std)``."""
        h = x.flatten(1)
        for layer in self.hidden:
            h = F.relu(layer(h))
            if self.noise == "propagated":
                h = h + self.sigma * torch.randn_like(h)
        out = self.head(h)
        if self.noise == "gaussian":
            mu, s = out.chunk(2, dim=1)
            std = F.softplus(s - 5.0)  # starts small, as in the VIB of Alemi et al.
            return mu + std * torch.randn_like(std), (mu, std)
        if self.noise in ("additive", "propagated"):
            out = out + self.sigma * torch.randn_like(out)
        return out, (None, None)

    def forward(self, x: torch.Tensor):
        z, stats = self.encode(x)
        return self.decoder(z), z, stats

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, *, n_samples: int = 12) -> torch.Tensor:
        """Class probabilities ``(K, C)`` averaged over ``n_samples`` draws of the code."""
        n = 1 if self.noise == "none" else n_samples
        return torch.stack([F.softmax(self(x)[0], dim=1) for _ in range(n)]).mean(0)


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


def test_error(model: IBClassifier, x: torch.Tensor, y: torch.Tensor, *, n_samples: int = 12, batch_size: int = 2048) -> float:
    """Misclassification rate in [0, 1] of the averaged prediction."""
    dev = next(model.parameters()).device
    wrong = 0
    for i in range(0, len(x), batch_size):
        p = model.predict_proba(x[i : i + batch_size].to(dev), n_samples=n_samples)
        wrong += int((p.argmax(1).cpu() != y[i : i + batch_size]).sum())
    return wrong / len(x)


test_error.__test__ = False  # not a pytest test despite its name


def _standardize(z: torch.Tensor) -> torch.Tensor:
    return (z - z.mean(0)) / (z.std(0) + 1e-6)


def train_ib(
    run,
    data,
    *,
    method: str = "mine",
    noise: str | None = None,
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
    """Train an IB classifier; resume from ``run``'s checkpoint (saved at epoch ends) if any.

    Parameters
    ----------
    run : deepscope.train.Run
    data : deepscope.data.Dataset
        Train/test tensors (inputs are flattened).
    method : str
        ``'plain'`` (cross-entropy, ``noise='none'``), ``'vib'`` (cross-entropy +
        beta * KL, ``noise='gaussian'``) or ``'mine'`` (cross-entropy + beta * I(X;Z) by MINE;
        any stochastic ``noise``, default ``'gaussian'``).
    noise : str, optional
        Encoder noise for ``'mine'`` (``'gaussian'``, ``'additive'``, ``'propagated'``).
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
        The trained model and, for ``'mine'``, the MI term with its critic.

    Each epoch logs the training cross-entropy, the bottleneck term (``mi`` for MINE, ``kl``
    for VIB) and the test error.
    """
    if method not in METHODS:
        raise ValueError(f"method == {method!r}; choose one of {', '.join(METHODS)}")
    fixed = {"plain": "none", "vib": "gaussian"}
    if method in fixed:
        if noise not in (None, fixed[method]):
            raise ValueError(f"method == {method!r} uses noise == {fixed[method]!r}, got noise == {noise!r}")
        noise = fixed[method]
    else:
        noise = noise or "gaussian"
        if noise == "none":
            raise ValueError("method == 'mine' needs a stochastic code: noise in 'gaussian', 'additive', 'propagated'")
    if not beta >= 0:
        raise ValueError(f"beta == {beta}, must be >= 0")
    if epochs < 1:
        raise ValueError(f"epochs == {epochs}, must be >= 1")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every == {checkpoint_every}, must be >= 1 (epochs)")
    n_train = data.x_train.shape[0]
    if not 2 <= batch_size <= n_train:
        raise ValueError(f"batch_size == {batch_size}, must be in [2, {n_train}] (the training set size)")
    dev = run.device
    x_train, y_train = data.x_train.flatten(1), data.y_train
    dim_in = x_train.shape[1]
    model = IBClassifier(dim_in, data.num_classes, hidden=hidden, code_dim=code_dim, noise=noise, sigma=sigma).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    mi = MILoss(dim_x=dim_in, dim_y=code_dim, hidden=critic_hidden).to(dev) if method == "mine" else None
    m_opt = torch.optim.Adam(mi.parameters(), lr=critic_lr) if mi is not None else None
    state = run.load_checkpoint()
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if mi is not None:
            mi.load_state_dict(state["mi"])
            m_opt.load_state_dict(state["m_opt"])
        start = state["step"]

    params = list(model.parameters())
    m_params = list(mi.parameters()) if mi is not None else []
    per_epoch = n_train // batch_size  # drop the last partial batch: every step sees batch_size rows
    with run.progress(epochs, desc=desc, start=start) as advance:
        for epoch in range(start + 1, epochs + 1):
            model.train()
            perm = torch.randperm(n_train)
            sums = {"ce": 0.0, "term": 0.0}
            for b in range(per_epoch):
                idx = perm[b * batch_size : (b + 1) * batch_size]
                xb, yb = x_train[idx].to(dev), y_train[idx].to(dev)
                logits, z, (mu, std) = model(xb)
                ce = F.cross_entropy(logits, yb)
                if method == "mine":
                    term = mi(xb, _standardize(z) if standardize_code else z)
                    # The encoder descends beta * I(X;Z); the critic ascends the same estimate.
                    grads = torch.autograd.grad(ce + beta * term, params, retain_graph=True)
                    for p, g in zip(m_params, torch.autograd.grad(-term, m_params)):
                        p.grad = g
                    m_opt.step()
                elif method == "vib":
                    term = vib_kl(mu, std).mean()
                    grads = torch.autograd.grad(ce + beta * term, params)
                else:
                    term = torch.zeros(())
                    grads = torch.autograd.grad(ce, params)
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()
                sums["ce"] += ce.item()
                sums["term"] += term.item()
            model.eval()
            err = test_error(model, data.x_test.flatten(1), data.y_test, n_samples=eval_samples)
            rec = {"ce": sums["ce"] / per_epoch, "test_error": err}
            if method != "plain":
                rec["mi" if method == "mine" else "kl"] = sums["term"] / per_epoch
            run.log(epoch, **rec)
            if epoch % checkpoint_every == 0 or epoch == epochs:
                blob = {"model": model.state_dict(), "opt": opt.state_dict()}
                if mi is not None:
                    blob.update(mi=mi.state_dict(), m_opt=m_opt.state_dict())
                run.save_checkpoint(blob, step=epoch)
            advance(1, test_error=err)
    model.eval()
    return model, mi


def estimate_mi_xz(
    model: IBClassifier,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    *,
    steps: int = 1000,
    batch_size: int = 256,
    hidden: Sequence[int] = (256, 256),
    lr: float = 1e-4,
    repeats: int = 10,
) -> float:
    """Held-out MINE estimate of I(X;Z) for a trained (frozen) encoder, in nats.

    A fresh statistics network is trained on codes of ``x_train`` for ``steps`` steps; the
    reported value is the Donsker-Varadhan bound on ``x_test`` (one fresh draw of the code,
    averaged over ``repeats`` shuffles). For the deterministic plain network the true
    I(X;Z) is infinite; the estimate is then bounded by what the critic can separate.
    Uses torch's global RNG (seed it for reproducibility).
    """
    if steps < 1:
        raise ValueError(f"steps == {steps}, must be >= 1")
    dev = next(model.parameters()).device
    x_train, x_test = x_train.flatten(1).to(dev), x_test.flatten(1).to(dev)
    mi = MILoss(dim_x=x_train.shape[1], dim_y=model.code_dim, hidden=hidden).to(dev)
    opt = torch.optim.Adam(mi.parameters(), lr=lr)
    n = x_train.shape[0]
    bs = min(batch_size, n)
    for _ in range(steps):
        idx = torch.randint(n, (bs,), device=dev)
        xb = x_train[idx]
        with torch.no_grad():
            z, _ = model.encode(xb)
        loss = -mi(xb, z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    mi.eval()
    with torch.no_grad():
        z, _ = model.encode(x_test)
        vals = [float(mi(x_test, z)) for _ in range(repeats)]
    return sum(vals) / len(vals) if all(math.isfinite(v) for v in vals) else math.nan
