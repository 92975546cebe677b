"""Drift measurements of tracked inverses and determinants against the oracle."""

from invlin.drift.config import DEFAULTS, Configuration, checkpoints, plan_sweep
from invlin.drift.executors import run_dask, run_local, run_sweep
from invlin.drift.measure import CheckpointRecord
from invlin.drift.policies import ENGINES, POLICIES, make_track, policy_spec
from invlin.drift.regimes import REGIMES, UpdateSequence, generate
from invlin.drift.replay import replay_history
from invlin.drift.results import SCHEMA_VERSION, ConfigurationResult, TrackResult, report_data
from invlin.drift.runner import run_configuration

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
