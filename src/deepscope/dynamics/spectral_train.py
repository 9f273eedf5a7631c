"""The spectral-bias training loop and the helpers that read its metrics (arXiv 1806.08734).

Every experiment of Rahaman et al. trains small ReLU MLPs full-batch with Adam on a mean
squared error and looks at what they have learned every few steps. :func:`train_lockstep`
is that loop, for several networks at once (the amplitude cases of the 1-D sinusoids, one
network per curve of the manifold experiment, the noisy targets of the real-data
experiment); :func:`log_spectra` is the usual measurement, and :func:`read_spectra` and
:func:`load_lockstep_model` read what a run wrote.

Cookbook::

    import torch
    from deepscope.dynamics.spectral import sum_of_sinusoids
    from deepscope.dynamics.spectral_train import log_spectra, read_spectra, train_lockstep
    from deepscope.train import Run

    z = torch.arange(200) / 200
    freqs, loud_high = [5, 10, 20], [0.1, 0.2, 0.3]
    targets = {"equal": sum_of_sinusoids(z, freqs, [1, 1, 1], [0, 1, 2]),
               "loud_high": sum_of_sinusoids(z, freqs, loud_high, [0, 1, 2])}
    run = Run("runs/try", seed=0)                    # or run=None: nothing written
    models = train_lockstep(z[:, None], targets, generator=torch.Generator().manual_seed(0),
                            run=run, width=64, depth=4, steps=2000, lr=1e-3,  # one shared init
                            record=log_spectra(z[:, None], {"equal": [1, 1, 1],
                                                            "loud_high": loud_high}, freqs=freqs))
    steps, spectra, losses = read_spectra(run.metrics(), ["equal", "loud_high"])
    # steps (T,), spectra (T, 2, 3), losses (T, 2)
    # the checkpoint names the networks: load_lockstep_model("runs/try", "equal", net)

Split from ``spectral.py`` so that the spectrum math there depends on neither ``Run`` nor
the networks: this module is the layer above it (loop, checkpoints, metric files).
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from deepscope.dynamics.spectral import SpectrumRecorder
from deepscope.nets import MLP
from deepscope.train.config import check_float, check_int, require
from deepscope.train.loop import TrainOptions, generator_or_default, setup
from deepscope.train.rng import fork_seeded
from deepscope.train.run import NullRun, Run

__all__ = [
    "train_lockstep", "LockstepImplementation", "log_spectra", "read_spectra", "load_lockstep_model",
    "build_mlp",
]

Record = Callable[[int, Mapping[str, nn.Module]], Mapping[str, Any]]

#: How :func:`train_lockstep` steps its networks: one module each, or one stacked model.
LockstepImplementation = Literal["separate", "stacked"]


def build_mlp(dim_in: int, *, width: int, depth: int, generator: torch.Generator | None = None) -> nn.Module:
    """The paper's ReLU MLP ``dim_in -> width x (depth - 1) -> 1``, initialised from ``generator``.

    ``depth`` counts linear layers (the paper: 6, width 256). Initialisation draws from a
    fork of the global RNG seeded by ``generator`` (:func:`deepscope.train.rng.fork_seeded`).
    """
    with fork_seeded(generator_or_default(generator)):
        return MLP(dim_in, [width] * (depth - 1), 1)


def _check_lockstep(xs: dict, ys: dict, groups: list, names: list, ints: dict, lr: float) -> None:
    for key, value in ints.items():
        check_int(key, value, 2 if key == "depth" else 1)  # depth counts linear layers
    if not names:
        raise ValueError("targets == {}, must map at least one name to an (N,) tensor")
    require(math.isfinite(check_float("lr", lr, 0.0, open_low=True)), "lr", lr, "a finite number > 0")
    dims = {x.shape[1] if x.ndim == 2 else None for x in xs.values()}
    if len(dims) != 1 or None in dims:
        raise ValueError(f"x has input dims {sorted(map(str, dims))}; "
                         "pass (N, D) tensors, one D for all")
    for n in names:
        if n not in xs:
            raise ValueError(f"x has no input for target {n!r}; "
                             "pass one (N, D) tensor or a dict by name")
        if ys[n].shape != (xs[n].shape[0],):
            raise ValueError(f"targets[{n!r}] has shape {tuple(ys[n].shape)}, must be "
                             f"({xs[n].shape[0]},): one value per row of its input")
    flat = [n for g in groups for n in g]
    if sorted(flat) != sorted(names):
        raise ValueError(f"share_init == {groups} must list every target name exactly once, "
                         f"names: {names}")


def _lockstep_inputs(x, targets: Mapping[str, torch.Tensor], share_init, lr: float, **ints: int):
    """Names, per-name inputs and init groups of a :func:`train_lockstep` run, validated."""
    names = list(targets)
    xs = {n: x for n in names} if isinstance(x, torch.Tensor) else dict(x)
    groups = [names] if share_init is None else [list(g) for g in share_init]
    _check_lockstep(xs, dict(targets), groups, names, ints, lr)
    return names, xs, groups


def _initial_networks(names: list, groups: list, dim_in: int, width: int, depth: int,
                      generator: torch.Generator) -> list[nn.Module]:
    """One initial network per name, in ``names`` order: names in one group share the module
    (one draw per group, in group order, from ``generator``)."""
    inits = [build_mlp(dim_in, width=width, depth=depth, generator=generator) for _ in groups]
    init_of = {n: i for i, g in enumerate(groups) for n in g}
    return [inits[init_of[n]] for n in names]


@dataclass
class _Lockstep:
    """What both implementations of :func:`train_lockstep` start from: validated, on the device."""

    names: list[str]
    xs: dict[str, torch.Tensor]       # the input of each network
    x_shared: torch.Tensor | None     # the one input all networks share, if they do
    ys: dict[str, torch.Tensor]
    inits: list[nn.Module]            # one per name, in names order (shared groups: one module)
    run: Run | NullRun
    generator: torch.Generator
    steps: int
    lr: float
    record_every: int
    record: Record | None
    checkpoint_every: int
    desc: str

    def log(self, step: int, models: Mapping[str, nn.Module], losses: Sequence[float], advance) -> None:
        """One metric line: every network's loss and what ``record`` returns."""
        with torch.no_grad():
            extra = dict(self.record(step, models)) if self.record is not None else {}
        self.run.log(step, **{f"loss_{n}": round(v, 8) for n, v in zip(self.names, losses)}, **extra)
        advance(self.record_every, loss=sum(losses) / len(self.names))


