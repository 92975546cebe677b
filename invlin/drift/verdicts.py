"""Verdicts of a report: each track pass / expected / unexpected, one line per policy and scope,
and the exit status they give ``invlin report``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invlin.drift.expectations import expected_by
from invlin.drift.failures import CHECKS

if TYPE_CHECKING:
    from invlin.drift.results import ConfigurationResult, TrackResult

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "TRACK_VERDICTS",
    "DtypeFailures",
    "TrackVerdict",
    "VerdictLine",
    "exit_status",
    "judge",
    "verdict_lines",
]

#: Exit status of ``invlin report`` when the report was written and no failure counts.
EXIT_OK = 0
#: Exit status when an unexpected failure occurred (or, with ``--strict``, any failure).
EXIT_FAILED = 1


#: The verdicts of a track.
TRACK_VERDICTS = ("pass", "expected", "unexpected")


@dataclass(frozen=True)
class TrackVerdict:
    """``verdict``: "pass", "expected" or "unexpected"; ``expectation``: the name of the rule
    of :data:`~invlin.drift.expectations.EXPECTATIONS` that declared the failure expected."""

    verdict: str
    expectation: str | None = None


def judge(track: TrackResult, regime: str, dtype: str) -> TrackVerdict:
    """The verdict of ``track`` (run in ``regime`` and ``dtype``)."""
    failure = track.failure
    if failure is None:
        return TrackVerdict("pass")
    rule = expected_by(track.policy, regime, dtype, failure)
    return TrackVerdict("unexpected") if rule is None else TrackVerdict("expected", rule.name)


@dataclass(frozen=True)
class DtypeFailures:
    """The failed tracks of one dtype within a verdict line: how many of how many, which
    checks failed (in ``CHECKS`` order) and the earliest first failing update."""

    dtype: str
    failed: int
    tracks: int
    kinds: tuple[str, ...]
    first_failure: int


@dataclass(frozen=True)
class VerdictLine:
    """One line of the verdict summary: all tracks of one ``policy`` in one ``scope`` (the
    regime of a sweep, the layer of a replay), over dimensions, dtypes and engines.

    ``verdict``: "UNEXPECTED" when any track failed unexpectedly, else "EXPECTED" when any
    failed, else "PASS"; ``worst_margin``: the largest judged ratio ÷ allowance of its tracks;
    ``failures``: per dtype with a failure; ``expectations``: names of the rules that fired.
    """

    scope: str
    policy: str
    verdict: str
    tracks: int
    passed: int
    expected: int
    unexpected: int
    worst_margin: float
    failures: tuple[DtypeFailures, ...]
    expectations: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The line as a plain dict."""
        return {
            "scope": self.scope,
            "policy": self.policy,
            "verdict": self.verdict,
            "tracks": self.tracks,
            "passed": self.passed,
            "expected": self.expected,
            "unexpected": self.unexpected,
            "worst_margin": self.worst_margin,
            "failures": [vars(f).copy() for f in self.failures],
            "expectations": list(self.expectations),
        }


def _scope(result: ConfigurationResult) -> str:
    s = result.settings
    return s["label"] if s["regime"] == "replay" else s["regime"]


def verdict_lines(
    results: Iterable[ConfigurationResult], verdicts: dict[int, TrackVerdict]
) -> list[VerdictLine]:
    """One :class:`VerdictLine` per (scope, policy), in the order first seen; ``verdicts`` maps
    ``id(track)`` to its :func:`judge` verdict."""
    groups: dict[tuple[str, str], list[tuple[str, TrackResult]]] = {}
    for r in results:
        for t in r.tracks:
            groups.setdefault((_scope(r), t.policy), []).append((r.settings["dtype"], t))
    lines = []
    for (scope, policy), members in groups.items():
        count = {"pass": 0, "expected": 0, "unexpected": 0}
        rules: list[str] = []
        by_dtype: dict[str, list[TrackResult]] = {}
        for dtype, t in members:
            v = verdicts[id(t)]
            count[v.verdict] += 1
            if v.expectation is not None and v.expectation not in rules:
                rules.append(v.expectation)
            by_dtype.setdefault(dtype, []).append(t)
        failures = []
        for dtype, tracks in by_dtype.items():
            bad = [f for f in (t.failure for t in tracks) if f is not None]
            if bad:
                kinds = {k for f in bad for k in f.kinds}
                failures.append(
                    DtypeFailures(
                        dtype,
                        len(bad),
                        len(tracks),
                        tuple(k for k in CHECKS if k in kinds),
                        min(f.updates for f in bad),
                    )
                )
        margins = [float(t.summary["worst_margin"]) for _, t in members]
        margins = [m for m in margins if not math.isnan(m)]
        verdict = (
            "UNEXPECTED" if count["unexpected"] else "EXPECTED" if count["expected"] else "PASS"
        )
        lines.append(
            VerdictLine(
                scope,
                policy,
                verdict,
                len(members),
                count["pass"],
                count["expected"],
                count["unexpected"],
                max(margins, default=math.nan),
                tuple(failures),
                tuple(rules),
            )
        )
    return lines


def exit_status(*, unexpected: int, failed: int, strict: bool) -> int:
    """Exit status of a written report: :data:`EXIT_FAILED` when a failure was unexpected, or
    with ``strict`` when any track failed; else :data:`EXIT_OK`. (Usage errors exit 2 before
    any work, from argparse.)"""
    return EXIT_FAILED if unexpected or (strict and failed) else EXIT_OK
