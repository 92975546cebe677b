"""One checkpoint of a track measured against the oracle: both truths, estimators, verdict."""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from invlin.oracle import ExactMatrix, OracleResult, OracleSingularError, evaluate
from invlin.reference.estimators import estimate_drift
from invlin.testing.tolerance import allowed_ratio, forward_ratio, inverse_ratio, logdet_ratio

__all__ = ["CheckpointRecord", "OracleCache", "measure"]


@dataclass(frozen=True)
class CheckpointRecord:
    """Everything measured for one track at one checkpoint (ratios are LAPACK-style).

    Two truths: ``*_exact`` is judged against the exact matrix of the update path (A₀ plus the
    merged u vᵀ without rounding), ``*_held`` against the float matrix the track actually holds.
    ``logdet_error_*`` is tracked − true; ``estimated_*`` are the O(n²) drift estimators on the
    held matrix (probe residual ≈ ‖XA − I‖_F, Hutchinson ≈ log det(XA)) and ``true_residual`` /
    ``true_logdet_drift`` the same quantities computed in full in float64. ``allowed`` is the
    tolerance engine's allowance 30·(1 + merges); ``passed`` holds when both inverse ratios and
    both log|det| ratios are finite and within it and the tracked sign equals both true signs.
    ``seconds_per_update`` is the mean wall time of proposing one update (merge, guard, monitor,
    corrections, refreshes) since the previous checkpoint; it is the only non-deterministic field.
    Values the oracle could not give (singular truth) are NaN.
    """

    updates: int
    merged: int
    refused: int
    corrections: int
    refreshes: int
    kappa_exact: float
    kappa_held: float
    oracle_bits: int
    inverse_ratio_exact: float
    inverse_ratio_held: float
    forward_ratio_exact: float
    logdet_true: float
    logdet_tracked: float
    logdet_error_exact: float
    logdet_ratio_exact: float
    logdet_error_held: float
    logdet_ratio_held: float
    sign_tracked: int
    sign_exact: int
    sign_held: int
    estimated_residual: float
    true_residual: float
    estimated_ratio: float
    estimated_logdet_drift: float
    true_logdet_drift: float
    allowed: float
    passed: bool
    seconds_per_update: float

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return asdict(self)


class OracleCache:
    """Oracle evaluations shared between tracks at one checkpoint (same path, same held bytes)."""

    def __init__(self, backend: str = "auto"):
        self.backend = backend
        self._cache: dict[Any, OracleResult | None] = {}
        self._floats: dict[Any, np.ndarray] = {}
        self.evaluations = 0
        self.max_bits = 0
        self.backend_used: str | None = None

    def clear(self) -> None:
        """Forget the evaluations of the previous checkpoint."""
        self._cache.clear()
        self._floats.clear()

    def _run(self, key: Any, matrix: Any) -> OracleResult | None:
        if key not in self._cache:
            try:
                res = evaluate(matrix, backend=self.backend)
            except OracleSingularError:
                res = None
            self.evaluations += 1
            if res is not None:
                self.max_bits = max(self.max_bits, res.check_bits)
                self.backend_used = res.backend
            self._cache[key] = res
        return self._cache[key]

    def exact(self, key: tuple[int, ...], matrix: ExactMatrix) -> OracleResult | None:
        """Truth of the exact path identified by ``key`` (None when singular)."""
        return self._run(("exact", key), matrix)

    def exact_float(self, key: tuple[int, ...], matrix: ExactMatrix) -> np.ndarray:
        """The exact path identified by ``key`` rounded to float64, shape (n, n)."""
        if ("float", key) not in self._floats:
            self._floats[("float", key)] = matrix.to_float()
        return self._floats[("float", key)]

    def held(self, a: np.ndarray) -> OracleResult | None:
        """Truth of the float matrix ``a`` (None when singular or not finite)."""
        if not np.all(np.isfinite(a)):
            return None
        digest = hashlib.sha1(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()
        return self._run(("held", digest), a)


def _finite(x: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(x)))


