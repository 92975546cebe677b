"""Merge per-library conformance files into one summary (``reports/validate/README.md``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from invlin.validate.render import (
    counts,
    example_text,
    fence,
    fmt_number,
    from_json,
    md_escape,
    render_json,
    warnings_rows,
)
from invlin.validate.results import CheckResult, Conformance, LayerReport
from invlin.validate.triage import KINDS, TRIAGE_FILE, Verdict, load_triage, match, unmatched

__all__ = [
    "CONTEXT_SUFFIX",
    "conventions_markdown",
    "load_parts",
    "main",
    "merge",
    "render_summary",
    "run_time",
]


def load_parts(folder: str | Path) -> dict[str, Conformance]:
    """``{library: Conformance}`` read from ``folder/<library>/conformance.json``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} does not exist")
    parts = {
        p.parent.name: from_json(p.read_text(encoding="utf-8"))
        for p in sorted(folder.glob("*/conformance.json"))
    }
    if not parts:
        raise ValueError(
            f"no */conformance.json under {str(folder)!r}: run "
            f"`invlin validate --library NAME --out {folder}/NAME` first"
        )
    return parts


def merge(parts: dict[str, Conformance]) -> Conformance:
    """One table of every library's layers; ``meta["libraries"]`` keeps each run's meta."""
    layers = [layer for part in parts.values() for layer in part.layers]
    return Conformance(layers=layers, meta={"libraries": {k: v.meta for k, v in parts.items()}})


#: The folder suffix of a library's conditional run (``--context-features M --out
#: reports/validate/<library>-context``): a part of its own, with verdicts of its own.
CONTEXT_SUFFIX = "-context"


def _version(library: str, meta: dict[str, Any]) -> str:
    library = library.removesuffix(CONTEXT_SUFFIX).lower()
    versions = meta.get("versions")
    if isinstance(versions, dict):
        for key, value in versions.items():
            if key.lower().replace("-ppl", "") == library:
                return str(value)
    return str(meta.get("version", "?"))


