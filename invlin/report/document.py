"""The report's content as format-neutral blocks, built from the data document."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from invlin.report.figures import FIGURES, num
from invlin.report.verdicts import (
    exit_text,
    failure_header,
    failure_rows,
    fmt,
    headline,
    scope_name,
    verdict_header,
    verdict_rows,
)

__all__ = ["Block", "build_document", "summary_header", "summary_rows"]


@dataclass(frozen=True)
class Block:
    """One element of a report: ``kind`` is "heading" (``level``, ``text``), "paragraph"
    (``text``), "list" (``items``), "table" (``header``, ``rows``), "figure" (``name`` = PNG
    file, ``text`` = caption) or "code" (``text``); ``tone`` ("good", "bad" or "") marks a
    paragraph that carries the report's verdict."""

    kind: str
    text: str = ""
    level: int = 2
    items: tuple[str, ...] = ()
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    name: str = ""
    tone: str = ""


def _max(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return max(vals) if vals else math.nan


def summary_header(data: dict[str, Any]) -> tuple[str, ...]:
    """Header of :func:`summary_rows` (the first column is the regime, or a replay's layer)."""
    return (scope_name(data), *_SUMMARY_COLUMNS)


_SUMMARY_COLUMNS = (
    "n",
    "dtype",
    "engine",
    "policy",
    "max inv ratio",
    "max |Δlog|det||",
    "sign errors",
    "merged / refused",
    "corr. / refr.",
    "µs / update",
    "worst ratio ÷ allowed",
    "verdict",
)


def summary_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """One summary row per track (see :func:`summary_header`); ratios against the exact path;
    the verdict says whether a failure was expected."""
    rows = []
    for c in data["configurations"]:
        s = c["settings"]
        for t in c["tracks"]:
            cps = t["checkpoints"]
            sm = t["summary"]
            final = sm["final"]
            inv = _max([num(cp["inverse_ratio_exact"]) for cp in cps])
            ld = _max([abs(num(cp["logdet_error_exact"])) for cp in cps])
            verdict = (
                "PASS"
                if sm["passed"]
                else f"FAIL {'UNEXPECTED' if sm['verdict'] == 'unexpected' else 'expected'} "
                f"(from update {sm['first_failure']})"
            )
            rows.append(
                (
                    s["regime"] if s["regime"] != "replay" else s["label"],
                    str(s["n"]),
                    s["dtype"],
                    t["engine"],
                    t["policy"],
                    fmt(inv),
                    fmt(ld),
                    str(sm["sign_errors"]),
                    f"{final['merged']} / {final['refused']}",
                    f"{cps[-1]['corrections']} / {cps[-1]['refreshes']}",
                    fmt(1e6 * num(sm["seconds_per_update"]), 2),
                    fmt(sm["worst_margin"], 2),
                    verdict,
                )
            )
    return rows


def _environment(data: dict[str, Any]) -> Block:
    env = data["environment"]
    pk = env.get("packages", {})
    oracle = env.get("oracle", {})
    rows = [
        ("Python", f"{env.get('python')} on {env.get('platform')} ({env.get('cpus')} CPUs)"),
        ("packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v)),
        (
            "device",
            env.get("device", "cpu")
            + (
                f" ({env['device_name']}, CUDA {env.get('cuda')})" if env.get("device_name") else ""
            ),
        ),
        (
            "oracle",
            f"{oracle.get('backend', '?')}, {oracle.get('evaluations', '?')} "
            f"evaluations, working precision chosen per matrix from κ (log₂κ + 64 + 20 "
            f"bits) and confirmed at a higher one; largest confirming precision "
            f"{oracle.get('max_bits', '?')} bits",
        ),
        ("wall time", f"{fmt(data.get('wall_seconds'), 3)} s"),
    ]
    return Block("table", header=("", ""), rows=tuple(rows))


def _settings_text(data: dict[str, Any]) -> str:
    st = data["settings"]
    if data["kind"] == "replay":
        return (
            f"Replay of `{st.get('history')}`: every recorded merge is applied exactly to the "
            f"recorded starting matrix and the oracle evaluates the result at log-spaced "
            f"merges; the recorded log|det| and sign are judged against it, and the same "
            f"merges are re-tracked by the NumPy reference in {st.get('dtype')} to show "
            f"what the tracked inverse does on this path (the history does not store the "
            f"layer's inverse)."
        )
    parts = [
        f"regimes {', '.join(st['regimes'])}",
        f"n ∈ {{{', '.join(map(str, st['dims']))}}}",
        f"{' / '.join(map(str, st['updates']))} updates",
        f"dtypes {', '.join(st['dtypes'])}",
        f"policies {', '.join(st['policies'])}",
        f"engines {', '.join(st['engines'])} (device {st['device']})",
        f"seed {st['seed']}",
        f"depth {st['depth']:g}",
        f"step scale {st['scale']:g}",
        f"refresh every {st['refresh_every']} merges",
        f"executor {st['executor']}",
    ]
    return "Sweep: " + "; ".join(parts) + "."


_READING = (
    "Every number is judged by the tolerance engine (`invlin.testing`): inverse ratio "
    "‖I − XA‖₁/(n‖A‖₁‖X‖₁ε), log|det| ratio |ℓ − ℓ*|/(nκ₁ε), with ε the unit roundoff of the "
    "tracked dtype. A fresh backward-stable computation scores O(1); after k merges the allowance "
    "is 30·(1 + k). Two truths: the *exact path* (A₀ plus every merged u vᵀ, summed without "
    "rounding) and the *held* float matrix the layer actually keeps; a checkpoint passes when both "
    "inverse ratios and both log|det| ratios are within the allowance and the tracked sign of det "
    "equals both true signs. A track passes when every checkpoint does. The forward-error ratio "
    "of X against the true inverse and the estimator readings are reported in data.json / CSV, "
    "not judged. The scales grow with κ: at a near-singular checkpoint even a large absolute "
    "error can be within the allowance (no computation in that dtype can do better there); an "
    "error that stays after κ has come back down is not. That is a judgement of fitness for use "
    "(is the tracked state now as good as k fresh computations at the current matrix?); the "
    "property suites ask a different question (is the code as good as any Sherman–Morrison "
    "implementation can be on this path?) and use the path allowance of `invlin.testing.paths`, "
    "which equals 30·(1 + k) while κ and ‖A‖ stay put and grows where an error made at high κ "
    "legitimately survives. Both come from the same engine; a report FAIL on a path whose κ "
    "varied can therefore be a limit of the method rather than a defect of the code. Timing "
    "fields are the only non-deterministic values."
)

_POLICY_NOTES = (
    "plain: Sherman–Morrison + determinant lemma with no guard",
    "guarded: the P4Inv merge guard (refuse log|c| ≤ −6 or log|det| outside (−2.5, 15.5)); "
    "P4Scheduler's forced merges are not simulated because the proposals here do not react to "
    "the penalty",
    "monitored: the guard plus the drift monitor after every merge (O(n²) probes; estimated ratio "
    "> 100 → one Newton–Schulz step, or an LU refresh when the residual estimate is ≥ 0.25); a "
    "correction repairs X but not the tracked log|det|, so the monitor also refreshes when κ₁ "
    "has fallen 100× below its peak since the last LU (a log|det| error made at the peak is "
    "seen by no probe and stays after κ has come back down)",
    "refresh: no guard; X, sign and log|det| recomputed by LU every `refresh_every` merges",
    "engines: `reference` is the NumPy TrackedMatrix, `layer` the torch P4InvLinear (its own "
    "merge, guard and monitor code)",
)


def _regimes(data: dict[str, Any]) -> Block:
    seen: dict[str, str] = {}
    for c in data["configurations"]:
        seen.setdefault(c["settings"]["regime"], c["regime_description"])
    return Block("list", items=tuple(f"{k}: {v}" for k, v in seen.items()))


def _verdict_blocks(data: dict[str, Any]) -> list[Block]:
    """The report's lead: headline, exit status, one line per policy and regime, the rules
    that fired, and every failed track with its reason."""
    text, tone = headline(data)
    blocks = [
        Block("paragraph", text, tone=tone),
        Block("paragraph", exit_text(data)),
        Block(
            "heading",
            "Verdicts by policy and regime"
            if data["kind"] == "sweep"
            else "Verdicts by track and layer",
        ),
        Block("table", header=verdict_header(data), rows=tuple(verdict_rows(data))),
        Block(
            "paragraph",
            "One line for all dimensions, dtypes and engines of a policy; PASS: every track "
            "passed; EXPECTED: every failure is a demonstration named in *why*; UNEXPECTED: "
            "at least one failure no rule explains. *failed*: per dtype, failed tracks, the "
            "checks that failed (inverse ratio, log|det| ratio, sign of det) and the earliest "
            "update at which one failed.",
        ),
    ]
    fired = {name for line in data["verdicts"] for name in line["expectations"]}
    if fired:
        blocks += [
            Block("heading", "Why these failures are expected", level=3),
            Block(
                "list",
                items=tuple(
                    f"**{e['title']}.** {e['reason']}"
                    for e in data["expectations"]
                    if e["name"] in fired
                ),
            ),
            Block(
                "paragraph",
                "These rules are declared once, in invlin/drift/expectations.py; a failure "
                "none of them matches is unexpected.",
            ),
        ]
    rows = failure_rows(data)
    if rows:
        blocks += [
            Block("heading", "Failures"),
            Block("table", header=failure_header(data), rows=tuple(rows)),
        ]
    return blocks


def build_document(data: dict[str, Any], figures: list[str]) -> list[Block]:
    """The blocks of the report for ``data``; ``figures`` lists the PNG files present."""
    title = "invlin drift report" if data["kind"] == "sweep" else "invlin replay report"
    blocks = [
        Block("heading", f"{title}: {data['name']}", level=1),
        *_verdict_blocks(data),
        Block("heading", "All tracks"),
        Block("paragraph", _settings_text(data)),
        Block("table", header=summary_header(data), rows=tuple(summary_rows(data))),
        Block(
            "paragraph",
            "max inv ratio and max |Δlog|det|| are over the checkpoints, "
            "against the exact path; merged / refused, corrections / "
            "refreshes at the last checkpoint; verdict from the tolerance "
            "engine's thresholds.",
        ),
        Block("heading", "How to read it"),
        Block("paragraph", _READING),
    ]
    if data["kind"] == "sweep":
        blocks += [
            Block("heading", "Regimes", level=3),
            _regimes(data),
            Block("heading", "Policies and engines", level=3),
            Block("list", items=_POLICY_NOTES),
        ]
    blocks.append(Block("heading", "Figures"))
    for name in figures:
        blocks.append(Block("figure", FIGURES.get(name, name), name=name))
    blocks += [
        Block("heading", "Environment"),
        _environment(data),
        Block("heading", "Files"),
        Block(
            "list",
            items=(
                f"data.json: everything above, schema version {data['schema_version']} "
                f"(JSON Schema: invlin/report/data.schema.json)",
                "checkpoints.csv: one row per track and checkpoint",
                "summary.csv: the summary table",
                "report.md, report.html (self-contained), *.png",
            ),
        ),
    ]
    if data.get("command"):
        blocks += [
            Block("heading", "Reproduce"),
            Block("code", "invlin " + " ".join(data["command"])),
        ]
    return blocks
