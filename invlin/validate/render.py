"""Render a :class:`Conformance` as terminal text, Markdown or JSON (rendering only)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from invlin._json import jsonable
from invlin.validate.results import CheckResult, Conformance, LayerReport

__all__ = [
    "counts",
    "example_text",
    "fence",
    "fmt_number",
    "from_json",
    "jsonable",
    "md_escape",
    "perturbation_rows",
    "render",
    "render_failures",
    "render_json",
    "render_markdown",
    "render_text",
    "warnings_rows",
]

FORMATS = ("text", "markdown", "json")
_LABEL = {
    "pass": "pass",
    "fail": "FAIL",
    "error": "ERROR",
    "skip": "skip",
    "insufficient": "INSUFFICIENT",
}
_EXAMPLE_CHARS = 4000  # longer minimal examples are cut in text/Markdown (JSON keeps them whole)


# -- values --------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """A ratio as a float (JSON stores non-finite ones as strings), ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return float(value)


def fmt_number(value: Any) -> str:
    """A ratio for a table: 3 significant digits, ``inf``/``nan`` spelled out, "" for None."""
    x = _number(value)
    if x is None:
        return ""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def _ratio(r: CheckResult) -> str:
    if r.ratio is None and r.allowed is None:
        return ""
    return f"{fmt_number(r.ratio) or '—'} / {fmt_number(r.allowed) or '—'}"


def _cell(r: CheckResult | None) -> str:
    if r is None:
        return "—"
    ratio = _ratio(r)
    return f"{_LABEL.get(r.status, r.status)} {ratio}".rstrip()


def _where(r: CheckResult) -> str:
    return f"{r.dtype}/{r.device}"


def _layer_label(layer: LayerReport, libraries: set[str]) -> str:
    if len(libraries) > 1 and layer.library:
        return f"{layer.library}:{layer.name}"
    return layer.name


def counts(conformance: Conformance) -> dict[str, int]:
    """How many results have each status, plus ``layers`` and ``layer_errors``."""
    out = {
        "layers": len(conformance.layers),
        "layer_errors": 0,
        "pass": 0,
        "fail": 0,
        "error": 0,
        "skip": 0,
        "insufficient": 0,
    }
    for layer in conformance.layers:
        out["layer_errors"] += layer.error is not None
        for r in layer.results:
            out[r.status] = out.get(r.status, 0) + 1
    return out


def _headline(conformance: Conformance) -> str:
    c = counts(conformance)
    allow = bool(conformance.meta.get("allow_insufficient", False))
    verdict = "PASSED" if conformance.ok(allow_insufficient=allow) else "FAILED"
    errors = c["error"] + c["layer_errors"]
    text = (
        f"{verdict}: {c['layers']} layer(s), {c['pass']} passed, {c['fail']} failed, "
        f"{errors} error(s), {c['skip']} skipped"
    )
    if c["insufficient"]:
        text += f", {c['insufficient']} insufficient (judged no case{'; allowed' if allow else ''})"
    return text


def perturbation_rows(conformance: Conformance) -> list[tuple[str, str]]:
    """(layer, what was done to its parameters) for every layer that records it."""
    libraries = {layer.library for layer in conformance.layers}
    return [
        (_layer_label(layer, libraries), layer.perturbation)
        for layer in conformance.layers
        if layer.perturbation
    ]


