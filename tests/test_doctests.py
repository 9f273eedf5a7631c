"""Every docstring example of src/deepscope runs, as part of the main suite (`make test`).

One test per module that has examples (``>>>``). An example that cannot run here (it needs
local image files, a torchrun launch, a run directory of yours) is marked
``# doctest: +SKIP`` and says why in a comment before the directive, on the same line;
`test_every_skipped_example_says_why` holds that.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import deepscope

ROOT = Path(deepscope.__file__).parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


WITH_EXAMPLES = sorted(_module_name(p) for p in ROOT.rglob("*.py")
                       if re.search(r"^\s*>>> ", p.read_text(), re.MULTILINE))


def test_modules_with_examples_are_found():
    assert "deepscope.mi.estimator" in WITH_EXAMPLES and len(WITH_EXAMPLES) > 20


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    assert tests, f"{name} has '>>>' lines but doctest finds no example (inside a '::' block?)"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for t in tests:
        runner.run(t, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


# `>>> code  # the reason  # doctest: +SKIP`: a comment, then the directive
_SKIP = re.compile(r"#\s*doctest:.*\+SKIP")
_REASON = re.compile(r"#\s*\S[^#]*#\s*doctest:")


def test_every_skipped_example_says_why():
    silent = [f"{p.relative_to(ROOT.parent)}:{i}: {line.strip()}"
              for p in sorted(ROOT.rglob("*.py"))
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if _SKIP.search(line) and not _REASON.search(line)]
    assert not silent, ("a skipped example must say why: `>>> code  # why  # doctest: +SKIP`:\n"
                        + "\n".join(silent))
