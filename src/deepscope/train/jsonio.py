"""JSON for results and configs: tensors, numpy values, dataclasses and infinities.

>>> import math
>>> from deepscope.train.jsonio import from_json, to_jsonable
>>> to_jsonable({"a": (1, 2), "b": math.inf})
{'a': [1, 2], 'b': 'inf'}
>>> from_json({"b": "inf"})["b"] == math.inf
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["to_jsonable", "from_json"]


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, tensors, numpy values and non-finite floats to JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def from_json(obj: Any) -> Any:
    """Undo :func:`to_jsonable`'s encoding of infinities: ``"inf"``/``"-inf"`` become floats."""
    if isinstance(obj, dict):
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    if obj == "inf":
        return math.inf
    if obj == "-inf":
        return -math.inf
    return obj
