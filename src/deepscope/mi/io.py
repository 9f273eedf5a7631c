"""Load X or Y for ``deepscope mi estimate`` from .npy, .npz or .csv files.

A source is ``PATH`` or ``PATH:SELECTOR``:

- ``x.npy``                 the whole array (1-D or 2-D)
- ``data.npz:x``            the array stored under key ``x`` (required when the file holds several)
- ``table.csv``             every column of the CSV
- ``table.csv:a,b``         columns by header name
- ``table.csv:0-4,7``       columns by 0-based index, ranges inclusive

Pickled arrays are never loaded (``allow_pickle=False``): an object array is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_source", "read_csv"]


def _split_source(spec: str) -> tuple[Path, str | None]:
    # A selector follows the last ':' after the file suffix (so Windows drive letters survive).
    for suffix in (".npy", ".npz", ".csv"):
        i = spec.lower().rfind(suffix)
        if i >= 0:
            path, rest = spec[: i + len(suffix)], spec[i + len(suffix):]
            if rest.startswith(":"):
                return Path(path), rest[1:] or None
            if rest == "":
                return Path(path), None
    raise ValueError(f"input {spec!r} is not a .npy, .npz or .csv file (optionally PATH:SELECTOR)")


def read_csv(path: Path) -> tuple[list[str] | None, np.ndarray]:
    """Read a numeric CSV; a first row that is not all numbers is taken as the header."""
    with open(path) as f:
        first = f.readline()
    if not first.strip():
        raise ValueError(f"{path} is empty")
    tokens = [t.strip().strip('"') for t in first.rstrip("\n").split(",")]

    def is_number(t: str) -> bool:
        try:
            float(t)
            return True
        except ValueError:
            return False

    header = None if all(is_number(t) for t in tokens) else tokens
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: a value is not a number ({e}); every cell after the header must be numeric") from e
    if header is not None and data.shape[1] != len(header):
        raise ValueError(f"{path}: header has {len(header)} names but rows have {data.shape[1]} values")
    return header, data


def _select_columns(sel: str, header: list[str] | None, ncols: int, path: Path) -> list[int]:
    cols: list[int] = []
    for part in sel.split(","):
        part = part.strip()
        if header is not None and part in header:
            cols.append(header.index(part))
        elif "-" in part and all(p.strip().isdigit() for p in part.split("-", 1)):
            a, b = (int(p) for p in part.split("-", 1))
            cols.extend(range(a, b + 1))
        elif part.isdigit():
            cols.append(int(part))
        else:
            names = f"; header names: {', '.join(header)}" if header else ""
            raise ValueError(f"{path}: column {part!r} is neither a header name nor a 0-based index{names}")
    bad = [c for c in cols if not 0 <= c < ncols]
    if bad:
        raise ValueError(f"{path}: column index {bad[0]} out of range; the file has {ncols} columns (0..{ncols - 1})")
    return cols


def load_source(spec: str) -> np.ndarray:
    """Load one side (X or Y) from ``PATH[:SELECTOR]``; see the module docstring."""
    path, sel = _split_source(spec)
    if not path.exists():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if sel:
            raise ValueError(f"{path}: a .npy file holds one array; drop the ':{sel}' selector")
        arr = _load_npy(path)
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if sel is None:
                    if len(keys) != 1:
                        raise ValueError(f"{path} holds arrays {keys}; choose one as {path}:KEY")
                    sel = keys[0]
                if sel not in keys:
                    raise ValueError(f"{path} has no array {sel!r}; it holds {keys}")
                arr = z[sel]
        except ValueError as e:
            if "pickle" in str(e).lower() or "object" in str(e).lower():
                raise ValueError(f"{path}: holds an object (pickled) array; deepscope never unpickles: save a numeric array") from e
            raise
    else:
        header, data = read_csv(path)
        arr = data if sel is None else data[:, _select_columns(sel, header, data.shape[1], path)]
    if arr.dtype == object:
        raise ValueError(f"{path}: object arrays are not accepted; save a numeric array")
    return arr


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise ValueError(f"{path}: holds an object (pickled) array; deepscope never unpickles: save a numeric array") from e
        raise ValueError(f"{path}: not a readable .npy file ({e})") from e
