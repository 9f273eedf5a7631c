"""A GAN whose generator also maximises mutual information, and mode-coverage metrics.

Belghazi et al. 2018 (MINE, arXiv 1801.04062, section 5.1): adding ``beta * I(G(z); z)``
(or the MI between the output and a code ``c`` fed to the generator) to the
generator's objective, estimated with MINE and combined through adaptive gradient
clipping, keeps a GAN from collapsing onto a few modes.

>>> import torch
>>> from deepscope.mi.gan import make_toy, mode_metrics
>>> data = make_toy("grid")                       # 25 Gaussians on a 5x5 grid, sigma 0.05
>>> x = data.sample(10_000, generator=torch.Generator().manual_seed(0))
>>> m = mode_metrics(x, data.centers, data.sigma)
>>> m["modes"], round(m["high_quality"], 2)       # the data itself covers every mode
(25, 0.99)

Training (one flat loop; an optional ``run`` gives checkpoints, metrics and resume)::

    from deepscope.train.rng import make_generator
    res = train_gan(data, generator=make_generator(0, "gan"), beta=1.0, steps=5000)  # beta=0: plain GAN
    evaluate_generator(res.model, data, n=10_000, seed=0)   # {'modes': 25, 'high_quality': ..., 'kl': ...}
    train_gan(data, net=my_generator, discriminator=my_discriminator)   # your own networks

The toy sets: ``'grid'`` (25 Gaussians at {-4, -2, 0, 2, 4}^2, sigma 0.05), ``'ring'``
(8 Gaussians on a circle of radius 2, sigma 0.05), ``'swissroll'`` (no modes; for pictures).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.mi.loss import MILoss, adaptive_gradient_clip
from deepscope.nets import MLP
from deepscope.train.config import check_int, require
from deepscope.train.loop import (
    TrainOptions,
    TrainResult,
    evaluating,
    generator_or_default,
    optimiser_step,
    resume,
    setup,
)
from deepscope.train.rng import fork_seeded, spawn
from deepscope.train.run import Run

#: The 2-D toy sets: 25 Gaussians on a grid, 8 on a ring, the Swiss roll (no modes).
Toy = Literal["grid", "ring", "swissroll"]
#: Names accepted by :func:`make_toy`.
TOYS: tuple[str, ...] = get_args(Toy)

#: What the generator's MI term is measured against: the noise z or a code c fed beside it.
MITarget = Literal["z", "code"]
MI_TARGETS: tuple[str, ...] = get_args(MITarget)

__all__ = [
    "Toy",
    "MITarget",
    "TOYS",
    "Toy2D",
    "make_toy",
    "mode_metrics",
    "GANGenerator",
    "Discriminator",
    "draw_noise",
    "train_gan",
    "evaluate_generator",
]


@dataclass(frozen=True)
class Toy2D:
    """A 2-D sampling distribution.

    Attributes
    ----------
    name : str
    centers : (K, 2) tensor or None
        Mode centres of a Gaussian mixture (``None`` for the Swiss roll).
    sigma : float
        Standard deviation of every mixture component (noise level for the Swiss roll).
    """

    name: str
    centers: torch.Tensor | None
    sigma: float

    def sample(self, n: int, *, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` points, a ``(n, 2)`` float tensor, from ``generator`` (a CPU generator)."""
        if self.centers is None:
            # Swiss roll: t in [1.5 pi, 4.5 pi], radius t, scaled to about [-4, 4]^2.
            t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
            pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 3.5
            return pts + self.sigma * torch.randn(n, 2, generator=generator)
        idx = torch.randint(len(self.centers), (n,), generator=generator)
        return self.centers[idx] + self.sigma * torch.randn(n, 2, generator=generator)


def make_toy(name: Toy, *, sigma: float = 0.05) -> Toy2D:
    """The 2-D data sets of the MINE-GAN experiment by name: ``'grid'``, ``'ring'``, ``'swissroll'``."""
    if name not in TOYS:
        raise ValueError(f"dataset == {name!r}; choose one of {', '.join(TOYS)}")
    if not sigma > 0:
        raise ValueError(f"sigma == {sigma}, must be > 0")
    if name == "grid":
        g = torch.arange(-2, 3, dtype=torch.float32) * 2.0
        centers = torch.cartesian_prod(g, g)
    elif name == "ring":
        a = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
        centers = 2.0 * torch.stack([torch.cos(a), torch.sin(a)], dim=1)
    else:
        centers = None
    return Toy2D(name, centers, float(sigma))


