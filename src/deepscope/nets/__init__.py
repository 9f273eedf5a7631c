"""Networks shared by the recipes.

>>> from deepscope.nets import MLP
>>> net = MLP(40, [256, 256], 10)                 # 40 -> 256 -> 256 -> 10, ReLU
>>> net = MLP(1, [256] * 5, 1)                    # the spectral-bias paper's 6-linear-layer MLP
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["MLP"]

_ACT = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


class MLP(nn.Sequential):
    """Fully connected network ``dim_in -> hidden... -> dim_out``.

    Parameters
    ----------
    dim_in, dim_out : int
    hidden : sequence of int
        Widths of the hidden layers (``len(hidden) + 1`` linear layers in all).
    activation : str
        'relu', 'elu', 'gelu', 'tanh' or 'leaky_relu'.

    Inputs with more than two dimensions are flattened after the batch dimension.
    """

    def __init__(self, dim_in: int, hidden: Sequence[int], dim_out: int, *, activation: str = "relu"):
        if activation not in _ACT:
            raise ValueError(f"activation == {activation!r}; choose one of {sorted(_ACT)}")
        layers: list[nn.Module] = [nn.Flatten()]
        d = dim_in
        for h in hidden:
            layers += [nn.Linear(d, h), _ACT[activation]()]
            d = h
        layers.append(nn.Linear(d, dim_out))
        super().__init__(*layers)
