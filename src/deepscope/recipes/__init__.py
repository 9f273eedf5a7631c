"""Recipes: one module per paper experiment, and the registry that reads them.

A recipe module ``deepscope/recipes/<name>.py`` (CLI name: underscores become dashes) defines

- a module docstring whose first line is the one-line description in ``deepscope run --list``;
- ``SYSTEM``: the :class:`System` it belongs to (its runs are grouped under it in the report,
  and ``deepscope reproduce KEY`` runs its headline recipe). Every recipe of a system declares
  the same ``System(key, name, order=...)``; the registry checks that they agree;
- ``REPRODUCE`` (the system's headline recipe only): a :class:`Reproduce`, the options
  ``deepscope reproduce`` runs it with at each scale;
- ``Config``: a frozen dataclass subclassing :class:`deepscope.train.RunConfig`. Field
  docstrings become ``--help`` text; choices are ``Literal[...]`` (``--help`` lists them);
  ``validate()`` checks every field (it runs before anything is written, and the CLI prints
  its message as one line); ``QUICK`` is the dict of field values ``--quick`` sets;
- ``run(cfg, run) -> dict``: calls the method package's loop(s) with the given
  :class:`deepscope.train.Run` (directory, metrics, checkpoints, progress, generators),
  draws the figures and returns the headline numbers (written to ``result.json``; a
  ``"summary"`` string is printed);
- optionally ``verdict(result) -> {"claim", "measured", "verdict"}``: from the numbers in
  ``result``, whether the paper's claim reproduced ('reproduced', 'partly', 'not
  reproduced'); the runner stores it in ``result.json`` and the report judges every stored
  result again with the current rule.

The declarations sit together right after the imports::

    from deepscope.recipes import Reproduce, System

    SYSTEM = System("mine", "MINE", order=1)
    REPRODUCE = Reproduce(smoke=("--quick",), quick=("--dims", "2", "20"), paper=())

That is all there is to register: ``deepscope run`` finds the module, ``deepscope reproduce``
and ``deepscope report`` read :func:`registry` (this module scans the package; it imports
nothing heavy, so ``--help`` stays fast).

A recipe never imports another recipe: shared training and analysis code lives in the
method packages (``mi``, ``dynamics``, ``robust``). Keep the module's top-level imports
light (dataclasses, typing): torch and the method modules are imported inside ``run`` so
``--help`` stays fast. See docs/architecture.md, "How to add a system".
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal

__all__ = ["System", "Reproduce", "Registry", "SCALES", "recipe_modules", "load_recipe",
           "registry", "verdict_rule"]

Scale = Literal["smoke", "quick", "paper"]

#: The scales of ``deepscope reproduce``, smallest first.
SCALES: tuple[str, ...] = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class System:
    """A research system: the group of recipes that test one paper.

    Parameters
    ----------
    key : str
        The word ``deepscope reproduce`` takes ('crosssplit'): lowercase letters, digits, dashes.
    name : str
        The report's heading and ``result.json``'s ``"system"`` ('CrossSplit').
    order : int
        Position in the report and in ``deepscope reproduce all`` (smaller first).

    Examples
    --------
    >>> System("crosssplit", "CrossSplit", order=5).name
    'CrossSplit'
    >>> System("Cross Split", "CrossSplit", order=5)
    Traceback (most recent call last):
    ...
    ValueError: key == 'Cross Split', must be lowercase letters, digits and dashes
    """

    key: str
    name: str
    order: int

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.key):
            raise ValueError(f"key == {self.key!r}, must be lowercase letters, digits and dashes")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name == {self.name!r}, must be a non-empty string")
        if isinstance(self.order, bool) or not isinstance(self.order, int):
            raise ValueError(f"order == {self.order!r}, must be an integer")


@dataclass(frozen=True)
class Reproduce:
    """A headline recipe's ``deepscope reproduce`` options at each scale.

    Parameters
    ----------
    smoke, quick, paper : tuple of str, or None
        The ``deepscope run RECIPE`` options at that scale (``()``: the recipe's defaults);
        ``None``: the system has no run at that scale yet ("not available").
    paper_needs_data_root : bool
        Paper scale reads image datasets: ``deepscope reproduce --data-root`` is passed on.

    Examples
    --------
    >>> Reproduce(quick=["--steps", "10"]).options("quick")
    ('--steps', '10')
    >>> Reproduce().options("paper") is None
    True
    """

    smoke: tuple[str, ...] | None = ("--quick",)
    quick: tuple[str, ...] | None = None
    paper: tuple[str, ...] | None = None
    paper_needs_data_root: bool = False

    def __post_init__(self) -> None:
        for scale in SCALES:
            opts = getattr(self, scale)
            if opts is None:
                continue
            if isinstance(opts, str) or not all(isinstance(o, str) for o in opts):
                raise ValueError(f"{scale} == {opts!r}, must be a sequence of option strings or None")
            object.__setattr__(self, scale, tuple(opts))

    def options(self, scale: Scale) -> tuple[str, ...] | None:
        """The options at ``scale`` ('smoke', 'quick' or 'paper'); None where there is no run."""
        if scale not in SCALES:
            raise ValueError(f"scale == {scale!r}, must be one of {', '.join(SCALES)}")
        return getattr(self, scale)


@dataclass(frozen=True)
class Registry:
    """What the recipe modules declare, read by :func:`registry`.

    Attributes
    ----------
    recipes : dict of recipe name -> module name
        Every recipe, sorted by name ('mine-gaussians' -> 'deepscope.recipes.mine_gaussians').
    systems : dict of key -> System
        Every declared system, in the report's order (``order``, then key).
    members : dict of key -> tuple of recipe names
        The recipes of each system.
    plans : dict of key -> tuple of (recipe name, Reproduce)
        The recipes ``deepscope reproduce`` runs for each system (those declaring ``REPRODUCE``).
    """

    recipes: dict[str, str]
    systems: dict[str, System]
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    plans: dict[str, tuple[tuple[str, Reproduce], ...]] = field(default_factory=dict)

    def system_of(self, recipe: str) -> System | None:
        """The system recipe ``recipe`` declares (None if it declares none)."""
        key = next((k for k, names in self.members.items() if recipe in names), None)
        return None if key is None else self.systems[key]

    def by_name(self, name: str) -> System | None:
        """The system whose report name is ``name`` ('CrossSplit'), or None."""
        return next((s for s in self.systems.values() if s.name == name), None)


def recipe_modules() -> dict[str, str]:
    """Map recipe name ('mine-gaussians') to module ('deepscope.recipes.mine_gaussians').

    Every module of this package whose name does not start with ``_`` is a recipe (the
    package's ``__path__`` is scanned, so a folder added to it adds its modules too).
    """
    import deepscope.recipes as pkg

    out = {}
    for m in pkgutil.iter_modules(pkg.__path__):
        if not m.name.startswith("_"):
            out[m.name.replace("_", "-")] = f"{pkg.__name__}.{m.name}"
    return dict(sorted(out.items()))


def load_recipe(name: str) -> ModuleType:
    """Import a recipe module by its CLI name; unknown names list the known ones."""
    mods = recipe_modules()
    if name not in mods:
        raise ValueError(f"recipe == {name!r} is unknown; known: {', '.join(mods) or '(none)'}")
    return importlib.import_module(mods[name])


def registry() -> Registry:
    """Import every recipe module and read its ``SYSTEM`` and ``REPRODUCE``.

    Raises ``TypeError`` for a declaration of the wrong type and ``ValueError`` when two
    recipes declare one system key (or one name) differently, naming the modules.
    """
    recipes = recipe_modules()
    systems: dict[str, System] = {}
    declared_by: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    plans: dict[str, list[tuple[str, Reproduce]]] = {}
    for name, modname in recipes.items():
        mod = importlib.import_module(modname)
        system = getattr(mod, "SYSTEM", None)
        plan = getattr(mod, "REPRODUCE", None)
        if system is None:
            if plan is not None:
                raise ValueError(f"{modname} declares REPRODUCE but no SYSTEM; add "
                                 "SYSTEM = System(key, name, order=...)")
            continue
        if not isinstance(system, System):
            raise TypeError(f"{modname}.SYSTEM is a {type(system).__name__}, must be a "
                            "deepscope.recipes.System(key, name, order=...)")
        if plan is not None and not isinstance(plan, Reproduce):
            raise TypeError(f"{modname}.REPRODUCE is a {type(plan).__name__}, must be a "
                            "deepscope.recipes.Reproduce(smoke=..., quick=..., paper=...)")
        known = systems.get(system.key)
        same_name = next((s for s in systems.values() if s.name == system.name), system)
        if (known is not None and known != system) or same_name.key != system.key:
            other = known if known is not None and known != system else same_name
            raise ValueError(f"{modname} declares {system}, but {declared_by[other.key]} declares "
                             f"{other}; every recipe of a system must declare the same System")
        systems.setdefault(system.key, system)
        declared_by.setdefault(system.key, modname)
        members.setdefault(system.key, []).append(name)
        if plan is not None:
            plans.setdefault(system.key, []).append((name, plan))
    ordered = dict(sorted(systems.items(), key=lambda kv: (kv[1].order, kv[0])))
    return Registry(
        recipes=recipes, systems=ordered,
        members={k: tuple(members[k]) for k in ordered},
        plans={k: tuple(plans[k]) for k in ordered if k in plans},
    )


def verdict_rule(recipe: str) -> Callable[[dict], dict] | None:
    """Recipe ``recipe``'s ``verdict(result)`` function, or None when it has none."""
    rule = getattr(load_recipe(recipe), "verdict", None)
    return rule if callable(rule) else None
