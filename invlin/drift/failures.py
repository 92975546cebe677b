"""Why a drift track failed, as data: the failed checks of its first failing checkpoint and
what any checkpoint failed on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from invlin.drift.measure import CheckpointRecord

__all__ = ["CHECKS", "CheckFailure", "TrackFailure", "diagnose"]

#: The judged checks of a checkpoint, in the order a reason names them.
CHECKS = ("inverse", "log|det|", "sign")


@dataclass(frozen=True)
class CheckFailure:
    """One failed check of a checkpoint: ``check`` (one of :data:`CHECKS`) against ``truth``
    ("exact" path or "held" matrix). Ratios: ``value`` is the measured ratio and ``limit`` the
    allowance 30·(1 + merged) (a non-finite ratio fails whatever the allowance); sign:
    ``value`` is the tracked sign and ``limit`` the true one."""

    check: str
    truth: str
    value: float
    limit: float


@dataclass(frozen=True)
class TrackFailure:
    """Why a track failed, as data.

    ``updates`` / ``merged``: the first failing checkpoint; ``checks``: what failed there;
    ``kinds``: every check (of :data:`CHECKS`) that failed at any checkpoint; ``failing``: how
    many checkpoints failed; ``kappa_peak``: the largest κ₁ of either truth (exact path, held
    matrix) at or before the first failure, inf where a truth was singular there;
    ``cleared_by_refresh``: the last checkpoint passes and an LU refresh ran after the last
    failing one.
    """

    updates: int
    merged: int
    checks: tuple[CheckFailure, ...]
    kinds: tuple[str, ...]
    failing: int
    kappa_peak: float
    cleared_by_refresh: bool

    def to_dict(self) -> dict[str, Any]:
        """The failure as a plain dict (checks as a list of dicts)."""
        return {
            "updates": self.updates,
            "merged": self.merged,
            "checks": [vars(c).copy() for c in self.checks],
            "kinds": list(self.kinds),
            "failing": self.failing,
            "kappa_peak": self.kappa_peak,
            "cleared_by_refresh": self.cleared_by_refresh,
        }


_RATIOS = (("inverse", "inverse_ratio"), ("log|det|", "logdet_ratio"))
_TRUTHS = ("exact", "held")


def _measured(records: list[CheckpointRecord]) -> set[tuple[str, str]]:
    """The (check, truth) pairs a track was judged on. A ratio that is NaN at every checkpoint,
    or a held sign that is 0 at every one, was never measured for this track (a replay's
    recorded track has no inverse and no held matrix) and is no reason for a failure; NaN at
    some checkpoints only is a singular truth there, which fails."""
    out = {
        (check, truth)
        for check, key in _RATIOS
        for truth in _TRUTHS
        if any(not math.isnan(getattr(r, f"{key}_{truth}")) for r in records)
    }
    out.add(("sign", "exact"))
    if any(r.sign_held != 0 for r in records):
        out.add(("sign", "held"))
    return out


def _failed_checks(r: CheckpointRecord, measured: set[tuple[str, str]]) -> list[CheckFailure]:
    """The ``measured`` checks of checkpoint ``r`` that fail (the rule of
    ``CheckpointRecord.passed``: a ratio must be finite and within the allowance, the tracked
    sign must equal the true one)."""
    out = []
    for check, key in _RATIOS:
        for truth in _TRUTHS:
            v = getattr(r, f"{key}_{truth}")
            if (check, truth) in measured and not (math.isfinite(v) and v <= r.allowed):
                out.append(CheckFailure(check, truth, v, r.allowed))
    for truth, sign in (("exact", r.sign_exact), ("held", r.sign_held)):
        if ("sign", truth) in measured and r.sign_tracked != sign:
            out.append(CheckFailure("sign", truth, float(r.sign_tracked), float(sign)))
    return out


def _kappa(value: float, sign: int) -> float:
    """κ₁ of a truth for the peak: a singular truth (sign 0, κ not given) counts as inf."""
    if sign == 0:
        return math.inf
    return 0.0 if math.isnan(value) else value


def diagnose(records: list[CheckpointRecord]) -> TrackFailure | None:
    """The :class:`TrackFailure` of a track's checkpoints, None when every checkpoint passed."""
    measured = _measured(records)
    failing = [(i, _failed_checks(r, measured)) for i, r in enumerate(records) if not r.passed]
    if not failing:
        return None
    first, checks = failing[0]
    kinds = {c.check for _, cs in failing for c in cs}
    peak = max(
        max(_kappa(r.kappa_exact, r.sign_exact), _kappa(r.kappa_held, r.sign_held))
        for r in records[: first + 1]
    )
    last = records[-1]
    return TrackFailure(
        updates=records[first].updates,
        merged=records[first].merged,
        checks=tuple(checks),
        kinds=tuple(k for k in CHECKS if k in kinds),
        failing=len(failing),
        kappa_peak=peak,
        cleared_by_refresh=last.passed and last.refreshes > records[failing[-1][0]].refreshes,
    )
