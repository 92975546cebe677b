"""The built-in drift check: a random well-conditioned rank-one walk measured against the oracle."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from invlin.oracle import ExactMatrix, evaluate
from invlin.reference.estimators import estimate_drift
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing.tolerance import allowed_ratio, inverse_ratio, logdet_ratio

__all__ = ["QuickRow", "quick_drift"]


@dataclass(frozen=True)
class QuickRow:
    """One checkpoint of :func:`quick_drift` (ratios are LAPACK-style, see invlin.testing)."""

    dtype: str
    updates: int
    kappa: float
    inverse_ratio: float
    estimated_ratio: float
    logdet_error: float
    logdet_ratio: float
    sign_ok: bool
    allowed: float
    oracle_bits: int
    backend: str

    @property
    def passed(self) -> bool:
        """Inverse and log|det| ratios within the allowance and the sign exact."""
        return (self.sign_ok and self.inverse_ratio <= self.allowed
                and self.logdet_ratio <= self.allowed)


def quick_drift(
    n: int = 32,
    updates: int = 1000,
    dtypes: Iterable[str] = ("float64", "float32"),
    *,
    scale: float = 0.05,
    seed: int = 0,
    backend: str = "auto",
) -> list[QuickRow]:
    """Track A₀ = I through ``updates`` random rank-one updates u vᵀ and compare with the oracle.

    u ~ N(0, scale²/n · I), v ~ N(0, I) (the P4Inv merge statistics); checkpoints at 1, 10, 100,
    … and the last update. The oracle evaluates the exact matrix of the update path (A₀ + Σ u vᵀ
    without rounding). Returns one :class:`QuickRow` per dtype and checkpoint.
    """
    if n < 1 or updates < 1:
        raise ValueError(f"n and updates must be positive, got n={n}, updates={updates}")
    checkpoints = sorted({10**k for k in range(20) if 10**k <= updates} | {updates})
    rows: list[QuickRow] = []
    for dt in dtypes:
        rng = np.random.default_rng(seed)
        tracked = TrackedMatrix(np.eye(n), dtype=dt, guard=Guard.off())
        exact = ExactMatrix.from_float(np.eye(n))
        for k in range(1, updates + 1):
            u = (rng.standard_normal(n) * (scale / np.sqrt(n))).astype(dt)
            v = rng.standard_normal(n).astype(dt)
            tracked.update(u, v)
            exact.apply(u, v)
            if k in checkpoints:
                truth = evaluate(exact, backend=backend)
                # The tracked inverse is judged against the exact matrix of the path.
                r = inverse_ratio(exact.to_float(), tracked.inverse, dtype=dt)
                ld = logdet_ratio(tracked.logabsdet, truth.logabsdet, n=n, kappa=truth.kappa,
                                  dtype=dt)
                est = estimate_drift(tracked.a, tracked.inverse, dtype=dt, seed=seed)
                rows.append(QuickRow(dt, k, truth.kappa, r.value, est.ratio, ld.abs_error,
                                     ld.value, tracked.sign == truth.sign, allowed_ratio(k),
                                     truth.bits, truth.backend))
    return rows