def _train_separate(p: _Lockstep) -> dict[str, nn.Module]:
    """K networks, K optimisers, stepped one after the other."""
    dev = p.ys[p.names[0]].device
    models = {n: copy.deepcopy(net).to(dev) for n, net in zip(p.names, p.inits)}
    opts = {n: torch.optim.Adam(models[n].parameters(), lr=p.lr) for n in p.names}
    start = p.run.restore(models=models, opts=opts, generator=p.generator)["step"]
    losses = dict.fromkeys(p.names, math.nan)
    with p.run.progress(p.steps, desc=p.desc, start=start) as advance:
        for step in range(start + 1, p.steps + 1):
            logging = step % p.record_every == 0
            for n in p.names:
                loss = ((models[n](p.xs[n]).squeeze(-1) - p.ys[n]) ** 2).mean()
                opts[n].zero_grad(set_to_none=True)
                loss.backward()
                opts[n].step()
                if logging:  # .item() syncs a GPU: only when the value is logged
                    losses[n] = loss.item()
            if logging:
                p.log(step, models, [losses[n] for n in p.names], advance)
            if step % p.checkpoint_every == 0 or step == p.steps:
                p.run.save(step, models=models, opts=opts, generator=p.generator)
    return models


def _train_stacked(p: _Lockstep) -> dict[str, nn.Module]:
    """The K networks as one batched model, one optimiser."""
    from deepscope.nets.batched import BatchedMLP

    dev = p.ys[p.names[0]].device
    xb = p.x_shared if p.x_shared is not None else torch.stack([p.xs[n] for n in p.names])  # (N, D) | (K, N, D)
    yb = torch.stack([p.ys[n] for n in p.names])                                            # (K, N)
    stack = BatchedMLP.stack(p.inits).to(dev)
    models = dict(zip(p.names, stack.unstack(share=True)))   # live per-name views of the stack
    opt = torch.optim.Adam(stack.parameters(), lr=p.lr)
    start = p.run.restore(models=models, opt=opt, generator=p.generator)["step"]
    with p.run.progress(p.steps, desc=p.desc, start=start) as advance:
        for step in range(start + 1, p.steps + 1):
            losses = ((stack(xb).squeeze(-1) - yb) ** 2).mean(1)           # (K,)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            if step % p.record_every == 0:
                p.log(step, models, losses.detach().cpu().tolist(), advance)
            if step % p.checkpoint_every == 0 or step == p.steps:
                p.run.save(step, models=models, opt=opt, generator=p.generator)
    return dict(zip(p.names, stack.unstack()))


