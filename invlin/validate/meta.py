"""The environment a conformance run records (versions, date, options); imports no torch."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from collections.abc import Sequence
from typing import Any

__all__ = ["LIBRARY_DISTRIBUTIONS", "run_meta", "versions"]

#: Distributions whose versions the conformance metadata records when installed.
LIBRARY_DISTRIBUTIONS: tuple[str, ...] = (
    "invlin",
    "torch",
    "numpy",
    "hypothesis",
    "python-flint",
    "mpmath",
    "nflows",
    "zuko",
    "normflows",
    "FrEIA",
    "pyro-ppl",
)


def versions() -> dict[str, str]:
    """``{distribution: version}`` of every installed :data:`LIBRARY_DISTRIBUTIONS` entry."""
    out = {}
    for dist in LIBRARY_DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def run_meta(
    *,
    profile: str,
    features: int,
    dtypes: Sequence[str],
    devices: Sequence[str],
    seed: int,
    checks: Sequence[str],
) -> dict[str, Any]:
    """The ``meta`` of a :class:`~invlin.validate.results.Conformance`: the options, the date
    (UTC), Python and :func:`versions`."""
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
    }
