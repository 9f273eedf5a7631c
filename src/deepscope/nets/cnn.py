"""Small convolutional classifiers, and the pieces every deepscope conv net shares.

>>> import torch
>>> from deepscope.nets.cnn import CNN1D, SmallCNN
>>> net = CNN1D(10)                                    # MNIST-1D: (N, 40) -> (N, 10), 5,210 parameters
>>> net(torch.randn(2, 40)).shape
torch.Size([2, 10])
>>> net = SmallCNN(10, input_shape=(1, 8, 8))          # sklearn digits, given flat (N, 64) or (N, 1, 8, 8)
>>> net.features(torch.randn(2, 64)).shape             # the penultimate representation
torch.Size([2, 128])

Every network here is ``forward(x) == classifier(features(x))``: ``features`` maps the input
to (N, feature_dim), ``classifier`` is the last ``nn.Linear``. ``norm`` picks the layer after
each convolution: 'batch' (BatchNorm, and convolutions without bias), 'group' (GroupNorm with
``gcd(channels, 32)`` groups) or 'none' (nothing; convolutions with bias). Weights keep
PyTorch's default initialisation; no dropout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

__all__ = [
    "NORM_LAYERS",
    "Norm",
    "GROUP_NORM_GROUPS",
    "check_norm",
    "make_norm",
    "Reshape",
    "CNN1D",
    "SmallCNN",
]

#: Normalisation layers accepted for ``norm`` by every convolutional network.
NORM_LAYERS = ("batch", "group", "none")
Norm = Literal["batch", "group", "none"]

#: GroupNorm uses ``gcd(channels, GROUP_NORM_GROUPS)`` groups: 32 (Wu & He 2018, arXiv
#: 1803.08494) for widths that are multiples of 32, fewer otherwise (25 channels -> 1 group).
GROUP_NORM_GROUPS = 32


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is one of :data:`NORM_LAYERS`, else raise a ValueError naming the choices."""
    if norm not in NORM_LAYERS:
        raise ValueError(f"norm == {norm!r}, must be one of {list(NORM_LAYERS)}")
    return norm


def make_norm(norm: str, channels: int, dims: int = 2) -> nn.Module:
    """The normalisation layer for ``channels`` feature maps of ``dims`` (1 or 2) spatial dimensions.

    'batch' -> ``BatchNorm{dims}d``; 'group' -> ``GroupNorm(gcd(channels, 32), channels)``;
    'none' -> ``nn.Identity()``.
    """
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, GROUP_NORM_GROUPS), channels)
    return nn.Identity()


def check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes == {num_classes!r}, must be an integer >= 1")
    return num_classes


