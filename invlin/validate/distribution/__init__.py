"""Whole flows validated as distributions: adapters, detection and the distribution checks.

A factory that returns a distribution (zuko ``Flow``, nflows ``Flow``, normflows
``NormalizingFlow``, torch/pyro ``TransformedDistribution``, anything with ``log_prob`` and
``sample``/``rsample``) gets :data:`DIST_CHECKS` instead of the layer checks, and each of its
inner transforms is validated as a layer of its own.
"""

from __future__ import annotations

from invlin.validate.distribution.adapter import DistributionAdapter, Part
from invlin.validate.distribution.checks import DELTA, DIST_CHECKS, applicable
from invlin.validate.distribution.detect import SUPPORTED, as_distribution, part_factory

__all__ = [
    "DELTA",
    "DIST_CHECKS",
    "SUPPORTED",
    "DistributionAdapter",
    "Part",
    "applicable",
    "as_distribution",
    "part_factory",
]
