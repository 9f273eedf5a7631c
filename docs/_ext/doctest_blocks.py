"""Griffe extension for the API reference: doctest blocks become code, Sphinx roles links.

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
# Sphinx roles (:func:`~deepscope.x.f`, :class:`Run`) -> a code span linked where the target is
# in the reference (an optional autoref: no warning when it is not, e.g. a private helper).
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`(~?)([\w.]+)`")


def _role(m: re.Match) -> str:
    target = m.group(2)
    shown = target.rsplit(".", 1)[-1] if m.group(1) else target
    return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'


def link_roles(text: str) -> str:
    """Sphinx roles outside code fences become optional autorefs."""
    parts = re.split(r"(^```.*?^```)", text, flags=re.S | re.M)
    return "".join(p if p.startswith("```") else _ROLE.sub(_role, p) for p in parts)


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
        if obj.docstring is not None:
            obj.docstring.value = link_roles(fence_doctests(obj.docstring.value))
