"""Weak and strong views of a batch, per data type, drawn from an explicit generator.

>>> import torch
>>> from deepscope.data.augment import SignalTransform, Views, signal_views
>>> g = torch.Generator().manual_seed(0)
>>> views = signal_views("weak")                      # MNIST-1D: shifts of <= 2 samples, no noise
>>> x = torch.randn(8, 40)
>>> views.weak(x, g).shape, views.strong(x, g).shape, torch.equal(views.test(x), x)
(torch.Size([8, 40]), torch.Size([8, 40]), True)
>>> shift_only = SignalTransform(shift=3)
>>> shift_only(x, generator=g).shape
torch.Size([8, 40])

A :class:`Views` holds the three transforms a noisy-label loop needs: ``weak`` (the views
whose predictions are averaged into targets), ``strong`` (the views a network trains on) and
``test`` (evaluation: only the normalisation). Any of them may be ``None`` (identity).

- 1-D signals, :class:`SignalTransform`: a random shift (zero padded), an amplitude scale
  and additive Gaussian noise. CIFAR's crops, flips and AutoAugment have no meaning on a
  signal, and heavy signal augmentation hurts on MNIST-1D (see docs/crosssplit.md), so
  :func:`signal_views` offers 'none', 'weak' and 'strong' presets.
- Images, :class:`ImageTransform`: random crop after zero padding and horizontal flip in plain
  torch, and AutoAugment / RandAugment from torchvision (the ``vision`` extra, imported only
  when a policy is asked for). :func:`cifar_views` is CrossSplit's CIFAR pipeline: weak =
  crop 4 + flip, strong = crop 4 + flip + AutoAugment (CIFAR-10 policy), both normalised
  with the dataset's channel means and standard deviations.

Randomness comes only from the generator: torchvision's policies draw from torch's global
RNG, so they run inside :func:`deepscope.train.rng.fork_seeded`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "SignalTransform", "ImageTransform", "Views", "signal_views", "cifar_views", "no_views",
    "CIFAR_MEAN_STD",
]

#: Channel means and standard deviations used by DivideMix and CrossSplit's loaders.
CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
}

Transform = Callable[..., torch.Tensor]


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


@dataclass(frozen=True)
class SignalTransform:
    """Random shift, amplitude scale and additive noise of 1-D signals.

    Parameters
    ----------
    shift : int
        Each signal moves by an integer drawn uniformly in ``[-shift, shift]`` samples; the
        vacated end is zero (MNIST-1D's inputs are standardised, so zero is the mean).
    scale : float
        Each signal is multiplied by a factor drawn uniformly in ``[1 - scale, 1 + scale]``.
    noise : float
        Standard deviation of i.i.d. Gaussian noise added to every sample.
    """

    shift: int = 0
    scale: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ValueError(f"shift == {self.shift!r}, must be an integer >= 0 (samples)")
        if not 0.0 <= self.scale < 1.0:
            raise ValueError(f"scale == {self.scale!r}, must be in [0, 1)")
        if not self.noise >= 0.0:
            raise ValueError(f"noise == {self.noise!r}, must be >= 0")

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """(N, L) or (N, C, L) -> same shape; draws on the CPU ``generator``."""
        if x.ndim not in (2, 3):
            raise ValueError(f"x.shape == {tuple(x.shape)}, must be (N, L) or (N, C, L)")
        n, length = x.shape[0], x.shape[-1]
        out = x
        if self.shift:
            s = self.shift
            offsets = torch.randint(-s, s + 1, (n,), generator=generator).to(x.device)
            padded = F.pad(out, (s, s))
            idx = torch.arange(length, device=x.device) + s - offsets[:, None]  # (N, L)
            if x.ndim == 3:
                idx = idx[:, None, :].expand(n, x.shape[1], length)
            out = padded.gather(-1, idx)
        if self.scale:
            f = _uniform(n, 1 - self.scale, 1 + self.scale, generator).to(x.device, x.dtype)
            out = out * f.view(n, *([1] * (x.ndim - 1)))
        if self.noise:
            eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            out = out + self.noise * eps
        return out


@dataclass(frozen=True)
class ImageTransform:
    """Random crop (after zero padding), horizontal flip and an optional torchvision policy.

    Parameters
    ----------
    crop_padding : int
        Zero-pad by this many pixels on each side, then crop back at a random offset (4 on CIFAR).
    flip : bool
        Flip each image left-right with probability 1/2.
    policy : 'none', 'autoaugment' or 'randaugment'
        Applied per image after crop and flip, on uint8 pixels (inputs in [0, 1]); needs
        torchvision. 'autoaugment' uses the CIFAR-10 policy (Cubuk et al. 2019, arXiv
        1805.09501), 'randaugment' torchvision's defaults (2 ops, magnitude 9).
    """

    crop_padding: int = 0
    flip: bool = False
    policy: Literal["none", "autoaugment", "randaugment"] = "none"

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) \
                or self.crop_padding < 0:
            raise ValueError(f"crop_padding == {self.crop_padding!r}, must be an integer >= 0")
        if self.policy not in ("none", "autoaugment", "randaugment"):
            raise ValueError(f"policy == {self.policy!r}, must be 'none', 'autoaugment' or "
                             "'randaugment'")

    def _policy(self):
        try:
            from torchvision import transforms as T
        except ImportError as e:
            raise ImportError(
                f"policy == {self.policy!r} needs torchvision: pip install 'deepscope[vision]' "
                "(or use policy='none')") from e
        if self.policy == "autoaugment":
            return T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)
        return T.RandAugment()

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> same shape."""
        if x.ndim != 4:
            raise ValueError(f"x.shape == {tuple(x.shape)}, must be (N, C, H, W)")
        n, _, h, w = x.shape
        out = x
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(out, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            b = torch.arange(n, device=x.device)[:, None, None, None]
            c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            out = padded[b, c, rows, cols]
        if self.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        if self.policy != "none":
            from deepscope.train.rng import fork_seeded

            op = self._policy()
            pixels = (out.clamp(0, 1) * 255).round().to(torch.uint8)
            with fork_seeded(generator):
                pixels = torch.stack([op(img) for img in pixels])
            out = pixels.to(x.dtype) / 255.0
        return out


@dataclass(frozen=True)
class Views:
    """Weak, strong and test transforms, with an optional per-channel normalisation last.

    Parameters
    ----------
    weak_transform, strong_transform : callable ``(x, *, generator) -> x`` or None
        None is the identity.
    mean, std : sequence of float, optional
        Per-channel (dimension 1) normalisation applied after every transform, test included.
    """

    weak_transform: Transform | None = None
    strong_transform: Transform | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        shape = (1, len(self.mean)) + (1,) * (x.ndim - 2)
        m = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        s = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - m) / s

    def weak(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._norm(x if self.weak_transform is None else self.weak_transform(x, generator=generator))

    def strong(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._norm(x if self.strong_transform is None
                          else self.strong_transform(x, generator=generator))

    def test(self, x: torch.Tensor) -> torch.Tensor:
        return self._norm(x)


def no_views() -> Views:
    """Identity everywhere: every view is the input itself."""
    return Views()


#: :func:`signal_views` presets: (weak, strong) transforms.
SIGNAL_PRESETS = {
    "none": (None, None),
    "weak": (SignalTransform(shift=1), SignalTransform(shift=2)),
    "strong": (SignalTransform(shift=2, scale=0.1), SignalTransform(shift=4, scale=0.2, noise=0.1)),
}


def signal_views(preset: Literal["none", "weak", "strong"] = "weak") -> Views:
    """Views for 1-D signals such as MNIST-1D.

    'none': identity; 'weak': shifts of at most 1 sample (weak) and 2 (strong); 'strong':
    shifts of 2 / 4 samples, amplitude scales of 10% / 20%, and noise of std 0.1 on the strong view.
    """
    if preset not in SIGNAL_PRESETS:
        raise ValueError(f"preset == {preset!r}, must be one of {sorted(SIGNAL_PRESETS)}")
    weak, strong = SIGNAL_PRESETS[preset]
    return Views(weak, strong)


def cifar_views(dataset: Literal["cifar10", "cifar100"] = "cifar10", *,
                policy: Literal["none", "autoaugment", "randaugment"] = "autoaugment") -> Views:
    """CrossSplit's CIFAR views: weak = crop 4 + flip; strong = weak + ``policy``; normalised."""
    if dataset not in CIFAR_MEAN_STD:
        raise ValueError(f"dataset == {dataset!r}, must be 'cifar10' or 'cifar100'")
    mean, std = CIFAR_MEAN_STD[dataset]
    return Views(ImageTransform(4, True), ImageTransform(4, True, policy), mean, std)
