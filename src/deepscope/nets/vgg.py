"""CIFAR-style VGG-11/13/16/19: 3x3 convolution stacks and a single ``Linear(512, num_classes)``.

>>> import torch
>>> from deepscope.nets.vgg import vgg11, vgg19
>>> net = vgg19(10)                                    # no normalisation (the default)
>>> net = vgg11(10, norm="batch", input_shape=(1, 8, 8))
>>> net(torch.randn(2, 64)).shape                      # flat input is reshaped to (N, 1, 8, 8)
torch.Size([2, 10])

On 32x32 inputs the five 2x2 max-pools bring the maps to 1x1, as in the common CIFAR VGG
(kuangliu/pytorch-cifar). For smaller images a max-pool is kept only while both spatial sizes
are >= 2 and the maps are then average-pooled to 1x1: 28x28 goes 28 -> 14 -> 7 -> 3 -> 1 and
drops the fifth pool; 8x8 goes 8 -> 4 -> 2 -> 1 and drops the last two. The parameters do not
depend on the image size.

Reference: Simonyan & Zisserman 2014 (arXiv 1409.1556).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepscope.nets.cnn import Norm, Reshape, check_norm, check_num_classes, image_shape, make_norm

__all__ = ["VGG", "VGG_CONFIGS", "vgg11", "vgg13", "vgg16", "vgg19"]

#: Per depth: convolution widths as multiples of ``width`` (64), 'M' a 2x2 max-pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"),
    13: (1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"),
    16: (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"),
    19: (1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"),
}


class VGG(nn.Module):
    """CIFAR-style VGG (see the module docstring); ``forward = classifier(features(x))``.

    Each convolution is 3x3 with padding 1, followed by the norm layer and ReLU.

    Parameters
    ----------
    num_classes : int
    input_shape : (C, H, W), (H, W) or flat (D,)
        Per-example shape (default (3, 32, 32)); any C, any H, W >= 1. Input may be given as
        (N, C, H, W) or flat (N, C * H * W).
    depth : 11, 13, 16 or 19
    width : int
        Channels of the first convolution (default 64); the last ones have ``8 * width``, which
        is ``feature_dim``.
    norm : 'batch', 'group' or 'none'
        Layer after each convolution (default 'none'); 'group' uses ``gcd(channels, 32)`` groups.
    conv_bias : bool or None
        Whether convolutions have a bias. None (default): only when no BatchNorm follows.
        True with ``norm='batch'`` reproduces kuangliu/pytorch-cifar's VGG exactly, which keeps
        the (redundant) bias: 9,231,114 / 14,728,266 / 20,040,522 parameters for VGG-11/16/19
        and 10 classes, against 9,228,362 / 14,724,042 / 20,035,018 without it.

    Attributes
    ----------
    features : nn.Sequential
        Input -> (N, feature_dim) after the last pooling.
    classifier : nn.Linear
    feature_dim : int

    Notes
    -----
    Weights keep PyTorch's default initialisation (Kaiming-uniform with a = sqrt(5)); no
    dropout. Without normalisation that initialisation shrinks the signal at every layer,
    so deep VGGs start with tiny logits; re-initialise if the experiment needs otherwise.
    """

    def __init__(self, num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32), depth: int = 16,
                 width: int = 64, norm: Norm = "none", conv_bias: bool | None = None):
        super().__init__()
        check_num_classes(num_classes)
        check_norm(norm)
        c, h, w = image_shape(input_shape)
        if depth not in VGG_CONFIGS:
            raise ValueError(f"depth == {depth!r}, must be one of {sorted(VGG_CONFIGS)}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width == {width!r}, must be an integer >= 1")
        if conv_bias not in (None, True, False):
            raise ValueError(f"conv_bias == {conv_bias!r}, must be None, True or False")
        bias = norm != "batch" if conv_bias is None else conv_bias
        layers: list[nn.Module] = [Reshape((c, h, w))]
        size = (h, w)
        for item in VGG_CONFIGS[depth]:
            if item == "M":
                if min(size) >= 2:  # a pool would take a size-1 map to 0: skip it on small images
                    layers.append(nn.MaxPool2d(2))
                    size = (size[0] // 2, size[1] // 2)
                continue
            k = width * int(item)
            layers.append(nn.Conv2d(c, k, 3, padding=1, bias=bias))
            if norm != "none":
                layers.append(make_norm(norm, k))
            layers.append(nn.ReLU())
            c = k
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.feature_dim = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) or flat (N, C * H * W) -> logits (N, num_classes)."""
        return self.classifier(self.features(x))


def vgg11(num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32), norm: Norm = "none",
          width: int = 64, conv_bias: bool | None = None) -> VGG:
    """CIFAR-style VGG-11 (arXiv 1409.1556): 9,228,362 parameters with ``norm='batch'`` and 10
    classes, 9,225,610 with ``norm='none'``. See :class:`VGG`."""
    return VGG(num_classes, input_shape=input_shape, depth=11, width=width, norm=norm, conv_bias=conv_bias)


def vgg13(num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32), norm: Norm = "none",
          width: int = 64, conv_bias: bool | None = None) -> VGG:
    """CIFAR-style VGG-13 (arXiv 1409.1556): 9,413,066 parameters with ``norm='batch'`` and 10
    classes, 9,410,122 with ``norm='none'``. See :class:`VGG`."""
    return VGG(num_classes, input_shape=input_shape, depth=13, width=width, norm=norm, conv_bias=conv_bias)


def vgg16(num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32), norm: Norm = "none",
          width: int = 64, conv_bias: bool | None = None) -> VGG:
    """CIFAR-style VGG-16 (arXiv 1409.1556): 14,724,042 parameters with ``norm='batch'`` and 10
    classes, 14,719,818 with ``norm='none'``. See :class:`VGG`."""
    return VGG(num_classes, input_shape=input_shape, depth=16, width=width, norm=norm, conv_bias=conv_bias)


def vgg19(num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32), norm: Norm = "none",
          width: int = 64, conv_bias: bool | None = None) -> VGG:
    """CIFAR-style VGG-19 (arXiv 1409.1556): 20,035,018 parameters with ``norm='batch'`` and 10
    classes, 20,029,514 with ``norm='none'``. See :class:`VGG`."""
    return VGG(num_classes, input_shape=input_shape, depth=19, width=width, norm=norm, conv_bias=conv_bias)
