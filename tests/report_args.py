"""Command-line arguments of the smallest useful ``invlin report`` sweep, shared by the tests of
the command's behaviour (output folders, error handling) that need a real but quick run."""

from __future__ import annotations

__all__ = ["TINY_SWEEP"]

#: One n = 4 reference track of the plain policy through 8 random-walk updates, no progress bar.
TINY_SWEEP = [
    "report",
    "--dims",
    "4",
    "--updates",
    "8",
    "--regimes",
    "walk",
    "--dtypes",
    "float64",
    "--engines",
    "reference",
    "--policies",
    "plain",
    "--no-progress",
]
