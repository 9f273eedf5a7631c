"""``Run``: one experiment's directory, metrics, checkpoints and progress.

Layout written under ``run.dir``::

    config.json     the full config (written at start; compared on resume)
    metrics.jsonl   one JSON object per logged step
    result.json     headline numbers (``run.write_result``)
    figures/*.png   ``run.figure_path(name)``
    checkpoint.pt   one dict: whatever the loop saves + step + RNG states (atomic: tmp + rename)

A loop resumes where a killed run stopped when it calls ``run.restore`` at its start
and ``run.save`` every n steps: model, optimiser and generator states come back, and
metric lines logged after the checkpoint are dropped, so the resumed run's files match
an uninterrupted run's::

    g = run.generator("data")                      # seeded from (run.seed, "data")
    start = run.restore(model=model, opt=opt)["step"]   # 0 on a fresh run
    for step in range(start + 1, steps + 1):
        ...
        run.log(step, loss=loss.item())
        if step % every == 0:
            run.save(step, model=model, opt=opt)   # + every generator handed out

Sub-runs (one per seed, per setting) are ``run.child(name, config=...)``: a child whose
``result.json`` exists is finished (``child.finished``) and is skipped by recipes and
``deepscope sweep`` alike. Loops called without a run get :class:`NullRun` (from
:func:`deepscope.train.loop.setup`, or ``as_run``).

A ``Run`` decides its device with the torchrun process group
(:func:`deepscope.train.distributed.init_distributed`) and never touches the global random
generators: the command boundary seeds them once (:func:`deepscope.train.rng.seed_globals`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepscope.train.config import RunConfig
from deepscope.train.distributed import barrier, env_rank, init_distributed, resolve_device
from deepscope.train.jsonio import from_json, to_jsonable
from deepscope.train.rng import make_generator

__all__ = [
    "Run", "NullRun", "as_run", "atomic_write_text", "to_jsonable", "is_finished",
    "read_result", "from_json",
]

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


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


def atomic_save(obj: Any, path: Path) -> Path:
    """Save ``obj`` to ``path`` so that readers see the old or the new file, never half of one.

    A ``.npz`` path takes a dict of arrays (``numpy.savez_compressed``); anything else goes
    through ``torch.save`` (load it with ``torch.load(path, weights_only=True)``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _unique_tmp(path)
    try:
        if path.suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **obj)
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        # as tensors and numbers, so the checkpoint loads with weights_only=True
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def is_finished(path: str | os.PathLike) -> bool:
    """A run (or sub-run, or sweep point) directory is finished when it holds ``result.json``."""
    return (Path(path) / RESULT).exists()


def read_result(path: str | os.PathLike) -> dict:
    """Read ``result.json`` of a run directory; ``"inf"``/``"-inf"`` come back as floats."""
    p = Path(path)
    p = p if p.name == RESULT else p / RESULT
    return from_json(json.loads(p.read_text()))


def _stateful(obj: Any) -> bool:
    return isinstance(obj, torch.Generator) or callable(getattr(obj, "state_dict", None))


