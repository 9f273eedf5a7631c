"""``Run``: one experiment's directory, metrics, checkpoints and progress.

Layout written under ``run.dir``::

    config.json     the full config (written at start; compared on resume)
    metrics.jsonl   one JSON object per logged step
    result.json     headline numbers (``run.write_result``)
    figures/*.png   ``run.figure_path(name)``
    checkpoint.pt   one dict: whatever the loop saves + step + RNG states (atomic: tmp + rename)

A loop that checkpoints every n steps and calls ``load_checkpoint`` at start
resumes where a killed run stopped: RNG states are restored and metric lines
logged after the checkpoint are dropped, so the resumed run's files match an
uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Run", "resolve_device", "atomic_write_text", "to_jsonable"]

CHECKPOINT = "checkpoint.pt"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``'auto'``/``'cpu'``/``'cuda[:N]'`` into a ``torch.device``; fail clearly if absent."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device == {device!r} is not a device; use 'auto', 'cpu' or 'cuda:N'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device == {device!r} but CUDA is not available; use device='cpu' or 'auto'")
    return dev


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


def _unique_tmp(path: Path) -> Path:
    # A unique name per writer: two processes writing the same file never share a temporary.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    tmp = _unique_tmp(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Run:
    """An experiment's output directory with metrics, checkpoints, resume and progress.

    Parameters
    ----------
    dir : path
        The run directory; created if missing. If it holds a ``checkpoint.pt``,
        ``load_checkpoint`` resumes from it.
    config : dataclass or mapping
        Written to ``config.json``. On resume the stored config must match, so a
        run is never silently continued with other settings.
    seed : int
        Seeds python, numpy and torch (a run owns its process's global RNGs).
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:N'``.
    threads : int
        ``torch.set_num_threads`` when > 0.
    progress : bool
        Show progress bars (rich) on a terminal.

    Examples
    --------
    >>> run = Run("runs/x/1", config={"lr": 0.1}, seed=0)           # doctest: +SKIP
    >>> state = run.load_checkpoint()                               # doctest: +SKIP
    >>> start = state["step"] if state else 0                       # doctest: +SKIP
    """

    def __init__(
        self,
        dir: str | os.PathLike,
        *,
        config: Any = None,
        seed: int = 0,
        device: str = "auto",
        threads: int = 0,
        progress: bool = True,
    ) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed == {seed!r}, must be an integer >= 0")
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "figures").mkdir(exist_ok=True)
        self.seed = seed
        self.device = resolve_device(device)
        self.show_progress = progress
        if threads > 0:
            torch.set_num_threads(threads)
        self.config = to_jsonable(config) if config is not None else {}
        self._check_or_write_config()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.started = time.time()

    # -- files -------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / CHECKPOINT

    def figure_path(self, name: str) -> Path:
        """Path for a figure, ``figures/<name>.png`` unless ``name`` has a suffix."""
        p = self.dir / "figures" / name
        return p if p.suffix else p.with_suffix(".png")

    def _check_or_write_config(self) -> None:
        path = self.dir / "config.json"
        text = json.dumps(self.config, indent=2, sort_keys=True)
        if path.exists() and self.checkpoint_path.exists():
            old = json.loads(path.read_text())
            # Where and how fast a run executes may change between a run and its resume
            # (a preempted job restarts elsewhere); what it computes may not.
            ignore = {"out", "progress", "threads", "device"}
            diff = sorted(
                k for k in set(old) | set(self.config)
                if k not in ignore and old.get(k) != self.config.get(k)
            )
            if diff:
                raise ValueError(
                    f"run directory {self.dir} holds a checkpoint from another config "
                    f"(differs in {diff}); pass a new --out or delete {self.checkpoint_path}"
                )
        atomic_write_text(path, text + "\n")

    # -- metrics -----------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Append ``{"step": step, **metrics, "time": seconds}`` to metrics.jsonl."""
        rec = {"step": int(step), **to_jsonable(metrics), "time": round(time.time() - self.started, 3)}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def metrics(self) -> list[dict]:
        """All logged records, in order."""
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_result(self, result: Mapping[str, Any]) -> Path:
        """Write ``result.json`` atomically and return its path."""
        path = self.dir / "result.json"
        atomic_write_text(path, json.dumps(to_jsonable(result), indent=2) + "\n")
        return path

    # -- checkpoints -------------------------------------------------------
    def save_checkpoint(self, state: Mapping[str, Any], *, step: int) -> None:
        """Atomically save ``state`` plus ``step`` and the RNG states."""
        blob = dict(state)
        blob["step"] = int(step)
        blob["rng"] = _rng_state()
        blob["config"] = self.config
        blob["elapsed"] = time.time() - self.started
        tmp = _unique_tmp(self.checkpoint_path)
        try:
            torch.save(blob, tmp)
            os.replace(tmp, self.checkpoint_path)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, *, map_location: Any = None) -> dict | None:
        """Load the checkpoint if there is one, restore RNG states and trim later metric lines.

        Returns the saved dict (with ``"step"``), or ``None`` for a fresh run.
        """
        if not self.checkpoint_path.exists():
            return None
        blob = torch.load(
            self.checkpoint_path, map_location=map_location or self.device, weights_only=False
        )
        _set_rng_state(blob["rng"])
        # Wall time counts across resumes: result.json's "seconds" is the whole run's.
        self.started = time.time() - float(blob.get("elapsed", 0.0))
        step = blob["step"]
        if self.metrics_path.exists():
            keep = [r for r in self.metrics() if r.get("step", -1) <= step]
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        return blob

    # -- progress ----------------------------------------------------------
    @contextlib.contextmanager
    def progress(self, total: int, *, desc: str = "", start: int = 0) -> Iterator:
        """A context manager yielding ``advance(n=1, **fields)``; a no-op when progress is off."""
        if not self.show_progress:
            yield lambda n=1, **kw: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        cols = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        with Progress(*cols, transient=False) as bar:
            task = bar.add_task(desc, total=total, completed=start, info="")

            def advance(n: int = 1, **fields: Any) -> None:
                info = " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()
                )
                bar.update(task, advance=n, info=info)

            yield advance
