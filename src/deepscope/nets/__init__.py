"""Networks shared by the recipes.

>>> from deepscope.nets import MLP
>>> net = MLP(40, [256, 256], 10)                 # 40 -> 256 -> 256 -> 10, ReLU
>>> net = MLP(1, [256] * 5, 1)                    # the spectral-bias paper's 6-linear-layer MLP
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["MLP", "ACTIVATIONS", "make_activation"]

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
