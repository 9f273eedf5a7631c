"""``MINE``: a mutual-information estimator with scikit-learn conventions.

>>> from deepscope.mi import MINE, tasks
>>> x, y, truth = tasks.correlated_gaussian(2_000, d=2, mi=1.0, seed=0)
>>> est = MINE(random_state=0).fit(x, y)
>>> abs(est.mi_ - truth) < 0.3                     # nats on held-out data
True
>>> est.ci_[0] <= est.mi_ <= est.ci_[1]            # its 95% interval; est.mi_bits_ in bits
True
>>> sorted(est.history_[-1])
['step', 'train', 'val']
>>> float(est.score(x[:500], y[:500])) > 0         # the fitted critic's bound on new rows
True

Protocol (why the number can be trusted): the rows are shuffled and split into
train / validation / test; each input column is Gaussianised or standardised (by default
both are fitted and the higher validation bound is kept) with statistics of the training
split only; the critic (by default the log density ratio of the Gaussian, or of a Student-t
copula, fitted to the training rows plus an MLP residual that starts at zero) is trained
on the training split with early stopping on the validation bound,
the untrained critic being a candidate too; ``mi_`` is the bound of the critic that
did best on validation, evaluated **once** on the test split. The maximum over
evaluations would be optimistic; a critic evaluated on its own training rows overfits
upwards. ``timings_`` holds the seconds of each stage.

Belghazi et al., "Mutual Information Neural Estimation", ICML 2018, arXiv 1801.04062.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepscope.mi import bounds
from deepscope.mi.critics import (
    HybridCritic,
    canonical_pairs,
    canonical_terms,
    gaussian_log_ratio,
    gaussian_moments,
    make_critic,
    pairwise_scores,
    shrink_covariance,
    student_t_copula_ratio,
)
from deepscope.mi.loss import bound_on_batch
from deepscope.train.rng import derive_seed, make_generator

__all__ = ["MINE", "MIWarning", "PRESETS", "prepare_inputs"]  # and NotFittedError, lazily


#: Named configurations: ``"default"`` is the defaults; ``MINE(**PRESETS["concat-mine"])`` is the
#: MINE paper's estimator: the concatenation critic with the MINE bound (moving-average gradient),
#: small steps and long early-stopped training; benchmarks compare the two in one run, and the
#: paper-reproduction recipes use it.
PRESETS: dict[str, dict] = {
    "default": {},
    "concat-mine": {
        "bound": "mine", "critic": "concat", "hidden": (100, 100), "batch_size": 256, "lr": 1e-3,
        "radial": False, "transform": "gaussianize",
        "max_steps": 10_000, "eval_every": 100, "patience": 10, "lr_decay": True,
        "eval_pairs": 100_000, "n_bootstrap": 500,
    },
}


def __getattr__(name):
    # scikit-learn's NotFittedError, imported only when asked for: importing scikit-learn
    # costs more than a whole estimate (it pulls in scipy.stats), so fit() never does.
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Params:
    """scikit-learn's estimator protocol without importing scikit-learn.

    ``get_params``/``set_params`` read and write the ``__init__`` keyword arguments, so
    ``sklearn.base.clone`` and grid searches work; the ``repr`` lists the arguments that
    differ from their defaults, as scikit-learn's does.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {self}. Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, key, value)
        return self

    def __sklearn_tags__(self):
        # scikit-learn (>= 1.6) asks for these, e.g. in check_is_fitted: it is imported by then
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "mi_")

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = []
        for name in self._param_names():
            default, value = sig.parameters[name].default, getattr(self, name)
            same = value is default or (type(value) is type(default) and _equal(value, default))
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. a module compared with a string
        return False


class MIWarning(UserWarning):
    """An estimate at a known ceiling, a diverged training run, or a similar caveat."""


_TRANSFORMS = ("auto", "gaussianize", "standardize", "none")
# The transforms that transform='auto' chooses between, by the validation bound (first wins ties).
_AUTO_TRANSFORMS = ("gaussianize", "standardize")
_CRITICS = ("auto", "hybrid", "concat", "separable", "flow", "select")
# Covariance shrinkage values tried for the hybrid critic's Gaussian part (shrinkage='auto').
_SHRINKAGE_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
# Degrees of freedom of the Student-t copula parts tried beside the Gaussian part (dof='auto').
_DOF_GRID = (1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0)
# Inputs are processed in row chunks of about this many elements (2 MB in float64):
# big temporaries would be kept by the C allocator after use and inflate the
# process's memory well beyond the one float32 copy fit() makes.
_CHUNK_ELEMS = 1 << 18
# Critic evaluations on held-out pairs go in blocks of this many rows.
_EVAL_ROWS = 16384


def _rows(t: torch.Tensor) -> int:
    return max(256, _CHUNK_ELEMS // max(1, t.shape[1]))


def _to_2d_float(a, name: str) -> torch.Tensor:
    """Validate one input array and return it as a 2-D tensor (no copy when possible)."""
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        arr = np.asarray(a)
        if arr.dtype == object:
            raise TypeError(f"{name} has dtype object; pass a numeric array (float or int)")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                or arr.dtype == bool):
            raise TypeError(f"{name} has dtype {arr.dtype}; pass a numeric array (float or int)")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; pass (N,) or (N, D)")
    if t.is_complex():
        raise TypeError(f"{name} is complex; pass real values")
    return t


def _check_finite_and_varying(t: torch.Tensor, name: str) -> None:
    # checked in chunks so a 1M-row input needs no full-size temporary
    step = _rows(t)
    for s in range(0, t.shape[0], step):
        c = t[s : s + step]
        if c.is_floating_point() and not torch.isfinite(c).all():
            row = s + int((~torch.isfinite(c)).any(1).nonzero()[0])
            raise ValueError(f"{name} contains NaN or inf values (first at row {row}); remove or impute them")
    sd = _chunked_mean_std(t)[1]
    const = (sd == 0).nonzero().flatten().tolist()
    if const:
        raise ValueError(f"{name} has constant column(s) {const}; they carry no information: drop them")


