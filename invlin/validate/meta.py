"""The environment a conformance run records (versions, date, options); imports no torch."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import platform
from collections.abc import Iterable, Sequence
from typing import Any

from invlin._validation import positive_int
from invlin.validate.results import LayerReport

__all__ = ["LIBRARY_DISTRIBUTIONS", "checks_run", "run_meta", "versions"]

#: Distributions whose versions the conformance metadata records when installed (with the
#: pip package of every built-in adapter plug-in, :data:`invlin.validate.registry.BUILTIN`).
LIBRARY_DISTRIBUTIONS: tuple[str, ...] = (
    "invlin",
    "torch",
    "numpy",
    "hypothesis",
    "python-flint",
    "mpmath",
)


def versions() -> dict[str, str]:
    """``{distribution: version}`` of every installed :data:`LIBRARY_DISTRIBUTIONS` entry and
    built-in plug-in library."""
    from invlin.validate.registry import BUILTIN

    out = {}
    for dist in dict.fromkeys((*LIBRARY_DISTRIBUTIONS, *(b.package for b in BUILTIN.values()))):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def checks_run(selected: Sequence[str], layers: Iterable[LayerReport]) -> list[str]:
    """The checks of a run for its metadata: the ``selected`` ones (in their order), then
    every other check some layer has a result of, in the order they first appear — the
    distribution checks a whole flow gets in place of the layer checks (which go to its
    inner transforms), whichever were selected."""
    return list(dict.fromkeys([*selected, *(r.check for lr in layers for r in lr.results)]))


def run_meta(
    *,
    profile: str,
    features: int,
    dtypes: Sequence[str],
    devices: Sequence[str],
    seed: int,
    checks: Sequence[str],
    wall_seconds: float | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """The ``meta`` of a :class:`~invlin.validate.results.Conformance`: the options, the date
    (UTC), Python and :func:`versions`; ``wall_seconds`` (the run's wall-clock time, s, rounded
    to 0.1 s) and ``jobs`` (layers validated at once, which that time depends on) when given."""
    if wall_seconds is not None and not (wall_seconds >= 0 and math.isfinite(wall_seconds)):
        raise ValueError(f"wall_seconds must be a finite number >= 0, got {wall_seconds!r}")
    timing: dict[str, Any] = {}
    if wall_seconds is not None:
        timing["wall_seconds"] = round(float(wall_seconds), 1)
    if jobs is not None:
        timing["jobs"] = positive_int(jobs, "jobs")
    return {
        "profile": profile,
        "features": features,
        "dtypes": list(dtypes),
        "devices": list(devices),
        "seed": seed,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "versions": versions(),
        "checks": list(checks),
        **timing,
    }
