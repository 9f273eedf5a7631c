"""Seeded label noise: symmetric, asymmetric (class maps) and instance-dependent.

>>> import torch
>>> from deepscope.data.noise import symmetric_noise, asymmetric_noise, make_label_noise
>>> y = torch.arange(10).repeat(100)                           # 1,000 labels, 100 per class
>>> g = torch.Generator().manual_seed(0)
>>> noisy = symmetric_noise(y, 0.4, num_classes=10, generator=g, include_true=False)
>>> noisy.rate                                                  # exactly 40 per class flipped
0.4
>>> noisy.labels.shape, noisy.corrupted.sum().item(), noisy.transition.shape
(torch.Size([1000]), 400, torch.Size([10, 10]))
>>> asym = asymmetric_noise(y, 0.4, mapping="cifar10", generator=g)   # 9->1, 2->0, 4->7, 3<->5
>>> asym.rate                                                   # 5 of the 10 classes can flip
0.2
>>> same = make_label_noise(y, "sym40", num_classes=10, generator=torch.Generator().manual_seed(0))
>>> import numpy as np
>>> make_label_noise(np.arange(10).repeat(10), "sym40", num_classes=10).labels.dtype  # numpy in
torch.int64

Every generator returns a :class:`LabelNoise`: the noisy labels, the corrupted mask
(``noisy != clean``), the realised rate (the mask's mean), and the transition matrix
``T[i, j] = P(noisy = j | clean = i)`` of the process that drew them.

Conventions (arXiv 2212.01674 follows DivideMix, arXiv 2002.07394):

- **symmetric, over all classes** (``include_true=True``, DivideMix): a fraction ``rate`` of
  each class is *re-drawn* uniformly over all K classes, the true class included, so the
  realised flip rate is about ``rate * (K - 1) / K``. ``T = (1 - rate) I + rate / K``.
- **symmetric, over the other classes** (``include_true=False``): a fraction ``rate`` of each
  class is moved to one of the other K - 1 classes, uniformly; the realised rate is ``rate``
  (up to rounding per class). ``T = (1 - rate) I + rate / (K - 1) (1 - I)``.
- **asymmetric**: a fraction ``rate`` of each class ``c`` with ``map[c] != c`` is relabelled
  ``map[c]``: the CIFAR-10 map (truck->automobile, bird->airplane, deer->horse, cat<->dog:
  9->1, 2->0, 4->7, 3<->5), CIFAR-100's next class within its superclass, or a cyclic map
  ``c -> (c + shift) mod K``. ``T[c, c] = 1 - rate``, ``T[c, map[c]] = rate``.
- **instance-dependent** (Xia et al. 2020, arXiv 2006.07836, Algorithm 1): per-example flip
  rates from a normal truncated to [0, 1], flip directions from a random linear map of the input.

Per-class counts are exact: class ``c`` with ``n_c`` examples has ``floor(rate * n_c + 1/2)``
examples selected, chosen uniformly without replacement, so realised rates are reproducible to
the example, not only in expectation. Everything draws from the given ``torch.Generator``
(``generator=None``: PyTorch's default one, as ``torch.randn`` does).

Labels (and the inputs of instance-dependent noise) may be numpy arrays or torch tensors; the
:class:`LabelNoise` returned always holds torch tensors (``noisy.labels.numpy()`` for numpy).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deepscope.train.loop import generator_or_default

__all__ = [
    "LabelNoise", "symmetric_noise", "asymmetric_noise", "instance_noise", "make_label_noise",
    "parse_noise", "class_map", "cyclic_map", "CIFAR10_ASYMMETRIC_MAP", "CIFAR100_COARSE",
    "cifar100_superclass_map", "NOISE_KINDS",
]

#: CIFAR-10 asymmetric map: truck->automobile (9->1), bird->airplane (2->0), deer->horse (4->7),
#: cat<->dog (3<->5); the other classes keep their labels.
CIFAR10_ASYMMETRIC_MAP: tuple[int, ...] = (0, 1, 0, 5, 7, 3, 6, 7, 8, 1)

#: CIFAR-100 superclass (coarse label, 0..19) of each fine label 0..99, as in the dataset's
#: ``train`` file (fine labels are alphabetical: apple -> fruit_and_vegetables (4), ...).
CIFAR100_COARSE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)

#: Kinds accepted by :func:`make_label_noise` / :func:`parse_noise`.
NOISE_KINDS = ("sym", "symother", "asym", "cyclic", "idn")


@dataclass(frozen=True)
class LabelNoise:
    """Noisy labels with what produced them.

    Attributes
    ----------
    labels : (N,) int64 tensor
        The noisy labels.
    clean : (N,) int64 tensor
        The labels given to the generator.
    corrupted : (N,) bool tensor
        ``labels != clean``.
    transition : (K, K) float64 tensor
        ``T[i, j] = P(noisy = j | clean = i)`` of the generating process (for instance-dependent
        noise: the mean, over the examples of clean class ``i``, of their own rows).
    kind : str
        'sym', 'symother', 'asym', 'cyclic' or 'idn'.
    nominal_rate : float
        The ``rate`` asked for.
    instance_transition : (N, K) float64 tensor or None
        Instance-dependent noise only: each example's distribution of its noisy label.
    """

    labels: torch.Tensor
    clean: torch.Tensor
    corrupted: torch.Tensor
    transition: torch.Tensor
    kind: str
    nominal_rate: float
    instance_transition: torch.Tensor | None = None

    @property
    def rate(self) -> float:
        """Realised fraction of corrupted labels, ``corrupted.mean()``."""
        return float(self.corrupted.double().mean()) if self.corrupted.numel() else 0.0

    @property
    def num_classes(self) -> int:
        return int(self.transition.shape[0])

    def empirical_transition(self) -> torch.Tensor:
        """(K, K) float64: row ``i`` is the distribution of noisy labels among clean class ``i``
        (a zero row for a class with no example)."""
        k = self.num_classes
        counts = torch.zeros(k, k, dtype=torch.float64)
        counts.index_put_((self.clean, self.labels), torch.ones(len(self.clean), dtype=torch.float64),
                          accumulate=True)
        return counts / counts.sum(1, keepdim=True).clamp_min(1)


# -- validation -------------------------------------------------------------------------------

def _check_labels(labels, num_classes: int) -> torch.Tensor:
    if type(labels).__module__ == "numpy":
        labels = torch.from_numpy(labels)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels is a {type(labels).__name__}, must be a 1-D integer numpy array "
                        "or torch.Tensor")
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels has shape {tuple(labels.shape)} and dtype {labels.dtype}, "
                         "must be a 1-D integer tensor")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes == {num_classes!r}, must be an integer >= 2")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels span {int(labels.min())}..{int(labels.max())}, must be in "
                         f"0..{num_classes - 1} (num_classes == {num_classes})")
    return labels.detach().cpu().long()


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate == {rate!r}, must be a number in [0, 1] (0.4 for 40% noise)")
    return float(rate)


def _select_per_class(clean: torch.Tensor, rate: float, classes: Sequence[int],
                      generator: torch.Generator) -> torch.Tensor:
    """Bool mask: ``floor(rate * n_c + 1/2)`` examples of each class in ``classes``, uniformly."""
    chosen = torch.zeros(len(clean), dtype=torch.bool)
    for c in classes:
        members = (clean == c).nonzero().squeeze(1)
        m = int(rate * len(members) + 0.5)
        if m:
            chosen[members[torch.randperm(len(members), generator=generator)[:m]]] = True
    return chosen


# -- symmetric ---------------------------------------------------------------------------------

def symmetric_noise(labels: torch.Tensor, rate: float, *, num_classes: int,
                    generator: torch.Generator | None = None, include_true: bool = True) -> LabelNoise:
    """Symmetric label noise.

    Parameters
    ----------
    labels : (N,) int tensor or numpy array
        Clean labels in ``0..num_classes-1``.
    rate : float in [0, 1]
        Fraction of each class whose label is re-drawn.
    num_classes : int
    generator : torch.Generator, optional
        Default: PyTorch's own.
    include_true : bool
        True (default, DivideMix's convention): the new label is uniform over all classes, so
        ``rate / K`` of the examples keep their label and the realised rate is about
        ``rate (K - 1) / K``. False: uniform over the other classes; the realised rate is
        ``rate`` up to rounding per class.

    Returns
    -------
    LabelNoise
    """
    clean = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    generator = generator_or_default(generator)
    k = num_classes
    chosen = _select_per_class(clean, rate, range(k), generator)
    noisy = clean.clone()
    m = int(chosen.sum())
    if include_true:
        noisy[chosen] = torch.randint(k, (m,), generator=generator)
        t = (1 - rate) * torch.eye(k, dtype=torch.float64) + rate / k
    else:
        r = torch.randint(k - 1, (m,), generator=generator)
        noisy[chosen] = r + (r >= clean[chosen]).long()  # skip the true class
        t = (1 - rate) * torch.eye(k, dtype=torch.float64) + rate / (k - 1) * (
            1 - torch.eye(k, dtype=torch.float64))
    return LabelNoise(noisy, clean, noisy != clean, t, "sym" if include_true else "symother", rate)


# -- asymmetric --------------------------------------------------------------------------------

def cyclic_map(num_classes: int, shift: int = 1) -> tuple[int, ...]:
    """``c -> (c + shift) mod num_classes``: a generic asymmetric map (shift != 0 mod K)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes == {num_classes!r}, must be an integer >= 2")
    if shift % num_classes == 0:
        raise ValueError(f"shift == {shift}, must not be a multiple of num_classes == {num_classes} "
                         "(that maps every class to itself)")
    return tuple((c + shift) % num_classes for c in range(num_classes))


def cifar100_superclass_map(superclasses: str = "coarse") -> tuple[int, ...]:
    """CIFAR-100's "next class within the superclass" map.

    Parameters
    ----------
    superclasses : 'coarse' or 'consecutive'
        'coarse' (default): the dataset's 20 superclasses (:data:`CIFAR100_COARSE`); within a
        superclass, fine labels in increasing order map to the next one, the last to the first.
        'consecutive': blocks of 5 consecutive fine labels (0-4, 5-9, ...), which is what the
        DivideMix line of code (and CrossSplit's released ``Asymmetric_Noise.py``) calls
        superclasses, although CIFAR-100's fine labels are alphabetical, not grouped.
    """
    if superclasses == "consecutive":
        groups = [list(range(5 * s, 5 * s + 5)) for s in range(20)]
    elif superclasses == "coarse":
        groups = [[f for f in range(100) if CIFAR100_COARSE[f] == s] for s in range(20)]
    else:
        raise ValueError(f"superclasses == {superclasses!r}, must be 'coarse' or 'consecutive'")
    out = [0] * 100
    for g in groups:
        for i, f in enumerate(g):
            out[f] = g[(i + 1) % len(g)]
    return tuple(out)


def class_map(mapping: str | Sequence[int], num_classes: int | None = None) -> tuple[int, ...]:
    """A class map by name ('cifar10', 'cifar100', 'cifar100-consecutive', 'cyclic') or as given.

    'cyclic' needs ``num_classes`` (shift 1). A sequence must hold, for each class, its target.
    """
    if isinstance(mapping, str):
        named = {"cifar10": lambda: CIFAR10_ASYMMETRIC_MAP,
                 "cifar100": lambda: cifar100_superclass_map("coarse"),
                 "cifar100-consecutive": lambda: cifar100_superclass_map("consecutive")}
        if mapping == "cyclic":
            if num_classes is None:
                raise ValueError("mapping == 'cyclic' needs num_classes")
            return cyclic_map(num_classes)
        if mapping not in named:
            raise ValueError(f"mapping == {mapping!r}, must be one of {sorted(named) + ['cyclic']} "
                             "or a sequence of target classes")
        out = named[mapping]()
    else:
        out = tuple(int(c) for c in mapping)
    k = len(out)
    if num_classes is not None and k != num_classes:
        raise ValueError(f"mapping has {k} entries, must have num_classes == {num_classes}")
    if k < 2 or any(not 0 <= c < k for c in out):
        raise ValueError(f"mapping == {out}, must map each of K >= 2 classes to a class in 0..K-1")
    return out


def asymmetric_noise(labels: torch.Tensor, rate: float, *, mapping: str | Sequence[int],
                     generator: torch.Generator | None = None,
                     num_classes: int | None = None) -> LabelNoise:
    """Class-dependent noise: a fraction ``rate`` of each class ``c`` becomes ``mapping[c]``.

    Parameters
    ----------
    labels : (N,) int tensor or numpy array
    rate : float in [0, 1]
    mapping : str or sequence of int
        'cifar10' (9->1, 2->0, 4->7, 3<->5), 'cifar100' (next class within the superclass),
        'cifar100-consecutive', 'cyclic' (``c -> c + 1 mod K``), or one target per class.
        Classes mapped to themselves never flip.
    generator : torch.Generator, optional
        Default: PyTorch's own.
    num_classes : int, optional
        Default: the mapping's length.

    Returns
    -------
    LabelNoise
        ``kind`` is 'cyclic' for the cyclic map, else 'asym'.
    """
    m = class_map(mapping, num_classes)
    k = len(m)
    clean = _check_labels(labels, k)
    rate = _check_rate(rate)
    generator = generator_or_default(generator)
    movable = [c for c in range(k) if m[c] != c]
    chosen = _select_per_class(clean, rate, movable, generator)
    target = torch.tensor(m, dtype=torch.long)
    noisy = torch.where(chosen, target[clean], clean)
    t = torch.eye(k, dtype=torch.float64)
    for c in movable:
        t[c, c] = 1 - rate
        t[c, m[c]] = rate
    kind = "cyclic" if mapping == "cyclic" or m == cyclic_map(k) else "asym"
    return LabelNoise(noisy, clean, noisy != clean, t, kind, rate)


# -- instance-dependent -------------------------------------------------------------------------

def instance_noise(labels: torch.Tensor, x: torch.Tensor, rate: float, *, num_classes: int,
                   generator: torch.Generator | None = None, std: float = 0.1) -> LabelNoise:
    """Instance-dependent noise of Xia et al. 2020 (arXiv 2006.07836, Algorithm 1).

    For each example, a flip rate ``q_i ~ N(rate, std^2)`` truncated to [0, 1]; one random
    matrix ``W_c ~ N(0, 1)`` of shape (D, K) per class; the noisy label is drawn from
    ``p_i = q_i * softmax(x_i W_{y_i})`` over the other classes (the true class's logit set to
    -inf) and ``p_i[y_i] = 1 - q_i``. The mean realised rate is about ``rate``.

    Parameters
    ----------
    labels : (N,) int tensor
    x : (N, ...) float tensor or numpy array
        Inputs, flattened to (N, D).
    rate : float in [0, 1]
        Mean flip rate.
    num_classes : int
    generator : torch.Generator, optional
        Default: PyTorch's own.
    std : float
        Standard deviation of the flip rates before truncation (0.1 in the paper).

    Returns
    -------
    LabelNoise
        With ``instance_transition`` (N, K): each example's ``p_i``; ``transition`` is its mean
        over the examples of each clean class.
    """
    clean = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    generator = generator_or_default(generator)
    if type(x).__module__ == "numpy":
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or len(x) != len(clean):
        raise ValueError(f"x must be a tensor with one row per label ({len(clean)}), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not std > 0:
        raise ValueError(f"std == {std!r}, must be > 0")
    k, n = num_classes, len(clean)
    feats = x.detach().cpu().reshape(n, -1).double()
    d = feats.shape[1]
    # truncated normal by inverse CDF: q = rate + std * Phi^-1(U(Phi(a), Phi(b)))
    lo = torch.special.ndtr(torch.tensor((0.0 - rate) / std, dtype=torch.float64))
    hi = torch.special.ndtr(torch.tensor((1.0 - rate) / std, dtype=torch.float64))
    u = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    q = (rate + std * torch.special.ndtri(u)).clamp(0.0, 1.0)
    w = torch.randn(k, d, k, generator=generator, dtype=torch.float64)
    logits = torch.einsum("nd,ndk->nk", feats, w[clean])
    logits[torch.arange(n), clean] = -torch.inf
    p = q[:, None] * torch.softmax(logits, dim=1)
    p[torch.arange(n), clean] = 1 - q
    noisy = torch.multinomial(p, 1, generator=generator).squeeze(1)
    t = torch.zeros(k, k, dtype=torch.float64)
    for c in range(k):
        members = clean == c
        t[c] = p[members].mean(0) if members.any() else torch.eye(k, dtype=torch.float64)[c]
    return LabelNoise(noisy, clean, noisy != clean, t, "idn", rate, instance_transition=p)


# -- by name -----------------------------------------------------------------------------------

_SPEC = re.compile(r"(symother|sym|asym|cyclic|idn)(\d{1,3})")


def parse_noise(spec: str) -> tuple[str, float]:
    """``'sym40'`` -> ``('sym', 0.4)``; kinds: 'sym', 'symother', 'asym', 'cyclic', 'idn'."""
    m = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if m is None or int(m.group(2)) > 100:
        raise ValueError(f"noise == {spec!r}, must be a kind among {list(NOISE_KINDS)} followed by "
                         "a percentage 0..100, e.g. 'sym40', 'asym40'")
    return m.group(1), int(m.group(2)) / 100


def make_label_noise(labels: torch.Tensor, spec: str, *, num_classes: int,
                     generator: torch.Generator | None = None, x: torch.Tensor | None = None,
                     asymmetric_map: str | Sequence[int] | None = None) -> LabelNoise:
    """Noise by name: ``'sym40'`` (DivideMix's symmetric), ``'symother40'``, ``'asym40'``,
    ``'cyclic40'``, ``'idn40'`` (needs ``x``).

    ``'asym'`` uses ``asymmetric_map``, by default 'cifar10' for 10 classes and 'cifar100' for
    100 classes, the cyclic map otherwise.
    """
    kind, rate = parse_noise(spec)
    if kind in ("sym", "symother"):
        return symmetric_noise(labels, rate, num_classes=num_classes, generator=generator,
                               include_true=kind == "sym")
    if kind == "idn":
        if x is None:
            raise ValueError(f"noise == {spec!r} is instance-dependent: pass the inputs x")
        return instance_noise(labels, x, rate, num_classes=num_classes, generator=generator)
    if kind == "cyclic":
        mapping: str | Sequence[int] = "cyclic"
    else:
        mapping = asymmetric_map or {10: "cifar10", 100: "cifar100"}.get(num_classes, "cyclic")
    return asymmetric_noise(labels, rate, mapping=mapping, generator=generator,
                            num_classes=num_classes)
