"""The issue's speed goals and which result rows they apply to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["GOALS", "Goal", "judge"]


@dataclass(frozen=True)
class Goal:
    """``value`` ≤ ``limit`` for rows of ``case`` where ``applies`` holds (``where`` says so)."""

    case: str
    limit: float
    where: str
    applies: Callable[[dict[str, object]], bool]
    value: str = "ratio"


def _n(row: dict[str, object]) -> int:
    return int(row.get("n", 0))  # type: ignore[call-overload]


GOALS: tuple[Goal, ...] = (
    Goal(
        "p4_forward",
        1.15,
        "n ≥ 256, autograd on",
        lambda r: _n(r) >= 256 and r.get("mode") == "grad",
    ),
    Goal(
        "p4_inverse",
        1.15,
        "n ≥ 256, autograd on",
        lambda r: _n(r) >= 256 and r.get("mode") == "grad",
    ),
    # The same goal with u changed before every call: what a training step pays per update, so
    # the products P4InvLinear reuses between calls with unchanged parameters do not count.
    Goal(
        "p4_forward_fresh",
        1.15,
        "n ≥ 256, autograd on, nothing reused",
        lambda r: _n(r) >= 256 and r.get("mode") == "grad",
    ),
    Goal(
        "p4_inverse_fresh",
        1.15,
        "n ≥ 256, autograd on, nothing reused",
        lambda r: _n(r) >= 256 and r.get("mode") == "grad",
    ),
    Goal("merge_vs_inv", 0.1, "n = 1024", lambda r: _n(r) == 1024),
    Goal("lu_inverse", 2.0, "n = 1024", lambda r: _n(r) == 1024),
    Goal("leaky_softplus_inverse", 5.0, "all n", lambda r: True),
    Goal("training_step", 1.3, "all n", lambda r: True),
    Goal("monitor_training_step", 1.05, "n = 64, 256, 1024", lambda r: _n(r) in (64, 256, 1024)),
    Goal("training_step_compiled", 1.3, "all n, both flows compiled", lambda r: True),
    Goal("report_wall_time", 60.0, "default workload", lambda r: True, value="seconds"),
    Goal("validate_vs_import_torch", 4.0, "6-feature LULinear, ci profile", lambda r: True),
)


def judge(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Annotate each row with ``goal`` (the limit, or None) and ``met`` (bool, or None)."""
    for r in rows:
        r["goal"], r["met"] = None, None
        for g in GOALS:
            if r.get("case") == g.case and g.value in r and g.applies(r):
                r["goal"] = g.limit
                r["met"] = bool(float(r[g.value]) <= g.limit)  # type: ignore[arg-type]
    return rows