def _chunked_mean_std(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and standard deviations in float64, one chunk of rows at a time.

    Keeps memory at one chunk (a full-size reduction can allocate a temporary the
    size of the input) and shifts by the first row for numerical stability.
    """
    n, chunk = t.shape[0], _rows(t)
    shift = t[0].double()
    s1 = torch.zeros(t.shape[1], dtype=torch.float64, device=t.device)
    s2 = torch.zeros_like(s1)
    for s in range(0, n, chunk):
        c = t[s : s + chunk].double() - shift
        s1 += c.sum(0)
        s2 += (c * c).sum(0)
    mean = s1 / n
    var = (s2 - s1 * mean) / max(n - 1, 1)
    return mean + shift, var.clamp_min(0).sqrt()


def prepare_inputs(x, y, *, min_rows: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate paired inputs at the boundary: shapes, dtype, NaN/inf, constant columns, row count.

    Returns 2-D tensors (views of the inputs where possible). Raises ``ValueError``
    or ``TypeError`` with a message naming the argument, the value and the fix.
    """
    tx, ty = _to_2d_float(x, "x"), _to_2d_float(y, "y")
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(f"x has {tx.shape[0]} rows and y has {ty.shape[0]}; they must be paired row by row")
    if tx.shape[0] < min_rows:
        raise ValueError(
            f"x and y have {tx.shape[0]} rows; need at least {min_rows} to train and hold out a test split"
        )
    _check_finite_and_varying(tx, "x")
    _check_finite_and_varying(ty, "y")
    return tx, ty


class _Gaussianizer:
    """Per-column rank -> standard-normal quantile map fitted on training rows.

    New values are placed by linear interpolation of the training empirical CDF,
    so the map is monotone and defined everywhere (values beyond the training
    range map to the extreme quantiles).
    """

    def __init__(self, train: torch.Tensor, max_ref: int = 20000, seed: int = 0):
        n = train.shape[0]
        if n > max_ref:  # quantiles from a subsample: the CDF is smooth at this size
            g = make_generator(seed, "gaussianize")
            train = train[torch.randperm(n, generator=g)[:max_ref]]
            n = max_ref
        self.ref = torch.sort(train.double(), dim=0).values.numpy()
        self.levels = (np.arange(n) + 0.5) / n

    def __call__(self, t: torch.Tensor) -> None:
        """Map the CPU tensor ``t`` in place, one block of rows (all columns) at a time."""
        step = _rows(t)
        u = np.empty((min(step, t.shape[0]), t.shape[1]))
        for s in range(0, t.shape[0], step):
            block = t[s : s + step].numpy()
            out = u[: block.shape[0]]
            for j in range(t.shape[1]):
                out[:, j] = np.interp(block[:, j], self.ref[:, j], self.levels)
            uo = torch.from_numpy(out)
            torch.special.ndtri(uo, out=uo)  # torch's, not scipy's: scipy costs 0.2 s to import
            block[...] = out  # the float32 view writes through to t


class MINE(_Params):
    """Mutual Information Neural Estimation of I(X;Y), in nats.

    A scikit-learn estimator without importing scikit-learn (it would cost more than an
    estimate): ``get_params``, ``set_params``, ``sklearn.base.clone`` and the ``repr`` follow
    scikit-learn's protocol; ``score`` before ``fit`` raises sklearn's ``NotFittedError``.

    Parameters
    ----------
    bound : {'smile', 'mine', 'dv', 'nwj', 'infonce'}
        Training objective and reported value (:data:`deepscope.mi.bounds.Bound`): ``'smile'``
        (default: JS-trained critic, DV read-out with the marginal scores
        clipped to [-tau, tau]; robust to the outlying marginal scores that can sink a DV
        read-out on heavy-tailed or warped data, and as accurate or better on every task
        family of ``benchmarks/mi_speed.py``), ``'mine'`` (Donsker-Varadhan value,
        bias-corrected moving-average gradient; the ``'concat-mine'`` preset's), ``'dv'`` (plain DV
        gradient), ``'nwj'`` (MINE-f), ``'infonce'`` (capped at log batch_size).
    critic : str or nn.Module
        ``'auto'`` (default: ``'separable'`` for InfoNCE, which scores all K^2 pairs of a
        batch, ``'hybrid'`` otherwise), ``'hybrid'``
        (:class:`~deepscope.mi.critics.HybridCritic`: the log density ratio of the Gaussian
        fitted to the training rows plus an MLP residual that starts at zero),
        ``'concat'`` (MLP on [x, y], the MINE paper's and the ``'concat-mine'`` preset's),
        ``'separable'`` (g(x)^T h(y)), or any module with ``forward(x, y) -> (K,)``.
        A module is copied per restart. ``'flow'`` (:mod:`deepscope.mi.flow`: flows
        f_x, f_y fitted by maximum likelihood on the training rows map X and Y towards a
        joint Gaussian, then the hybrid critic is fitted and read out on the mapped rows; the
        estimate is unchanged by invertible maps the flows can undo, Butakov et al. 2024,
        arXiv 2403.02187; needs ``zuko``), ``'select'`` (fit ``'hybrid'`` and ``'flow'`` on the
        same split and keep the one with the higher validation bound, ``selection_``).
    hidden : sequence of int
        Hidden widths of a built-in critic.
    embed : int
        Embedding size of the separable critic.
    shrinkage : 'auto' or float in [0, 1]
        Covariance shrinkage of the hybrid critic's Gaussian part; ``'auto'`` picks the
        value whose Gaussian ratio alone reads the highest validation bound (``shrinkage_``).
    rank : 'auto' or int
        Canonical pairs kept in the hybrid critic's Gaussian part (reduced-rank CCA, see
        :func:`~deepscope.mi.critics.gaussian_log_ratio`); ``'auto'`` (default) picks, with the
        shrinkage, the rank whose Gaussian ratio reads the highest validation bound
        (``gaussian_rank_``). When a few directions carry the MI among many coordinates, the
        full ratio pays on held-out rows for every fitted cross-covariance (docs/mine.md,
        "Reduced-rank Gaussian part").
    dof : 'auto', float or math.inf
        Degrees of freedom of the hybrid critic's parametric part. ``math.inf``: the Gaussian
        part (above). A number: the Student-t copula ratio with that many degrees of freedom
        (:func:`~deepscope.mi.critics.student_t_copula_ratio`: the exact ratio when X and Y
        share a heavy-tailed scale, which a Gaussian ratio misses; it reads normal scores, so
        it needs ``transform='gaussianize'``). ``'auto'`` (default) keeps, of the Gaussian part
        and the Student-t parts with nu in (1, 2, 3, 4, 6, 10, 20) at full rank, the one that
        alone reads the highest validation bound (``dof_``); with a fixed ``rank``, InfoNCE or
        another transform, only the Gaussian part is a candidate.
    radial : bool
        The hybrid critic's MLP also reads |x|^2/dx and |y|^2/dy (a shared scale, as in
        heavy-tailed elliptical data, is then one ReLU away).
    batch_size : int
        Pairs per step (>= 2).
    lr : float
        Adam learning rate.
    max_steps : int
        Upper limit on training steps per restart (at the default batch of 1,024, 300 steps
        are ~88 passes over 3,500 training rows, 5,000 rows in all). Training usually stops
        earlier, by ``patience``.
    eval_every : int
        Steps between validation evaluations.
    patience : int
        Evaluations without improvement of the validation bound before stopping. The
        untrained hybrid critic (the Gaussian part alone) is the first candidate, so with the
        default 2 training stops after 50 steps that do not beat the Gaussian answer, and
        continues while it improves (docs/mine.md, "Stopping rule").
    val_fraction, test_fraction : float
        Held-out fractions of the rows (test rows are never used in training or selection).
    transform : str
        Per-coordinate preprocessing fitted on the training split: ``'gaussianize'``
        (ranks -> standard-normal quantiles, a monotone map, so the MI is unchanged),
        ``'standardize'`` (mean 0, variance 1), ``'none'``, or ``'auto'`` (default: fit with
        each of gaussianize and standardize on the same split and keep the one with the higher
        validation bound, ``selection_``; ``transform_`` is the one used). Measured in
        ``benchmarks/mi_accuracy.py``: the two agree on Gaussian marginals, and gaussianize is
        far closer on cubic, log-normal, sinh and half-cube marginals (standardize can fail
        outright on heavy tails); standardize is closer where the dependence has sharp edges
        along the raw coordinates (y = x + uniform noise) or a linear map mixes the
        coordinates (shear), because a monotone map per column bends those edges
        (``benchmarks/mi_flow.py``, docs/mine.md).
    ema_alpha : float
        Moving-average weight for ``bound='mine'``.
    tau : float
        Clipping for ``bound='smile'``.
    eval_pairs : int
        Marginal pairs used for a held-out evaluation (from row shuffles).
    precision : str
        ``'fp32'`` (default) or ``'bf16'``: training matmuls in bfloat16 under autocast
        (weights, optimiser state, bounds and all evaluations stay float32). Faster on
        CPUs with AVX512-BF16/AMX and on GPUs; see docs/mine.md's speed benchmark for what
        it changes in accuracy.
    lr_decay : bool or 'auto'
        Halve the learning rate (restarting from the best critic so far) after
        ``patience // 2`` evaluations without improvement; training stops after
        ``patience``. ``'auto'`` (default): off for the hybrid critic, whose training starts
        from the Gaussian answer and stops when it cannot beat it (halving there only slows
        the families that do improve: measured in docs/mine.md, "Stopping rule"); on for
        every other critic, which starts from nothing and needs the fine steps.
    n_restarts : int
        Independent critics (restart r initialised and batched from the streams
        ``restart<r>/init`` and ``restart<r>/batches`` derived from ``random_state``,
        :func:`deepscope.train.rng.derive_seed`); the one with the best
        validation bound gives ``mi_``; all test values are in ``restarts_``.
    n_bootstrap : int
        Bootstrap resamples for ``ci_``.
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'``...
    random_state : int >= 0 or None
        Seed of the split, the critic initialisation and the batches: each is a named stream
        derived from it (``split``, ``restart<r>/init``, ``restart<r>/batches``, ``val-pairs``,
        ``test-pairs``, ``bootstrap``), so no two coincide. None: 0.
    verbose : bool
        Show a progress bar.
    flow_options : dict or None
        Keyword arguments of :func:`deepscope.mi.flow.fit_flow_pair` for ``critic='flow'``
        (``transforms``, ``hidden``, ``lr``, ``batch_size``, ``max_steps``, ``eval_every``,
        ``patience``, ``clamp``); None: its defaults.

    Attributes
    ----------
    mi_ : float
        Held-out estimate in nats (test split, critic selected on validation).
    mi_bits_ : float
        ``mi_ / log 2``.
    ci_ : (float, float)
        95% percentile-bootstrap interval of the test estimate: test rows are
        resampled with replacement and the bound is recomputed from the cached
        critic scores of the selected critic. It covers the sampling noise of the
        test split, not the variation between training runs (see ``restarts_``).
    restarts_ : list of dict
        Per restart: its index (``restart``), steps, best validation value, test value, whether training
        diverged, and the seconds spent in the training loop (validation included).
    history_ : list of dict
        Training curve of the selected restart: step, mean training bound since the
        last evaluation, validation bound.
    critic_ : nn.Module
        The selected critic (in eval mode), taking *transformed* inputs.
    warnings_ : list of str
        The caveats also issued as ``MIWarning``.
    n_train_, n_val_, n_test_ : int
    shrinkage_ : float
        The hybrid critic's covariance shrinkage (chosen on validation with ``'auto'``).
    gaussian_rank_ : int or None
        Canonical pairs in the hybrid critic's Gaussian part (None for other critics and for a
        Student-t part).
    dof_ : float
        Degrees of freedom of the hybrid critic's parametric part: ``inf`` for the Gaussian
        part, a number for a Student-t copula part (nan for other critics).
    timings_ : dict
        Seconds spent per stage of ``fit``: ``prepare_and_transform``, ``parametric_part``,
        ``train`` (steps only), ``validation``, ``test``, ``bootstrap`` and ``total``
        (and ``flow`` with ``critic='flow'``).
    flows_ : FlowPair or None
        With ``critic='flow'``: the fitted flows (``flow_history_``: their training curve).
    selection_ : dict
        With ``critic='select'`` or ``transform='auto'``: each candidate's validation bound
        and the ``'chosen'`` one (labels: ``'hybrid'``/``'flow'``, ``'gaussianize'``/
        ``'standardize'``, or both joined by ``/``).
    transform_ : str
        The transform the estimate used (``'auto'`` chooses one).
    readout_ : str
        What ``mi_`` is: the bound's own read-out, or ``'dv-clipped'`` where SMILE's clipped
        read-out stops being a bound (:func:`deepscope.mi.readout.stay_a_bound`).
    """

    def __init__(
        self,
        *,
        bound: bounds.Bound = "smile",
        critic: str | nn.Module = "auto",
        hidden: Sequence[int] = (64, 64),
        embed: int = 32,
        shrinkage: float | str = "auto",
        rank: int | str = "auto",
        dof: float | str = "auto",
        radial: bool = True,
        batch_size: int = 1024,
        lr: float = 1e-2,
        max_steps: int = 300,
        eval_every: int = 25,
        patience: int = 2,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        transform: str = "auto",
        ema_alpha: float = 0.01,
        tau: float = 5.0,
        eval_pairs: int = 50_000,
        precision: str = "fp32",
        lr_decay: bool | str = "auto",
        n_restarts: int = 1,
        n_bootstrap: int = 500,
        device: str = "auto",
        random_state: int | None = 0,
        verbose: bool = False,
        flow_options: dict | None = None,
    ) -> None:
        self.bound = bound
        self.critic = critic
        self.hidden = hidden
        self.embed = embed
        self.shrinkage = shrinkage
        self.rank = rank
        self.dof = dof
        self.radial = radial
        self.batch_size = batch_size
        self.lr = lr
        self.max_steps = max_steps
        self.eval_every = eval_every
        self.patience = patience
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.transform = transform
        self.ema_alpha = ema_alpha
        self.tau = tau
        self.eval_pairs = eval_pairs
        self.precision = precision
        self.lr_decay = lr_decay
        self.n_restarts = n_restarts
        self.n_bootstrap = n_bootstrap
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.flow_options = flow_options

    def _check_fitted(self) -> None:
        if not hasattr(self, "mi_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def validate(self, dim_x: int | None = None, dim_y: int | None = None) -> MINE:
        """Raise ``ValueError`` naming the first bad option (before any work); ``fit`` calls it.

        With the column counts, the checks that depend on them (``rank``) run too, so a command
        can refuse bad input before it writes anything. Returns ``self``.
        """
        self._check_params()
        if dim_x is not None and dim_y is not None:
            self._check_rank(dim_x, dim_y)
        return self

    def _check_rank(self, dim_x: int, dim_y: int) -> None:
        if self.rank != "auto" and self.rank > min(dim_x, dim_y):
            raise ValueError(f"rank == {self.rank}, must be <= min(dim_x, dim_y) == {min(dim_x, dim_y)}")

    def _check_params(self) -> None:
        bounds.check_bound(self.bound)
        hidden = tuple(self.hidden) if isinstance(self.hidden, (list, tuple)) else None
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden == {self.hidden!r}, must be a non-empty sequence of widths >= 1")
        if isinstance(self.embed, bool) or not isinstance(self.embed, int) or self.embed < 1:
            raise ValueError(f"embed == {self.embed!r}, must be an integer >= 1")
        if not (isinstance(self.critic, nn.Module) or self.critic in _CRITICS):
            raise ValueError(
                f"critic == {self.critic!r}; choose one of {_CRITICS} or pass an nn.Module"
            )
        if not (self.shrinkage == "auto" or (isinstance(self.shrinkage, (int, float))
                                             and 0 <= self.shrinkage <= 1)):
            raise ValueError(f"shrinkage == {self.shrinkage!r}, must be 'auto' or a number in [0, 1]")
        if not (self.rank == "auto" or (isinstance(self.rank, int) and not isinstance(self.rank, bool)
                                        and self.rank >= 0)):
            raise ValueError(f"rank == {self.rank!r}, must be 'auto' or an integer >= 0")
        if not (self.dof == "auto" or (isinstance(self.dof, (int, float)) and not isinstance(self.dof, bool)
                                       and self.dof > 0)):
            raise ValueError(f"dof == {self.dof!r}, must be 'auto', a number > 0 or math.inf (Gaussian)")
        if self.transform not in _TRANSFORMS:
            raise ValueError(f"transform == {self.transform!r}; choose one of {_TRANSFORMS}")
        if (self.dof != "auto" and math.isfinite(self.dof)
                and (self.transform != "gaussianize" or self.rank != "auto" or self.bound == "infonce")):
            raise ValueError(
                f"dof == {self.dof!r} needs the Student-t copula part, which reads normal scores at full "
                "rank: use transform='gaussianize', rank='auto' and a bound other than 'infonce', "
                "or dof='auto'"
            )
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision == {self.precision!r}; choose 'fp32' or 'bf16'")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, (int, np.integer)) or rs < 0):
            raise ValueError(f"random_state == {rs!r}, must be None or an integer >= 0")
        if self.flow_options is not None:
            from deepscope.mi.flow import check_flow_options

            check_flow_options(self.flow_options)
        if self.lr_decay not in (True, False, "auto"):
            raise ValueError(f"lr_decay == {self.lr_decay!r}; choose True, False or 'auto'")
        checks = [
            ("batch_size", self.batch_size, self.batch_size >= 2, ">= 2"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("max_steps", self.max_steps, self.max_steps >= 1, ">= 1"),
            ("eval_every", self.eval_every, self.eval_every >= 1, ">= 1"),
            ("patience", self.patience, self.patience >= 1, ">= 1"),
            ("n_restarts", self.n_restarts, self.n_restarts >= 1, ">= 1"),
            ("n_bootstrap", self.n_bootstrap, self.n_bootstrap >= 0, ">= 0"),
            ("eval_pairs", self.eval_pairs, self.eval_pairs >= 1, ">= 1"),
            ("val_fraction", self.val_fraction, 0 < self.val_fraction < 1, "in (0, 1)"),
            ("test_fraction", self.test_fraction, 0 < self.test_fraction < 1, "in (0, 1)"),
            ("ema_alpha", self.ema_alpha, 0 < self.ema_alpha <= 1, "in (0, 1]"),
            ("tau", self.tau, self.tau > 0, "> 0"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} == {value}, must be {allowed}")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction == {self.val_fraction + self.test_fraction}, "
                "must be < 0.9 to leave rows for training"
            )

    # -- fit ---------------------------------------------------------------
    def fit(self, x, y) -> MINE:
        """Train the critic(s) and estimate I(X;Y) on held-out rows.

        Parameters
        ----------
        x : (N, Dx) or (N,) array or tensor
        y : (N, Dy) or (N,) array or tensor
            Paired samples; numpy or torch, any float/int dtype, CPU or GPU.

        Returns
        -------
        self
        """
        from deepscope.train.distributed import resolve_device

        t_fit = time.perf_counter()
        timings: dict[str, float] = {}
        self._check_params()
        if self.critic == "select" or self.transform == "auto":  # candidates, by the validation bound
            return _fit_selected(self, x, y)
        self.transform_ = self.transform
        tx, ty = prepare_inputs(x, y)
        self._check_rank(tx.shape[1], ty.shape[1])
        dev = resolve_device(self.device)
        seed = 0 if self.random_state is None else int(self.random_state)
        n = tx.shape[0]
        n_test = max(int(round(n * self.test_fraction)), 2)
        n_val = max(int(round(n * self.val_fraction)), 2)
        n_train = n - n_val - n_test
        if n_train < self.batch_size:
            if n_train < 16:
                raise ValueError(f"only {n_train} training rows after the splits; pass more rows")
            bs = n_train
        else:
            bs = self.batch_size
        self.n_train_, self.n_val_, self.n_test_ = n_train, n_val, n_test

        # One shuffled float32 copy of each input on the device; the splits are views of it.
        g = make_generator(seed, "split")
        order = torch.randperm(n, generator=g)
        xs, ys = self._shuffled_copy(tx, order, dev), self._shuffled_copy(ty, order, dev)
        self._fit_transform(xs, n_train, seed)
        self._fit_transform(ys, n_train, seed, which="y")
        splits = {
            "train": (xs[:n_train], ys[:n_train]),
            "val": (xs[n_train : n_train + n_val], ys[n_train : n_train + n_val]),
            "test": (xs[n_train + n_val :], ys[n_train + n_val :]),
        }
        dims = (xs.shape[1], ys.shape[1])

        self.warnings_ = []
        timings["prepare_and_transform"] = time.perf_counter() - t_fit
        # critic="flow" maps the splits by flows fitted on the training rows, then
        # fits the hybrid critic on the mapped rows (deepscope.mi.flow) --
        self.flows_, self.flow_history_ = None, None
        if self.critic == "flow":
            from deepscope.mi.flow import fit_flow_pair, map_splits

            t = time.perf_counter()
            self.flows_, self.flow_history_ = fit_flow_pair(splits, seed=seed, **(self.flow_options or {}))
            splits = map_splits(self.flows_, splits)
            timings["flow"] = time.perf_counter() - t
        t = time.perf_counter()
        self._parametric_part, self.shrinkage_, self.gaussian_rank_, self.dof_ = None, math.nan, None, math.nan
        if self._critic_kind() == "hybrid":
            self._parametric_part = self._fit_parametric_part(splits, seed)
        timings["parametric_part"] = time.perf_counter() - t
        runs = []
        for r in range(self.n_restarts):
            runs.append(self._train_one(splits, dims, bs, seed, r, dev))
        timings["train"] = sum(rr["train_seconds"] - rr["val_seconds"] for rr in runs)
        timings["validation"] = sum(rr["val_seconds"] for rr in runs)
        best = max(runs, key=lambda rr: rr["val"])
        if self.bound != "infonce":  # how far the chosen critic's validation joint scores pass tau
            from deepscope.mi.readout import smile_excess

            with torch.no_grad():
                self._val_excess = smile_excess(_scores(best["critic"], *splits["val"]), tau=self.tau)
        t = time.perf_counter()
        test_values = []
        for rr in runs:
            value, per_row = self._evaluate(rr["critic"], *splits["test"], seed=derive_seed(seed, "test-pairs"),
                                            bs=bs)
            rr["test"] = value
            rr["per_row"] = per_row
            test_values.append(value)
        # SMILE's clipped read-out stops being a bound for near-deterministic pairs
        # (past log N_test, joint scores past tau); the clipped critic's DV bound replaces it --
        self.readout_ = self.bound
        if self.bound == "smile":
            from deepscope.mi.readout import stay_a_bound

            for rr in runs:
                per_row, value, readout = stay_a_bound(rr["per_row"], tau=self.tau, ceiling=math.log(n_test))
                if readout != "smile":
                    rr["per_row"], rr["test"] = per_row, value
                    if rr is best:
                        self.readout_ = readout
            if self.readout_ != "smile":
                self._warn(
                    f"joint scores above tau = {self.tau} (near-deterministic pairs): SMILE's clipped "
                    "read-out is not a bound here, so the estimate is the DV bound of the critic "
                    f"clipped to [-tau, tau] (at most {2 * self.tau:g} nats; deepscope.mi.readout)"
                )
        timings["test"] = time.perf_counter() - t
        self.critic_ = best["critic"]
        if self.flows_ is not None:  # the critic reads flow-mapped rows
            from deepscope.mi.flow import FlowCritic

            self.critic_ = FlowCritic(self.flows_, self.critic_)
        self.history_ = best["history"]
        self.mi_ = float(best["test"])
        self.mi_bits_ = self.mi_ / math.log(2)
        t = time.perf_counter()
        self.ci_ = self._bootstrap(best["per_row"], derive_seed(seed, "bootstrap"))
        timings["bootstrap"] = time.perf_counter() - t
        self.restarts_ = [
            {"restart": rr["restart"], "steps": rr["steps"], "val": rr["val"], "test": rr["test"],
             "diverged": rr["diverged"], "train_seconds": rr["train_seconds"]}
            for rr in runs
        ]
        self.batch_size_ = bs
        self._warn_ceilings(bs)
        if (math.isfinite(best["val"]) and self.readout_ == self.bound  # same read-out only
                and best["val"] - self.mi_ > max(0.25, 0.25 * abs(best["val"]))):
            # validation and test rows come from the same distribution: a gap this size means a
            # few held-out pairs dominate the read-out (heavy tails, a critic that extrapolates)
            fix = ("use bound='smile' (clipped read-out) or more rows" if self.bound != "smile"
                   else "the estimate is noisy: use more rows or a larger test_fraction")
            self._warn(
                f"test estimate {self.mi_:.3f} nats is far below the same critic's validation bound "
                f"{best['val']:.3f}: a few held-out pairs dominate the read-out; {fix}"
            )
        timings["total"] = time.perf_counter() - t_fit
        self.timings_ = timings
        return self

    @staticmethod
    def _shuffled_copy(t: torch.Tensor, order: torch.Tensor, dev: torch.device) -> torch.Tensor:
        out = torch.empty(t.shape, dtype=torch.float32, device=dev)
        order = order.to(t.device)
        step = _rows(t)
        for s in range(0, t.shape[0], step):  # chunked: no full-size temporary
            out[s : s + step] = t[order[s : s + step]].to(dev, torch.float32)
        return out

    def _fit_transform(self, t: torch.Tensor, n_train: int, seed: int, which: str = "x") -> None:
        """Fit the transform on the first n_train rows and apply it in place to all rows."""
        if self.transform == "none":
            return
        if self.transform == "gaussianize":
            gz = _Gaussianizer(t[:n_train].cpu(), seed=seed)
            if t.device.type == "cpu":
                gz(t)
            else:
                tmp = t.cpu()
                gz(tmp)
                t.copy_(tmp)
            setattr(self, f"gaussianizer_{which}_", gz)
            return
        mean, std = _chunked_mean_std(t[:n_train])
        mean, std = mean.float(), std.float().clamp_min(1e-12)
        step = _rows(t)
        for s in range(0, t.shape[0], step):
            t[s : s + step].sub_(mean).div_(std)
        setattr(self, f"scale_{which}_", (mean.cpu(), std.cpu()))

    def _critic_kind(self) -> str | None:
        if isinstance(self.critic, nn.Module):
            return None
        if self.critic in ("flow", "select"):  # the hybrid critic, on flow-mapped rows
            return "hybrid"
        if self.critic == "auto":
            return "separable" if self.bound == "infonce" else "hybrid"
        return self.critic

    def _fit_parametric_part(self, splits, seed: int) -> dict[str, torch.Tensor]:
        """The hybrid critic's parametric part, fitted on the training rows: its buffers.

        The Gaussian part's covariance shrinkage is ``self.shrinkage`` and its number of
        canonical pairs ``self.rank``; each ``'auto'`` one is chosen by the Gaussian ratio's own
        bound on the validation rows (no training involved). Every rank of one shrinkage is
        scored at once: the ratio is a sum over canonical pairs, so the scores of rank k are a
        cumulative sum (:func:`~deepscope.mi.critics.canonical_terms`). With ``dof='auto'`` the
        Student-t copula parts (correlation of the chosen shrinkage, full rank) are scored on
        the same validation pairs, and the best of all is kept (``dof_``).
        """
        xtr, ytr = splits["train"]
        xv, yv = splits["val"]
        dx, k_max = xtr.shape[1], min(xtr.shape[1], ytr.shape[1])
        grid = _SHRINKAGE_GRID if self.shrinkage == "auto" else (float(self.shrinkage),)
        moments = gaussian_moments(xtr, ytr)
        mu = moments[0]
        fixed_rank = None if self.rank == "auto" else int(self.rank)
        self.dof_ = math.inf
        if self.dof != "auto" and math.isfinite(self.dof):  # a fixed Student-t part
            self.shrinkage_, self.gaussian_rank_, self.dof_ = grid[0], None, float(self.dof)
            return self._student_t_part(moments, grid[0], dx, self.dof_)
        gaussian = lambda lam, k: dict(zip(("mu", "m", "c"), gaussian_log_ratio(  # noqa: E731
            xtr, ytr, shrinkage=lam, rank=k, moments=moments)))
        if (len(grid) == 1 and fixed_rank is not None) or self.bound == "infonce":
            # nothing to choose (InfoNCE's K x K read-out is not scored here: full rank)
            self.shrinkage_, self.gaussian_rank_ = grid[0], k_max if fixed_rank is None else fixed_rank
            return gaussian(grid[0], fixed_rank)
        rows, cols = _shuffle_pairs(xv.shape[0], self._val_pairs(), derive_seed(seed, "val-pairs"), xv.device)
        xc, yc = (xv - mu[:dx].to(xv)).double(), (yv - mu[dx:].to(yv)).double()
        best_val, choice = -math.inf, (grid[0], 0)
        for lam in grid:
            wx, wy, r = canonical_pairs(shrink_covariance(moments[1], lam), dx)
            a, b = xc @ wx.T, yc @ wy.T
            # column k: the rank-k ratio's scores (column 0: rank 0, all zero)
            tj = F.pad(canonical_terms(a, b, r).cumsum(1), (1, 0))
            tm = F.pad(canonical_terms(a[rows], b[cols], r).cumsum(1), (1, 0))
            if fixed_rank is not None:
                tj, tm = tj[:, fixed_rank : fixed_rank + 1], tm[:, fixed_rank : fixed_rank + 1]
            # every rank's bound at once: a column's DV-type value needs only its joint mean
            # and the log-mean-exp of its (clipped) marginal scores
            vals = self._dv_value(tj.mean(0), bounds.logmeanexp(self._clip(tm), dim=0))
            k = int(torch.argmax(vals))  # the first (lowest) rank on ties
            if float(vals[k]) > best_val:
                best_val, choice = float(vals[k]), (lam, k if fixed_rank is None else fixed_rank)
        self.shrinkage_, self.gaussian_rank_ = choice
        part = gaussian(*choice)
        if self.dof == "auto" and fixed_rank is None and self.transform == "gaussianize":
            for nu in _DOF_GRID:  # Student-t copula parts: strictly better on validation to be kept
                t_part = self._student_t_part(moments, choice[0], dx, nu)
                with torch.random.fork_rng(devices=[]):  # the unused MLP's init leaves the global RNG
                    q = HybridCritic(dx, yv.shape[1], hidden=(1,), **t_part).to(xv.device)
                with torch.no_grad():
                    val = float(self._dv_value(q.parametric(xv, yv).double().mean(), bounds.logmeanexp(
                        self._clip(q.scores_at(xv, yv, rows, cols).double()), dim=0)))
                if val > best_val:
                    best_val, part, self.dof_, self.gaussian_rank_ = val, t_part, nu, None
        return part

    @staticmethod
    def _student_t_part(moments, shrinkage: float, dx: int, dof: float) -> dict[str, torch.Tensor]:
        s = shrink_covariance(moments[1], shrinkage)
        sd = torch.diagonal(s).sqrt()
        return student_t_copula_ratio(s / torch.outer(sd, sd), dx, dof)

    def _val_pairs(self) -> int:
        # A fifth of the test's marginal pairs: the joint term's noise dominates anyway.
        return max(1, self.eval_pairs // 5)

    def _new_critic(self, dims: tuple[int, int], seed: int, dev: torch.device) -> nn.Module:
        # The initialisation draws from its own seed; the caller's global RNG is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if isinstance(self.critic, nn.Module):
                c = copy.deepcopy(self.critic)
                for m in c.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
            elif self._critic_kind() == "hybrid":
                c = HybridCritic(*dims, hidden=self.hidden, radial=self.radial, **self._parametric_part)
            else:
                c = make_critic(self._critic_kind(), *dims, hidden=self.hidden, embed=self.embed)
        return c.to(dev)

    def _train_one(self, splits, dims, bs, seed: int, restart: int, dev) -> dict:
        """Train restart ``restart``: its critic's initialisation and batches are the named
        streams ``restart<r>/init`` and ``restart<r>/batches`` of ``seed``; every restart is
        validated on the same pairs (``val-pairs``, as the Gaussian part's choice is)."""
        from contextlib import nullcontext

        critic = self._new_critic(dims, derive_seed(seed, f"restart{restart}/init"), dev)
        gen = make_generator(seed, f"restart{restart}/batches")
        val_seed = derive_seed(seed, "val-pairs")
        opt = _Adam(critic.parameters(), lr=self.lr)
        xtr, ytr = splits["train"]
        n_train = xtr.shape[0]
        history, log_ema, diverged = [], None, False
        running, n_running = 0.0, 0
        val_seconds = 0.0
        t_start = time.perf_counter()

        def validate(step: int) -> float:
            nonlocal running, n_running, val_seconds
            t = time.perf_counter()
            val, _ = self._evaluate(critic, *splits["val"], seed=val_seed, bs=bs, pairs=self._val_pairs())
            val_seconds += time.perf_counter() - t
            history.append({"step": step, "train": running / n_running if n_running else math.nan, "val": val})
            running, n_running = 0.0, 0
            return val

        # The untrained critic is a candidate too: the hybrid critic starts at the Gaussian
        # ratio, which training must beat on validation to replace.
        best_val = validate(0)
        best_state = copy.deepcopy(critic.state_dict()) if math.isfinite(best_val) else None
        if best_state is None:
            best_val = -math.inf
        since_best = 0
        perm = torch.randperm(n_train, generator=gen).to(dev)
        pos = 0
        steps_done = 0
        amp = _autocast(self.precision, dev)
        decay = self.lr_decay if self.lr_decay != "auto" else self._critic_kind() != "hybrid"
        bar = _progress(self.verbose, self.max_steps, f"MINE restart {restart}")
        with bar if bar is not None else nullcontext():
            task = bar.add_task("train", total=self.max_steps) if bar is not None else None
            for step in range(1, self.max_steps + 1):
                if pos + bs > n_train:
                    perm = torch.randperm(n_train, generator=gen).to(dev)
                    pos = 0
                idx = perm[pos : pos + bs]
                pos += bs
                xb, yb = xtr[idx], ytr[idx]
                with amp:
                    value, log_ema = bound_on_batch(critic, xb, yb, bound=self.bound, generator=gen,
                                                    log_ema=log_ema, alpha=self.ema_alpha, tau=self.tau)
                opt.zero_grad()
                (-value).backward()
                opt.step()
                running += value.item()
                n_running += 1
                steps_done = step
                if not math.isfinite(running):
                    diverged = True
                    break
                if step % self.eval_every == 0 or step == self.max_steps:
                    val = validate(step)
                    if not math.isfinite(val):
                        diverged = True
                        break
                    if val > best_val:
                        best_val, since_best = val, 0
                        best_state = copy.deepcopy(critic.state_dict())
                    else:
                        since_best += 1
                        if since_best >= self.patience:
                            break
                        # Halve the step size on a plateau, from the best critic so far:
                        # the bound's last nats come from fine steps, not more coarse ones.
                        if decay and since_best % max(1, self.patience // 2) == 0:
                            critic.load_state_dict(best_state)
                            opt.lr *= 0.5
                    if bar is not None:
                        bar.update(task, completed=step, description=f"val {val:.3f} nats")
        train_seconds = time.perf_counter() - t_start
        if best_state is None:  # diverged before the first evaluation
            best_val = -math.inf
        else:
            critic.load_state_dict(best_state)
        critic.eval()
        if diverged:
            self._warn(
                f"training of restart {restart} diverged (non-finite bound at step {steps_done}); "
                "the best critic before that is used. Try a smaller lr, bound='smile' or bound='nwj'"
            )
        return {"critic": critic, "val": best_val, "history": history, "restart": restart,
                "steps": steps_done, "diverged": diverged, "train_seconds": train_seconds,
                "val_seconds": val_seconds}

    @torch.no_grad()
    def _evaluate(self, critic, x, y, *, seed: int, bs: int, pairs: int | None = None) -> tuple[float, np.ndarray]:
        """The bound on held-out rows; also per-row contributions for the bootstrap.

        DV-type bounds: joint scores on all n rows, marginal scores on R shuffles of y
        (R = pairs / n, at least 1; pairs defaults to eval_pairs). InfoNCE: the K x K bound averaged over
        consecutive batches of the training batch size (its value depends on K).
        """
        was_training = critic.training
        critic.eval()
        n = x.shape[0]
        try:
            if self.bound == "infonce":
                rows = []
                for s in range(0, n - bs + 1, bs):
                    rows.append(bounds.infonce_rows(pairwise_scores(critic, x[s : s + bs], y[s : s + bs])).cpu())
                if not rows:  # fewer held-out rows than a batch
                    rows.append(bounds.infonce_rows(pairwise_scores(critic, x, y)).cpu())
                per_row = torch.cat(rows).double().numpy()
                return float(per_row.mean()), per_row
            tj = torch.cat([_scores(critic, x[s : s + _EVAL_ROWS], y[s : s + _EVAL_ROWS])
                            for s in range(0, n, _EVAL_ROWS)])
            rows, cols = _shuffle_pairs(n, pairs or self.eval_pairs, seed, x.device)
            reps = rows.shape[0] // n
            if hasattr(critic, "scores_at"):  # per-row work (first layer, parametric part) done once
                def at(r, c):
                    return critic.scores_at(x, y, r, c)
            else:
                def at(r, c):
                    return _scores(critic, x[r], y[c])
            tm = torch.cat([at(rows[s : s + _EVAL_ROWS], cols[s : s + _EVAL_ROWS])
                            for s in range(0, rows.numel(), _EVAL_ROWS)]).double().cpu().reshape(reps, n).T
            tj = tj.double().cpu()
            value = float(self._bound_value(tj, tm))
            return value, np.concatenate([tj.numpy()[:, None], tm.numpy()], axis=1)
        finally:
            critic.train(was_training)

    def _bound_value(self, tj: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
        return bounds.evaluate(self.bound, tj, tm.reshape(-1), tau=self.tau)

    def _clip(self, tm: torch.Tensor) -> torch.Tensor:
        return tm.clamp(-self.tau, self.tau) if self.bound == "smile" else tm

    def _dv_value(self, joint: torch.Tensor, lme: torch.Tensor) -> torch.Tensor:
        """The reported value of a DV-type bound (DV, MINE, SMILE, NWJ) from the mean joint score
        and the log-mean-exp of the (clipped, :meth:`_clip`) marginal scores, elementwise: the
        formulas of bounds.dv / bounds.nwj / bounds.smile (a test checks them against
        :meth:`_bound_value`)."""
        return joint - torch.exp(lme - 1.0) if self.bound == "nwj" else joint - lme

    def _bootstrap(self, per_row: np.ndarray, seed: int) -> tuple[float, float]:
        if self.n_bootstrap == 0:
            return (math.nan, math.nan)
        rng = np.random.default_rng(seed)
        n = per_row.shape[0]
        idx = torch.from_numpy(rng.integers(0, n, (self.n_bootstrap, n)))
        if per_row.ndim == 1:  # InfoNCE: per-row terms
            vals = torch.from_numpy(per_row)[idx].mean(1).numpy()
        else:
            # DV, NWJ and SMILE see the marginal scores only through their log-mean-exp, and
            # every row holds the same number of them: each row's log-mean-exp stands in for
            # its scores exactly (SMILE's clipping first), so a resample costs O(rows).
            tj = torch.from_numpy(per_row[:, 0])
            row_lme = bounds.logmeanexp(self._clip(torch.from_numpy(per_row[:, 1:])), dim=1)
            # all resamples at once: (B, n) joint scores and row log-mean-exps
            lme = bounds.logmeanexp(row_lme[idx], dim=1)
            vals = self._dv_value(tj[idx].mean(1), lme).numpy()
        lo, hi = np.percentile(vals, [2.5, 97.5])
        return (float(lo), float(hi))

    def _warn(self, msg: str) -> None:
        self.warnings_.append(msg)
        warnings.warn(msg, MIWarning, stacklevel=3)

    def _warn_ceilings(self, bs: int) -> None:
        # InfoNCE approaches log K only slowly: at 80% of it the estimate is already capped.
        if self.bound == "infonce" and self.mi_ >= 0.8 * math.log(bs):
            self._warn(
                f"InfoNCE estimate {self.mi_:.3f} nats is at its ceiling log(batch_size) = "
                f"{math.log(bs):.3f}; the true MI may be higher: raise batch_size or use bound='mine'/'smile'"
            )
        ceiling = math.log(self.n_test_)
        if self.mi_ > ceiling:
            self._warn(
                f"estimate {self.mi_:.3f} nats exceeds log(N_test) = {ceiling:.3f}, the most any "
                "distribution-free lower bound can certify from this many samples (McAllester & "
                "Stratos 2020): the pairs look (nearly) deterministic, the MI is very large or "
                "infinite, and this number is not a measurement of it"
            )
        elif self.mi_ >= 0.9 * ceiling:
            self._warn(
                f"estimate {self.mi_:.3f} nats is near log(N_test) = {ceiling:.3f}, the most any "
                "distribution-free lower bound can certify from this many samples (McAllester & "
                "Stratos 2020); the true MI may be higher: use more rows"
            )

    # -- after fit -----------------------------------------------------------
    def transform_inputs(self, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the transform fitted on the training split to new inputs."""
        self._check_fitted()
        tx, ty = prepare_inputs(x, y, min_rows=2)
        dev = next(self.critic_.parameters()).device
        out = []
        for t, which in ((tx, "x"), (ty, "y")):
            t = t.to(dev, torch.float32).clone()
            if self.transform_ == "standardize":
                mean, std = getattr(self, f"scale_{which}_")
                t = (t - mean.to(dev)) / std.to(dev)
            elif self.transform_ == "gaussianize":
                tc = t.cpu()
                getattr(self, f"gaussianizer_{which}_")(tc)
                t = tc.to(dev)
            out.append(t)
        return out[0], out[1]

    def score(self, x, y) -> float:
        """The fitted critic's bound on new paired data (nats), with the fitted transform."""
        tx, ty = self.transform_inputs(x, y)
        seed = derive_seed(0 if self.random_state is None else int(self.random_state), "score-pairs")
        return self._evaluate(self.critic_, tx, ty, seed=seed, bs=min(self.batch_size_, tx.shape[0]))[0]


def _shuffle_pairs(n: int, pairs: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the marginal pairs of a held-out read-out.

    R = pairs // n repeats (1 <= R <= n - 1), each a random permutation shifted by one, so no row
    is paired with itself; repeat r holds rows 0 .. n - 1 in order.
    """
    g = torch.Generator().manual_seed(seed)
    reps = max(1, min(pairs // n, n - 1))
    shuffled = torch.empty(reps, n, dtype=torch.long)
    for r in range(reps):
        p = torch.randperm(n, generator=g)
        shuffled[r, p] = p.roll(1)
    return torch.arange(n).repeat(reps).to(device), shuffled.reshape(-1).to(device)


def _scores(critic: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    t = critic(x, y)
    return t[:, 0] if t.ndim == 2 else t


def _fit_selected(est, x, y):
    """Fit one estimator per candidate and keep the best on validation.

    The candidates are the critics of ``critic='select'`` (hybrid, flow) and the transforms of
    ``transform='auto'`` (gaussianize, standardize), crossed; a concrete option is its own
    only candidate. Every candidate sees the same split and validation pairs (the same
    ``random_state``), so their validation bounds compare like for like; the test split is
    read once: only the chosen candidate's test bound is kept. Ties go to the first candidate
    (the hybrid critic, the cheaper one; gaussianize). The fitted attributes of the chosen
    estimator are copied onto ``est``; ``est.selection_`` holds each candidate's validation
    bound under its label (what varies: ``'flow'``, ``'standardize'`` or
    ``'flow/standardize'``) and the choice, ``est.timings_["total"]`` the seconds of all
    candidates. Warnings of the candidates not chosen are dropped. A standardised candidate
    whose validation joint scores pass ``tau`` by more than :data:`deepscope.mi.readout.TOL`
    nats on average (heavy tails on the raw coordinates) is not eligible.
    """
    import itertools
    import time
    import warnings

    t0 = time.perf_counter()
    params = est.get_params()
    critics = ("hybrid", "flow") if est.critic == "select" else (est.critic,)
    transforms = _AUTO_TRANSFORMS if est.transform == "auto" else (est.transform,)
    fits, vals = {}, {}
    for critic, transform in itertools.product(critics, transforms):
        label = "/".join(part for part, options in ((critic, critics), (transform, transforms))
                         if len(options) > 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[label] = type(est)(**{**params, "critic": critic, "transform": transform}).fit(x, y)
        vals[label] = max(r["val"] for r in fits[label].restarts_)
    # A standardised candidate stands only where its validation joint scores stay under tau:
    # on heavy-tailed raw coordinates a few rows dominate both held-out bounds (e.g. 52.9 nats on
    # validation for a true 0.19), while Gaussianised inputs are bounded by construction.
    from deepscope.mi.readout import TOL

    labels = [k for k in fits if fits[k].transform_ != "standardize"
              or getattr(fits[k], "_val_excess", 0.0) <= TOL] or list(fits)
    chosen = max(labels, key=lambda k: (vals[k], -labels.index(k)))
    for key, value in vars(fits[chosen]).items():
        if key.endswith("_") and not key.startswith("_"):
            setattr(est, key, value)
    est._parametric_part = fits[chosen]._parametric_part
    est.selection_ = {**vals, "chosen": chosen}
    est.timings_ = {**fits[chosen].timings_, "total": time.perf_counter() - t0}
    for msg in est.warnings_:
        warnings.warn(msg, MIWarning, stacklevel=3)
    return est


def _autocast(precision: str, dev: torch.device):
    from contextlib import nullcontext

    if precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return nullcontext()


class _Adam:
    """Adam (Kingma & Ba 2015, arXiv 1412.6980) as ``torch.optim.Adam`` computes it (foreach ops).

    Not ``torch.optim.Adam`` because creating any ``torch.optim`` optimiser imports
    ``torch._dynamo`` (about a second on an idle CPU, several on a loaded one): more than
    the whole training of a default estimate. tests/mi/test_estimator.py checks that both
    give the same parameters after a few steps.
    """

    def __init__(self, params, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        b1, b2 = self.betas
        self.t += 1
        torch._foreach_lerp_(self.m, grads, 1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(1 - b2**self.t))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-self.lr / (1 - b1**self.t))


def _progress(verbose: bool, total: int, desc: str):
    if not verbose:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
