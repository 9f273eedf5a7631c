"""CIFAR-style ResNet-18 and PreAct-ResNet-18, for any channel count and any image size.

>>> import torch
>>> from deepscope.nets.resnet import preact_resnet18, resnet18
>>> net = resnet18(10, norm="batch")                   # CIFAR-10 ResNet-18: 11,173,962 parameters
>>> net = preact_resnet18(10, norm="batch")            # DivideMix/CrossSplit's PreAct-ResNet-18
>>> net = resnet18(10, input_shape=(1, 28, 28))        # MNIST, no normalisation (the default)
>>> net.features(torch.randn(2, 1, 28, 28)).shape      # (N, 512) after global average pooling
torch.Size([2, 512])

"CIFAR-style" means a 3x3 stride-1 stem without max-pool (so a 32x32 input reaches the last
stage at 4x4) and average pooling to 1x1 before the single linear layer. The pooling is
adaptive, so smaller images work unchanged: a 28x28 input reaches the last stage at 4x4, an
8x8 input at 1x1. Nothing else depends on the image size.

References: He et al. 2015, Deep residual learning (arXiv 1512.03385); He et al. 2016,
Identity mappings in deep residual networks (arXiv 1603.05027).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.nets.cnn import Norm, Reshape, check_norm, check_num_classes, image_shape, make_norm

__all__ = ["ResNet", "BasicBlock", "PreActBlock", "resnet18", "preact_resnet18"]


def _conv3x3(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class BasicBlock(nn.Module):
    """``relu(norm(conv(relu(norm(conv(x))))) + shortcut(x))``; the shortcut is a 1x1
    convolution (+ norm) when the stride or the width changes, else the identity."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        bias = norm != "batch"
        self.conv1 = _conv3x3(c_in, c_out, stride, bias)
        self.norm1 = make_norm(norm, c_out)
        self.conv2 = _conv3x3(c_out, c_out, 1, bias)
        self.norm2 = make_norm(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            proj = [nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias)]
            if norm != "none":
                proj.append(make_norm(norm, c_out))
            self.shortcut = nn.Sequential(*proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """``conv(relu(norm(conv(relu(norm(x)))))) + shortcut``, He et al. 2016 (arXiv 1603.05027).

    The shortcut is ``x``, or a 1x1 convolution (no norm) of ``relu(norm(x))`` when the stride
    or the width changes.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        bias = norm != "batch"
        self.norm1 = make_norm(norm, c_in)
        self.conv1 = _conv3x3(c_in, c_out, stride, bias)
        self.norm2 = make_norm(norm, c_out)
        self.conv2 = _conv3x3(c_out, c_out, 1, bias)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.norm2(out)))
        return out + skip


class ResNet(nn.Module):
    """A CIFAR-style residual network (see the module docstring); ``forward = classifier(features(x))``.

    Parameters
    ----------
    num_classes : int
    input_shape : (C, H, W), (H, W) or flat (D,)
        Per-example shape (default (3, 32, 32)); any C, any H, W >= 1. Input may be given as
        (N, C, H, W) or flat (N, C * H * W).
    block : 'basic' or 'preact'
        ``BasicBlock`` (ResNet) or ``PreActBlock`` (PreAct-ResNet).
    num_blocks : sequence of int
        Blocks per stage; (2, 2, 2, 2) is ResNet-18. Stage i has ``width * 2**i`` channels and
        stride 2 except the first.
    width : int
        Channels of the stem and the first stage (default 64); ``feature_dim = width * 8`` for
        four stages. Smaller widths give cheap CPU-sized networks.
    norm : 'batch', 'group' or 'none'
        Normalisation after every convolution (default 'none'). 'none' leaves plain
        convolutions with biases; 'group' uses ``gcd(channels, 32)`` groups.
    stem_norm : bool
        Only for ``block='preact'``: True (default) puts norm + ReLU after the stem convolution,
        as DivideMix's and CrossSplit's PreAct-ResNet-18 do; False leaves the bare convolution,
        as kuangliu/pytorch-cifar's does. The basic ResNet always has it.

    Attributes
    ----------
    features : nn.Sequential
        ``reshape, stem, layer1..layer4, pool, flatten``: input -> (N, feature_dim).
    classifier : nn.Linear
    feature_dim : int

    Notes
    -----
    Weights keep PyTorch's default initialisation (Kaiming-uniform with a = sqrt(5), as
    ``nn.Conv2d`` and ``nn.Linear`` set it); norm layers start at weight 1, bias 0. No dropout.
    """

    def __init__(self, num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32),
                 block: Literal["basic", "preact"] = "basic", num_blocks: Sequence[int] = (2, 2, 2, 2),
                 width: int = 64, norm: Norm = "none", stem_norm: bool = True):
        super().__init__()
        check_num_classes(num_classes)
        check_norm(norm)
        c, h, w = image_shape(input_shape)
        if block not in ("basic", "preact"):
            raise ValueError(f"block == {block!r}, must be 'basic' or 'preact'")
        num_blocks = tuple(num_blocks)
        if not num_blocks or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in num_blocks):
            raise ValueError(f"num_blocks == {num_blocks!r}, must be a non-empty sequence of ints >= 1")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width == {width!r}, must be an integer >= 1")
        if not isinstance(stem_norm, bool):
            raise ValueError(f"stem_norm == {stem_norm!r}, must be True or False")
        block_cls = BasicBlock if block == "basic" else PreActBlock
        bias = norm != "batch"

        stem: list[nn.Module] = [_conv3x3(c, width, 1, bias)]
        if block == "basic" or stem_norm:
            if norm != "none":
                stem.append(make_norm(norm, width))
            stem.append(nn.ReLU())
        parts: list[tuple[str, nn.Module]] = [("reshape", Reshape((c, h, w))), ("stem", nn.Sequential(*stem))]
        c_in = width
        for i, n in enumerate(num_blocks):
            c_out = width * 2**i
            blocks = [block_cls(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, norm)
                      for j in range(n)]
            parts.append((f"layer{i + 1}", nn.Sequential(*blocks)))
            c_in = c_out
        parts += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        self.feature_dim = c_in
        self.features = nn.Sequential(OrderedDict(parts))
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) or flat (N, C * H * W) -> logits (N, num_classes)."""
        return self.classifier(self.features(x))


