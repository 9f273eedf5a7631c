"""Networks shared by the recipes: an MLP, small CNNs, CIFAR-style ResNets and VGGs, one factory.

>>> import torch
>>> from deepscope.nets import MLP, build_net, split_mlp
>>> net = MLP(40, [256, 256], 10)                 # 40 -> 256 -> 256 -> 10, ReLU
>>> net = MLP(1, [256] * 5, 1)                    # the spectral-bias paper's 6-linear-layer MLP
>>> net = build_net("cnn1d", input_shape=(40,), num_classes=10)            # MNIST-1D paper's CNN
>>> net = build_net("small-cnn", input_shape=(64,), num_classes=10)        # sklearn digits, 8x8
>>> net = build_net("resnet18", input_shape=(3, 32, 32), num_classes=10)   # no BatchNorm
>>> net = build_net("preact-resnet18", input_shape=(3, 32, 32), num_classes=10, norm="batch")
>>> net = build_net("vgg19", input_shape=(1, 28, 28), num_classes=10, width=16)
>>> x = torch.randn(2, 1, 28, 28)
>>> h = net.features(x)                           # (2, net.feature_dim) penultimate layer
>>> torch.allclose(net(x), net.classifier(h))
True
>>> encoder, head = split_mlp(MLP(40, [256, 256], 10), 1)   # first hidden layer | the rest

Every classifier here has ``features`` (input -> (N, feature_dim)), ``classifier`` (the last
``nn.Linear``) and ``feature_dim``, with ``forward(x) == classifier(features(x))``.
Convolutional networks take ``norm``: 'batch', 'group' (GroupNorm, ``gcd(channels, 32)``
groups) or 'none' (convolutions with bias, no normalisation layer at all). Image networks
accept flat input (N, C * H * W) and reshape it to ``input_shape``. No dropout anywhere;
weights keep PyTorch's default initialisation, which draws from torch's global RNG only, so
build inside ``deepscope.train.rng.fork_seeded(generator)`` for a reproducible network.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

from torch import nn

from deepscope.nets.cnn import CNN1D, NORM_LAYERS, Norm, SmallCNN, check_norm, check_shape
from deepscope.nets.resnet import ResNet, preact_resnet18, resnet18
from deepscope.nets.vgg import VGG, vgg11, vgg13, vgg16, vgg19

__all__ = [
    "MLP", "ACTIVATIONS", "make_activation", "split_mlp",
    "CNN1D", "SmallCNN", "ResNet", "resnet18", "preact_resnet18",
    "VGG", "vgg11", "vgg13", "vgg16", "vgg19",
    "NORM_LAYERS", "NETS", "build_net",
    # deepscope.nets.batched: K same-shaped networks as one model
    "BatchedLinear", "BatchedMLP", "VmapStack", "stack_models", "STACK_IMPLEMENTATIONS",
    # deepscope.nets.io: trained networks on disk
    "save_model", "load_model", "load",
]

_LAZY = {
    **{n: "deepscope.nets.batched" for n in (
        "BatchedLinear", "BatchedMLP", "VmapStack", "stack_models", "STACK_IMPLEMENTATIONS")},
    **{n: "deepscope.nets.io" for n in ("save_model", "load_model", "load")},
}


def __getattr__(name):  # batched and io import this package: load them on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepscope.nets' has no attribute {name!r}")

#: Activations accepted by name wherever deepscope builds a network.
ACTIVATIONS = {
    "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus,
}


def make_activation(name: str) -> nn.Module:
    """A new activation module by name; the error lists the names allowed."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation == {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Fully connected network ``dim_in -> hidden... -> dim_out``.

    Parameters
    ----------
    dim_in, dim_out : int
    hidden : sequence of int
        Widths of the hidden layers (``len(hidden) + 1`` linear layers in all).
    activation : str
        One of ``ACTIVATIONS``: 'relu', 'elu', 'gelu', 'tanh', 'leaky_relu', 'softplus'.
    flatten : bool
        Flatten inputs with more than two dimensions after the batch dimension (default).
        ``False`` keeps leading dimensions, so (K, L, dim_in) maps to (K, L, dim_out).

    Attributes
    ----------
    features : nn.Sequential
        Every layer but the last (a view sharing the MLP's modules): input -> (N, feature_dim).
    classifier : nn.Linear
        The last layer.
    feature_dim : int
        Width of the last hidden layer (``dim_in`` without hidden layers).
    """

    def __init__(self, dim_in: int, hidden: Sequence[int], dim_out: int, *, activation: str = "relu",
                 flatten: bool = True):
        make_activation(activation)  # validate before building anything
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        d = dim_in
        for h in hidden:
            layers += [nn.Linear(d, h), make_activation(activation)]
            d = h
        layers.append(nn.Linear(d, dim_out))
        super().__init__(*layers)

    # Properties, not submodules: the MLP stays a plain nn.Sequential (same state_dict keys).
    @property
    def features(self) -> nn.Sequential:
        return nn.Sequential(*list(self)[:-1])

    @property
    def classifier(self) -> nn.Linear:
        return self[-1]

    @property
    def feature_dim(self) -> int:
        return self[-1].in_features


def split_mlp(mlp: MLP, layer: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Split an :class:`MLP` after its ``layer``-th hidden layer (its activation included).

    Parameters
    ----------
    mlp : MLP
    layer : int
        1 .. number of hidden layers. ``split_mlp(MLP(40, [256, 256], 10), 1)`` gives
        ``encoder: 40 -> 256`` (Linear, ReLU) and ``head: 256 -> 256 -> 10``.

    Returns
    -------
    encoder, head : nn.Sequential
        ``head(encoder(x)) == mlp(x)``. Both share their modules (and so their parameters)
        with ``mlp``: training one trains the other.
    """
    if not isinstance(mlp, MLP):
        raise TypeError(f"mlp is a {type(mlp).__name__}, must be a deepscope.nets.MLP")
    modules = list(mlp)
    linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    n_hidden = len(linears) - 1
    if n_hidden == 0:
        raise ValueError(f"layer == {layer!r}, but this MLP has no hidden layer to split at")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n_hidden:
        raise ValueError(f"layer == {layer!r}, must be an int in 1..{n_hidden} (the hidden layers)")
    cut = linears[layer - 1] + 2  # the Linear and its activation
    return nn.Sequential(*modules[:cut]), nn.Sequential(*modules[cut:])


def _build_mlp(*, input_shape: Sequence[int], num_classes: int, norm: Norm = "none",
               hidden: Sequence[int] = (256, 256), activation: str = "relu") -> MLP:
    """:class:`MLP` from ``prod(input_shape)`` to ``num_classes``; default hidden (256, 256), ReLU."""
    check_norm(norm)
    if norm != "none":
        raise ValueError(f"norm == {norm!r}, the 'mlp' has no normalisation layers; use norm='none'")
    return MLP(math.prod(check_shape(input_shape)), hidden, num_classes, activation=activation)


#: Builders by name; each takes keywords ``input_shape``, ``num_classes``, ``norm`` and its own options.
NETS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _build_mlp,
    "cnn1d": CNN1D,
    "small-cnn": SmallCNN,
    "resnet18": resnet18,
    "preact-resnet18": preact_resnet18,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
}


