"""One tolerance engine: LAPACK-style error ratios and the thresholds they are judged against.

Every "close enough" decision in invlin (tests, properties, reports, the validator) goes through
this module. Errors are turned into dimensionless ratios in the manner of LAPACK's test suite
(``TESTING/LIN``), so a single threshold applies to every dtype, dimension and condition number:

============== ======================================================= =========================
quantity        ratio                                                   reference
============== ======================================================= =========================
inverse         ‖I − X A‖₁ / (n ‖A‖₁ ‖X‖₁ ε)                            LAPACK ``xGET03``
residual        ‖b − A x‖₁ / (‖A‖₁ ‖x‖₁ ε)                              LAPACK ``xGET02``
forward error   ‖x − x*‖₁ / (‖x*‖₁ κ₁ ε)                                LAPACK ``xGET04``
log|det|        |ℓ − ℓ*| / (n κ₁ ε)                                     perturbation bound
============== ======================================================= =========================

ε is the unit roundoff of the dtype the computation ran in (LAPACK's ``xLAMCH('E')``), not NumPy's
``finfo.eps`` (which is twice as large). A fresh backward-stable computation gives ratios of order
one; LAPACK flags a ratio above :data:`THRESHOLD` = 30.

Tracked quantities (an inverse kept by Sherman–Morrison, a log|det| kept by the determinant lemma)
are the result of ``k`` consecutive O(n²) computations, each of which may add an error of the size a
fresh computation makes. Worst-case errors add linearly, so after ``k`` updates the allowed ratio is
``THRESHOLD · (1 + k)`` (see :func:`allowed_ratio`). Measured growth on benign paths is far below
this (about 0.006–0.03 ratio units per update, float64, n = 64), so the allowance is the
worst-case one, not a fit to the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from invlin._dtypes import EPS, dtype_name, eps
from invlin._validation import positive_int

__all__ = [
    "EPS",
    "THRESHOLD",
    "Ratio",
    "allowed_ratio",
    "dtype_name",
    "eps",
    "forward_ratio",
    "inverse_ratio",
    "kappa1",
    "logdet_ratio",
    "residual_ratio",
]

#: LAPACK's test-suite threshold for a fresh computation.
THRESHOLD = 30.0


def allowed_ratio(updates: int = 0, *, threshold: float = THRESHOLD) -> float:
    """Largest acceptable ratio after ``updates`` tracked updates: ``threshold · (1 + updates)``.

    >>> allowed_ratio(0), allowed_ratio(9)
    (30.0, 300.0)
    """
    if isinstance(updates, bool) or not isinstance(updates, (int, np.integer)) or updates < 0:
        raise ValueError(f"updates must be a non-negative integer, got {updates!r}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    return float(threshold) * (1.0 + int(updates))


def _as64(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().to("cpu")
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
        a = a.numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real array, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _square(a: Any, name: str) -> np.ndarray:
    arr = _as64(a, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {arr.shape}")
    return arr


def kappa1(a: Any, inverse: Any | None = None) -> float:
    """1-norm condition number ‖A‖₁‖A⁻¹‖₁ (from ``inverse`` when given, else from LAPACK)."""
    a64 = _square(a, "a")
    if inverse is None:
        return float(np.linalg.cond(a64, 1))
    x64 = _square(inverse, "inverse")
    return float(np.linalg.norm(a64, 1) * np.linalg.norm(x64, 1))


@dataclass(frozen=True)
class Ratio:
    """A measured error ratio and where its worst contribution sits.

    ``worst_index`` and ``worst_value`` locate the largest absolute entry of the error array
    (``I − XA`` for inverses, ``x − x*`` for forward errors); ``abs_error``/``rel_error`` are the
    normwise absolute and relative errors behind the ratio.
    """

    name: str
    value: float
    worst_index: tuple[int, ...]
    worst_value: float
    abs_error: float
    rel_error: float
    scale: float
    info: dict[str, Any] = field(default_factory=dict)

    def passed(self, allowed: float) -> bool:
        """True when the ratio is finite and at most ``allowed``."""
        return bool(math.isfinite(self.value) and self.value <= allowed)


def _worst(err: np.ndarray) -> tuple[tuple[int, ...], float]:
    if err.size == 0:
        return (), 0.0
    mag = np.where(np.isfinite(err), np.abs(err), np.inf)
    idx = np.unravel_index(int(np.argmax(mag)), err.shape)
    return tuple(int(i) for i in idx), float(err[idx])


def _divide(num: float, den: float) -> float:
    if not math.isfinite(num):
        return math.inf
    if num == 0.0:
        return 0.0
    return num / den if den > 0 else math.inf


def _divide_rows(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.array([_divide(float(p), float(q)) for p, q in zip(num, den, strict=True)])
    return out if out.size else np.zeros(1)


def inverse_ratio(a: Any, x: Any, *, dtype: Any | None = None) -> Ratio:
    """LAPACK inverse ratio ‖I − X A‖₁ / (n ‖A‖₁ ‖X‖₁ ε) of a claimed inverse ``x`` of ``a``.

    ``a`` and ``x`` have shape ``(n, n)``; the residual is formed in float64. ``dtype`` (default:
    ``x``'s dtype) sets ε. A non-finite ``x`` gives ``inf``.
    """
    dt = dtype_name(dtype if dtype is not None else x)
    a64, x64 = _square(a, "a"), _square(x, "x")
    if a64.shape != x64.shape:
        raise ValueError(f"x must have the shape of a {a64.shape}, got {x64.shape}")
    n = a64.shape[0]
    resid = np.eye(n) - x64 @ a64
    na, nx = np.linalg.norm(a64, 1), np.linalg.norm(x64, 1)
    abs_err = float(np.linalg.norm(resid, 1))
    scale = n * na * nx * EPS[dt]
    idx, val = _worst(resid)
    parts = _divide_rows(np.abs(resid).sum(axis=0), np.full(n, scale))
    return Ratio(
        "inverse",
        _divide(abs_err, scale),
        idx,
        val,
        abs_err,
        abs_err,
        scale,
        {
            "n": n,
            "dtype": dt,
            "norm_a": float(na),
            "norm_x": float(nx),
            "parts": parts,
            "part": "column",
        },
    )


def residual_ratio(a: Any, x: Any, b: Any, *, dtype: Any | None = None) -> Ratio:
    """LAPACK residual ratio max_j ‖b_j − A x_j‖₁ / (‖A‖₁ ‖x_j‖₁ ε) over rows of ``x``, ``b``.

    ``a``: ``(n, n)``; ``x`` and ``b``: ``(*, n)`` (each row one right-hand side).
    """
    dt = dtype_name(dtype if dtype is not None else x)
    a64 = _square(a, "a")
    n = a64.shape[0]
    x64, b64 = _as64(x, "x"), _as64(b, "b")
    if x64.shape != b64.shape or x64.shape[-1:] != (n,):
        raise ValueError(f"x and b must both have shape (*, {n}), got {x64.shape} and {b64.shape}")
    x2, b2 = x64.reshape(-1, n), b64.reshape(-1, n)
    resid = b2 - x2 @ a64.T
    na = np.linalg.norm(a64, 1)
    num = np.abs(resid).sum(axis=1)
    den = na * np.abs(x2).sum(axis=1) * EPS[dt]
    ratios = _divide_rows(num, den)
    j = int(np.argmax(ratios))
    idx, val = _worst(resid.reshape(b64.shape))
    return Ratio(
        "residual",
        float(ratios[j]),
        idx,
        val,
        float(num[j]) if num.size else 0.0,
        _divide(float(num[j]), float(np.abs(b2[j]).sum())) if num.size else 0.0,
        float(den[j]) if num.size else 0.0,
        {"n": n, "dtype": dt, "row": j, "parts": ratios, "part": "row"},
    )


def forward_ratio(out: Any, expected: Any, *, kappa: float, dtype: Any) -> Ratio:
    """Forward-error ratio max_j ‖x_j − x*_j‖₁ / (‖x*_j‖₁ κ ε) over the rows of ``(*, n)`` arrays.

    ``kappa`` is the condition number of the map that produced ``out`` (1 for an exact copy);
    this is LAPACK's ``‖x − x*‖·rcond/(‖x*‖ε)``.
    """
    dt = dtype_name(dtype)
    if not (kappa >= 1.0):
        raise ValueError(f"kappa must be a number >= 1, got {kappa!r}")
    o64, e64 = _as64(out, "out"), _as64(expected, "expected")
    if o64.shape != e64.shape:
        raise ValueError(f"out must have the shape of expected {e64.shape}, got {o64.shape}")
    n = o64.shape[-1] if o64.ndim else 1
    o2, e2 = o64.reshape(-1, n), e64.reshape(-1, n)
    err = o2 - e2
    num = np.abs(err).sum(axis=1)
    den = np.abs(e2).sum(axis=1) * kappa * EPS[dt]
    # A zero reference row is judged absolutely against ε·κ (no relative error is defined).
    den = np.where(den > 0, den, kappa * EPS[dt])
    ratios = _divide_rows(num, den)
    j = int(np.argmax(ratios)) if ratios.size else 0
    idx, val = _worst(err.reshape(o64.shape))
    rel = _divide(float(num[j]), float(np.abs(e2[j]).sum())) if ratios.size else 0.0
    return Ratio(
        "forward",
        float(ratios[j]) if ratios.size else 0.0,
        idx,
        val,
        float(num[j]) if ratios.size else 0.0,
        rel,
        float(den[j]) if ratios.size else 0.0,
        {"n": n, "dtype": dt, "kappa": float(kappa), "row": j, "parts": ratios, "part": "row"},
    )


def logdet_ratio(out: Any, expected: Any, *, n: int, kappa: float, dtype: Any) -> Ratio:
    """log|det| ratio max |ℓ − ℓ*| / (n κ ε) over a scalar or an array of log|det| values.

    First-order perturbation theory gives |Δ log|det A|| ≤ ‖A⁻¹‖‖ΔA‖ ≲ n κ ε for a backward-stable
    factorisation, the scale used here. ``+inf``/``-inf`` match only themselves; NaN never matches.
    """
    dt = dtype_name(dtype)
    if not (kappa >= 1.0):
        raise ValueError(f"kappa must be a number >= 1, got {kappa!r}")
    n = positive_int(n, "n")
    o64, e64 = np.atleast_1d(_as64(out, "out")), np.atleast_1d(_as64(expected, "expected"))
    try:
        o64, e64 = np.broadcast_arrays(o64, e64)
    except ValueError as exc:
        raise ValueError(
            f"out {o64.shape} does not broadcast against expected {e64.shape}"
        ) from exc
    same_inf = np.isinf(o64) & (o64 == e64)
    with np.errstate(invalid="ignore"):
        err = np.where(same_inf, 0.0, o64 - e64)
    err = np.where(np.isnan(o64) | np.isnan(e64), np.nan, err)
    scale = n * kappa * EPS[dt]
    idx, val = _worst(err)
    worst = abs(val) if math.isfinite(val) else math.inf
    ref = float(np.abs(e64[idx])) if e64.size else 0.0
    parts = _divide_rows(
        np.where(np.isnan(err), np.inf, np.abs(err)).ravel(), np.full(err.size, scale)
    )
    return Ratio(
        "logabsdet",
        _divide(worst, scale),
        idx,
        val,
        worst,
        _divide(worst, ref) if ref else worst,
        scale,
        {"n": int(n), "dtype": dt, "kappa": float(kappa), "parts": parts, "part": "value"},
    )
