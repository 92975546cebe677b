"""The names a drift sweep is built from, and the default sweep.

A module of constants that imports nothing heavy: ``invlin report --help`` lists these choices
without importing NumPy's linear algebra, SciPy or torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "DTYPES", "ENGINES", "EXECUTORS", "POLICIES", "REGIMES"]

#: Regime names: a well-conditioned random walk, an approach to the singular set and back, and a
#: crossing of the singular set (det changes sign).
REGIMES = ("walk", "approach", "crossing")
#: Drift policies: plain Sherman–Morrison; P4 guarded merges; guarded merges with
#: monitor-triggered correction (or refresh); plain merges with a refresh every k merges.
POLICIES = ("plain", "guarded", "monitored", "refresh")
#: Implementations a policy runs on: the NumPy reference and the torch layer.
ENGINES = ("reference", "layer")
#: Dtypes of the tracked state: bfloat16 only for the layer on a CUDA device.
DTYPES = ("float64", "float32", "bfloat16")
#: Where the configurations of a sweep run: in this process, or one task each on Dask.
EXECUTORS = ("local", "dask")

#: The default sweep of ``invlin report``.
DEFAULTS: dict[str, Any] = {
    "dims": (16, 32),
    "updates": (1000,),
    "regimes": REGIMES,
    "dtypes": ("float64", "float32"),
    "policies": POLICIES,
    "engines": ("reference", "layer"),
    "device": "cpu",
    "seed": 0,
    "backend": "auto",
    "scale": 0.05,
    "depth": 1e-10,
    "refresh_every": 100,
}
