"""Render report blocks as Markdown (figures linked as the PNG files beside report.md).

Headings and table cells carry names taken from the data (layer names, report names, policies)
and no markup of their own, so every character with a meaning in Markdown inline text is
backslash-escaped there and shows literally; paragraphs and lists are the document's own text,
whose ``**bold**`` and `` `code` `` are kept.
"""

from __future__ import annotations

import re

from invlin.report.document import Block

__all__ = ["escape", "render_markdown"]

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the characters that can
# start or end inline markup (emphasis, code, links, images, HTML, tables, headings' closing #).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#!])")


def escape(text: str) -> str:
    """``text`` as literal Markdown inline text on one line: special characters escaped."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text`` (at least three)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def render_markdown(blocks: list[Block]) -> str:
    """The report as a Markdown string."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            out.append(f"{'#' * b.level} {escape(b.text)}")
        elif b.kind == "paragraph":
            out.append(b.text)
        elif b.kind == "list":
            out.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "table":
            lines = [
                "| " + " | ".join(escape(h) for h in b.header) + " |",
                "|" + "|".join("---" for _ in b.header) + "|",
            ]
            lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif b.kind == "figure":
            out.append(f"![{b.name}]({b.name})\n\nFigure {b.name}: {b.text}")
        elif b.kind == "code":
            fence = _fence(b.text)
            out.append(f"{fence}\n{b.text}\n{fence}")
        else:
            raise ValueError(f"unknown block kind {b.kind!r}")
    return "\n\n".join(out) + "\n"
