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
td.expected { color: #9a6700; font-weight: 600; }
td.fail { color: #fff; background: #cf222e; font-weight: 700; }
p.good, p.bad { padding: 0.6em 0.9em; border-radius: 4px; font-size: 1.1em; }
p.good { background: #dafbe1; border-left: 6px solid #1a7f37; }
p.bad { background: #ffebe9; border-left: 6px solid #cf222e; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f6f8fa; padding: 0.75em; white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def _inline(text: str) -> str:
    """Escape ``text`` and turn **bold** and `code` into tags."""
    out = escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", out)


def _tone(text: str) -> str:
    """The class of a verdict cell: a PASS, an expected failure, or an unexpected one."""
    if text.startswith("PASS"):
        return "pass"
    if text.startswith("UNEXPECTED") or text.startswith("FAIL UNEXPECTED"):
        return "fail"
    if text.startswith("EXPECTED") or text.startswith("FAIL"):
        return "expected"
    return ""


def _cell(text: str) -> str:
    cls = _tone(text)
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{_inline(text)}</td>"


def render_html(blocks: list[Block], images: dict[str, bytes], title: str = "invlin report") -> str:
    """The report as a standalone HTML document; ``images`` maps figure names to PNG bytes."""
    body: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif b.kind == "paragraph":
            cls = f' class="{b.tone}"' if b.tone else ""
            body.append(f"<p{cls}>{_inline(b.text)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
            # A key–value table has blank headers: no empty header row.
            thead = f"<thead><tr>{head}</tr></thead>" if any(b.header) else ""
            rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table>{thead}<tbody>{rows}</tbody></table>")
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
