"""PGD: projected gradient ascent on the loss inside the ε-ball (Madry et al., arXiv 1706.06083).

From a random point of the ball (or from ``x``), repeat ``steps`` times::

    x ← clip(x_0 + Π_ε(x + α·step(∇_x L) − x_0), lo, hi)

with ``step`` the sign (L∞) or the normalised gradient (L2) and ``Π_ε`` the projection onto
the ball. With ``restarts > 1`` each example keeps the restart that fools the model (for
label targets) or, failing that, the one with the largest loss.
"""

from __future__ import annotations

import torch

from deepscope.robust.attacks.base import Attack, ascent_step, clamp, project, random_start

__all__ = ["PGD"]


class PGD(Attack):
    """Projected gradient descent on the negative loss, with random start and restarts.

    Parameters
    ----------
    model, eps, norm, bounds, loss
        As in :class:`~deepscope.robust.attacks.base.Attack`.
    steps : int
        Gradient steps per restart (>= 1).
    step_size : float, optional
        Step length α; default ``2.5·ε/steps`` (Madry et al.'s rule: the walk can cross the ball).
    random_start : bool
        Start each restart at a uniform draw from the ball (from ``generator``, by default
        PyTorch's own); else at ``x``.
    restarts : int
        Independent runs; each example keeps its strongest.
    init_std : float, optional
        Start at ``x + init_std·N(0, I)`` instead (TRADES' start, where the KL gradient at
        ``x`` itself is zero). Overrides ``random_start``.

    Examples
    --------
    >>> import torch
    >>> from deepscope.robust.attacks import PGD
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    >>> g = torch.Generator().manual_seed(0)
    >>> x_adv = PGD(net, eps=0.1, steps=20, restarts=2)(x, y, generator=g)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    """

    def __init__(self, model, *, eps, norm="linf", bounds=(0.0, 1.0), loss=None, steps: int = 20,
                 step_size: float | None = None, random_start: bool = True, restarts: int = 1,
                 init_std: float | None = None):
        super().__init__(model, eps=eps, norm=norm, bounds=bounds, loss=loss)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps == {steps!r}, must be an integer >= 1")
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
            raise ValueError(f"restarts == {restarts!r}, must be an integer >= 1")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"step_size == {step_size!r}, must be > 0 (or None for 2.5·eps/steps)")
        if init_std is not None and not init_std > 0:
            raise ValueError(f"init_std == {init_std!r}, must be > 0 (or None)")
        self.steps = steps
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / steps
        self.random_start = bool(random_start)
        self.restarts = restarts
        self.init_std = init_std

    def perturb(self, x, y, lo, hi, generator):
        if generator is None:  # PyTorch's own, as torch.rand does
            generator = torch.default_generator
        labels = not y.is_floating_point()
        best = x.clone()
        best_loss = torch.full((x.shape[0],), -torch.inf, device=x.device)
        best_fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            if self.init_std is not None:
                noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
                delta = project(self.init_std * noise, self.eps, self.norm)
            elif self.random_start:
                delta = random_start(x, self.eps, self.norm, generator)
            else:
                delta = torch.zeros_like(x)
            x_adv = clamp(x + delta, lo, hi)
            for _ in range(self.steps):
                g, _ = self.input_grad(x_adv, y)
                x_adv = x_adv + ascent_step(g, self.step_size, self.norm)
                x_adv = clamp(x + project(x_adv - x, self.eps, self.norm), lo, hi)
            with torch.no_grad():
                logits = self.model(x_adv)
                loss = self.loss(logits, y)
                fooled = logits.argmax(1) != y if labels else torch.zeros_like(best_fooled)
            # A restart wins an example if it fools where the best did not, or ties and hurts more.
            win = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
            best[win] = x_adv[win]
            best_loss = torch.where(win, loss, best_loss)
            best_fooled |= fooled
        return best
