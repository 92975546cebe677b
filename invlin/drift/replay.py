"""Replay a merge history recorded by P4Scheduler against the oracle, to audit a training run."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from invlin.drift.config import checkpoints
from invlin.drift.measure import CheckpointRecord, OracleCache, measure
from invlin.drift.policies import TrackState
from invlin.drift.results import ConfigurationResult, TrackResult, summarize
from invlin.oracle import ExactMatrix
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing.tolerance import allowed_ratio, logdet_ratio

__all__ = ["load_history", "replay_history"]

_FIELDS = ("a0", "u", "v", "c", "logabsdet", "sign")


def load_history(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read a ``MergeHistory.save`` file and check its layout: ``{layer: {field: array}}``.

    Raises ValueError naming the file and the layer/field for a missing or malformed entry.
    """
    from invlin.nn.scheduler import MergeHistory

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"history must be an existing .npz file, got {str(path)!r}")
    try:
        layers = MergeHistory.load(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"history {str(path)!r} is not a MergeHistory .npz file: {exc}") from exc
    if not layers:
        raise ValueError(f"history {str(path)!r} records no layer")
    for name, rec in layers.items():
        missing = [f for f in _FIELDS if f not in rec]
        if missing:
            raise ValueError(f"history {str(path)!r}: layer {name!r} lacks {missing}")
        a0 = rec["a0"]
        if a0.ndim != 2 or a0.shape[0] != a0.shape[1] or not np.all(np.isfinite(a0)):
            raise ValueError(f"history {str(path)!r}: layer {name!r} has a bad a0 {a0.shape}")
        k = rec["c"].shape[0]
        for f in ("u", "v"):
            if rec[f].shape != (k, a0.shape[0]) or not np.all(np.isfinite(rec[f])):
                raise ValueError(f"history {str(path)!r}: layer {name!r} field {f!r} must be "
                                 f"finite of shape ({k}, {a0.shape[0]}), got {rec[f].shape}")
        for f in ("logabsdet", "sign"):
            if rec[f].shape != (k,):
                raise ValueError(f"history {str(path)!r}: layer {name!r} field {f!r} must have "
                                 f"shape ({k},), got {rec[f].shape}")
    return layers


def _recorded(m: int, n: int, dtype: str, truth, lad: float, sign: int) -> CheckpointRecord:
    nan = math.nan
    allowed = allowed_ratio(m)
    if truth is None:
        err = ratio = kappa = true_lad = nan
        sign_e, bits, passed = 0, 0, False
    else:
        kappa, true_lad, sign_e, bits = truth.kappa, truth.logabsdet, truth.sign, truth.bits
        ratio = logdet_ratio(lad, true_lad, n=n, kappa=kappa, dtype=dtype).value
        err = lad - true_lad
        passed = math.isfinite(ratio) and ratio <= allowed and sign == sign_e
    return CheckpointRecord(
        updates=m, merged=m, refused=0, corrections=0, refreshes=0, kappa_exact=float(kappa),
        kappa_held=nan, oracle_bits=int(bits), inverse_ratio_exact=nan, inverse_ratio_held=nan,
        forward_ratio_exact=nan, logdet_true=float(true_lad), logdet_tracked=float(lad),
        logdet_error_exact=float(err), logdet_ratio_exact=float(ratio), logdet_error_held=nan,
        logdet_ratio_held=nan, sign_tracked=int(sign), sign_exact=int(sign_e), sign_held=0,
        estimated_residual=nan, true_residual=nan, estimated_ratio=nan,
        estimated_logdet_drift=nan, true_logdet_drift=nan, allowed=float(allowed),
        passed=bool(passed), seconds_per_update=nan)


def replay_history(
    path: str | Path, *, dtype: str = "float64", backend: str = "auto", seed: int = 0
) -> list[ConfigurationResult]:
    """Replay every layer of the history at ``path`` against the oracle.

    Per layer: the recorded merges (u_k, v_k) are added exactly to the recorded starting matrix
    a0; at log-spaced merge counts the oracle evaluates that exact matrix, and two tracks are
    measured: ``recorded`` (the log|det| and sign the layer held after each merge, as saved; its
    inverse was not saved) and ``reference`` (the NumPy TrackedMatrix re-tracking the same merges
    in ``dtype`` — the state dtype the layer used, float64 by default — with no guard, since
    every recorded merge was accepted). Layers without merges are skipped; a history without any
    merge raises ValueError.
    """
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    layers = load_history(path)
    results = []
    for name, rec in layers.items():
        k = int(rec["c"].shape[0])
        if k == 0:
            continue
        start = time.perf_counter()
        a0 = rec["a0"].astype(np.float64)
        n = a0.shape[0]
        exact = ExactMatrix.from_float(a0)
        tracked = TrackedMatrix(a0.astype(dtype), dtype=dtype, guard=Guard.off())
        oracle = OracleCache(backend)
        marks = set(checkpoints(k))
        recorded, retracked = [], []
        spent = since = 0.0
        last = 0
        for j in range(k):
            u, v = rec["u"][j], rec["v"][j]
            exact.apply(u, v)
            t0 = time.perf_counter()
            tracked.update(u.astype(dtype), v.astype(dtype), on_refuse="skip")
            dt = time.perf_counter() - t0
            spent, since = spent + dt, since + dt
            m = j + 1
            if m not in marks:
                continue
            oracle.clear()
            truth = oracle.exact((), exact)
            recorded.append(_recorded(m, n, dtype, truth, float(rec["logabsdet"][j]),
                                      int(rec["sign"][j])))
            state = TrackState(tracked.a.astype(np.float64), tracked.inverse.astype(np.float64),
                               int(tracked.sign), float(tracked.logabsdet))
            counters = {"merged": tracked.updates, "refused": tracked.refused, "corrections": 0,
                        "refreshes": 0}
            retracked.append(measure(state, dtype=dtype, updates=m, counters=counters,
                                     exact_truth=truth, exact_float=exact.to_float(),
                                     held_truth=oracle.held(state.a),
                                     seconds_per_update=since / (m - last), seed=[seed, m]))
            since, last = 0.0, m
        tracks = [
            TrackResult("recorded", "-", "as-recorded",
                        "log|det| and sign saved by P4Scheduler after each merge",
                        recorded, summarize(recorded, k, math.nan)),
            TrackResult("reference", "cpu", "plain",
                        f"NumPy TrackedMatrix re-tracking the recorded merges in {dtype}",
                        retracked, summarize(retracked, k, spent)),
        ]
        settings = {"label": name or "(root module)", "regime": "replay", "n": n, "updates": k,
                    "dtype": dtype, "backend": backend, "seed": seed}
        results.append(ConfigurationResult(
            settings=settings,
            regime_description=f"{k} merges recorded by P4Scheduler(record=True)",
            event=None, planned_sigma=[], tracks=tracks,
            oracle={"backend": oracle.backend_used or backend, "evaluations": oracle.evaluations,
                    "max_bits": oracle.max_bits},
            seconds=time.perf_counter() - start,
            extra={"source": str(path), "layer": name}))
    if not results:
        raise ValueError(f"history {str(path)!r} records no merge")
    return results