def mode_metrics(
    samples: torch.Tensor,
    centers: torch.Tensor,
    sigma: float,
    *,
    radius: float = 3.0,
    min_fraction: float = 0.01,
) -> dict[str, float]:
    """Mode coverage of generated samples on a Gaussian mixture.

    Parameters
    ----------
    samples : (N, 2) tensor
        Generated points.
    centers : (K, 2) tensor
        True mode centres.
    sigma : float
        Standard deviation of the mixture components.
    radius : float
        A sample is *high quality* when it lies within ``radius * sigma`` of its nearest centre
        (3 sigma, as in VEEGAN / PacGAN).
    min_fraction : float
        A mode is *covered* when at least this fraction of all N samples are high-quality
        samples of that mode (1%).

    Returns
    -------
    dict with
        ``modes`` (int, covered modes), ``high_quality`` (fraction of samples within
        ``radius * sigma`` of some centre), ``kl`` (KL divergence, nats, from the histogram
        of the high-quality samples over the K modes to the uniform histogram; 0 when
        perfectly balanced, log K when all sit at one mode, ``inf`` when no sample is
        high quality), and ``counts`` (K ints).

    Examples
    --------
    >>> import torch
    >>> c = make_toy("grid").centers
    >>> mode_metrics(c.repeat(40, 1), c, 0.05)["modes"]
    25
    """
    if samples.ndim != 2 or centers.ndim != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(
            f"samples.shape == {tuple(samples.shape)} and centers.shape == {tuple(centers.shape)}; "
            "need (N, D) and (K, D) with the same D"
        )
    if samples.shape[0] == 0:
        raise ValueError("samples is empty; need at least one generated point")
    if not sigma > 0:
        raise ValueError(f"sigma == {sigma}, must be > 0")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction == {min_fraction}, must be in [0, 1]")
    x = samples.detach().to("cpu", torch.float64)
    c = centers.detach().to("cpu", torch.float64)
    dist = torch.cdist(x, c)
    dmin, nearest = dist.min(dim=1)
    good = dmin <= radius * sigma
    k = c.shape[0]
    counts = torch.bincount(nearest[good], minlength=k)
    n = x.shape[0]
    modes = int((counts >= min_fraction * n).sum())
    total = int(counts.sum())
    if total == 0:
        kl = math.inf
    else:
        p = counts[counts > 0].double() / total
        kl = float((p * torch.log(p * k)).sum())
    return {
        "modes": modes,
        "high_quality": float(good.double().mean()),
        "kl": max(kl, 0.0),
        "counts": counts.tolist(),
    }