def check_shape(input_shape: Sequence[int], name: str = "input_shape") -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints (the per-example shape, no batch dimension)."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"{name} == {input_shape!r}, must be a tuple of ints such as (3, 32, 32)") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"{name} == {input_shape!r}, must be a non-empty tuple of ints >= 1 such as (3, 32, 32)")
    return shape


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` from a per-example shape: (C, H, W), (H, W), or flat (D,) with D a perfect square.

    A flat (D,) means one channel of sqrt(D) x sqrt(D) pixels: (64,) -> (1, 8, 8), (784,) -> (1, 28, 28).
    """
    shape = check_shape(input_shape)
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side != shape[0]:
            raise ValueError(f"input_shape == {shape}, a flat shape must be a square (64, 784, ...); "
                             "pass (C, H, W) instead")
        return (1, side, side)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape
    raise ValueError(f"input_shape == {shape}, must be (C, H, W), (H, W) or a flat square (D,)")


class Reshape(nn.Module):
    """Reshape (N, ...) to (N, *shape); accepts flat (N, prod(shape)) or already-shaped input."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != math.prod(self.shape):
            raise ValueError(f"input.shape == {tuple(x.shape)}, must be (N, {', '.join(map(str, self.shape))}) "
                             f"or flat (N, {math.prod(self.shape)})")
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def _conv_len(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class CNN1D(nn.Module):
    """The small 1-D CNN of the MNIST-1D paper (Greydanus & Kobak, arXiv 2011.14439).

    Three convolutions with ReLU, then one linear layer on the flattened maps::

        Conv1d(C, ch, 5, stride 2, pad 1) -> Conv1d(ch, ch, 3, stride 2, pad 1) -> Conv1d(ch, ch, 3, stride 2, pad 1)

    With the paper's ``channels=25`` a length-40 input becomes 25 x 5 = 125 features, and the
    network has 5,210 parameters for 10 classes with ``norm='none'`` (the reference ``ConvBase``
    of greydanus/mnist1d, which has no normalisation), 5,285 with ``norm='batch'``.

    Parameters
    ----------
    num_classes : int
    input_shape : (L,) or (C, L)
        Per-example shape; default (40,). Input is (N, L), (N, C, L) or flat (N, C * L).
    channels : int
        Feature maps per convolution (default 25, as in the paper).
    norm : 'batch', 'group' or 'none'
        Layer after each convolution (default 'none', the paper's network).

    Attributes
    ----------
    features : nn.Sequential
        Input -> (N, feature_dim) flattened maps after the third convolution.
    classifier : nn.Linear
    feature_dim : int
    """

    def __init__(self, num_classes: int = 10, *, input_shape: Sequence[int] = (40,), channels: int = 25,
                 norm: Norm = "none"):
        super().__init__()
        check_num_classes(num_classes)
        check_norm(norm)
        shape = check_shape(input_shape)
        if len(shape) == 1:
            shape = (1, shape[0])
        if len(shape) != 2:
            raise ValueError(f"input_shape == {tuple(input_shape)}, must be (L,) or (C, L) for a 1-D CNN")
        if shape[1] < 3:
            raise ValueError(f"input_shape == {tuple(input_shape)}, the length must be >= 3 (first kernel is 5, padding 1)")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels == {channels!r}, must be an integer >= 1")
        bias = norm != "batch"
        layers: list[nn.Module] = [Reshape(shape)]
        c, length = shape
        for kernel in (5, 3, 3):
            layers.append(nn.Conv1d(c, channels, kernel, stride=2, padding=1, bias=bias))
            if norm != "none":
                layers.append(make_norm(norm, channels, dims=1))
            layers.append(nn.ReLU())
            c, length = channels, _conv_len(length, kernel, 2, 1)
        layers.append(nn.Flatten())
        self.feature_dim = channels * length
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L), (N, C, L) or flat (N, C * L) -> logits (N, num_classes)."""
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """A small image CNN for 8x8 (sklearn digits) and 28x28 (MNIST) inputs, sized from ``input_shape``.

    One block per entry of ``channels`` (3x3 convolution, padding 1 -> norm -> ReLU -> 2x2
    max-pool), then a hidden linear layer with ReLU; ``classifier`` maps ``hidden`` to the logits::

        (C, H, W) -> (32, H/2, W/2) -> (64, H/4, W/4) -> flatten -> Linear(64 * (H/4) * (W/4), 128) -> ReLU

    The spatial sizes are floored at each pooling, so H and W must be >= 2 ** len(channels).
    Parameter counts with the defaults, 10 classes and ``norm='none'``: 53,002 for (1, 8, 8)
    and 421,642 for (1, 28, 28).

    Parameters
    ----------
    num_classes : int
    input_shape : (C, H, W), (H, W) or flat (D,)
        Per-example shape, default (1, 28, 28); a flat (D,) means one square channel,
        (64,) -> (1, 8, 8). Input may be given as (N, C, H, W) or flat (N, C * H * W).
    channels : sequence of int
        Feature maps of the convolutional blocks (default (32, 64)).
    hidden : int
        Width of the hidden linear layer, which is ``feature_dim`` (default 128).
    norm : 'batch', 'group' or 'none'
        Layer after each convolution (default 'none'); the hidden linear layer is never normalised.
    """

    def __init__(self, num_classes: int = 10, *, input_shape: Sequence[int] = (1, 28, 28),
                 channels: Sequence[int] = (32, 64), hidden: int = 128, norm: Norm = "none"):
        super().__init__()
        check_num_classes(num_classes)
        check_norm(norm)
        c, h, w = image_shape(input_shape)
        channels = tuple(channels)
        if not channels or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in channels):
            raise ValueError(f"channels == {channels!r}, must be a non-empty sequence of ints >= 1")
        if min(h, w) < 2 ** len(channels):
            raise ValueError(f"input_shape == {tuple(input_shape)}, H and W must be >= {2 ** len(channels)} "
                             f"for {len(channels)} pooling blocks; use fewer channels entries")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden == {hidden!r}, must be an integer >= 1")
        bias = norm != "batch"
        layers: list[nn.Module] = [Reshape((c, h, w))]
        for k in channels:
            layers.append(nn.Conv2d(c, k, 3, padding=1, bias=bias))
            if norm != "none":
                layers.append(make_norm(norm, k))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = k, h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU()]
        self.feature_dim = hidden
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) or flat (N, C * H * W) -> logits (N, num_classes)."""
        return self.classifier(self.features(x))
