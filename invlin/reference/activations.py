"""Float64 NumPy reference for the invertible activations leaky softplus and bent identity."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

__all__ = ["BentIdentity", "LeakySoftplus"]

_EPS = float(np.finfo(np.float64).eps)
_TINY = float(np.finfo(np.float64).tiny)
# Beyond this magnitude the bent identity and its inverse are linear to within float64 rounding.
_BENT_LINEAR = 2.0**60
_MAX_NEWTON = 100
# Residual forms of the leaky-softplus inverse switch at these points (least rounding error).
_NEAR_LEFT = -0.75
_NEAR_RIGHT = 3.0


def _as_real_array(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a float64 array; raise ValueError naming ``name`` on bad dtype or NaN."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN")
    return arr


def _leaky_softplus_offset(alpha: float) -> tuple[float, float]:
    """Return floats ``(hi, lo)`` with ``hi + lo`` = (1 − alpha)·log 2 to about 106 bits."""
    with mpmath.workdps(40):
        c = (1 - mpmath.mpf(alpha)) * mpmath.log(2)
        hi = float(c)
        lo = float(c - mpmath.mpf(hi))
    return hi, lo


class LeakySoftplus:
    """Leaky softplus f(x) = αx + (1 − α)·softplus(x), elementwise, float64.

    f′(x) = α + (1 − α)·σ(x) lies in (α, 1), so f is a strictly increasing convex bijection of
    the real line. Inputs of any shape are accepted (ints and bools are converted to float64);
    NaN raises ValueError, ±inf maps to ±inf. Outputs are float64 arrays of the input's shape.

    The inverse is a vectorised safeguarded Newton iteration (no spline): the root is bracketed by
    max(x, αx) ≤ f(x) ≤ max(x, αx) + (1 − α)·log 2, Newton starts at the right end of the bracket
    (for an increasing convex f the iterates then decrease monotonically to the root), every
    iterate is clamped to [lower end, previous iterate], and the loop stops once no element moves.
    Near x = 0 the residual is formed as [αx + (1 − α)·log1p(expm1(x)/2)] − (y − (1 − α)·log 2)
    with the constant held as a float pair, so tiny roots keep full relative accuracy. The
    monotone phase stops at the first iterate whose computed residual is ≤ 0; one free Newton step
    then recentres the result within the residual's rounding noise. Measured: at most 2.9 ulp
    over 5·10⁶ points (mean 0.3). Where the root lies below −float64 max the result is −inf.

    >>> f = LeakySoftplus(0.1)
    >>> x = np.array([-3.0, 0.5, 2.5])
    >>> bool(np.allclose(f.inverse(f(x)), x, rtol=1e-15, atol=0))
    True

    f(0) rounds to the float c nearest (1 − α)·log 2, and the inverse returns the true preimage
    of that float, about −5e-17, not 0:

    >>> float(f.inverse(f(np.array(0.0)))) != 0.0
    True
    """

    def __init__(self, alpha: float = 0.1) -> None:
        try:
            alpha = float(alpha)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"alpha must be a real number in (0, 1), got {alpha!r}") from exc
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        self.alpha = alpha
        self._beta = 1.0 - alpha
        self._c_hi, self._c_lo = _leaky_softplus_offset(alpha)

    def __repr__(self) -> str:
        return f"LeakySoftplus(alpha={self.alpha})"

    def __call__(self, x: Any) -> np.ndarray:
        """Alias of :meth:`forward`."""
        return self.forward(x)

    def forward(self, x: Any) -> np.ndarray:
        """Return f(x), float64, same shape as ``x``."""
        x = _as_real_array(x, "x")
        a, b = self.alpha, self._beta
        xp = np.maximum(x, 0.0)
        xn = np.minimum(x, 0.0)
        with np.errstate(over="ignore"):
            pos = xp + b * np.log1p(np.exp(-xp))
            neg = a * xn + b * np.log1p(np.exp(xn))
        return np.where(x > 0, pos, neg)

    def log_derivative(self, x: Any) -> np.ndarray:
        """Return log f′(x) elementwise, float64, same shape as ``x``; values in (log α, 0)."""
        x = _as_real_array(x, "x")
        a, b = self.alpha, self._beta
        from scipy.special import expit  # lazy: keeps importing the validator light

        pos = np.log1p(-b * expit(-x))
        neg = np.log(a + b * expit(x))
        return np.where(x > 0, pos, neg)

    def _derivative(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        return self.alpha + self._beta * expit(x)

    def _residual(self, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
        """f(x) − y in the form with the least rounding for each range of x (t = y − f(0))."""
        a, b = self.alpha, self._beta
        xn = np.minimum(x, _NEAR_LEFT)
        xm = np.clip(x, _NEAR_LEFT, _NEAR_RIGHT)
        xp = np.maximum(x, _NEAR_RIGHT)
        left = (a * xn - y) + b * np.log1p(np.exp(xn))
        # Near 0, relative to f(0) = (1 − α)·log 2: both terms share the sign of x.
        near = (a * xm + b * np.log1p(np.expm1(xm) / 2)) - t
        right = (xp - y) + b * np.log1p(np.exp(-xp))
        return np.where(x < _NEAR_LEFT, left, np.where(x < _NEAR_RIGHT, near, right))

    def inverse(self, y: Any) -> np.ndarray:
        """Return x with f(x) = y (float64, same shape as ``y``), to a few ulp."""
        y = _as_real_array(y, "y")
        a = self.alpha
        with np.errstate(over="ignore", invalid="ignore"):
            t = (y - self._c_hi) - self._c_lo
            # Bracket: m(x) ≤ f(x) ≤ m(x) + c with m(x) = max(x, αx), so m⁻¹(y − c) ≤ x ≤ m⁻¹(y);
            # widened outward by a few ulp to absorb the rounding of y/α and t/α.
            hi = np.where(y >= 0, y, (y / a) * (1.0 - 4.0 * _EPS))
            lo = np.where(t >= 0, t, t / a)
            lo = lo - (16.0 * _EPS * np.abs(lo) + _TINY)
            x = hi.copy()
            moving = np.isfinite(x)
            for _ in range(_MAX_NEWTON):
                step = self._residual(x, y, t) / self._derivative(x)
                x_new = np.minimum(np.maximum(x - step, lo), x)
                x_new = np.where(moving, x_new, x)
                if np.array_equal(x_new, x):
                    break
                x = x_new
            # The monotone phase stops at the first iterate whose computed residual is ≤ 0, which
            # rounding noise can leave a few ulp left of the root; one free step recentres it.
            x_new = np.minimum(
                np.maximum(x - self._residual(x, y, t) / self._derivative(x), lo), hi
            )
            x = np.where(moving, x_new, x)
        return x


class BentIdentity:
    """Bent identity f(x) = (√(x² + 1) − 1)/2 + x, elementwise, float64.

    f′(x) = 1 + x/(2√(x² + 1)) lies in (½, 3⁄2). The inverse is closed-form: with s = 2y + 1,
    x = (2s − √(s² + 3))/3, evaluated as 4y·(y + 1)/(2s + √(s² + 3)) when s > 0 so that it has
    no cancellation near y = 0, then polished by one Newton step on the residual
    (x − y) + x²/(2(√(x² + 1) + 1)), whose first term is exact; beyond |y| = 2⁶⁰ the linear
    asymptotes are used (no overflow in intermediates). Measured: at most 2.4 ulp over 5·10⁶
    points. Inputs of any shape; NaN raises ValueError; outputs are float64.

    >>> f = BentIdentity()
    >>> float(f(np.array(0.0))), float(f.inverse(f(np.array(1.0))))
    (0.0, 1.0)
    """

    def __repr__(self) -> str:
        return "BentIdentity()"

    def __call__(self, x: Any) -> np.ndarray:
        """Alias of :meth:`forward`."""
        return self.forward(x)

    def forward(self, x: Any) -> np.ndarray:
        """Return f(x), float64, same shape as ``x``."""
        x = _as_real_array(x, "x")
        xc = np.clip(x, -_BENT_LINEAR, _BENT_LINEAR)
        # (√(x²+1) − 1)/2 = x²/(2(√(x²+1) + 1)), written without cancellation or overflow.
        mid = xc + xc * (xc / (np.hypot(xc, 1.0) + 1.0)) / 2
        with np.errstate(over="ignore"):
            return np.where(x > _BENT_LINEAR, x * 1.5, np.where(x < -_BENT_LINEAR, x * 0.5, mid))

    def log_derivative(self, x: Any) -> np.ndarray:
        """Return log f′(x) elementwise, float64; values in (log ½, log 3⁄2)."""
        x = _as_real_array(x, "x")
        xc = np.clip(x, -_BENT_LINEAR, _BENT_LINEAR)
        return np.log1p(xc / (2 * np.hypot(xc, 1.0)))

    def inverse(self, y: Any) -> np.ndarray:
        """Return x with f(x) = y (float64, same shape as ``y``), to a few ulp."""
        y = _as_real_array(y, "y")
        yc = np.clip(y, -_BENT_LINEAR, _BENT_LINEAR)
        s = 2 * yc + 1
        r = np.sqrt(s * s + 3.0)
        yp = np.where(s > 0, yc, 0.0)  # keeps the unused branch finite (2s + r = 0 at y = −1)
        sp = 2 * yp + 1
        pos = 4 * yp * ((yp + 1) / (2 * sp + np.sqrt(sp * sp + 3.0)))
        neg = (2 * s - r) / 3
        x = np.where(s > 0, pos, neg)
        # One Newton step polishes the last ulp: x − y is exact (y/x ∈ [½, 2]), so the residual
        # f(x) − y = (x − y) + x²/(2(√(x²+1) + 1)) carries only the small term's rounding.
        h = np.sqrt(x * x + 1)
        mid = x - ((x - yc) + x * (x / (h + 1)) / 2) / (1 + x / (2 * h))
        with np.errstate(over="ignore"):
            return np.where(y > _BENT_LINEAR, (y / 3) * 2, np.where(y < -_BENT_LINEAR, 2 * y, mid))
