"""Documented options cannot drift from the code.

1. Option tables in the docs pages: a table right after ``<!-- options: dotted.path -->``
   names options of that callable; every backticked option must be a parameter of its
   signature, every parameter must be in the table, and the value a row marks as the default
   (``"v"`` followed by ``(default...)`` or ``(...; default)``) must be the signature's.
2. Docstrings of the public API: in a numpydoc "Parameters" entry, a quoted value followed by
   ``(default`` and the first of a ``{'a', 'b'}`` set of values (numpydoc's place for the
   default, shown so by the API reference) must be the signature's default.

(The API reference itself shows the signatures, so its defaults are the code's; ``mkdocs build
--strict`` fails on a documented parameter that the signature lacks.)
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
MARKER = re.compile(r"<!--\s*options:\s*([\w.]+)[^>]*-->")


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _tables():
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = MARKER.search(line)
            if not m:
                continue
            rows, j = [], i + 1
            while j < len(lines) and not lines[j].startswith("|"):
                j += 1
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip("|").split("|")])
                j += 1
            yield pytest.param(page.name, m.group(1), rows[2:], id=f"{page.name}:{m.group(1)}")


TABLES = list(_tables())
_DEFAULT = re.compile(r'"([^"]+)"`?\s*\((?:default\b[^)]*|[^)]*;\s*default)\)')


def test_the_mine_option_table_is_checked():
    assert any(p.values[1] == "deepscope.mi.estimator.MINE" for p in TABLES)


@pytest.mark.parametrize(("page", "target", "rows"), TABLES)
def test_option_table_matches_the_signature(page, target, rows):
    params = inspect.signature(_resolve(target)).parameters
    named = set()
    for first, *rest in rows:
        names = re.findall(r"`(\w+)`", first)
        if first == "others":
            names = re.findall(r"`(\w+)`", " ".join(rest))
        named |= set(names)
        for name in names:
            assert name in params, f"{page}: `{name}` is not a parameter of {target}"
        defaults = _DEFAULT.findall(" ".join(rest))
        if len(names) == 1 and first != "others":
            default = params[names[0]].default
            if isinstance(default, str):
                assert defaults == [default], (
                    f"{page}: the `{names[0]}` row marks {defaults or 'no value'} as the default; "
                    f"{target} has {default!r}")
    missing = sorted(set(params) - named - {"self"})
    assert not missing, f"{page}: the options table of {target} misses {missing}"


# --- docstrings of the public API ---------------------------------------------------------
PUBLIC = {
    "deepscope.mi": None, "deepscope.dynamics": None, "deepscope.robust": None,
    "deepscope.nets": None, "deepscope.train": None, "deepscope.data.noise": None,
}


def _public_callables():
    seen = set()
    for package in PUBLIC:
        mod = importlib.import_module(package)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in seen:
                seen.add(id(obj))
                yield f"{obj.__module__}.{obj.__qualname__}", obj


def _documented_defaults(doc: str):
    """(parameter names, quoted value) for each 'value' (default...) in a Parameters entry."""
    doc = inspect.cleandoc(doc)
    section = re.search(r"^Parameters\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if not section:
        return
    entries: list[tuple[list[str], str]] = []
    for line in section.group(1).splitlines():
        m = re.match(r"^([\w*, ]+?)\s*:", line)
        if m and not line.startswith(" "):
            entries.append(([n.strip().lstrip("*") for n in m.group(1).split(",")], line[m.end():]))
        elif entries:
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
    for names, text in entries:
        # numpydoc: "a set of values in braces, with the default appearing first" (the API
        # reference shows that first value in its Default column)
        choices = re.match(r"\s*\{\s*'([^']+)'", text)
        if choices:
            yield names, choices.group(1)
        for value in re.findall(r"`*'([^']+)'`*\s*\((?:default\b[^)]*|[^()]*;\s*default)\)", text):
            yield names, value


CALLABLES = list(_public_callables())


def test_public_callables_are_found():
    names = {n for n, _ in CALLABLES}
    assert "deepscope.mi.estimator.MINE" in names and len(names) > 80


@pytest.mark.parametrize(("name", "obj"), CALLABLES, ids=[n for n, _ in CALLABLES])
def test_docstring_defaults_match_the_signature(name, obj):
    doc = obj.__doc__ or ""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        pytest.skip(f"{name} has no signature")
    wrong = []
    for entry, value in _documented_defaults(doc):
        for p in entry:
            if p in params and isinstance(params[p].default, str) and params[p].default != value:
                wrong.append(f"{p}: documented default {value!r}, signature {params[p].default!r}")
    assert not wrong, f"{name}: " + "; ".join(wrong)