def _true_drift(a: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """‖XA − I‖_F and log|det(XA)| computed in full in float64 (inf when X is not finite)."""
    if not (_finite(a) and _finite(x)):
        return math.inf, math.inf
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        xa = x @ a
        resid = float(np.linalg.norm(xa - np.eye(a.shape[0])))
        sign, lad = np.linalg.slogdet(xa)
    return resid, (float(lad) if sign != 0 else -math.inf)


def measure(
    state: Any,
    *,
    dtype: str,
    updates: int,
    counters: dict[str, int],
    exact_truth: OracleResult | None,
    exact_float: np.ndarray,
    held_truth: OracleResult | None,
    seconds_per_update: float,
    seed: Any = 0,
) -> CheckpointRecord:
    """Measure a track's ``state`` (a :class:`~invlin.drift.policies.TrackState`) at one checkpoint.

    ``exact_truth``/``held_truth``: the oracle on the exact path and on the held matrix (None when
    singular); ``exact_float``: the exact path rounded to float64, shape (n, n); ``counters``:
    merged, refused, corrections, refreshes so far; ``seed`` drives the estimators' probes.
    """
    n = state.a.shape[0]
    nan = math.nan
    finite_x = _finite(state.x)
    inv_exact = inverse_ratio(exact_float, state.x, dtype=dtype).value if finite_x else math.inf
    inv_held = inverse_ratio(state.a, state.x, dtype=dtype).value if finite_x else math.inf
    fwd = ld_err_e = ld_ratio_e = ld_true = nan
    kappa_e = nan
    sign_e = 0
    if exact_truth is not None:
        kappa_e, sign_e, ld_true = exact_truth.kappa, exact_truth.sign, exact_truth.logabsdet
        fwd = (
            forward_ratio(state.x, exact_truth.inverse, kappa=kappa_e, dtype=dtype).value
            if finite_x
            else math.inf
        )
        r = logdet_ratio(state.logabsdet, ld_true, n=n, kappa=kappa_e, dtype=dtype)
        ld_err_e, ld_ratio_e = state.logabsdet - ld_true, r.value
    ld_err_h = ld_ratio_h = kappa_h = nan
    sign_h = 0
    if held_truth is not None:
        kappa_h, sign_h = held_truth.kappa, held_truth.sign
        r = logdet_ratio(state.logabsdet, held_truth.logabsdet, n=n, kappa=kappa_h, dtype=dtype)
        ld_err_h, ld_ratio_h = state.logabsdet - held_truth.logabsdet, r.value
    est = estimate_drift(state.a, state.x, dtype=dtype, seed=seed)
    true_res, true_ld = _true_drift(state.a, state.x)
    merged = int(counters["merged"])
    allowed = allowed_ratio(merged)
    ratios = (inv_exact, inv_held, ld_ratio_e, ld_ratio_h)
    passed = (
        all(math.isfinite(x) and x <= allowed for x in ratios)
        and state.sign == sign_e
        and state.sign == sign_h
    )
    bits = max((t.bits for t in (exact_truth, held_truth) if t is not None), default=0)
    return CheckpointRecord(
        updates=int(updates),
        merged=merged,
        refused=int(counters["refused"]),
        corrections=int(counters["corrections"]),
        refreshes=int(counters["refreshes"]),
        kappa_exact=float(kappa_e),
        kappa_held=float(kappa_h),
        oracle_bits=int(bits),
        inverse_ratio_exact=float(inv_exact),
        inverse_ratio_held=float(inv_held),
        forward_ratio_exact=float(fwd),
        logdet_true=float(ld_true),
        logdet_tracked=float(state.logabsdet),
        logdet_error_exact=float(ld_err_e),
        logdet_ratio_exact=float(ld_ratio_e),
        logdet_error_held=float(ld_err_h),
        logdet_ratio_held=float(ld_ratio_h),
        sign_tracked=int(state.sign),
        sign_exact=int(sign_e),
        sign_held=int(sign_h),
        estimated_residual=float(est.residual),
        true_residual=float(true_res),
        estimated_ratio=float(est.ratio),
        estimated_logdet_drift=float(est.logdet_drift),
        true_logdet_drift=float(true_ld),
        allowed=float(allowed),
        passed=bool(passed),
        seconds_per_update=float(seconds_per_update),
    )
