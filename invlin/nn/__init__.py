"""Torch layers: P4InvLinear with its scheduler and drift monitor, and the LU-Net family."""

from invlin.nn.activations import BentIdentity, LeakySoftplus
from invlin.nn.lu import LULinear
from invlin.nn.lunet import LUNet, dequantize
from invlin.nn.monitor import DriftMonitor, DriftReading, probe_drift
from invlin.nn.p4 import P4InvLinear, merge_layers
from invlin.nn.p4_cache import cached_products
from invlin.nn.scheduler import MergeHistory, P4Scheduler, reset_optimizer_state
from invlin.nn.sequential import InvertibleSequential

__all__ = [
    "BentIdentity",
    "DriftMonitor",
    "DriftReading",
    "InvertibleSequential",
    "LULinear",
    "LUNet",
    "LeakySoftplus",
    "MergeHistory",
    "P4InvLinear",
    "P4Scheduler",
    "cached_products",
    "dequantize",
    "merge_layers",
    "probe_drift",
    "reset_optimizer_state",
]
