"""Track tangent-kernel alignment along training on fixed probe sets (arXiv 2008.00938).

Cookbook::

    import torch
    from deepscope.dynamics.ntk_tracker import AlignmentTracker, log_steps
    from deepscope.nets import MLP

    net = MLP(40, [256, 256], 10)
    tracker = AlignmentTracker(x_train, y_train, x_test, y_test, seed=0, run=run)  # 100 + 100 probes
    for step in range(steps + 1):
        tracker(step, net)            # at 0 and floor(5 * 1.15^k): kernels, alignment, spectrum
        ...                           # one optimiser step
    tracker.history_                  # [{'step': 0, 'align_train': ..., ...}, ...]
    log_steps(100)                    # [0, 5, 6, 7, 8, 10, 11, 13, 15, 17, 20, 23, 26, 30, ...]

Each record holds ``align_train`` / ``align_test`` (``kernel_alignment`` of the centred full
kernel with the centred one-hot labels), ``layer_align_train`` / ``layer_align_test``
(``{layer: alignment}``), the spectrum of the centred train kernel (``eigen_stats``), and the
complexity measure: ``trace_k`` (``Tr K`` of the uncentred train kernel), ``norm_dw``
(``||theta_t - theta_prev||`` since the previous record) and ``complexity`` (``path_complexity``,
``(1/n) sum ||Delta theta|| sqrt(Tr K)``, cumulated so far; a caller with the training margin
divides it by the margin for the margin-normalised variant).
``seconds_`` is the wall time spent in the tracker's measurements (its cost per checkpoint).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from deepscope.dynamics.alignment import center_kernel, eigen_stats, kernel_alignment
from deepscope.dynamics.ntk import empirical_ntk

__all__ = ["AlignmentTracker", "log_steps"]


#: Growth of the paper's kernel checkpoint schedule, steps ``floor(5 * 1.15^k)`` (arXiv 2008.00938).
PAPER_RATIO = 1.15


def log_steps(max_step: int, *, first: float = 5.0, ratio: float = PAPER_RATIO,
              include_zero: bool = True) -> list[int]:
    """The distinct ``floor(first * ratio^k) <= max_step``, ``k = 0, 1, ...``, ascending.

    The paper's schedule (arXiv 2008.00938): ``floor(5 * 1.15^k)``. Note that the authors' code
    evaluates ``5 * floor(1.15^k)`` (multiples of 5, repeated early on); this follows the paper.
    ``include_zero`` adds step 0 (the initial kernel), as their code also does.
    """
    if not isinstance(max_step, int) or max_step < 0:
        raise ValueError(f"max_step == {max_step!r}, must be an integer >= 0")
    if first <= 0 or ratio <= 1:
        raise ValueError(f"first == {first}, ratio == {ratio}; need first > 0 and ratio > 1")
    steps = {0} if include_zero else set()
    k = 0
    while (s := math.floor(first * ratio**k)) <= max_step:
        steps.add(s)
        k += 1
    return sorted(steps)


def _params_vector(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


class AlignmentTracker:
    """Kernel alignment, spectrum and complexity on fixed probe sets at log-spaced steps.

    Call it once per step; it computes on the steps of its schedule and does nothing otherwise.
    The model is switched to eval mode for the kernels and put back in its previous mode.

    Parameters
    ----------
    x_train : (N, *features) tensor
    y_train : (N,) integer labels
        ``n_probe`` examples are drawn once, without replacement, with ``seed`` (all of them if
        ``N <= n_probe``).
    x_test, y_test : optional, same kinds
    n_probe : int
        Probe examples per set (the paper: 100).
    seed : int
        Seeds a private ``torch.Generator`` for the probe draw; the global RNG is never used.
    steps : iterable of int, optional
        Steps to record at. Default: ``log_steps`` (0 and ``floor(5 * 1.15^k)``), unbounded.
    per_layer : bool
        Also record the alignment of each layer's kernel.
    top_k : sequence of int
        Trace ratios recorded by ``eigen_stats``.
    implementation, chunk_size
        Passed to ``empirical_ntk``.
    run : deepscope.train.Run, optional
        Each record goes to ``run.log(step, **record)``.

    Attributes
    ----------
    history_ : list of dict
        One record per recorded step (``step`` included).
    probe_train_, probe_test_ : (n_probe,) index tensors into the given sets.
    """

    def __init__(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_test: torch.Tensor | None = None,
        y_test: torch.Tensor | None = None,
        *,
        n_probe: int = 100,
        seed: int = 0,
        steps: Iterable[int] | None = None,
        per_layer: bool = True,
        top_k: Sequence[int] = (1, 5, 10),
        implementation: str = "auto",
        chunk_size: int | None = None,
        run: Any = None,
    ) -> None:
        if not isinstance(n_probe, int) or n_probe < 2:
            raise ValueError(f"n_probe == {n_probe!r}, must be an integer >= 2 (centring needs two examples)")
        if (x_test is None) != (y_test is None):
            raise ValueError("pass both x_test and y_test, or neither")
        gen = torch.Generator().manual_seed(int(seed))
        self.x_train, self.y_train, self.probe_train_ = self._probe(x_train, y_train, n_probe, gen, "train")
        if x_test is not None:
            self.x_test, self.y_test, self.probe_test_ = self._probe(x_test, y_test, n_probe, gen, "test")
        else:
            self.x_test = self.y_test = self.probe_test_ = None
        self._steps = None if steps is None else {int(s) for s in steps}
        self._log_steps: set[int] = set()
        self._log_upto = -1
        self.per_layer = per_layer
        self.top_k = tuple(top_k)
        self.implementation = implementation
        self.chunk_size = chunk_size
        self.run = run
        self.history_: list[dict] = []
        self._theta: torch.Tensor | None = None
        self._complexity = 0.0
        self.seconds_ = 0.0

    @staticmethod
    def _probe(x: torch.Tensor, y: Any, n: int, gen: torch.Generator, which: str):
        y = torch.as_tensor(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x_{which} has {x.shape[0]} examples but y_{which} has {y.shape[0]}; they must match")
        idx = torch.arange(x.shape[0]) if x.shape[0] <= n else torch.randperm(x.shape[0], generator=gen)[:n]
        return x[idx.to(x.device)], y[idx.to(y.device)], idx

    def due(self, step: int) -> bool:
        """Whether ``step`` is on the schedule."""
        if self._steps is not None:
            return step in self._steps
        if step > self._log_upto:  # extend the unbounded default schedule
            self._log_upto = max(2 * step, 1000)
            self._log_steps = set(log_steps(self._log_upto))
        return step in self._log_steps

    def _alignments(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        ks = empirical_ntk(model, x, per_layer=True, implementation=self.implementation,
                           chunk_size=self.chunk_size)
        total = sum(ks.values())
        o = total.shape[2]
        layers = {name: float(kernel_alignment(k, y, n_classes=o)) for name, k in ks.items()}
        return total, float(kernel_alignment(total, y)), layers

    def measure(self, model: nn.Module) -> dict[str, Any]:
        """The record for ``model`` now (updates the complexity's running state)."""
        was_training = {m: m.training for m in model.modules()}
        model.eval()
        try:
            k_train, a_train, l_train = self._alignments(model, self.x_train, self.y_train)
            rec: dict[str, Any] = {"align_train": a_train}
            if self.x_test is not None:
                _, a_test, l_test = self._alignments(model, self.x_test, self.y_test)
                rec["align_test"] = a_test
            if self.per_layer:
                rec["layer_align_train"] = l_train
                if self.x_test is not None:
                    rec["layer_align_test"] = l_test
        finally:
            for m, t in was_training.items():
                m.train(t)
        rec.update(eigen_stats(center_kernel(k_train), top_k=self.top_k))
        trace = float(torch.einsum("nnoo->", k_train))
        theta = _params_vector(model)
        step_norm = 0.0 if self._theta is None else float(torch.linalg.vector_norm(theta - self._theta))
        self._theta = theta.clone()
        self._complexity += step_norm * math.sqrt(max(trace, 0.0)) / self.x_train.shape[0]
        rec.update(trace_k=trace, norm_dw=step_norm, complexity=self._complexity)
        return rec

    def __call__(self, step: int, model: nn.Module, *, force: bool = False) -> dict[str, Any] | None:
        """Record (and log) if ``step`` is on the schedule (or ``force``, unless ``step`` was just
        recorded); return the record then, else ``None``."""
        if self.history_ and self.history_[-1]["step"] == int(step):
            return None
        if not (force or self.due(step)):
            return None
        t0 = time.perf_counter()
        rec = self.measure(model)
        self.seconds_ += time.perf_counter() - t0
        self.history_.append({"step": int(step), **rec})
        if self.run is not None:
            self.run.log(step, **rec)
        return rec

    def state_dict(self) -> dict:
        """History and complexity state, for a checkpoint."""
        return {"history": [dict(h) for h in self.history_], "theta": self._theta,
                "complexity": self._complexity, "seconds": self.seconds_}

    def load_state_dict(self, state: dict) -> None:
        self.history_ = [dict(h) for h in state["history"]]
        self._theta = state["theta"]
        self._complexity = float(state["complexity"])
        self.seconds_ = float(state.get("seconds", 0.0))
