"""Griffe extension for the API reference: doctest blocks in docstring prose become code.

NumPy-style parsing only treats ``>>>`` lines as code inside an "Examples" section; in a
module's or a function's description they would be read as Markdown (nested quotes, and a
printed list such as ``[1, 2]`` as a link). This wraps every unfenced run of ``>>>`` lines
and their output in a ```` ```pycon ```` fence and drops the ``# doctest:`` directives, as
griffe does for Examples sections. Used by mkdocs.yml (mkdocstrings' ``extensions``).
"""

from __future__ import annotations

import re

import griffe

_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def fence_doctests(text: str) -> str:
    out: list[str] = []
    lines = text.split("\n")
    i, fenced = 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(_DIRECTIVE.sub("", lines[i]))
            i += 1
        if out and out[-1].strip():
            out.append("")
        out += ["```pycon", *block, "```", ""]
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
