"""Results of a sweep or replay and their JSON document (the data behind every report)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from invlin._json import jsonable
from invlin.drift.expectations import EXPECTATIONS
from invlin.drift.failures import TrackFailure, diagnose
from invlin.drift.measure import CheckpointRecord
from invlin.drift.verdicts import TRACK_VERDICTS, TrackVerdict, exit_status, judge, verdict_lines

__all__ = [
    "SCHEMA_VERSION",
    "ConfigurationResult",
    "TrackResult",
    "jsonable",
    "report_data",
    "summarize",
]

#: Version of the data.json layout (invlin/report/data.schema.json); bump on any change.
SCHEMA_VERSION = "1.1"

_JUDGED = ("inverse_ratio_exact", "inverse_ratio_held", "logdet_ratio_exact", "logdet_ratio_held")


def summarize(records: list[CheckpointRecord], updates: int, seconds: float) -> dict[str, Any]:
    """Verdict of one track over its checkpoints.

    ``passed``: every checkpoint passed; ``worst_margin``: the largest judged ratio divided by its
    allowance (> 1 fails; NaN ratios, i.e. not measured, are skipped), ``worst_at``: where;
    ``first_failure``: the first failing checkpoint (None when it passed); ``sign_errors``:
    checkpoints whose tracked sign differs from the exact path's or from the held matrix's;
    ``failure``: :func:`diagnose` as a dict (None when it passed); ``final``: the last
    checkpoint's main readings; ``seconds_per_update``: mean over the run.
    """
    if not records:
        raise ValueError("records must not be empty")
    worst, worst_at = 0.0, records[0].updates
    for r in records:
        vals = [getattr(r, k) for k in _JUDGED if not math.isnan(getattr(r, k))]
        m = max((v / r.allowed for v in vals), default=0.0)
        if m > worst:
            worst, worst_at = m, r.updates
    failed = [r for r in records if not r.passed]
    failure = diagnose(records)
    last = records[-1]
    return {
        "passed": not failed,
        "worst_margin": worst,
        "worst_at": worst_at,
        "first_failure": failed[0].updates if failed else None,
        "failure": None if failure is None else failure.to_dict(),
        "sign_errors": sum(
            r.sign_tracked != r.sign_exact or (r.sign_held != 0 and r.sign_tracked != r.sign_held)
            for r in records
        ),
        "final": {
            k: getattr(last, k)
            for k in (
                "updates",
                "merged",
                "refused",
                "corrections",
                "refreshes",
                "kappa_exact",
                "inverse_ratio_exact",
                "logdet_error_exact",
                "sign_tracked",
                "sign_exact",
                "allowed",
                "passed",
            )
        },
        "seconds_per_update": seconds / updates if updates else math.nan,
    }


@dataclass
class TrackResult:
    """One (engine, policy) track of a configuration: its checkpoints and summary."""

    engine: str
    device: str
    policy: str
    description: str
    checkpoints: list[CheckpointRecord]
    summary: dict[str, Any]

    @property
    def failure(self) -> TrackFailure | None:
        """Why the track failed (:func:`diagnose` of its checkpoints), None when it passed."""
        return diagnose(self.checkpoints)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "device": self.device,
            "policy": self.policy,
            "description": self.description,
            "summary": self.summary,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
        }


@dataclass
class ConfigurationResult:
    """All tracks of one configuration (``settings``: the configuration as a dict)."""

    settings: dict[str, Any]
    regime_description: str
    event: int | None
    planned_sigma: list[float]
    tracks: list[TrackResult]
    oracle: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "regime_description": self.regime_description,
            "event": self.event,
            "planned_sigma": self.planned_sigma,
            "oracle": self.oracle,
            "seconds": self.seconds,
            **self.extra,
            "tracks": [t.to_dict() for t in self.tracks],
        }


def report_data(
    kind: str,
    name: str,
    results: list[ConfigurationResult],
    *,
    settings: dict[str, Any],
    environment: dict[str, Any],
    wall_seconds: float,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """The data.json document of a report (``kind``: "sweep" or "replay").

    Besides the results: each track's ``summary`` gains ``verdict`` ("pass", "expected",
    "unexpected") and ``expectation`` (the rule that expected its failure); ``verdicts`` holds
    one line per policy and regime (replay: layer), ``expectations`` the rules of
    :data:`~invlin.drift.expectations.EXPECTATIONS`, ``exit_status`` what ``invlin report``
    returns for it with and without ``--strict``.
    """
    if kind not in ("sweep", "replay"):
        raise ValueError(f"kind must be 'sweep' or 'replay', got {kind!r}")
    verdicts: dict[int, TrackVerdict] = {
        id(t): judge(t, r.settings["regime"], r.settings["dtype"])
        for r in results
        for t in r.tracks
    }
    counts = {v: sum(x.verdict == v for x in verdicts.values()) for v in TRACK_VERDICTS}
    failed = counts["expected"] + counts["unexpected"]
    configurations = []
    for r in results:
        doc = r.to_dict()
        for t, td in zip(r.tracks, doc["tracks"], strict=True):
            v = verdicts[id(t)]
            td["summary"] = {**td["summary"], "verdict": v.verdict, "expectation": v.expectation}
        configurations.append(doc)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "name": name,
        "command": list(command or []),
        "settings": settings,
        "environment": environment,
        "summary": {
            "configurations": len(results),
            "tracks": len(verdicts),
            "passed": counts["pass"],
            "failed": failed,
            "expected": counts["expected"],
            "unexpected": counts["unexpected"],
        },
        "exit_status": {
            "default": exit_status(unexpected=counts["unexpected"], failed=failed, strict=False),
            "strict": exit_status(unexpected=counts["unexpected"], failed=failed, strict=True),
        },
        "verdicts": [line.to_dict() for line in verdict_lines(results, verdicts)],
        "expectations": [
            {"name": e.name, "title": e.title, "reason": e.reason} for e in EXPECTATIONS
        ],
        "wall_seconds": wall_seconds,
        "configurations": configurations,
    }
    return jsonable(doc)