def build_net(name: str, *, input_shape: Sequence[int], num_classes: int, norm: Norm = "none",
              **kwargs) -> nn.Module:
    """Build a network of :data:`NETS` by name.

    Parameters
    ----------
    name : str
        'mlp', 'cnn1d', 'small-cnn', 'resnet18', 'preact-resnet18', 'vgg11', 'vgg13', 'vgg16'
        or 'vgg19'.
    input_shape : tuple of int
        Per-example shape: (40,) for MNIST-1D, (64,) or (1, 8, 8) for sklearn digits,
        (1, 28, 28) for MNIST, (3, 32, 32) for CIFAR. A flat square (D,) given to an image
        network means one channel of sqrt(D) x sqrt(D).
    num_classes : int
    norm : 'batch', 'group' or 'none'
        Default 'none'; the MLP accepts only 'none'.
    **kwargs
        Options of the builder: ``hidden``, ``activation`` (mlp); ``channels`` (cnn1d,
        small-cnn), ``hidden`` (small-cnn); ``width`` (ResNets, VGGs), ``stem_norm``
        (preact-resnet18), ``conv_bias`` (VGGs).

    Returns
    -------
    nn.Module
        With ``features``, ``classifier`` and ``feature_dim``.
    """
    if name not in NETS:
        raise ValueError(f"name == {name!r}, must be one of {sorted(NETS)}")
    builder = NETS[name]
    options = _options(builder)
    bad = sorted(set(kwargs) - set(options)) if options is not None else []
    if bad:
        raise ValueError(f"build_net({name!r}) has no option {bad[0]!r} (net_kwargs); "
                         f"its options: {', '.join(options) or '(none)'}")
    return builder(input_shape=input_shape, num_classes=num_classes, norm=norm, **kwargs)


def _options(builder: Callable[..., nn.Module]) -> list[str] | None:
    """The keyword options of a :data:`NETS` builder beyond ``input_shape``, ``num_classes`` and
    ``norm`` (None when it takes ``**kwargs``: anything goes)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in ("input_shape", "num_classes", "norm")
            and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
