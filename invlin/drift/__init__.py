"""Drift measurements of tracked inverses and determinants against the oracle.

The names below are imported on first use (PEP 562): ``invlin report --help`` and the modules of
constants load without NumPy's linear algebra, SciPy or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEFAULTS",
    "ENGINES",
    "POLICIES",
    "REGIMES",
    "SCHEMA_VERSION",
    "CheckpointRecord",
    "Configuration",
    "ConfigurationResult",
    "TrackResult",
    "UpdateSequence",
    "checkpoints",
    "generate",
    "make_track",
    "plan_sweep",
    "policy_spec",
    "replay_history",
    "report_data",
    "run_configuration",
    "run_dask",
    "run_local",
    "run_sweep",
]

# Where each public name lives.
_HOMES = {
    "DEFAULTS": "invlin.drift.config",
    "Configuration": "invlin.drift.config",
    "checkpoints": "invlin.drift.config",
    "plan_sweep": "invlin.drift.config",
    "run_dask": "invlin.drift.executors",
    "run_local": "invlin.drift.executors",
    "run_sweep": "invlin.drift.executors",
    "CheckpointRecord": "invlin.drift.measure",
    "ENGINES": "invlin.drift.policies",
    "POLICIES": "invlin.drift.policies",
    "make_track": "invlin.drift.policies",
    "policy_spec": "invlin.drift.policies",
    "REGIMES": "invlin.drift.regimes",
    "UpdateSequence": "invlin.drift.regimes",
    "generate": "invlin.drift.regimes",
    "replay_history": "invlin.drift.replay",
    "SCHEMA_VERSION": "invlin.drift.results",
    "ConfigurationResult": "invlin.drift.results",
    "TrackResult": "invlin.drift.results",
    "report_data": "invlin.drift.results",
    "run_configuration": "invlin.drift.runner",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'invlin.drift' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
