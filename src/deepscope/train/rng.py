"""Explicit randomness: seeded generators, and network initialisation without the global RNG.

deepscope's loops, estimators and data code draw only from a ``torch.Generator`` they are
given, and never seed the global generators: :func:`seed_globals` is called once per recipe
run, by the runner (the command boundary). PyTorch's layers initialise their weights from the *global* RNG, so building a network
reproducibly from a generator goes through :func:`fork_seeded`, which seeds a private fork of
the global RNG from the generator and leaves the caller's global state exactly as it was.

>>> import torch
>>> from deepscope.train.rng import fork_seeded, make_generator
>>> g = make_generator(0, "model")
>>> with fork_seeded(g):
...     net = torch.nn.Linear(3, 2)        # same weights for the same seed and name
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch

__all__ = ["derive_seed", "make_generator", "fork_seeded", "spawn", "seed_globals"]


def derive_seed(seed: int, name: str = "") -> int:
    """A 63-bit seed derived from ``(seed, name)``: stable across processes and machines.

    Different names give independent streams from one user seed (``'data'``, ``'model'``, ...).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed == {seed!r}, must be an integer >= 0")
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def make_generator(seed: int, name: str = "", device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with :func:`derive_seed` ``(seed, name)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, name))
    return g


def spawn(generator: torch.Generator) -> int:
    """Draw a fresh 63-bit seed from ``generator`` (advances it)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


@contextlib.contextmanager
def fork_seeded(generator: torch.Generator) -> Iterator[None]:
    """Run the block with torch's global CPU RNG seeded from ``generator``, then restore it.

    Use it around code that can only draw from the global RNG (``nn.Module`` initialisation,
    third-party functions). The generator advances by one draw; the global RNG (and CUDA's,
    when initialised) is left exactly as it was before the block.
    """
    seed = spawn(generator)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def seed_globals(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators from ``seed``.

    Called by the command boundary only (``deepscope run``, ``reproduce``, ``sweep``, through
    :func:`deepscope.runner.execute_recipe`), once per recipe run, for third-party code that
    draws from the global generators. Library code never calls it: a user's global RNG is theirs.
    """
    import random

    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed == {seed!r}, must be an integer >= 0")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
