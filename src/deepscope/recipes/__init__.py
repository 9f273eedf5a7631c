"""Recipes: one module per paper experiment, discovered by the CLI.

A recipe module ``deepscope/recipes/<name>.py`` (CLI name: underscores become dashes) defines

- a module docstring whose first line is the one-line description in ``deepscope run --list``;
- ``Config``: a frozen dataclass subclassing ``deepscope.train.RunConfig``; field
  docstrings become ``--help`` text;
- ``run(cfg, run) -> dict``: does the work with the given ``deepscope.train.Run``
  (run directory, metrics, checkpoints, progress) and returns the headline numbers
  (the CLI writes them to ``result.json``; a ``"summary"`` string is printed).

Keep the module's top-level imports light (dataclasses, typing): torch and the
method modules are imported inside ``run`` so ``--help`` stays fast.
"""