def train_lockstep(
    x: torch.Tensor | Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    *,
    generator: torch.Generator | None = None,
    run: Run | NullRun | None = None,
    device: str | torch.device | None = None,
    width: int = 256,
    depth: int = 6,
    steps: int = 60_000,
    lr: float = 3e-4,
    share_init: Sequence[Sequence[str]] | None = None,
    record_every: int = 100,
    record: Record | None = None,
    checkpoint_every: int = 2000,
    desc: str = "",
    implementation: LockstepImplementation = "separate",
) -> dict[str, nn.Module]:
    """Regress one MLP per target, full batch, Adam on the MSE, all networks in lockstep.

    The paper's training (arXiv 1806.08734, 1-D experiment: 6 linear layers of width 256,
    Adam at 3e-4, full batch). Stepping the networks together gives one step counter, so one
    checkpoint holds all of them and a killed run resumes to the same numbers.

    Parameters
    ----------
    x : (N, D) tensor, or dict name -> (N_name, D) tensor
        Inputs shared by all networks, or one input per target name.
    targets : dict name -> (N,) tensor
        One network is trained per name; the names key the models, the checkpoint
        (``{"models": {name: ...}}``) and the metrics (``loss_<name>``).
    generator : torch.Generator, optional
        Draws the initialisations (nothing else in the loop is random). Default: PyTorch's
        default generator.
    run : Run, optional
        Metrics, checkpoints (resumed from when present), progress; ``None`` writes nothing.
    device : str or torch.device, optional
        Where to train (default the run's device, CPU without a run).
    width, depth : int
        Hidden width and number of linear layers of every network.
    steps, lr : int, float
        Adam steps and learning rate.
    share_init : sequence of sequences of names, optional
        Groups of names whose networks start from one initialisation (one draw per group, in
        this order). Default: all networks share one, so they differ only by their targets.
    record_every : int
        Every this many steps one metric line holds ``loss_<name>`` (the MSE of that step,
        before its update) for every name and whatever ``record`` returns.
    record : callable, optional
        ``record(step, models) -> {key: value}``, called without gradients on the recording
        steps with the dict of networks; e.g. :func:`log_spectra`.
    checkpoint_every : int
        Checkpoint every this many steps and at the end.
    desc : str
        Progress-bar label.
    implementation : {"separate", "stacked"}
        ``"separate"``: one module and one Adam per network, stepped one after the other (any
        input sizes). ``"stacked"``: the K networks in one
        :class:`~deepscope.nets.batched.BatchedMLP` (one ``baddbmm`` per layer for all K)
        trained by one Adam on the sum of the per-network MSEs; every input must have the same
        number of rows N, and ``record`` receives per-name views of the stack. The networks
        share no parameter and Adam acts elementwise, so both give the same initialisations,
        metric lines and named networks in the checkpoint, and the same numbers up to the
        rounding of the batched products (tested); "stacked" makes fewer, larger operations
        per step (on 2 threads they also spread the K networks over both cores). A run
        directory resumes with the implementation that wrote it (their optimiser states differ).

    Returns
    -------
    dict name -> nn.Module
        The trained networks, on ``device`` (independent copies for "stacked").
    """
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(f"implementation == {implementation!r}; choose one of {sorted(_IMPLEMENTATIONS)}")
    names, xs, groups = _lockstep_inputs(x, targets, share_init, lr, width=width, depth=depth,
                                         steps=steps, record_every=record_every,
                                         checkpoint_every=checkpoint_every)
    rows = {xs[n].shape[0] for n in names}
    if implementation == "stacked" and len(rows) != 1:
        raise ValueError(f"x has {sorted(rows)} rows across the targets; implementation='stacked' "
                         "needs one N for all networks (implementation='separate' takes inputs of "
                         "different sizes)")
    run, _, dev = setup(run, TrainOptions(device=device))
    generator = generator_or_default(generator)
    x_shared = x.to(dev) if isinstance(x, torch.Tensor) else None
    plan = _Lockstep(
        names=names, xs={n: xs[n].to(dev) if x_shared is None else x_shared for n in names},
        x_shared=x_shared,
        ys={n: targets[n].to(dev) for n in names},
        inits=_initial_networks(names, groups, xs[names[0]].shape[1], width, depth, generator),
        run=run, generator=generator, steps=steps, lr=lr, record_every=record_every,
        record=record, checkpoint_every=checkpoint_every, desc=desc)
    return _IMPLEMENTATIONS[implementation](plan)