def warnings_rows(meta: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(layer, category, message, where, count) of the warnings recorded in ``meta``."""
    rows = []
    for w in meta.get("warnings") or ():
        if isinstance(w, dict):
            rows.append(
                (
                    str(w.get("layer", "")),
                    str(w.get("category", "")),
                    str(w.get("message", "")),
                    str(w.get("where", "")),
                    str(w.get("count", "")),
                )
            )
    return rows


# -- the table -----------------------------------------------------------------------------
def _columns(layers: Iterable[LayerReport]) -> list[str]:
    cols: list[str] = []
    for layer in layers:
        for r in layer.results:
            if _where(r) not in cols:
                cols.append(_where(r))
    return cols


def _rows(conformance: Conformance) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the layer × check table (one column per dtype/device)."""
    cols = _columns(conformance.layers)
    libraries = {layer.library for layer in conformance.layers}
    header = ["layer", "check", *cols]
    rows: list[list[str]] = []
    for layer in conformance.layers:
        label = _layer_label(layer, libraries)
        if layer.error is not None:
            rows.append([label, "(layer)", "ERROR", *[""] * max(len(cols) - 1, 0)])
            label = ""
        checks: list[str] = []
        cells: dict[tuple[str, str], CheckResult] = {}
        for r in layer.results:
            if r.check not in checks:
                checks.append(r.check)
            cells[(r.check, _where(r))] = r
        for check in checks:
            rows.append([label, check, *(_cell(cells.get((check, c))) for c in cols)])
            label = ""
    width = max(len(header), *(len(r) for r in rows)) if rows else len(header)
    if len(header) < width:
        header += [""] * (width - len(header))
    return header, rows


def _failures(conformance: Conformance) -> list[tuple[LayerReport, CheckResult | None, list[str]]]:
    """Layer errors (result ``None``) and every failed or errored result, in table order.

    Errors of one layer with the same exception (a removed torch API raises in every check)
    are shown once; the third item lists the other ``check dtype/device`` it also hit.
    """
    out: list[tuple[LayerReport, CheckResult | None, list[str]]] = []
    for layer in conformance.layers:
        if layer.error is not None:
            out.append((layer, None, []))
        seen: dict[str, list[str]] = {}
        for r in layer.results:
            if r.status == "error" and r.exception:
                if r.exception in seen:
                    seen[r.exception].append(f"{r.check} {_where(r)}")
                    continue
                seen[r.exception] = []
                out.append((layer, r, seen[r.exception]))
            elif r.status in ("fail", "error", "insufficient"):
                out.append((layer, r, []))
    return out


def _skips(conformance: Conformance) -> list[tuple[str, str, str, str]]:
    """(layer, check, where, reason) of skipped checks, one line per distinct reason."""
    libraries = {layer.library for layer in conformance.layers}
    out: dict[tuple[str, str, str], list[str]] = {}
    for layer in conformance.layers:
        for r in layer.results:
            if r.status == "skip":
                key = (_layer_label(layer, libraries), r.check, r.message or r.exception or "")
                out.setdefault(key, []).append(_where(r))
    return [(k[0], k[1], ", ".join(v), k[2]) for k, v in out.items()]


def example_text(example: dict[str, Any]) -> str:
    """One ``key: compact JSON`` line per entry (arrays stay on one line)."""
    data = jsonable(example)
    lines = [f"{k}: {json.dumps(v, allow_nan=False)}" for k, v in data.items()]
    text = "\n".join(lines)
    if len(text) > _EXAMPLE_CHARS:
        text = text[:_EXAMPLE_CHARS] + "\n… (cut; the JSON output holds the whole example)"
    return text


def _title(layer: LayerReport, r: CheckResult | None, libraries: set[str]) -> str:
    label = _layer_label(layer, libraries)
    if r is None:
        return f"ERROR {label}: the layer could not be built or adapted"
    verdict = _LABEL.get(r.status, r.status)
    ratio = ""
    if r.ratio is not None or r.allowed is not None:
        ratio = f": ratio {fmt_number(r.ratio) or '—'}, allowed {fmt_number(r.allowed) or '—'}"
    return f"{verdict} {label} · {r.check} · {_where(r)}{ratio}"


# -- text ----------------------------------------------------------------------------------
def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def render_failures(conformance: Conformance) -> str:
    """The details of every failure and error as plain text ("" when there are none)."""
    libraries = {layer.library for layer in conformance.layers}
    blocks: list[str] = []
    for layer, r, also in _failures(conformance):
        lines = [_title(layer, r, libraries)]
        if also:
            lines.append(f"  the same exception in: {', '.join(also)}")
        if layer.target:
            lines.append(f"  target: {layer.target}")
        if r is None:
            lines.append(f"  exception: {layer.error}")
        else:
            if r.message:
                lines.append(_indent(r.message, "  "))
            if r.example is not None:
                lines += ["  minimal failing example:", _indent(example_text(r.example))]
            if r.repro:
                lines += ["  reproduce:", _indent(r.repro.rstrip())]
            if r.exception:
                lines.append(f"  exception: {r.exception}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_text(conformance: Conformance, *, title: str = "invlin validate") -> str:
    """The conformance table for a terminal, then the details of each failure.

    Cells read ``status ratio / allowed``: the worst error ratio found (tolerance-engine
    units) against the bound it was judged by; checks without a ratio show the status only.
    """
    header, rows = _rows(conformance)
    table = [header, *rows]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in table) for i in range(len(header))]
    out = [f"{title}: {_headline(conformance)}", ""]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in table]
    skips = _skips(conformance)
    if skips:
        out += ["", "skipped:"]
        out += [f"  {layer} · {check} ({where}): {reason}" for layer, check, where, reason in skips]
    moved = perturbation_rows(conformance)
    if moved:
        out += ["", "parameters moved off their initialisation before checking:"]
        out += [f"  {layer}: {text}" for layer, text in moved]
    recorded = warnings_rows(conformance.meta)
    if recorded:
        out += ["", "warnings raised while validating (not failures):"]
        out += [
            f"  {layer}: {category}: {message} ({where}, ×{count})"
            for layer, category, message, where, count in recorded
        ]
    failures = render_failures(conformance)
    if failures:
        out += ["", "failures:", "", failures]
    return "\n".join(out) + "\n"


