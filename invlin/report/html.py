"""Render report blocks as one self-contained HTML page (PNGs embedded as base64)."""

from __future__ import annotations

import base64
import re
from html import escape

from invlin.report.document import Block

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f2f2f2; }
td.pass { color: #1a7f37; font-weight: 600; }
td.fail { color: #cf222e; font-weight: 600; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f6f8fa; padding: 0.75em; overflow-x: auto; }
"""


def _inline(text: str) -> str:
    """Escape ``text`` and turn **bold** and `code` into tags."""
    out = escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", out)


def _cell(text: str) -> str:
    cls = (
        ' class="pass"'
        if text.startswith("PASS")
        else (' class="fail"' if text.startswith("FAIL") else "")
    )
    return f"<td{cls}>{_inline(text)}</td>"


def render_html(blocks: list[Block], images: dict[str, bytes], title: str = "invlin report") -> str:
    """The report as a standalone HTML document; ``images`` maps figure names to PNG bytes."""
    body: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif b.kind == "paragraph":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "figure":
            if b.name not in images:
                raise ValueError(f"images has no PNG for figure {b.name!r}")
            data = base64.b64encode(images[b.name]).decode("ascii")
            body.append(
                f'<figure><img alt="{escape(b.name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline(b.text)}</figcaption></figure>"
            )
        elif b.kind == "code":
            body.append(f"<pre>{escape(b.text)}</pre>")
        else:
            raise ValueError(f"unknown block kind {b.kind!r}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