_IMPLEMENTATIONS: dict[str, Callable[[_Lockstep], dict[str, nn.Module]]] = {
    "separate": _train_separate,
    "stacked": _train_stacked,
}


def log_spectra(
    x: torch.Tensor | Mapping[str, torch.Tensor],
    scale: Mapping[str, Sequence[float]],
    *,
    freqs: Sequence[int],
) -> Record:
    """A ``record`` for :func:`train_lockstep`: ``spectrum_<name>`` for every name in ``scale``.

    Each value is network ``name``'s Fourier amplitude at ``freqs`` on its grid, divided by
    ``scale[name]`` (the target's amplitudes: 1 = learned), as ``F`` floats rounded to 6
    decimals (:class:`~deepscope.dynamics.spectral.SpectrumRecorder`).

    Parameters
    ----------
    x : (N, D) tensor, or dict name -> (N, D) tensor
        The grid(s), ordered along the periodic parameter, on the training device.
    scale : dict name -> (F,) amplitudes
    freqs : (F,) integer frequencies
    """
    recorders = {n: SpectrumRecorder(x if isinstance(x, torch.Tensor) else x[n], freqs=freqs,
                                     scale=a) for n, a in scale.items()}

    def record(step: int, models: Mapping[str, nn.Module]) -> dict[str, list[float]]:
        return {f"spectrum_{n}": [round(float(v), 6) for v in r.spectrum(models[n])]
                for n, r in recorders.items()}

    return record


def read_spectra(metrics: Sequence[Mapping[str, Any]], names: Sequence[str]):
    """The recorded spectra and losses of ``names`` from metric lines (``run.metrics()``).

    Parameters
    ----------
    metrics : list of dict
        Metric lines written by :func:`train_lockstep` with :func:`log_spectra`.
    names : sequence of str
        Network names, e.g. the seeds of one case ``["equal_s0", "equal_s1"]``.

    Returns
    -------
    steps : (T,) int array
    spectra : (T, S, F) float array, ``S = len(names)``
    losses : (T, S) float array
    """
    recs = [r for r in metrics if all(f"spectrum_{n}" in r for n in names)]
    if not recs:
        raise ValueError(f"no metric line holds spectrum_<name> for every name in {list(names)}")
    steps = np.asarray([r["step"] for r in recs], dtype=np.int64)
    spectra = np.asarray([[r[f"spectrum_{n}"] for n in names] for r in recs], dtype=np.float64)
    losses = np.asarray([[r[f"loss_{n}"] for n in names] for r in recs], dtype=np.float64)
    return steps, spectra, losses


def load_lockstep_model(run_dir: str | Path, name: str, model: nn.Module) -> int:
    """Load network ``name`` of a :func:`train_lockstep` run's checkpoint into ``model``.

    Returns the step the checkpoint was written at. ``run_dir`` holds ``checkpoint.pt``
    (written by ``Run.save``; loaded with ``weights_only=True``).
    """
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        raise ValueError(f"run_dir == '{run_dir}' holds no checkpoint.pt; pass a run directory")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path} holds objects that only an older deepscope wrote (it does not "
                         "load with weights_only=True); rerun that experiment") from e
    saved = blob.get("objects", {}).get("models", {})
    if not isinstance(saved, Mapping):
        raise ValueError(f"{path} keeps its networks by position (written before they were "
                         "named); rerun that experiment with the current deepscope")
    if name not in saved:
        raise ValueError(f"{path} has no model {name!r}; it holds {sorted(saved)}")
    model.load_state_dict(saved[name])
    return int(blob["step"])
