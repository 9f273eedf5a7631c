"""A3T: adversarial training with a discriminator on a hidden layer (Erraqabi et al., arXiv 1801.04055).

The classifier is split at a hidden layer into an encoder E and a head R (``R(E(x))`` is the
network's output). Each training step

1. makes adversarial examples by FGSM, ``x_adv = clip(x + ε·sign(∇ₓ CE(R(E(x)), y)))``
   (PGD as an option);
2. trains the discriminator D (an MLP on E's output, one logit: "this representation comes
   from a clean input") on ``BCE(D(E(x)), 1) + BCE(D(E(x_adv)), 0)``;
3. trains E and R on ``α·CE(R(E(x)), y) + (1 − α)·CE(R(E(x_adv)), y) − β·log D(E(x_adv))``:
   classify both, and make adversarial representations look clean to D.

>>> import torch
>>> from deepscope.robust.a3t import A3T
>>> from deepscope.robust.adversarial import train_robust
>>> g = torch.Generator().manual_seed(0)
>>> x, y = torch.rand(64, 8), torch.randint(3, (64,))
>>> a3t = A3T(eps=0.1, bounds=(0.0, 1.0))                      # D on the last hidden layer
>>> res = train_robust("mlp", x, y, a3t, num_classes=3, net_kwargs={"hidden": [32, 32]},
...                    options={"epochs": 2, "batch_size": 32}, generator=g)
>>> type(a3t.disc_).__name__                      # the trained discriminator
'MLP'

**Your own network.** D watches the representation ``encoder(x)`` where ``head(encoder(x))``
is the network's output (:func:`split_model`): a module with ``.features`` and
``.classifier`` (every :mod:`deepscope.nets` classifier has them) or an ``nn.Sequential``
(split before its last module), at ``layer='features'``; integer layers split a deepscope
:class:`~deepscope.nets.MLP`.

**Alternating updates; gradient reversal as an option.** Steps 2 and 3 are two optimisers taking turns
(D first, on detached representations; then the classifier, with D's weights frozen). A
gradient-reversal layer (Ganin et al., arXiv 1505.07818) would instead make the encoder
*maximise D's own loss*, ``−β·BCE`` over clean and adversarial representations, the
saturating minimax form whose gradient vanishes once D is confident. The paper writes the
encoder's loss as ``−β·log D(E(x_adv))`` on adversarial representations only (the
non-saturating form of GANs); alternating updates minimise exactly the paper's two losses,
keep separate Adam moments for D and the classifier, and let D's learning rate differ.
``encoder_loss='reversal'`` gives the encoder the gradient-reversal loss instead (D's update
unchanged). Every step logs D's accuracy (``disc_acc``) and how alike the batch's clean and
adversarial representations are (``cka``, :func:`linear_cka`; ``shift``).

**Defaults.** α = 0.5 is the weight of Goodfellow et al.'s FGSM objective (arXiv 1412.6572),
which A3T's classification loss keeps. The layer, β and D's size are deepscope's choices: the
text of the paper available to us gives the losses but not these values. D is a ReLU MLP with
two hidden layers of 256 (not tuned). Layer and β were chosen on a validation split of the
8x8 digits training set (PGD-20 robust accuracy at ε = 0.1, two seeds, never the test set)
from layer ∈ {1, 2} × β ∈ {0.01, 0.03, 0.1, 0.3, 1}: robust accuracy fell as β grew (68% at
β = 1, 84-85% at β = 0.01), and the best cell was the last hidden layer with β = 0.01, so
the defaults are ``layer='features'``, β = 0.01. docs/a3t.md has the whole grid, and the
paired test of β > 0 against β = 0 (same seeds and initial weights): on the digits and MNIST-1D
the discriminator never helped (β = 0.01: no difference; β ≥ 0.1 on the digits: less robust).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscope.nets import MLP, split_mlp
from deepscope.robust.adversarial import train_robust
from deepscope.robust.attacks import FGSM, PGD
from deepscope.robust.attacks.base import check_norm
from deepscope.robust.objective import Objective, check_eps
from deepscope.train.config import check_float
from deepscope.train.distributed import all_reduce_grads, gather_batch
from deepscope.train.loop import NetSpec, TrainOptions, TrainResult
from deepscope.train.rng import fork_seeded
from deepscope.train.run import NullRun, Run

__all__ = ["A3T", "split_model", "train_a3t", "linear_cka", "representation_gap", "ENCODER_LOSSES"]

#: The encoder's fooling term: 'paper' is ``−log D(E(x_adv))`` (non-saturating), 'reversal' is
#: ``−BCE`` of D over clean and adversarial representations (what a gradient-reversal layer
#: makes the encoder maximise; Ganin et al., arXiv 1505.07818).
ENCODER_LOSSES = ("paper", "reversal")


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear centred kernel alignment of two representations of the same N inputs.

    ``a`` (N, d1) and ``b`` (N, d2); ``‖A_cᵀB_c‖²_F / (‖A_cᵀA_c‖_F ‖B_cᵀB_c‖_F)`` with
    columns centred (Kornblith et al., arXiv 1905.00414): 1 when ``b`` is ``a`` up to an
    orthogonal map and a scale, near 0 for unrelated representations. Invariant to scale, so it
    can stay near 1 while a discriminator tells the two apart by a shift or a norm.

    >>> import torch
    >>> a = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    >>> round(linear_cka(a, 3 * a), 6), linear_cka(a, torch.zeros(100, 5))
    (1.0, 0.0)
    """
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a, b = a - a.mean(0), b - b.mean(0)
    num = torch.linalg.matrix_norm(a.T @ b) ** 2
    den = torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(b.T @ b)
    return float(num / den) if den > 0 else 0.0


