"""Options every recipe shares, and validation at the boundary. Imports nothing heavy.

A recipe's ``Config`` subclasses :class:`RunConfig`, adds typed fields (``Literal[...]`` for
choices, so ``--help`` lists them) with docstrings (they become ``--help`` text), and
overrides :meth:`RunConfig.validate` to check its own fields, calling ``super().validate()``::

    @dataclass(frozen=True)
    class Config(RunConfig):
        steps: int = 5000
        '''Training steps.'''

        QUICK: ClassVar[dict] = {"steps": 200}     # what --quick sets

        def validate(self) -> None:
            super().validate()
            require(self.steps >= 1, "steps", self.steps, ">= 1")

Validation runs in ``__post_init__``, so a bad config never exists: ``Config(steps=-5)``
raises ``ValueError: steps == -5, must be >= 1``. The CLI parses with validation deferred
(:func:`deferred_validation`), then validates once and prints that message as one line.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

__all__ = ["RunConfig", "require", "check_int", "check_float", "check_choices",
           "deferred_validation"]

_DEFER = contextvars.ContextVar("deepscope_defer_validation", default=False)


def require(ok: bool, name: str, value: Any, must: str) -> None:
    """Raise ``ValueError("{name} == {value!r}, must be {must}")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} == {value!r}, must be {must}")


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` if it is an integer (not a bool) ``>= low``; else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} == {value!r}, must be an integer >= {low}")
    return value


def check_float(name: str, value: Any, low: float, high: float = math.inf, *,
                open_low: bool = False) -> float:
    """``float(value)`` if it is a number in ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (value > low) if open_low else (value >= low)) and value <= high
    if not ok:
        lo = f"> {low}" if open_low else f">= {low}"
        rng = lo if high == math.inf else f"{lo} and <= {high}"
        raise ValueError(f"{name} == {value!r}, must be a number {rng}")
    return float(value)


def _choices(hint) -> tuple[tuple, bool] | None:
    """``(allowed values, is_sequence)`` for ``Literal[...]``, ``Literal | None`` and
    ``tuple[Literal[...], ...]`` hints; None for any other type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return args, False
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and typing.get_origin(inner[0]) is Literal:
            return (*typing.get_args(inner[0]), None), False
    if origin is tuple and args and typing.get_origin(args[0]) is Literal:
        return typing.get_args(args[0]), True
    return None


@functools.cache
def _literal_fields(cls: type) -> tuple[tuple[str, tuple, bool], ...]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a hint that only resolves for type checkers: check nothing generically
        return ()
    out = []
    for f in fields(cls):
        c = _choices(hints.get(f.name))
        if c is not None:
            out.append((f.name, *c))
    return tuple(out)


def check_choices(cfg: Any) -> None:
    """Every ``Literal`` field (or tuple of them) of the dataclass ``cfg`` holds allowed values.

    The CLI's parser enforces the choices already; this catches the same mistake from Python,
    ``Config(dataset="mnist-1d")``, with the same one-line message.
    """
    for name, allowed, many in _literal_fields(type(cfg)):
        value = getattr(cfg, name)
        bad = [v for v in value if v not in allowed] if many and isinstance(value, (tuple, list)) \
            else ([] if value in allowed else [value])
        shown = ", ".join(repr(a) for a in allowed)
        require(not bad, name, value, f"{'one or more' if many else 'one'} of {shown}")


@contextlib.contextmanager
def deferred_validation() -> Iterator[None]:
    """Build configs without validating them (the CLI validates once, after parsing)."""
    token = _DEFER.set(True)
    try:
        yield
    finally:
        _DEFER.reset(token)


@dataclass(frozen=True)
class RunConfig:
    """Where and how a run executes (shared by all recipes)."""

    out: Path | None = None
    """Run directory. Default: runs/<recipe>/<timestamp>. Pass an existing directory to resume it."""

    seed: int = 0
    """Random seed: the same seed on the same machine gives the same numbers."""

    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""

    threads: int = 0
    """CPU threads for torch (0 keeps torch's default)."""

    progress: bool = True
    """Show progress bars."""

    checkpoint_every: int = 0
    """Write a checkpoint every this many steps (0: the recipe's default)."""

    quick: bool = False
    """A tiny budget for trying the recipe in seconds; overrides the sizes listed in the recipe's help."""

    debug: bool = False
    """On a crash, print the full traceback (it is always kept in the run's error.txt)."""

    logger: tuple[Literal["tensorboard", "wandb"], ...] = ()
    """Also log metrics to TensorBoard (event files in RUN/tensorboard) and/or wandb (offline, in RUN/wandb; `wandb sync` later). Needs the `tracking` extra."""

    #: Field values that ``--quick`` sets (a ``dataclasses.replace`` preset).
    QUICK: ClassVar[Mapping[str, Any]] = {}

    #: Fields that may change between a run and its resume (where and how fast, not what).
    RESUMABLE_CHANGES: ClassVar[frozenset[str]] = frozenset(
        {"out", "progress", "threads", "device", "debug", "logger"}
    )

    def __post_init__(self) -> None:
        if not _DEFER.get():
            self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the option, the value and what is allowed."""
        check_choices(self)
        require(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        require(self.threads >= 0, "threads", self.threads, ">= 0 (0 keeps torch's default)")
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every,
                ">= 0 (0: the recipe's default)")
        require(re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device) is not None, "device",
                self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")

    def with_preset(self) -> RunConfig:
        """The config with ``QUICK`` applied when ``quick`` is set (else ``self``)."""
        return replace(self, **self.QUICK) if self.quick and self.QUICK else self