# -- Markdown ------------------------------------------------------------------------------
def md_escape(text: Any) -> str:
    """``text`` safe inside a Markdown table cell (pipes escaped, one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def fence(text: str, lang: str = "") -> str:
    """``text`` in a Markdown code fence long enough not to be closed by its content."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in meta.items():
        if key == "warnings":  # a section of its own
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            value = " ".join(map(str, value))
        lines.append(f"- {key}: {md_escape(value)}")
    return lines


def render_markdown(
    conformance: Conformance, *, title: str = "invlin conformance", level: int = 1
) -> str:
    """The same content as :func:`render_text` as Markdown (headings start at ``level``)."""
    h = "#" * level
    out = [
        f"{h} {title}",
        "",
        f"**{_headline(conformance)}.** Cells: status, worst error "
        "ratio / allowed ratio (tolerance-engine units: error ÷ (ε of the dtype × size and "
        "condition scale); a check passes when ratio ≤ allowed).",
    ]
    meta = _meta_lines(conformance.meta)
    if meta:
        out += ["", *meta]
    header, rows = _rows(conformance)
    out += [
        "",
        "| " + " | ".join(md_escape(c) for c in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    moved = perturbation_rows(conformance)
    if moved:
        out += ["", "Parameters moved off their initialisation before checking:", ""]
        out += [f"- {md_escape(layer)}: {md_escape(text)}" for layer, text in moved]
    libraries = {layer.library for layer in conformance.layers}
    failures = _failures(conformance)
    if failures:
        out += ["", f"{h}# Failures"]
    for layer, r, also in failures:
        out += ["", f"{h}## {_title(layer, r, libraries)}"]
        if also:
            out += ["", f"The same exception in: {', '.join(also)}."]
        if layer.target:
            out += ["", f"Target: `{layer.target}`"]
        if r is None:
            out += ["", "Exception:", "", fence(str(layer.error))]
            continue
        if r.message:
            out += ["", fence(r.message)]
        if r.example is not None:
            out += ["", "Minimal failing example:", "", fence(example_text(r.example))]
        if r.repro:
            out += ["", "Reproduce:", "", fence(r.repro, "python")]
        if r.exception:
            out += ["", "Exception:", "", fence(r.exception)]
    skips = _skips(conformance)
    if skips:
        out += [
            "",
            f"{h}# Skipped checks",
            "",
            "| layer | check | where | reason |",
            "|---|---|---|---|",
        ]
        out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in skips]
    recorded = warnings_rows(conformance.meta)
    if recorded:
        out += [
            "",
            f"{h}# Warnings raised while validating",
            "",
            "Not failures: what the layers' code warned about (the first line of each "
            "distinct warning, where it was raised, how often).",
            "",
            "| layer | category | message | where | count |",
            "|---|---|---|---|---|",
        ]
        out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in recorded]
    return "\n".join(out) + "\n"


# -- JSON ----------------------------------------------------------------------------------
def render_json(conformance: Conformance) -> str:
    """``Conformance.to_dict()`` as strict JSON (non-finite numbers as strings, see
    :func:`jsonable`); it matches ``conformance.schema.json``."""
    return json.dumps(jsonable(conformance.to_dict()), indent=2, allow_nan=False) + "\n"


def from_json(text: str) -> Conformance:
    """Read :func:`render_json`'s output back (ratios stored as strings become floats)."""
    conformance = Conformance.from_dict(json.loads(text))
    for layer in conformance.layers:
        for r in layer.results:
            r.ratio, r.allowed = _number(r.ratio), _number(r.allowed)
    return conformance


def render(conformance: Conformance, fmt: str, *, title: str | None = None) -> str:
    """Render in ``fmt`` (``text``, ``markdown`` or ``json``)."""
    if fmt == "text":
        return render_text(conformance, title=title or "invlin validate")
    if fmt == "markdown":
        return render_markdown(conformance, title=title or "invlin conformance")
    if fmt == "json":
        return render_json(conformance)
    raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