def resnet18(num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32), norm: Norm = "none",
             width: int = 64) -> ResNet:
    """CIFAR-style ResNet-18 (arXiv 1512.03385).

    11,173,962 parameters with ``norm='batch'``, 10 classes and width 64 (the common
    kuangliu/pytorch-cifar variant); 11,169,162 with ``norm='none'`` (the 9,600 BatchNorm
    weights and biases gone, 4,800 conv biases added) and 11,178,762 with ``norm='group'``.
    See :class:`ResNet` for the arguments.
    """
    return ResNet(num_classes, input_shape=input_shape, block="basic", num_blocks=(2, 2, 2, 2),
                  width=width, norm=norm)


def preact_resnet18(num_classes: int = 10, *, input_shape: Sequence[int] = (3, 32, 32), norm: Norm = "none",
                    width: int = 64, stem_norm: bool = True) -> ResNet:
    """CIFAR-style PreAct-ResNet-18 (arXiv 1603.05027), the network of DivideMix and CrossSplit.

    With ``norm='batch'``, 10 classes and width 64: 11,171,274 parameters with the default
    ``stem_norm=True`` (DivideMix's ``PreResNet.py`` and CrossSplit's ``PreResNet_cifar.py``
    without its projection head: stem conv -> BN -> ReLU) and 11,171,146 with ``stem_norm=False``
    (kuangliu/pytorch-cifar: bare stem conv). With ``norm='none'``: 11,169,162 (either
    stem). See :class:`ResNet`.
    """
    return ResNet(num_classes, input_shape=input_shape, block="preact", num_blocks=(2, 2, 2, 2),
                  width=width, norm=norm, stem_norm=stem_norm)
