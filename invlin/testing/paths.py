"""Allowed errors of an inverse and log|det| tracked along a rank-one path whose κ varies.

:func:`invlin.testing.allowed_ratio` charges each of k updates one fresh-size error *in the
units of the final matrix*, 30·(1 + k). That is right while κ and the scale of A stay put, but an
error committed where the path was worse conditioned keeps its size when κ later falls, and
Sherman–Morrison can amplify it: on the scalar path a ← 0.6·a repeated 30 times (n = 1, κ = 1) the
tracked inverse of float64 ends about 2·10³ times over that allowance, because each computed
c = 1 + vᵀXu passes the relative error of X on multiplied by |c − 1|/|c|. This module gives the
allowance that follows from the same per-update assumption when κ varies; it reduces to
30·(1 + k) when κ and ‖A‖ are constant and the updates small, and is never below it.

Derivation (first order, 1-norms, ε the unit roundoff, κ_j = ‖A_j‖‖A_j⁻¹‖, A_0 … A_e the exact
matrices of the path):

* Inverse. In exact arithmetic Sherman–Morrison maps X to (X⁻¹ + u vᵀ)⁻¹, so X⁻¹ − A is left
  unchanged by later updates and a residual R_j = I − X_jA_j present after update j becomes
  R_e = X_e X_j⁻¹ R_j after update e, with ‖X_e X_j⁻¹‖ = ‖A_e⁻¹A_j‖ to first order. A fresh-size
  residual ‖R_j‖ ≤ T·nεκ_j therefore counts ``T·a_je`` in the units nεκ_e of the end, with
  a_je = ‖A_e⁻¹A_j‖·κ_j/κ_e. Update j rounds both what it reads from X_{j−1} (Xu, vᵀX, c: an
  error of X_{j−1}, charged a_{j−1,e}) and what it writes into X_j = X_{j−1} − (Xu)(vᵀX)/c: that
  subtraction errs by ε·‖X_{j−1}‖ (and ε·|c − 1|·‖T‖/|c| from rounding c), which is
  ‖X_{j−1}‖/‖X_j‖ fresh units of X_j when the terms cancel — n = 1, c = −190 gives 190 — so it is
  charged a_je·max(1, ‖X_{j−1}‖/‖X_j‖). One fresh-size error per update, at the worse end, with
  each a clipped below at 1: ``inverse[e] = T·(a_0e + Σ_{j=1..e} max(a_{j−1,e},
  a_je·max(1, ‖X_{j−1}‖/‖X_j‖)))``.
* log|det|. ℓ_e = ℓ_0 + Σ log|c_j| with c_j formed from X_{j−1}: c_j − c*_j = −vᵀR A⁻¹u, so
  |Δc_j|/|c_j| ≤ ‖R_{j−1}‖·b_j with b_j = ‖(A⁻¹u)vᵀ‖/|c_j| = ‖I − A_j⁻¹A_{j−1}‖; bounding
  ‖R_{j−1}‖ by ``inverse[j−1]`` plus one fresh-size term for forming c, and adding the rounding
  of log|c_j| (T) and of the running sum (T·|ℓ_j|/(nκ_e)), in units nεκ_e:
  ``logabsdet[e] = T·max(1, κ_0/κ_e)
  + Σ_{j=1..e} [T·(1 + |ℓ_j|/(nκ_e)) + (inverse[j−1] + T)·b_j·κ_{j−1}/κ_e]``.

Both are clipped below at ``allowed_ratio(e)``. Measured ratios on the strategies' paths (benign,
sign flips, near-guard factors, crossings of det = 0) stay below 0.15 of these allowances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from invlin.testing.tolerance import THRESHOLD, allowed_ratio

__all__ = ["PathAllowance", "path_allowance"]


@dataclass(frozen=True)
class PathAllowance:
    """Allowed ratios after each prefix of a path of k updates (arrays of shape ``(k + 1,)``).

    ``inverse[e]``: allowed LAPACK inverse ratio of the inverse tracked through the first e
    updates; ``logabsdet[e]``: allowed log|det| ratio (units n·κ₁(A_e)·ε); ``kappa[e]``: κ₁(A_e);
    ``amplification[j, e]`` (shape ``(k + 1, k + 1)``): a_je = ‖A_e⁻¹A_j‖₁κ_j/κ_e for j ≤ e.
    """

    inverse: np.ndarray
    logabsdet: np.ndarray
    kappa: np.ndarray
    amplification: np.ndarray


def _stack(items: Sequence[Any], name: str) -> np.ndarray:
    try:
        arr = np.array([np.asarray(m, dtype=np.float64) for m in items])
    except ValueError as exc:
        raise ValueError(f"{name} must be a sequence of (n, n) matrices of one size") from exc
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty sequence of (n, n) matrices, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def path_allowance(
    matrices: Sequence[Any],
    inverses: Sequence[Any],
    logabsdets: Sequence[float] | None = None,
    *,
    threshold: float = THRESHOLD,
) -> PathAllowance:
    """Allowed inverse and log|det| ratios along the path A_0, …, A_k (see the module text).

    ``matrices``: the exact matrices A_j (rounded to float64), ``inverses``: their true inverses
    (e.g. :func:`invlin.oracle.evaluate` ``.inverse``), ``logabsdets``: their true log|det|
    (default 0, which drops the running-sum rounding term); all of length k + 1.
    """
    a = _stack(matrices, "matrices")
    x = _stack(inverses, "inverses")
    if a.shape != x.shape:
        raise ValueError(f"inverses must match matrices {a.shape}, got {x.shape}")
    k1, n = a.shape[0], a.shape[1]
    ell = np.zeros(k1) if logabsdets is None else np.asarray(logabsdets, dtype=np.float64)
    if ell.shape != (k1,) or not np.all(np.isfinite(ell)):
        raise ValueError(f"logabsdets must be {k1} finite values, got shape {ell.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    norm_a = np.abs(a).sum(axis=1).max(axis=1)  # ‖A_j‖₁: largest column sum
    norm_x = np.abs(x).sum(axis=1).max(axis=1)
    kappa = norm_a * norm_x
    shrink = np.ones(k1)  # max(1, ‖X_{j−1}‖/‖X_j‖): cancellation in the SM subtraction
    shrink[1:] = np.maximum(1.0, norm_x[:-1] / norm_x[1:])
    amp = np.zeros((k1, k1))
    for e in range(k1):
        prod = np.abs(np.einsum("ij,ljk->lik", x[e], a[: e + 1])).sum(axis=1).max(axis=1)
        amp[: e + 1, e] = prod * kappa[: e + 1] / kappa[e]
    clipped = np.maximum(amp, 1.0)
    inverse = np.empty(k1)
    logdet = np.empty(k1)
    eye = np.eye(n)
    b = np.zeros(k1)  # b_j = ‖I − A_j⁻¹A_{j−1}‖₁ for j ≥ 1
    for j in range(1, k1):
        b[j] = np.abs(eye - x[j] @ a[j - 1]).sum(axis=0).max()
    for e in range(k1):
        charges = [clipped[0, e]] + [
            max(clipped[j - 1, e], clipped[j, e] * shrink[j]) for j in range(1, e + 1)
        ]
        inverse[e] = max(threshold * float(np.sum(charges)), allowed_ratio(e, threshold=threshold))
    for e in range(k1):
        total = threshold * max(1.0, kappa[0] / kappa[e])
        for j in range(1, e + 1):
            total += threshold * (1.0 + abs(ell[j]) / (n * kappa[e]))
            total += (inverse[j - 1] + threshold) * b[j] * kappa[j - 1] / kappa[e]
        logdet[e] = max(total, allowed_ratio(e, threshold=threshold))
    return PathAllowance(inverse, logdet, kappa, amp)
