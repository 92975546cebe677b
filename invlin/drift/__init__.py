"""Drift measurements of tracked inverses and determinants against the oracle."""

from invlin.drift.quick import QuickRow, quick_drift

__all__ = ["QuickRow", "quick_drift"]
