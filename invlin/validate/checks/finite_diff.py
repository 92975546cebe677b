"""Derivatives along one direction by Richardson-extrapolated central differences, with the
estimate's own truncation and rounding error and a test of whether it can be trusted at all.

For a function f(t) (values: any array shape; t the step along a direction in parameter space)
evaluated at t = ±h·s for s in :data:`STEPS` = (1, ½, ¼):

* central differences D(s) = (f(hs) − f(−hs))/(2hs) = f′(0) + c₃(hs)² + c₅(hs)⁴ + …;
* Richardson steps R₁₂ = (4D(½) − D(1))/3 and R₂₃ = (4D(¼) − D(½))/3 cancel the h² term
  (error −c₅(hs)⁴/4); the estimate used is R₂₃;
* truncation: e₁₂ = |D(1) − D(½)|/3 and e₂₃ = |D(½) − D(¼)|/3 estimate the h² errors of D(½)
  and D(¼) — upper estimates of the Richardson errors, which are O(h⁴) — and
  τ = e₂₃ + |R₁₂ − R₂₃| is the error allowed for R₂₃ (the spread of the two extrapolations is
  added so that a point where f is not yet in its asymptotic regime loosens the estimate);
* rounding: if every value of f errs by at most δ, D(s) errs by δ/(hs), so R₁₂ by
  (4·2 + 1)δ/(3h) = 3δ/h and R₂₃ by (4·4 + 2)δ/(3h) = 6δ/h (:func:`rounding`), e₁₂ by δ/h,
  e₂₃ by 2δ/h and R₁₂ − R₂₃ by 9δ/h.

Reliability: for a smooth f, R₁₂ − R₂₃ = −(15/64)c₅h⁴, far below e₁₂ + e₂₃ ≈ (5/16)|c₃|h².
A kink of f′ at a distance t* < h/4 from the point (a ReLU unit or a spline knot that the step
moves across x) makes D(s) ≈ A − k/s, so R₁₂ − R₂₃ = 7k/(3h) against e₁₂ + e₂₃ = k/h: the
extrapolations disagree beyond their own error estimates, and the point is not judged
(:attr:`Richardson.reliable` is False) — at t* → 0 every D(s) is the mean of the one-sided
slopes, which no autograd value need match. A kink between h/4 and h only enlarges τ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["STEPS", "Richardson", "richardson", "rounding"]

#: Fractions of the step h at which f is evaluated on both sides of the point.
STEPS: tuple[float, float, float] = (1.0, 0.5, 0.25)


@dataclass(frozen=True)
class Richardson:
    """A derivative f′(0) estimated from f(±h·s), s in :data:`STEPS` (arrays of f's shape).

    ``value``: R₂₃; ``coarse``: R₁₂; ``truncation``: τ = e₂₃ + |R₁₂ − R₂₃| (the error allowed
    for ``value`` besides rounding); ``spread``: |R₁₂ − R₂₃|; ``own``: e₁₂ + e₂₃; ``h``: the
    step.
    """

    value: np.ndarray
    coarse: np.ndarray
    truncation: np.ndarray
    spread: np.ndarray
    own: np.ndarray
    h: float

    def reliable(self, delta: np.ndarray | float) -> np.ndarray:
        """Where the two extrapolations agree within their own error estimates plus rounding,
        |R₁₂ − R₂₃| ≤ e₁₂ + e₂₃ + 9δ/h, and every estimate is finite (``delta``: the bound on
        the error of one value of f)."""
        with np.errstate(all="ignore"):
            ok = self.spread <= self.own + 9.0 * np.asarray(delta) / self.h
        return ok & np.isfinite(self.value) & np.isfinite(self.coarse)


def richardson(plus: Sequence[np.ndarray], minus: Sequence[np.ndarray], h: float) -> Richardson:
    """:class:`Richardson` from ``plus[m]`` = f(h·STEPS[m]) and ``minus[m]`` = f(−h·STEPS[m])."""
    if len(plus) != len(STEPS) or len(minus) != len(STEPS):
        raise ValueError(f"need f at ±h·{STEPS}, got {len(plus)} and {len(minus)} values")
    if not h > 0:
        raise ValueError(f"h must be positive, got {h!r}")
    with np.errstate(all="ignore"):
        d = [
            (np.asarray(p, np.float64) - np.asarray(m, np.float64)) / (2.0 * h * s)
            for p, m, s in zip(plus, minus, STEPS, strict=True)
        ]
        r12 = (4.0 * d[1] - d[0]) / 3.0
        r23 = (4.0 * d[2] - d[1]) / 3.0
        e12 = np.abs(d[0] - d[1]) / 3.0
        e23 = np.abs(d[1] - d[2]) / 3.0
        spread = np.abs(r12 - r23)
    return Richardson(
        value=r23, coarse=r12, truncation=e23 + spread, spread=spread, own=e12 + e23, h=float(h)
    )


def rounding(delta: np.ndarray | float, h: float) -> np.ndarray:
    """Error of R₂₃ caused by errors ≤ ``delta`` in each value of f: 6δ/h."""
    return 6.0 * np.asarray(delta, dtype=np.float64) / h
