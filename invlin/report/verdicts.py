"""The verdicts of a report as text: the headline, the exit status, one row per policy and
regime, one row per failed track with its reason. Shared by the terminal, Markdown and HTML."""

from __future__ import annotations

import math
from typing import Any

from invlin.report.figures import num

__all__ = [
    "exit_text",
    "failure_header",
    "failure_reason",
    "failure_rows",
    "fmt",
    "headline",
    "scope_name",
    "verdict_header",
    "verdict_rows",
]

_CHECK_ORDER = ("inverse", "log|det|", "sign")
_TRUTHS = {"exact": "exact path", "held": "held matrix"}


def fmt(x: Any, digits: int = 3) -> str:
    """A report value in ``digits`` significant digits ("–" for NaN, "inf" / "-inf")."""
    v = num(x)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def scope_name(data: dict[str, Any]) -> str:
    """What a verdict line's scope is: the regime of a sweep, the layer of a replay."""
    return "layer" if data["kind"] == "replay" else "regime"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def headline(data: dict[str, Any]) -> tuple[str, str]:
    """The one-sentence verdict of the whole report and its tone ("good" or "bad")."""
    s = data["summary"]
    passed = f"{s['passed']} of {s['tracks']} tracks passed"
    if s["unexpected"]:
        return (
            f"**{_plural(s['unexpected'], 'UNEXPECTED failure')}**: no rule of "
            f"invlin/drift/expectations.py explains "
            f"{'it' if s['unexpected'] == 1 else 'them'} (listed first under Failures). "
            f"{passed}; {s['expected']} failed as expected.",
            "bad",
        )
    if s["failed"]:
        what = "is an expected demonstration" if s["failed"] == 1 else "are expected demonstrations"
        return (
            f"**No unexpected failure.** {passed}; the {_plural(s['failed'], 'failure')} {what}.",
            "good",
        )
    return f"**All {s['tracks']} tracks passed.**", "good"


def exit_text(data: dict[str, Any]) -> str:
    """What ``invlin report`` returns for this report, and what its exit codes mean."""
    e = data["exit_status"]
    return (
        f"Exit status for this report: {e['default']}, with `--strict` {e['strict']}. "
        f"0: written, no unexpected failure; 1: written, some failure was unexpected (with "
        f"`--strict`: any failure, expected ones included); 2: usage error, nothing run."
    )


def verdict_header(data: dict[str, Any]) -> tuple[str, ...]:
    """Header of :func:`verdict_rows`."""
    return ("verdict", "policy", scope_name(data), "passed", "failed: checks from update", "why")


def _titles(data: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["title"] for e in data["expectations"]}


def verdict_rows(data: dict[str, Any], *, short: bool = False) -> list[tuple[str, ...]]:
    """One row per verdict line of ``data`` (policy × regime, or track × layer); ``short``:
    the rules by name instead of by title (for a terminal)."""
    titles = {} if short else _titles(data)
    rows = []
    for line in data["verdicts"]:
        failed = "; ".join(
            f"{f['dtype']} {f['failed']}/{f['tracks']}: {', '.join(f['kinds'])} from "
            f"{f['first_failure']}"
            for f in line["failures"]
        )
        why = [titles.get(name, name) for name in line["expectations"]]
        if line["unexpected"]:
            why.insert(0, f"{line['unexpected']} not explained by any rule")
        if not why:
            why = [f"worst ratio ÷ allowance {fmt(line['worst_margin'], 2)}"]
        rows.append(
            (
                line["verdict"],
                line["policy"],
                line["scope"],
                f"{line['passed']}/{line['tracks']}",
                failed,
                "; ".join(why),
            )
        )
    return rows


def _sign(x: Any) -> str:
    v = int(num(x))
    return {1: "+1", -1: "−1"}.get(v, "0")


def failure_reason(failure: dict[str, Any]) -> str:
    """What failed first and by how much, e.g. "inverse ratio 3.4e+03 > 2.1e+03 allowed
    (exact path, held matrix) at update 70"; later failing checks are named after it."""
    parts = []
    for check in _CHECK_ORDER:
        hits = [c for c in failure["checks"] if c["check"] == check]
        if not hits:
            continue
        if check == "sign":
            truths = ", ".join(f"{_TRUTHS[c['truth']]} {_sign(c['limit'])}" for c in hits)
            parts.append(f"tracked sign {_sign(hits[0]['value'])}, {truths}")
            continue
        over = [c for c in hits if not math.isnan(num(c["value"]))]
        if over:
            worst = max(num(c["value"]) for c in over)
            where = ", ".join(_TRUTHS[c["truth"]] for c in over)
            parts.append(
                f"{check} ratio {fmt(worst, 2)} > {fmt(over[0]['limit'], 2)} allowed ({where})"
            )
        if len(over) < len(hits):
            where = ", ".join(_TRUTHS[c["truth"]] for c in hits if c not in over)
            parts.append(f"{check} ratio not computable: singular truth ({where})")
    text = "; ".join(parts) + f" at update {failure['updates']}"
    first = {c["check"] for c in failure["checks"]}
    later = [k for k in failure["kinds"] if k not in first]
    if later:
        text += f"; later also {', '.join(later)}"
    return text + f" ({_plural(failure['failing'], 'failing checkpoint')})"


def failure_header(data: dict[str, Any]) -> tuple[str, ...]:
    """Header of :func:`failure_rows`."""
    return ("verdict", scope_name(data), "n", "dtype", "engine", "policy", "reason", "expected")


def failure_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per failed track, the unexpected ones first: what failed first, where, by how
    much, and the rule that expected it."""
    titles = _titles(data)
    rows = []
    for c in data["configurations"]:
        s = c["settings"]
        scope = s["label"] if s["regime"] == "replay" else s["regime"]
        for t in c["tracks"]:
            sm = t["summary"]
            if sm["failure"] is None:
                continue
            unexpected = sm["verdict"] == "unexpected"
            rows.append(
                (
                    "UNEXPECTED" if unexpected else "EXPECTED",
                    scope,
                    str(s["n"]),
                    s["dtype"],
                    t["engine"],
                    t["policy"],
                    failure_reason(sm["failure"]),
                    "no rule" if unexpected else titles.get(sm["expectation"], sm["expectation"]),
                )
            )
    rows.sort(key=lambda r: r[0] != "UNEXPECTED")
    return rows
