"""Saving a trained network so anyone can load it back: ``save_model`` / ``load_model``.

A run that trains a classifier writes ``model.pt`` (or ``model-<name>.pt``) beside its
``result.json``: the :func:`~deepscope.nets.build_net` name and arguments, the weights, and
attributes such as the input bounds. Nothing in it is a pickled object, so it loads with
``torch.load(..., weights_only=True)``; :func:`deepscope.load` finds these files in a run
directory and gives the networks back in eval mode.

>>> import torch
>>> from deepscope.nets import build_net
>>> from deepscope.nets.io import save_model, load_model
>>> net = build_net("mlp", input_shape=(64,), num_classes=10, hidden=(32,))
>>> path = save_model("/tmp/ds_model.pt", net, "mlp", input_shape=(64,), num_classes=10,
...            hidden=(32,), attrs={"input_bounds": (0.0, 1.0)})
>>> back = load_model("/tmp/ds_model.pt")
>>> back.input_bounds, back.training
((0.0, 1.0), False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["save_model", "load_model", "load", "MODEL_FILE"]

MODEL_FILE = "model.pt"
_FORMAT = 1


def _plain(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    raise TypeError(f"save_model: {v!r} ({type(v).__name__}) is not a number, string, list or dict")


def save_model(path: str | os.PathLike, model: nn.Module, net: str, *,
               attrs: Mapping[str, Any] | None = None, **build_kwargs: Any) -> Path:
    """Write ``model``'s weights with what :func:`~deepscope.nets.build_net` needs to rebuild it.

    Parameters
    ----------
    path : path
        Output file (written atomically).
    model : nn.Module
        Built by ``build_net(net, **build_kwargs)``.
    net : str
        Its :data:`~deepscope.nets.NETS` name.
    attrs : mapping, optional
        Plain values set as attributes on the loaded model, e.g. ``{"input_bounds": (0, 1)}``.
    **build_kwargs
        ``input_shape``, ``num_classes``, ``norm`` and the builder's options.
    """
    from deepscope.nets import NETS
    from deepscope.train.distributed import env_rank
    from deepscope.train.run import atomic_save

    if net not in NETS:
        raise ValueError(f"net == {net!r}, must be one of {sorted(NETS)}")
    path = Path(path)
    if env_rank() != 0:  # under torchrun only rank 0 writes
        return path
    blob = {
        "format": _FORMAT, "net": net, "kwargs": _plain(build_kwargs),
        "attrs": _plain(dict(attrs or {})),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return atomic_save(blob, path)


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved by :func:`save_model`, in eval mode, with its attributes."""
    from deepscope.nets import build_net

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path == '{path}' is not a file; pass a model.pt or a run directory")
    blob = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        raise ValueError(f"'{path}' is not a deepscope model file (save_model writes them)")
    kwargs = {k: _tuples(v) for k, v in blob["kwargs"].items()}
    model = build_net(blob["net"], **kwargs)
    model.load_state_dict(blob["state_dict"])
    for k, v in blob["attrs"].items():
        setattr(model, k, _tuples(v))
    return model.to(map_location).eval()


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu"):
    """The trained network(s) of a run directory, in eval mode.

    Parameters
    ----------
    path : path
        A model file, a run or sub-run directory holding ``model.pt`` / ``model-<name>.pt``,
        or a directory whose sub-runs hold them.

    Returns
    -------
    nn.Module, or dict
        One network when there is one; otherwise a dict keyed by its path relative to
        ``path`` without the ``.pt`` ending (e.g. ``"a3t/seed0/model"``).
    """
    path = Path(path)
    if path.is_file():
        return load_model(path, map_location=map_location)
    if not path.is_dir():
        raise FileNotFoundError(f"path == '{path}' does not exist; pass a run directory or a model file")
    files = sorted(p for p in path.rglob("model*.pt") if p.name == MODEL_FILE
                   or (p.name.startswith("model-") and p.suffix == ".pt"))
    if not files:
        raise FileNotFoundError(f"no model.pt below '{path}': this run saved no network")
    if len(files) == 1:
        return load_model(files[0], map_location=map_location)
    return {str(p.relative_to(path).with_suffix("")): load_model(p, map_location=map_location)
            for p in files}
