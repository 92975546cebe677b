"""NumPy float64 references: rank-one tracked matrices (P4Inv) and LU-Net layers."""

from invlin.reference.activations import BentIdentity, LeakySoftplus
from invlin.reference.estimators import (
    DriftEstimate,
    estimate_drift,
    hutchinson_logdet_drift,
    probe_residual,
)
from invlin.reference.lu import LULayer, LUNet
from invlin.reference.rank_one import Guard, TrackedMatrix, UpdateRefused, UpdateResult

__all__ = [
    "BentIdentity",
    "DriftEstimate",
    "Guard",
    "LULayer",
    "LUNet",
    "LeakySoftplus",
    "TrackedMatrix",
    "UpdateRefused",
    "UpdateResult",
    "estimate_drift",
    "hutchinson_logdet_drift",
    "probe_residual",
]