def run_time(meta: dict[str, Any]) -> str:
    """How long a library's run took, from its meta: ``"412 s"``, with the number of layers
    validated at once when more than one (``"412 s, -j 2"``); ``"?"`` for a run that did not
    record it."""
    seconds = meta.get("wall_seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "?"
    jobs = meta.get("jobs")
    text = f"{seconds:.0f} s"
    return f"{text}, -j {jobs}" if isinstance(jobs, int) and jobs > 1 else text


def conventions_markdown() -> str:
    """The adapters' sign/direction convention table as Markdown (from
    :mod:`invlin.validate.conventions`, the one place it is written)."""
    from invlin.validate.conventions import conventions_markdown as table

    return table().rstrip("\n")


class _Group(NamedTuple):
    """Failed/errored results of one layer that one finding reports, and their verdict."""

    results: list[CheckResult]
    verdict: Verdict | None


def _grouped(verdicts: list[Verdict], lib: str, layer: LayerReport) -> list[_Group]:
    """Failed/errored results of ``layer``: failures grouped by check (every dtype/device
    together), errors by their exception (one removed torch API breaks every check), and
    apart where different verdicts explain them (a float64 and a float32 cause)."""
    out: dict[tuple[str, str, int], _Group] = {}
    for r in layer.results:
        if r.status not in ("fail", "error"):
            continue
        v = match(verdicts, lib, layer.name, r)
        what = r.exception if r.status == "error" and r.exception else r.check
        kind = "error" if r.status == "error" and r.exception else r.status
        out.setdefault((kind, what, id(v)), _Group([], v)).results.append(r)
    return list(out.values())


def _indented(text: str, lang: str = "") -> str:
    return "  " + fence(text, lang).replace("\n", "\n  ")


def _finding(
    layer: LayerReport, results: list[CheckResult], verdict: Verdict | None = None
) -> list[str]:
    checks = list(dict.fromkeys(r.check for r in results))
    where = ", ".join(dict.fromkeys(f"{r.dtype}/{r.device}" for r in results))
    worst = max(results, key=lambda r: -1.0 if r.ratio is None else float(r.ratio))
    if all(r.status == "error" for r in results):
        verb = "raises in"
    else:
        verb = "fails"
    named = ", ".join(f"`{c}`" for c in checks)
    head = f"- **{md_escape(layer.name)}** {verb} {named} ({where})"
    if worst.ratio is not None or worst.allowed is not None:
        head += f": worst ratio {fmt_number(worst.ratio)} (allowed {fmt_number(worst.allowed)})"
    lines = [head]
    if verdict is not None:
        lines += [
            "",
            f"  Verdict: **{verdict.label}** — {md_escape(verdict.summary)} "
            f"(see [Triage](#triage))",
        ]
    first = next((r for r in results if r.message or r.exception), worst)
    detail = first.message or ""
    if first.exception and first.exception not in detail:
        detail = f"{detail} — {first.exception}" if detail else first.exception
    if detail:
        lines += ["", _indented(detail)]
    shown = next((r for r in results if r.example is not None), None)
    if shown is not None:
        lines += [
            "",
            f"  Minimal failing example ({shown.check}, {shown.dtype}/{shown.device}):",
            "",
            _indented(example_text(shown.example)),
        ]
    repro = next((r.repro for r in results if r.repro), None)
    if repro:
        lines += ["", "  Reproduction:", "", _indented(repro, "python")]
    return lines


def _warnings(part: Conformance) -> list[str]:
    """Bullets for the distinct warnings a library's layers raised (which layers, where)."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for layer, category, message, where, _ in warnings_rows(part.meta):
        grouped.setdefault((category, message, where), []).append(layer.split(":", 1)[-1])
    if not grouped:
        return []
    out = ["", "Warnings raised while validating (not failures):", ""]
    out += [
        f"- {md_escape(', '.join(dict.fromkeys(layers)))}: {category} "
        f'"{md_escape(message)}" ({md_escape(where)})'
        for (category, message, where), layers in grouped.items()
    ]
    return [*out, ""]


def _environment(parts: dict[str, Conformance]) -> list[str]:
    """One line on how the runs were made (profile, dtypes, devices, torch, Python, dates)."""

    def values(key: str, sub: str | None = None) -> str:
        found = []
        for part in parts.values():
            value = part.meta.get(key)
            if sub is not None:
                value = value.get(sub) if isinstance(value, dict) else None
            if isinstance(value, list):
                value = " ".join(map(str, value))
            if value is not None and str(value) not in found:
                found.append(str(value))
        return ", ".join(found) or "?"

    dates = sorted(str(p.meta["date"]) for p in parts.values() if p.meta.get("date"))
    when = f"{dates[0]} – {dates[-1]}" if dates else "?"
    return [
        f"Runs: profile {values('profile')}, {values('features')} features, dtypes "
        f"{values('dtypes')}, devices {values('devices')}; torch "
        f"{values('versions', 'torch')}, Python {values('python')}; {when}."
    ]


_GLANCE_CHARS = 160  # the "what" column: first line of the message, cut


def _glance(parts: dict[str, Conformance], verdicts: list[Verdict]) -> list[str]:
    """Table rows: library, layer, check(s), where, worst ratio / allowed, verdict, first
    message line."""
    rows = []
    for lib, part in parts.items():
        for layer in part.layers:
            if layer.error is not None:
                rows.append([lib, layer.name, "(build)", "", "", "untriaged", layer.error])
            for group in _grouped(verdicts, lib, layer):
                results, v = group.results, group.verdict
                checks = ", ".join(dict.fromkeys(r.check for r in results))
                where = ", ".join(dict.fromkeys(f"{r.dtype}/{r.device}" for r in results))
                worst = max(results, key=lambda r: -1.0 if r.ratio is None else float(r.ratio))
                ratio = (
                    f"{fmt_number(worst.ratio)} / {fmt_number(worst.allowed)}"
                    if worst.ratio is not None
                    else ""
                )
                text = worst.message or worst.exception or ""
                if all(r.status == "error" for r in results) and worst.exception:
                    text = f"raises {worst.exception}"
                text = (text.strip().splitlines() or [""])[0]
                if len(text) > _GLANCE_CHARS:
                    text = text[: _GLANCE_CHARS - 1] + "…"
                rows.append(
                    [
                        lib,
                        layer.name,
                        checks,
                        where,
                        ratio,
                        v.kind if v is not None else "untriaged",
                        text,
                    ]
                )
    return ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]


def _checks(v: Verdict) -> str:
    return "every failing check" if "*" in v.checks else ", ".join(v.checks)


def _triage(parts: dict[str, Conformance], verdicts: list[Verdict]) -> list[str]:
    """The Triage section: every verdict that explains a finding of these runs (facts, the
    library's source, a reproduction that uses only the library), then findings without a
    verdict and verdicts that no longer match anything."""
    untriaged, stale = unmatched(verdicts, parts)
    live = [v for v in verdicts if v.library in parts and v not in stale]
    out = [
        "",
        "## Triage",
        "",
        "What each finding is, from `triage.json` (hand-written; each verdict checked by "
        "reading the library's source and running its reproduction below, which calls the "
        "library directly — no adapter — and asserts the fact; where the exact parameters "
        "matter it takes the layer from the catalog factory that built it. "
        "`tests/test_validate_triage.py` runs them all). Kinds: "
        + "; ".join(f"*{k}*: {v}" for k, v in KINDS.items())
        + ".",
    ]
    if live:
        out += ["", "| library | layer | checks | kind | what it is |", "|---|---|---|---|---|"]
        out += [
            f"| {v.library} | {md_escape(', '.join(v.layers))} | "
            f"{md_escape(_checks(v))}"
            f"{' (' + ', '.join(v.dtypes) + ')' if v.dtypes else ''} | {v.kind} | "
            f"{md_escape(v.summary)} |"
            for v in live
        ]
    for v in live:
        where = f" ({', '.join(v.dtypes)})" if v.dtypes else ""
        out += [
            "",
            f"### {v.library} · {', '.join(v.layers)} · {_checks(v)}{where}",
            "",
            f"**{v.label}.** {v.summary}",
            "",
            v.facts,
            "",
            f"Source: {v.source}",
            "",
            "Reproduction:",
            "",
            fence(v.reproduction, "python"),
        ]
    if untriaged:
        out += ["", "### Findings without a verdict", ""]
        seen = dict.fromkeys(
            f"- {lib} · {md_escape(layer)} · `{r.check}` ({r.dtype}/{r.device})"
            for lib, layer, r in untriaged
        )
        out += list(seen)
    if stale:
        out += ["", "### Verdicts that match no finding of these runs", ""]
        out += [
            f"- {v.library} · {md_escape(', '.join(v.layers))} · {_checks(v)}: "
            f"{md_escape(v.summary)}"
            for v in stale
        ]
    return out


def render_summary(
    parts: dict[str, Conformance], *, conventions: str = "", triage: list[Verdict] | None = None
) -> str:
    """The README of ``reports/validate``: a table per library, the triage (what each finding
    is, from ``triage``), then each finding with its reproduction, the convention table and
    links to the per-library reports."""
    verdicts = list(triage or [])
    out = [
        "# Conformance of flow libraries' invertible layers",
        "",
        "Each library's curated layers were validated by `invlin validate --library NAME "
        "--out reports/validate/NAME` (what `nox -s validate` runs, one environment per "
        "library at its pinned release) and the tables merged by `python -m "
        "invlin.validate.summary reports/validate` (`nox -s conformance`) into this file and "
        "`conformance.json`. Every ratio is in tolerance-engine units (error ÷ ε of the "
        "dtype, scaled by size and condition number); a check passes when ratio ≤ allowed. "
        "Each finding below is a check that failed, as the check reported it, with the "
        "minimal failing case Hypothesis shrank to and a snippet that reproduces it.",
        "",
        *_environment(parts),
        "",
        "Context: the context features M of a conditional run (`--context-features M`, its "
        f"folder named `<library>{CONTEXT_SUFFIX}`); run time: the wall-clock time of the "
        "library's whole run (every layer, dtype and check, on a shared machine, so a rough "
        "figure), with -j N when N layers ran side by side.",
        "",
        "| library | version | context | layers | conforming | pass | fail | error | skip "
        "| run time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lib, part in parts.items():
        c = counts(part)
        ok = sum(layer.passed for layer in part.layers)
        context = part.meta.get("context_features") or "—"
        out.append(
            f"| [{lib}]({lib}/conformance.md) | {_version(lib, part.meta)} | {context} | "
            f"{c['layers']} | {ok} | {c['pass']} | {c['fail']} | "
            f"{c['error'] + c['layer_errors']} | {c['skip']} | {run_time(part.meta)} |"
        )
    if verdicts:
        out += _triage(parts, verdicts)
    glance = _glance(parts, verdicts)
    if glance:
        out += [
            "",
            "## Findings at a glance",
            "",
            "One row per layer and check (or per exception a layer raised in several "
            "checks), with its kind from the triage; the details and reproductions follow.",
            "",
            "| library | layer | check | where | ratio / allowed | kind | what |",
            "|---|---|---|---|---|---|---|",
            *glance,
        ]
    out += ["", "## Findings"]
    for lib, part in parts.items():
        out += ["", f"### {lib} {_version(lib, part.meta)}", ""]
        found = False
        for layer in part.layers:
            if layer.error is not None:
                found = True
                out += [
                    f"- **{md_escape(layer.name)}** cannot be built or adapted:",
                    "",
                    _indented(layer.error),
                    "",
                ]
            for group in _grouped(verdicts, lib, layer):
                found = True
                out += [*_finding(layer, group.results, group.verdict), ""]
        if not found:
            out.append(
                "Every curated layer passed every check it could run (skips are listed "
                f"in [{lib}/conformance.md]({lib}/conformance.md))."
            )
        out += _warnings(part)
        if out[-1] == "":
            out.pop()
    if conventions:
        out += ["", "## Conventions the adapters normalise", "", conventions]
    commands = sorted({str(p.meta.get("command")) for p in parts.values() if p.meta.get("command")})
    if commands:
        out += ["", "## Commands", "", fence("\n".join(commands), "sh")]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m invlin.validate.summary [FOLDER] [--triage FILE]``: write FOLDER/README.md
    and FOLDER/conformance.json from FOLDER/*/conformance.json (default reports/validate), with
    the verdicts of FILE (default FOLDER/triage.json) when it exists."""
    from invlin.validate.output import write_text_atomic

    parser = argparse.ArgumentParser(
        prog="python -m invlin.validate.summary", description=main.__doc__
    )
    parser.add_argument("folder", nargs="?", type=Path, default=Path("reports/validate"))
    parser.add_argument(
        "--triage",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the verdicts to apply (default: FOLDER/{TRIAGE_FILE}; one triage file can serve "
        "several report folders)",
    )
    args = parser.parse_args(argv)
    triage_file = args.triage if args.triage is not None else args.folder / TRIAGE_FILE
    if args.triage is not None and not triage_file.is_file():
        where = str(triage_file)
        print(
            f"invlin.validate.summary: error: --triage file {where!r} does not exist",
            file=sys.stderr,
        )
        return 2
    try:
        parts = load_parts(args.folder)
    except ValueError as exc:
        print(f"invlin.validate.summary: error: {exc}", file=sys.stderr)
        return 2
    try:
        triage = load_triage(triage_file)
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"invlin.validate.summary: error: {exc}", file=sys.stderr)
        return 2
    readme = render_summary(parts, conventions=conventions_markdown(), triage=triage)
    write_text_atomic(args.folder / "README.md", readme)
    write_text_atomic(args.folder / "conformance.json", render_json(merge(parts)))
    print(f"written: {args.folder / 'README.md'}, {args.folder / 'conformance.json'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
