"""A griffe extension for the documentation build: Sphinx-style roles in docstrings -> Markdown.

sketchla's docstrings are numpy style and use a few reST constructs that read well in
``help()``: ``:math:`...``` (inline math), ``.. math::`` (display math), and the
cross-reference roles ``:class:``, ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``
(an optional ``~`` shortens the title). This extension rewrites them when the package is loaded
by mkdocstrings, so the docstrings stay plain text in the source:

* math becomes arithmatex's ``$...$`` / ``$$...$$`` (rendered by MathJax);
* a role becomes an *optional* autorefs link: a link when the target is rendered somewhere on
  the site, plain code otherwise (never an unresolved-reference warning).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|attr|data|obj|exc):`(~?)([^`]+)`")
_DISPLAY = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")
_BORDER = re.compile(r"^(?P<indent>[ \t]*)=+(?: +=+)+[ \t]*$")


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str]:
    """The cells of one row of a simple table with columns starting at ``spans``."""
    stops = [start for start, _ in spans[1:]] + [len(line)]
    return [line[start:stop].strip() for (start, _), stop in zip(spans, stops, strict=True)]


def _rows(lines: list[str], spans: list[tuple[int, int]]) -> list[list[str]]:
    """Rows of a simple table; a line with an empty first cell continues the row above."""
    found: list[list[str]] = []
    for line in lines:
        cells = _cells(line, spans)
        if found and not cells[0]:
            found[-1] = [f"{x} {y}".strip() for x, y in zip(found[-1], cells, strict=True)]
        else:
            found.append(cells)
    return found


def _simple_tables(text: str) -> str:
    """reST simple tables (``=====  =====`` borders) -> Markdown pipe tables.

    A table is a border, optionally a header row and a second border, body rows and a closing
    border, with no blank line inside.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _BORDER.match(lines[i])
        end = i + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        chunk = lines[i:end]
        borders = [k for k, line in enumerate(chunk) if line.rstrip() == lines[i].rstrip()]
        if not match or len(borders) not in (2, 3) or borders[-1] != len(chunk) - 1:
            out.append(lines[i])
            i += 1
            continue
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", lines[i])]
        if len(borders) == 3:
            header = _rows(chunk[1 : borders[1]], spans)[0]
            body = _rows(chunk[borders[1] + 1 : -1], spans)
        else:
            header, body = [""] * len(spans), _rows(chunk[1:-1], spans)
        indent = match["indent"]
        out.append("")
        for row in [header, ["---"] * len(spans), *body]:
            out.append(indent + "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        out.append("")
        i = end
    return "\n".join(out)


def _display_math(text: str) -> str:
    """``.. math:: expr`` (one line) or ``.. math::`` + an indented block -> ``$$`` blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DISPLAY.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body = [match["rest"].strip()] if match["rest"].strip() else []
        i += 1
        # the indented block that follows (blank lines inside it separate equations)
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i].strip())
            i += 1
        for eq in re.split(r"\n\s*\n", "\n".join(body)):
            if eq.strip():
                math = [indent + ln for ln in eq.strip().split("\n")]
                out.extend(["", f"{indent}$$", *math, f"{indent}$$", ""])
    return "\n".join(out)


def _role(obj: griffe.Object, match: re.Match[str]) -> str:
    short, name = match[2] == "~", match[3].strip()
    title = name.rsplit(".", 1)[-1] if short else name
    if name.endswith("()"):
        name = name[:-2]
    identifier = name
    try:
        identifier = obj.resolve(name)
    except Exception:  # not resolvable from this scope: try the package's top level
        if name.split(".")[0] not in {"numpy", "scipy", "dask", "distributed", "sketchla"}:
            identifier = f"sketchla.{name}"
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def _convert(obj: griffe.Object) -> None:
    doc = obj.docstring
    if doc is None or not doc.value:
        return
    text = _simple_tables(_display_math(doc.value))
    text = _INLINE_MATH.sub(lambda m: f"${m[1].strip()}$", text)
    text = _ROLE.sub(lambda m: _role(obj, m), text)
    doc.value = text


def _walk(obj: griffe.Object, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    _convert(obj)
    for member in obj.members.values():
        if member.is_alias:
            continue
        _walk(member, seen)


class SphinxRoles(griffe.Extension):
    """Rewrite reST math and cross-reference roles of every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg, set())