def _relative_shift(z: torch.Tensor, z_adv: torch.Tensor) -> float:
    """``mean ‖z_adv − z‖² / mean ‖z‖²``: how far the attack moves the representation."""
    den = z.flatten(1).pow(2).sum(1).mean()
    return float((z_adv - z).flatten(1).pow(2).sum(1).mean() / den) if den > 0 else 0.0


def representation_gap(encoder: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, *,
                       disc: nn.Module | None = None) -> dict[str, float]:
    """How different the clean and adversarial representations ``encoder(x)``, ``encoder(x_adv)`` are.

    ``x``, ``x_adv`` (N, ...) paired inputs. Returns ``cka`` (:func:`linear_cka`), ``shift``
    (``mean ‖z_adv − z‖² / mean ‖z‖²``) and, with ``disc`` (one logit: "clean"), ``disc_acc``,
    its balanced accuracy at telling them apart (0.5: they look alike to it).

    >>> import torch
    >>> enc = torch.nn.Linear(4, 3)
    >>> x = torch.rand(20, 4)
    >>> representation_gap(enc, x, x)
    {'cka': 1.0, 'shift': 0.0}
    """
    with torch.no_grad():
        z, z_adv = encoder(x), encoder(x_adv)
        out = {"cka": round(linear_cka(z, z_adv), 12), "shift": _relative_shift(z, z_adv)}
        if disc is not None:
            out["disc_acc"] = 0.5 * ((disc(z).squeeze(1) > 0).float().mean().item()
                                     + (disc(z_adv).squeeze(1) <= 0).float().mean().item())
    return out


def split_model(model: nn.Module, layer: int | str) -> tuple[nn.Module, nn.Module]:
    """Encoder and head of ``model`` sharing its parameters, ``head(encoder(x)) == model(x)``.

    Parameters
    ----------
    model : nn.Module
        A :class:`~deepscope.nets.MLP`, any module with ``.features`` and ``.classifier``
        (every deepscope classifier, or your own with ``forward(x) ==
        classifier(features(x))``), or an ``nn.Sequential``.
    layer : int or 'features'
        An MLP's hidden layer 1..L (its activation included), or 'features' for the
        penultimate representation: ``.features``, or all of a Sequential but its last module.
    """
    if layer == "features":
        if isinstance(getattr(model, "features", None), nn.Module) and \
                isinstance(getattr(model, "classifier", None), nn.Module):
            return model.features, model.classifier
        if isinstance(model, nn.Sequential) and len(model) >= 2:
            return model[:-1], model[-1]
        raise ValueError(
            f"layer == 'features', but a {type(model).__name__} cannot be split at a hidden layer: "
            "give your module .features (input -> representation) and .classifier "
            "(representation -> logits) with forward(x) == classifier(features(x)), or make it "
            "an nn.Sequential (split before its last module)")
    if isinstance(model, MLP):
        return split_mlp(model, layer)
    raise ValueError(f"layer == {layer!r}: integer layers split a deepscope MLP; for a "
                     f"{type(model).__name__} use layer='features'")


def _out_dim(model: nn.Module, encoder: nn.Module, head: nn.Module, layer) -> int:
    """Width of the representation: ``feature_dim``, the encoder's last Linear, or the head's
    first Linear's input."""
    if layer == "features" and hasattr(model, "feature_dim"):
        return int(model.feature_dim)
    linears = [m for m in encoder.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1].out_features
    heads = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if heads:
        return heads[0].in_features
    raise ValueError(f"layer == {layer!r}: cannot tell the width of the representation the "
                     f"discriminator reads; give your {type(model).__name__} a feature_dim attribute")


