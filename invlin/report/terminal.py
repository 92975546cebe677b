"""The report's verdicts as plain text for the terminal (what ``invlin report`` prints)."""

from __future__ import annotations

from typing import Any

from invlin.report.document import summary_header, summary_rows
from invlin.report.verdicts import (
    failure_rows,
    headline,
    verdict_header,
    verdict_rows,
)

__all__ = ["render_terminal"]

# Columns of the per-track table that fit a terminal: scope, n, dtype, engine, policy, max inv
# ratio, max |Δlog|det||, sign errors, verdict.
_DETAIL_COLUMNS = (0, 1, 2, 3, 4, 5, 6, 7, 12)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "") -> list[str]:
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in table
    ]


def render_terminal(data: dict[str, Any], *, details: bool = False) -> str:
    """The verdicts of ``data``: one line per policy and regime, every unexpected failure with
    its reason, the totals and what the exit status means; ``details`` puts the per-track table
    and every failure (expected ones too) before them."""
    out: list[str] = []
    if details:
        head = summary_header(data)
        out += _table(
            tuple(head[i] for i in _DETAIL_COLUMNS),
            [tuple(r[i] for i in _DETAIL_COLUMNS) for r in summary_rows(data)],
        )
        out.append("")
    failures = failure_rows(data)
    shown = failures if details else [r for r in failures if r[0] == "UNEXPECTED"]
    # The rule's name before the long list of failed checks: what a reader looks for first.
    order = (0, 1, 2, 3, 5, 4)
    out += _table(
        tuple(verdict_header(data)[i] for i in order),
        [tuple(r[i] for i in order) for r in verdict_rows(data, short=True)],
    )
    if shown:
        out.append("")
        out += [f"{r[0]}  {r[1]} n={r[2]} {r[3]} {r[4]} {r[5]}: {r[6]}" for r in shown]
    s = data["summary"]
    out.append("")
    out.append(headline(data)[0].replace("**", ""))
    out.append(
        f"{s['passed']} passed, {s['failed']} failed ({s['expected']} expected, "
        f"{s['unexpected']} unexpected; {s['tracks']} tracks, {data['wall_seconds']:.1f} s; "
        f"ratios against the exact path, allowed = 30·(1+k))"
    )
    e = data["exit_status"]
    out.append(
        f"exit status {e['default']} (0: no unexpected failure, 1: an unexpected one; "
        f"--strict: 1 on any failure, here {e['strict']}; --details: every track and failure)"
    )
    return "\n".join(out)
