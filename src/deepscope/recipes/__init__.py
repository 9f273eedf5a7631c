"""Recipes: one module per paper experiment, discovered by the CLI.

A recipe module ``deepscope/recipes/<name>.py`` (CLI name: underscores become dashes) defines

- a module docstring whose first line is the one-line description in ``deepscope run --list``;
- ``Config``: a frozen dataclass subclassing :class:`deepscope.train.RunConfig`. Field
  docstrings become ``--help`` text; choices are ``Literal[...]`` (``--help`` lists them);
  ``validate()`` checks every field (it runs before anything is written, and the CLI prints
  its message as one line); ``QUICK`` is the dict of field values ``--quick`` sets;
- ``run(cfg, run) -> dict``: calls the method package's loop(s) with the given
  :class:`deepscope.train.Run` (directory, metrics, checkpoints, progress, generators),
  draws the figures and returns the headline numbers (written to ``result.json``; a
  ``"summary"`` string is printed).

Optionally, ``SYSTEM`` (one of ``deepscope.report.html.SYSTEMS``) groups its runs in the
report, and ``verdict(result) -> {"claim", "measured", "verdict"}`` computes, from the
numbers in ``result``, whether the paper's claim reproduced ('reproduced', 'partly', 'not
reproduced'); the runner stores it in ``result.json`` and the report's verdict table shows it.

A recipe never imports another recipe: shared training and analysis code lives in the
method packages (``mi``, ``dynamics``, ``robust``). Keep the module's top-level imports
light (dataclasses, typing): torch and the method modules are imported inside ``run`` so
``--help`` stays fast. See docs/architecture.md, "How to add a system".
"""