def draw_noise(n: int, latent_dim: int, code_dim: int, *, generator: torch.Generator | None = None,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A generator network's inputs: ``z (n, latent_dim)`` ~ N(0, I) and ``c (n, code_dim)`` ~ U(-1, 1).

    Drawn on the CPU from ``generator`` (PyTorch's default generator when None), then moved to
    ``device``.
    """
    generator = generator_or_default(generator)
    z = torch.randn(n, latent_dim, generator=generator).to(device)
    c = (2 * torch.rand(n, code_dim, generator=generator) - 1).to(device)
    return z, c


class GANGenerator(nn.Module):
    """The GAN's generator network, an MLP ``[z, c] -> x``: z ~ N(0, I) of ``latent_dim``,
    optional code c ~ U(-1, 1)^code_dim.

    Parameters
    ----------
    latent_dim : int
        Size of the Gaussian noise z.
    code_dim : int
        Size of the code c concatenated to z (0: no code).
    hidden : sequence of int
        Hidden widths (ReLU).
    dim_out : int
        Output dimension (2 for the toy sets).
    """

    def __init__(self, latent_dim: int, *, code_dim: int = 0, hidden: Sequence[int] = (128, 128, 128), dim_out: int = 2):
        super().__init__()
        check_int("latent_dim", latent_dim, 1)
        check_int("code_dim", code_dim, 0)
        self.latent_dim, self.code_dim = latent_dim, code_dim
        self.net = MLP(latent_dim + code_dim, hidden, dim_out)

    def noise(self, n: int, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(z, c)`` (:func:`draw_noise`) on the network's device."""
        dev = next(self.parameters()).device
        return draw_noise(n, self.latent_dim, self.code_dim, generator=generator, device=dev)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z if c is None or c.shape[1] == 0 else torch.cat([z, c], dim=1))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated points, ``(n, dim_out)``, on the CPU."""
        z, c = self.noise(n, generator=generator)
        return self(z, c).cpu()


class Discriminator(nn.Module):
    """MLP discriminator ``x -> logit``, ``(K, 2) -> (K,)``."""

    def __init__(self, dim_in: int = 2, *, hidden: Sequence[int] = (128, 128, 128)):
        super().__init__()
        self.net = MLP(dim_in, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def evaluate_generator(gen: nn.Module, data: Toy2D, *, n: int = 10_000, seed: int = 0,
                       latent_dim: int | None = None, code_dim: int | None = None) -> dict[str, float]:
    """:func:`mode_metrics` on ``n`` samples drawn with a private seed (the global RNG is untouched).

    ``gen`` is a :class:`GANGenerator` or any generator network trained by :func:`train_gan`
    (give its ``latent_dim`` and ``code_dim`` when it has no such attributes).
    """
    if data.centers is None:
        raise ValueError(f"dataset {data.name!r} has no modes; mode metrics need 'grid' or 'ring'")
    x = _sample(gen, n, torch.Generator().manual_seed(seed), latent_dim, code_dim)
    return mode_metrics(x, data.centers, data.sigma)


def _sample(gen: nn.Module, n: int, generator: torch.Generator, latent_dim: int | None = None,
            code_dim: int | None = None) -> torch.Tensor:
    latent_dim = getattr(gen, "latent_dim", latent_dim)
    code_dim = getattr(gen, "code_dim", code_dim or 0)
    if latent_dim is None:
        raise ValueError("latent_dim is None and the network has no latent_dim attribute; pass latent_dim=")
    dev = next(gen.parameters()).device
    with evaluating(gen):
        z, c = draw_noise(n, latent_dim, code_dim, generator=generator, device=dev)
        return (gen(z) if code_dim == 0 else gen(z, c)).cpu()


def _network(spec, default):
    """``spec`` (a module, or a function returning one) or ``default()`` when None."""
    if spec is None:
        return default()
    if isinstance(spec, nn.Module):
        return spec
    if callable(spec):
        m = spec()
        if not isinstance(m, nn.Module):
            raise TypeError(f"the network factory returned a {type(m).__name__}, must return an nn.Module")
        return m
    raise TypeError(f"network is a {type(spec).__name__}, must be an nn.Module, a function returning one, or None")


def train_gan(
    data: Toy2D,
    *,
    generator: torch.Generator | None = None,
    run: Run | None = None,
    device: str | torch.device | None = None,
    steps: int = 5000,
    beta: float = 0.0,
    mi_target: MITarget = "z",
    latent_dim: int = 2,
    code_dim: int = 0,
    hidden: Sequence[int] = (128, 128, 128),
    net: nn.Module | Callable[[], nn.Module] | None = None,
    discriminator: nn.Module | Callable[[], nn.Module] | None = None,
    d_steps: int = 1,
    batch_size: int = 256,
    lr: float = 1e-3,
    critic_lr: float = 1e-4,
    critic_hidden: Sequence[int] = (128, 128),
    lr_decay: bool = True,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    desc: str = "",
) -> TrainResult:
    """Train a (MINE-regularised) GAN on a 2-D toy set (Belghazi et al. 2018, arXiv 1801.04062, sec. 5.1).

    The discriminator takes ``d_steps`` steps of the usual cross-entropy loss per
    generator step. The generator minimises the non-saturating GAN loss
    ``-log D(G(z))`` minus ``beta * I(G(z); z)`` (``mi_target='z'``) or
    ``beta * I(G(z, c); c)`` (``mi_target='code'``, needs ``code_dim > 0``), the MI
    estimated by :class:`~deepscope.mi.loss.MILoss` (MINE with its moving average). The two
    gradients are combined by :func:`~deepscope.mi.loss.adaptive_gradient_clip`, so the MI
    gradient is never larger than the GAN gradient. ``beta = 0`` is the plain GAN with the
    same networks and budget (no critic is trained).

    Parameters
    ----------
    data : Toy2D
        From :func:`make_toy`.
    generator : torch.Generator, optional
        The only source of randomness: network initialisation, real batches and noise,
        and the seed of a second stream for MINE's permutations (so the plain GAN and
        GAN+MINE with the same generator see the same batches). Checkpointed with the run,
        so a killed run resumes to the same numbers. Default: PyTorch's default generator.
    run : deepscope.train.Run, optional
        Metrics, checkpoints (``models={"gen", "disc", "mi"}``, their optimizers, the
        generators) and resume. ``None``: nothing is written.
    device : str or torch.device, optional
        Default: the run's device, else the CPU.
    steps : int
        Generator steps.
    beta : float
        Weight of the MI term (>= 0).
    latent_dim, code_dim : int
        Sizes of the noise z ~ N(0, I) and of the code c ~ U(-1, 1) the generator network reads.
    hidden : sequence of int
        Hidden widths of the built-in generator and discriminator.
    net : nn.Module or callable, optional
        Your own generator network (or a function returning one), ``net(z) -> (K, 2)`` when
        ``code_dim == 0``, else ``net(z, c)``. Default: :class:`GANGenerator`.
    discriminator : nn.Module or callable, optional
        Your own discriminator, ``(K, 2) -> (K,)`` logits. Default: :class:`Discriminator`.
    lr_decay : bool
        Decay the generator's and discriminator's learning rate linearly from ``lr`` to 0
        over the run (it sharpens the modes at the end; the critic keeps ``critic_lr``).
    checkpoint_every : int
        Checkpoint period in generator steps (a final checkpoint is always written).

    Returns
    -------
    TrainResult
        ``models``: ``{"gen": generator network, "disc": discriminator}`` (eval mode, on the
        run's device); ``history``: the logged records (every ``log_every`` steps);
        ``info["mi_loss"]``: the trained :class:`~deepscope.mi.loss.MILoss` with its critic
        (None when ``beta == 0``).
    """
    check_int("steps", steps, 1)
    require(beta >= 0, "beta", beta, ">= 0 (beta = 0 is the plain GAN)")
    require(mi_target in MI_TARGETS, "mi_target", mi_target, f"one of {MI_TARGETS}")
    require(mi_target == "z" or code_dim >= 1, "code_dim", code_dim,
            ">= 1 with mi_target == 'code' (the code whose MI with G's output is maximised)")
    for name, value, low in (("latent_dim", latent_dim, 1), ("d_steps", d_steps, 1), ("batch_size", batch_size, 2),
                             ("checkpoint_every", checkpoint_every, 1), ("log_every", log_every, 1)):
        check_int(name, value, low)
    run, _, dev = setup(run, TrainOptions(device=device))
    generator = generator_or_default(generator)
    dim_t = latent_dim if mi_target == "z" else code_dim
    with fork_seeded(generator):  # one fork for the three networks (their initialisations follow)
        gen = _network(net, lambda: GANGenerator(latent_dim, code_dim=code_dim, hidden=hidden)).to(dev)
        disc = _network(discriminator, lambda: Discriminator(hidden=hidden)).to(dev)
        mi = MILoss(dim_x=2, dim_y=dim_t, hidden=critic_hidden).to(dev)
    # Adam with beta1 = 0.5, the usual GAN setting.
    g_opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    m_opt = torch.optim.Adam(mi.parameters(), lr=critic_lr)
    mi_gen = torch.Generator().manual_seed(spawn(generator))
    models = {"gen": gen, "disc": disc, "mi": mi}
    opts = {"gen": g_opt, "disc": d_opt, "mi": m_opt}
    gens = {"data": generator, "mi": mi_gen}
    start, history = resume(run, models=models, opts=opts, generators=gens)

    def generate(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, c = draw_noise(n, latent_dim, code_dim, generator=generator, device=dev)
        return (gen(z) if code_dim == 0 else gen(z, c)), z, c

    g_params = list(gen.parameters())
    m_params = list(mi.parameters())
    with run.progress(steps, desc=desc, start=start) as advance:
        for step in range(start + 1, steps + 1):
            if lr_decay:  # a function of the step alone, so a resumed run follows the same schedule
                for opt in (g_opt, d_opt):
                    for group in opt.param_groups:
                        group["lr"] = lr * (1 - (step - 1) / steps)
            for _ in range(d_steps):
                real = data.sample(batch_size, generator=generator).to(dev)
                with torch.no_grad():
                    fake = generate(batch_size)[0]
                d_loss = F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()
                optimiser_step(d_opt, None, d_loss)

            fake, z, c = generate(batch_size)
            g_loss = F.softplus(-disc(fake)).mean()  # non-saturating: -log D(G(z))
            if beta > 0:
                mi_value = mi(fake, z if mi_target == "z" else c, generator=mi_gen)
                norms = adaptive_gradient_clip(g_loss, -beta * mi_value, g_params)
                # The critic ascends the same MI value (its own gradient, not the generator's).
                for p, g in zip(m_params, torch.autograd.grad(-mi_value, m_params)):
                    p.grad = g
                m_opt.step()
                g_opt.step()
            else:
                mi_value = torch.tensor(math.nan)
                norms = {}
                # (the discriminator's gradients it leaves are cleared by its next step)
                optimiser_step(g_opt, None, g_loss)

            if step % log_every == 0 or step == steps:
                rec = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "mi": mi_value.item(), **norms}
                if data.centers is not None:
                    with torch.no_grad():
                        m = mode_metrics(fake, data.centers, data.sigma)
                    rec.update(modes=m["modes"], high_quality=m["high_quality"])
                run.log(step, **rec)
                history.append({"step": step, **rec})
                advance(0, **{k: v for k, v in rec.items() if k in ("modes", "mi", "g_loss")})
            if step % checkpoint_every == 0 or step == steps:
                run.save(step, models=models, opts=opts, generators=gens, history=history)
            advance(1)
    gen.eval()
    disc.eval()
    return TrainResult(models={"gen": gen, "disc": disc}, history=history,
                       info={"mi_loss": mi if beta > 0 else None})