class A3T(Objective):
    """The A3T objective (Erraqabi et al. 2017, arXiv 1801.04055), for :func:`train_robust`.

    Parameters
    ----------
    eps : float
        Radius of the training attack.
    norm : 'linf' or 'l2'
    bounds : (lo, hi)
        Input domain (numbers or per-feature tensors).
    layer : int or 'features'
        Where D is attached: 'features' (default), the penultimate representation of any
        deepscope classifier (an MLP's last hidden layer), or an MLP's hidden layer k >= 1.
    alpha : float
        Weight of the clean cross-entropy; ``1 − alpha`` weighs the adversarial one.
    beta : float
        Weight of the encoder's fooling loss ``−log D(E(x_adv))`` (0 gives FGSM-AT).
    disc_hidden : sequence of int
        Hidden widths of D (ReLU MLP, one output logit).
    disc_lr : float
        D's Adam learning rate.
    attack : 'fgsm' or 'pgd'
        How the training adversarial examples are made (the paper: FGSM).
    pgd_steps : int
        Steps when ``attack='pgd'`` (random start, step 2.5·ε/steps).
    encoder_loss : 'paper' or 'reversal'
        The encoder's fooling term: 'paper', ``−log D(E(x_adv))`` (the non-saturating form the
        paper writes); 'reversal', ``−BCE(D(E(x)), clean) − BCE(D(E(x_adv)), adversarial)``,
        the encoder maximising D's own loss on both, as a gradient-reversal layer makes it
        (Ganin et al., arXiv 1505.07818). D's update is the same in both.

    Attributes
    ----------
    encoder_, head_ : nn.Module
        Views of the trained model (after ``setup``).
    disc_ : MLP
        The discriminator; ``disc_opt_`` its optimiser.
    """

    name = "a3t"

    def __init__(self, *, eps: float, norm: str = "linf", bounds=(0.0, 1.0),
                 layer: int | str = "features", alpha: float = 0.5, beta: float = 0.01,
                 disc_hidden: Sequence[int] = (256, 256),
                 disc_lr: float = 1e-3, attack: str = "fgsm", pgd_steps: int = 10,
                 encoder_loss: str = "paper"):
        self.eps = check_eps(eps)
        self.norm = check_norm(norm)
        self.bounds = bounds
        if not (layer == "features" or (isinstance(layer, int) and not isinstance(layer, bool)
                                        and layer >= 1)):
            raise ValueError(f"layer == {layer!r}, must be an int >= 1 (an MLP's hidden layer) "
                             "or 'features'")
        self.layer = layer
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        if not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError(f"beta == {beta!r}, must be >= 0")
        self.beta = float(beta)
        self.disc_hidden = tuple(disc_hidden)
        if any(not isinstance(h, int) or h < 1 for h in self.disc_hidden):
            raise ValueError(f"disc_hidden == {disc_hidden!r}, must be widths >= 1, e.g. (256, 256)")
        if not disc_lr > 0:
            raise ValueError(f"disc_lr == {disc_lr!r}, must be > 0")
        self.disc_lr = float(disc_lr)
        if attack not in ("fgsm", "pgd"):
            raise ValueError(f"attack == {attack!r}, must be 'fgsm' (the paper) or 'pgd'")
        self.attack = attack
        self.pgd_steps = pgd_steps
        if encoder_loss not in ENCODER_LOSSES:
            raise ValueError(f"encoder_loss == {encoder_loss!r}, must be 'paper' (-log D(E(x_adv))) "
                             "or 'reversal' (-D's loss, as a gradient-reversal layer)")
        self.encoder_loss = encoder_loss

    # -- state ---------------------------------------------------------------
    def setup(self, model, *, generator, device):
        self.encoder_, self.head_ = split_model(model, self.layer)
        dim = _out_dim(model, self.encoder_, self.head_, self.layer)
        with fork_seeded(generator):
            self.disc_ = MLP(dim, list(self.disc_hidden), 1).to(device)
        self.disc_opt_ = torch.optim.Adam(self.disc_.parameters(), lr=self.disc_lr)

    def state(self):
        return {"disc": self.disc_, "disc_opt": self.disc_opt_}

    def _check_setup(self):
        if not hasattr(self, "disc_"):
            raise RuntimeError("A3T is not set up: call setup(model, generator=g, device=d) "
                               "first (train_robust does)")

    # -- the three losses ----------------------------------------------------
    def adversarial(self, model, x, y, generator):
        """Training adversarial examples: FGSM (the paper) or PGD."""
        if self.attack == "fgsm":
            return FGSM(model, eps=self.eps, norm=self.norm, bounds=self.bounds)(x, y)
        return PGD(model, eps=self.eps, norm=self.norm, bounds=self.bounds,
                   steps=self.pgd_steps)(x, y, generator=generator)

    def disc_loss(self, z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
        """D's loss: ``BCE(D(z), clean) + BCE(D(z_adv), adversarial)``, averaged; (N, d) inputs."""
        d_clean, d_adv = self.disc_(z).squeeze(1), self.disc_(z_adv).squeeze(1)
        return 0.5 * (F.binary_cross_entropy_with_logits(d_clean, torch.ones_like(d_clean))
                      + F.binary_cross_entropy_with_logits(d_adv, torch.zeros_like(d_adv)))

    def fool_loss(self, z_adv: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's fooling loss, differentiable in the representations only.

        'paper': ``−log D(z_adv)`` (mean); 'reversal': minus :meth:`disc_loss` of ``(z, z_adv)``
        (``z`` required). D's weights take no gradient from it: they are frozen while the
        graph is built.
        """
        flags = [p.requires_grad for p in self.disc_.parameters()]
        for p in self.disc_.parameters():
            p.requires_grad_(False)
        try:
            if self.encoder_loss == "reversal":
                if z is None:
                    raise ValueError("z is None, must be the clean representations for "
                                     "encoder_loss='reversal'")
                return -self.disc_loss(z, z_adv)
            logit = self.disc_(z_adv).squeeze(1)
        finally:
            for p, f in zip(self.disc_.parameters(), flags):
                p.requires_grad_(f)
        return F.softplus(-logit).mean()  # -log sigmoid(logit)

    def loss(self, model, x, y, generator):
        self._check_setup()
        x_adv = self.adversarial(model, x, y, generator)
        z, z_adv = self.encoder_(x), self.encoder_(x_adv)
        # 1. discriminator step on detached representations
        d_loss = self.disc_loss(z.detach(), z_adv.detach())
        self.disc_opt_.zero_grad(set_to_none=True)
        d_loss.backward()
        # under torchrun x is this process's slice: D's update is the global batch's
        all_reduce_grads(self.disc_.parameters(), count=len(x))
        self.disc_opt_.step()
        # 2. classifier (encoder + head) loss against the updated, frozen discriminator
        ce_clean = F.cross_entropy(self.head_(z), y)
        ce_adv = F.cross_entropy(self.head_(z_adv), y)
        fool = self.fool_loss(z_adv, z)
        loss = self.alpha * ce_clean + (1 - self.alpha) * ce_adv + self.beta * fool
        with torch.no_grad():
            d_acc = 0.5 * ((self.disc_(z).squeeze(1) > 0).float().mean()
                           + (self.disc_(z_adv).squeeze(1) <= 0).float().mean())
            # is invariance reached? the global batch's clean and adversarial representations
            zg, zag = gather_batch(z), gather_batch(z_adv)
            cka, shift = linear_cka(zg, zag), _relative_shift(zg, zag)
        return loss, {"loss": loss.item(), "ce_clean": ce_clean.item(), "ce_adv": ce_adv.item(),
                      "fool": fool.item(), "disc_loss": d_loss.item(), "disc_acc": d_acc.item(),
                      "cka": cka, "shift": shift}


def train_a3t(net: NetSpec, x: torch.Tensor, y: torch.Tensor, *, eps: float,
              bounds=(0.0, 1.0), num_classes: int | None = None,
              net_kwargs: Mapping[str, Any] | None = None,
              options: TrainOptions | Mapping[str, Any] | None = None,
              generator: torch.Generator | None = None, run: Run | NullRun | None = None,
              **a3t_options: Any) -> TrainResult:
    """Train ``net`` with :class:`A3T` in one call; ``a3t_options`` go to :class:`A3T`.

    ``x`` (N, ...) inputs inside ``bounds``, ``y`` (N,) labels; the other arguments as
    :func:`~deepscope.robust.adversarial.train_robust`. The objective (and its trained
    discriminator, ``disc_``) is ``result.info['objective']``.
    """
    objective = A3T(eps=eps, bounds=bounds, **a3t_options)
    res = train_robust(net, x, y, objective, num_classes=num_classes, net_kwargs=net_kwargs,
                       options=options, generator=generator, run=run, desc="a3t")
    res.info["objective"] = objective
    return res