def _state_of(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if callable(getattr(obj, "state_dict", None)):
        return obj.state_dict()
    if isinstance(obj, Mapping) and any(_stateful(v) for v in obj.values()):
        return {str(k): _state_of(v) for k, v in obj.items()}
    return obj  # a plain value (an optimizer's state_dict keeps its int keys)


def _load_state(obj: Any, state: Any, name: str) -> Any:
    """Load ``state`` into ``obj`` in place; plain values are returned instead."""
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    elif hasattr(obj, "load_state_dict") and callable(obj.load_state_dict):
        obj.load_state_dict(state)
    elif isinstance(obj, Mapping) and any(_stateful(v) for v in obj.values()):
        missing = sorted(set(map(str, obj)) - set(state))
        if missing:
            raise ValueError(f"checkpoint entry {name!r} has no state for {missing}; "
                             "was it written by another version of this loop?")
        for k, v in obj.items():
            _load_state(v, state[str(k)], f"{name}.{k}")
    else:
        return state
    return obj


#: Experiment trackers a run can also log to, beside metrics.jsonl (optional extras).
LOGGERS = ("tensorboard", "wandb")


def _open_tracker(name: str, dir: Path, config: Any) -> Any:
    try:
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            return SummaryWriter(log_dir=str(dir / "tensorboard"))
        import wandb
    except ImportError as e:
        raise ImportError(
            f"logger == {name!r} needs the {name} package: pip install 'deepscope[tracking]'"
        ) from e
    # Offline: nothing leaves the machine; `wandb sync <run dir>/wandb/offline-run-*` uploads later.
    return wandb.init(mode="offline", dir=str(dir), project="deepscope", name=str(dir),
                      config=config, reinit="create_new")


def _log_to(tracker: Any, name: str, step: int, scalars: dict[str, float]) -> None:
    if name == "tensorboard":
        for k, v in scalars.items():
            tracker.add_scalar(k, v, step)
        tracker.flush()
    else:
        tracker.log(scalars, step=step)


class Run:
    """An experiment's output directory with metrics, checkpoints, resume and progress.

    Parameters
    ----------
    dir : path
        The run directory; created if missing. If it holds a ``checkpoint.pt``,
        :meth:`restore` resumes from it.
    config : dataclass or mapping
        Written to ``config.json``. On resume the stored config must match, so a
        run is never silently continued with other settings.
    seed : int
        The seed of the run's named generators (:meth:`generator`). The global RNGs are not
        touched: the command boundary seeds them once (:func:`deepscope.train.rng.seed_globals`).
    device : str or torch.device
        ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:N'``: decided, with the torchrun process group,
        by :func:`deepscope.train.distributed.init_distributed` (``run.device``, ``run.dist``).
    threads : int
        ``torch.set_num_threads`` when > 0.
    progress : bool
        Show progress bars (rich) on a terminal.
    loggers : tuple of str
        Also log every metric to ``'tensorboard'`` (event files in ``<dir>/tensorboard``) and/or
        ``'wandb'`` (offline mode, in ``<dir>/wandb``; ``wandb sync`` uploads it later).
        After a resume, the steps between the checkpoint and the kill appear twice there;
        ``metrics.jsonl`` is the record of truth.

    Examples
    --------
    >>> run = Run("runs/x/1", config={"lr": 0.1}, seed=0)  # writes runs/x/1  # doctest: +SKIP
    >>> start = run.restore(model=model, opt=opt)["step"]  # your model  # doctest: +SKIP
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
        loggers: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed == {seed!r}, must be an integer >= 0")
        self.dir = Path(dir)
        # Under torchrun every process runs the loop; only rank 0 writes the directory.
        self.writes = env_rank() == 0
        if self.writes:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "figures").mkdir(exist_ok=True)
        self.seed = seed
        self.dist, self.device = init_distributed(device)
        self.show_progress = progress
        if threads > 0:
            torch.set_num_threads(threads)
        self.config = to_jsonable(config) if config is not None else {}
        self._check_or_write_config()
        self.started = time.time()
        self._generators: dict[str, torch.Generator] = {}
        bad = [name for name in loggers if name not in LOGGERS]
        if bad:
            raise ValueError(f"logger == {bad[0]!r}, must be one of {', '.join(LOGGERS)}")
        self.loggers = tuple(loggers)
        self._trackers: dict[str, Any] = {}

    # -- randomness ----------------------------------------------------------
    def generator(self, name: str = "") -> torch.Generator:
        """The run's ``torch.Generator`` called ``name``, seeded from ``(seed, name)``.

        The same name gives the same object; :meth:`save` checkpoints every generator handed
        out and :meth:`restore` puts their states back, so a resumed loop draws the same
        numbers as an uninterrupted one. Generators live on the CPU (draw there, then move).
        """
        if name not in self._generators:
            self._generators[name] = make_generator(self.seed, name)
        return self._generators[name]

    # -- sub-runs ------------------------------------------------------------
    def child(self, name: str, *, config: Any = None, seed: int | None = None) -> Run:
        """A sub-run in ``<dir>/<name>`` with the same device and progress setting.

        ``seed`` defaults to this run's. Check ``child.finished`` to skip a finished sub-run
        (its ``result.json`` exists) and ``child.read_result()`` to reuse its numbers.
        """
        return Run(self.dir / name, config=config, seed=self.seed if seed is None else seed,
                   device=self.device, progress=self.show_progress, loggers=self.loggers)

    def grid(self, settings, seeds, fn, *, config=None):
        """Sub-runs over settings and seeds, skipping finished ones (:func:`deepscope.train.grid.run_grid`)."""
        from deepscope.train.grid import run_grid

        return run_grid(self, settings, seeds, fn, config=config)

    @property
    def finished(self) -> bool:
        """``result.json`` exists: the run completed (see :func:`is_finished`)."""
        return is_finished(self.dir)

    def read_result(self) -> dict:
        """This run's ``result.json`` with infinities restored (see :func:`read_result`)."""
        return read_result(self.dir)

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
            diff = sorted(
                k for k in set(old) | set(self.config)
                if k not in RunConfig.RESUMABLE_CHANGES and old.get(k) != self.config.get(k)
            )
            if diff:
                raise ValueError(
                    f"run directory {self.dir} holds a checkpoint from another config "
                    f"(differs in {diff}); pass a new --out or delete {self.checkpoint_path}"
                )
        if self.writes:
            atomic_write_text(path, text + "\n")

    # -- metrics -----------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Append ``{"step": step, **metrics, "time": seconds}`` to metrics.jsonl."""
        if not self.writes:
            return
        rec = {"step": int(step), **to_jsonable(metrics), "time": round(time.time() - self.started, 3)}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.loggers:
            scalars = {k: float(v) for k, v in rec.items()
                       if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
            for name in self.loggers:
                _log_to(self._tracker(name), name, int(step), scalars)

    def _tracker(self, name: str) -> Any:
        """The TensorBoard writer or wandb run of this directory, opened on first use."""
        if name not in self._trackers:
            self._trackers[name] = _open_tracker(name, self.dir, self.config)
        return self._trackers[name]

    def close(self) -> None:
        """Flush and close the experiment trackers (TensorBoard, wandb); metrics.jsonl needs none."""
        for name, t in self._trackers.items():
            t.close() if name == "tensorboard" else t.finish()
        self._trackers = {}

    def metrics(self) -> list[dict]:
        """All logged records, in order."""
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_result(self, result: Mapping[str, Any]) -> Path:
        """Write ``result.json`` atomically and return its path."""
        path = self.dir / "result.json"
        if self.writes:
            atomic_write_text(path, json.dumps(to_jsonable(result), indent=2) + "\n")
        barrier()  # under torchrun every process then sees the sub-run finished
        return path

    def save_file(self, name: str, obj: Any) -> Path:
        """Write a side file (cached data, predictions, samples) into the run directory.

        Atomic (:func:`atomic_save`: a crash leaves the old file or none, never a truncated one
        that a resumed run would fail to read) and written by one process only under torchrun
        (the others wait at a barrier, then see it). ``.npz`` takes a dict of arrays; anything
        else is ``torch.save``d. Returns the path.
        """
        path = self.dir / name
        if self.writes:
            atomic_save(obj, path)
        barrier()
        return path

    # -- checkpoints -------------------------------------------------------
    def save(self, step: int, **objects: Any) -> None:
        """Atomically checkpoint ``objects`` by name, with ``step``, generators and RNG states.

        Each object is saved by its ``state_dict()`` (modules, optimizers, schedulers,
        ``MILoss``), ``get_state()`` (``torch.Generator``), a dict of such objects by name
        (``models={"equal_s0": net, ...}``), or as it is (numbers, strings, tensors, lists
        and dicts of them). Every generator from :meth:`generator` is saved too. The file
        loads with ``torch.load(..., weights_only=True)``: it holds no pickled objects.
        """
        if not self.writes:
            return
        blob = {
            "step": int(step),
            "objects": {k: _state_of(v) for k, v in objects.items()},
            "generators": {k: g.get_state() for k, g in self._generators.items()},
            "rng": _rng_state(),
            "config": self.config,
            "elapsed": time.time() - self.started,
        }
        atomic_save(blob, self.checkpoint_path)

    def restore(self, **objects: Any) -> dict:
        """Load the checkpoint into ``objects`` (in place) and return ``{"step": ..., plain values}``.

        A fresh run returns ``{"step": 0}`` and changes nothing. On resume, the generators
        handed out so far (and any asked for later, by name) get their saved states, the
        global RNGs are restored, wall time keeps counting from the saved elapsed time, and
        metric lines logged after the checkpoint are dropped. Objects saved as plain values
        are returned in the dict under their names.
        """
        if not self.checkpoint_path.exists():
            return {"step": 0}
        blob = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        saved = blob["objects"]
        missing = sorted(set(objects) - set(saved))
        if missing:
            raise ValueError(
                f"checkpoint {self.checkpoint_path} has no {missing} (it holds {sorted(saved)}); "
                "pass a new --out or delete the checkpoint"
            )
        out: dict[str, Any] = {"step": int(blob["step"])}
        for name, obj in objects.items():
            value = _load_state(obj, saved[name], name)
            if value is not obj:
                out[name] = value
        for name, state in blob["generators"].items():
            self.generator(name).set_state(state)
        _set_rng_state(blob["rng"])
        # Wall time counts across resumes: result.json's "seconds" is the whole run's.
        self.started = time.time() - float(blob.get("elapsed", 0.0))
        step = out["step"]
        if self.writes and self.metrics_path.exists():
            keep = [r for r in self.metrics() if r.get("step", -1) <= step]
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        return out

    # -- progress ----------------------------------------------------------
    @contextlib.contextmanager
    def progress(self, total: int, *, desc: str = "", start: int = 0) -> Iterator:
        """A context manager yielding ``advance(n=1, **fields)``; a no-op when progress is off."""
        if not self.show_progress or not self.writes:
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


class NullRun:
    """A run that writes nothing: what a loop gets when it is called without a :class:`Run`.

    It has the device and process group (as :class:`Run`), ``log``, ``save``, ``restore``
    (always a fresh start), ``progress`` (silent) and ``child`` (another ``NullRun``), so loops
    need no ``if run is not None``.
    """

    dir = None
    finished = False

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.dist, self.device = init_distributed(device)
        self.show_progress = False
        self.started = time.time()

    def log(self, step: int, **metrics: Any) -> None:
        pass

    def metrics(self) -> list[dict]:
        return []

    def write_result(self, result: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def save(self, step: int, **objects: Any) -> None:
        pass

    def save_file(self, name: str, obj: Any) -> None:
        return None

    def restore(self, **objects: Any) -> dict:
        return {"step": 0}

    def child(self, name: str, *, config: Any = None, seed: int | None = None) -> NullRun:
        return NullRun(self.device)

    grid = Run.grid

    @contextlib.contextmanager
    def progress(self, total: int, *, desc: str = "", start: int = 0) -> Iterator:
        yield lambda n=1, **kw: None


def as_run(run: Run | NullRun | None, device: str | torch.device | None = None) -> Run | NullRun:
    """``run`` itself (never changed), or a :class:`NullRun` on ``device`` (default CPU) when None.

    A loop that takes both a run and its own device gets its device from
    :func:`deepscope.train.loop.setup` instead; here a ``device`` other than the run's is refused
    rather than written into the caller's run.
    """
    if run is None:
        return NullRun("cpu" if device is None else device)
    if device is not None and resolve_device(device) != run.device:
        raise ValueError(
            f"device == {str(device)!r} but the run is on {run.device}; make the Run on that device, "
            "or let the loop take its device from deepscope.train.loop.setup(run, options)"
        )
    return run
