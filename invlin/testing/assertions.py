"""Assertion helpers ``assert_<property>(..., *, out, expected)`` built on the tolerance engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from invlin.testing.tolerance import (
    THRESHOLD,
    Ratio,
    allowed_ratio,
    dtype_name,
    forward_ratio,
    inverse_ratio,
    logdet_ratio,
)

__all__ = [
    "ToleranceError",
    "assert_forward",
    "assert_inverse",
    "assert_logabsdet",
    "assert_sign",
    "repro_snippet",
]

_MAX_INLINE = 4096  # entries printed in a reproduction snippet before it falls back to a summary


class ToleranceError(AssertionError):
    """An error ratio exceeded its allowed threshold; ``ratio`` and ``allowed`` are attached."""

    def __init__(self, message: str, ratio: Ratio | None = None, allowed: float | None = None):
        super().__init__(message)
        self.ratio = ratio
        self.allowed = allowed


def _array_literal(a: Any) -> str:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size > _MAX_INLINE:
        return f"<array of shape {arr.shape}: too large to inline; save it with numpy.save>"
    with np.printoptions(threshold=_MAX_INLINE + 1, floatmode="unique", linewidth=100):
        return "np.array(" + np.array2string(arr, separator=", ") + ")"


def repro_snippet(call: str, **arrays: Any) -> str:
    """Python source that rebuilds ``arrays`` exactly (float64 reprs round-trip), then ``call``."""
    lines = ["import numpy as np", "from invlin.testing import *"]
    for name, value in arrays.items():
        if isinstance(value, (int, float, str)) or value is None:
            lines.append(f"{name} = {value!r}")
        else:
            lines.append(f"{name} = {_array_literal(value)}")
    lines.append(call)
    return "\n".join(lines)


def _fail(title: str, r: Ratio, allowed: float, context: str, snippet: str) -> ToleranceError:
    where = f"{r.worst_value:.6g} at index {r.worst_index}" if r.worst_index else f"{r.worst_value}"
    parts = np.asarray(r.info.get("parts", [r.value]), dtype=np.float64)
    over = int(np.count_nonzero(~(parts <= allowed)))
    lines = [
        f"{title}: ratio {r.value:.4g} exceeds allowed {allowed:.4g} "
        f"({over} of {parts.size} {r.info.get('part', 'value')}s over)",
        f"  worst element of the error: {where}",
        f"  absolute error {r.abs_error:.4g}, relative error {r.rel_error:.4g}, "
        f"ratio scale {r.scale:.4g}",
        f"  {context}",
        "Reproduce with:",
        snippet,
    ]
    return ToleranceError("\n".join(lines), r, allowed)


def _allowed(updates: int, threshold: float) -> float:
    return allowed_ratio(updates, threshold=threshold)


def assert_inverse(
    a: Any, *, out: Any, dtype: Any | None = None, updates: int = 0, threshold: float = THRESHOLD
) -> Ratio:
    """Assert ``out`` is an inverse of ``a`` (both ``(n, n)``) by the LAPACK ratio.

    The allowed ratio is ``threshold · (1 + updates)``; ``updates`` counts the tracked rank-one
    updates behind ``out`` (0 for a fresh inverse). Returns the measured :class:`Ratio`.
    """
    r = inverse_ratio(a, out, dtype=dtype)
    allowed = _allowed(updates, threshold)
    if not r.passed(allowed):
        ctx = (
            f"n={r.info['n']}, dtype={r.info['dtype']}, updates={updates}, "
            f"threshold={threshold} (allowed = threshold·(1+updates)), "
            f"‖A‖₁={r.info['norm_a']:.4g}, ‖X‖₁={r.info['norm_x']:.4g}"
        )
        call = (
            f"assert_inverse(a, out=x, dtype={r.info['dtype']!r}, updates={updates}, "
            f"threshold={threshold})"
        )
        raise _fail("inverse check failed", r, allowed, ctx, repro_snippet(call, a=a, x=out))
    return r


def assert_forward(
    *,
    out: Any,
    expected: Any,
    kappa: float,
    dtype: Any,
    updates: int = 0,
    threshold: float = THRESHOLD,
) -> Ratio:
    """Assert rows of ``out`` match ``expected`` (``(*, n)``) within a κ-scaled forward error."""
    r = forward_ratio(out, expected, kappa=kappa, dtype=dtype)
    allowed = _allowed(updates, threshold)
    if not r.passed(allowed):
        dt = dtype_name(dtype)
        ctx = f"dtype={dt}, kappa={kappa:.4g}, updates={updates}, worst row {r.info['row']}"
        call = (
            f"assert_forward(out=out, expected=expected, kappa={kappa!r}, dtype={dt!r}, "
            f"updates={updates}, threshold={threshold})"
        )
        raise _fail(
            "forward-error check failed",
            r,
            allowed,
            ctx,
            repro_snippet(call, out=out, expected=expected),
        )
    return r


def assert_logabsdet(
    *,
    out: Any,
    expected: Any,
    n: int,
    kappa: float,
    dtype: Any,
    updates: int = 0,
    threshold: float = THRESHOLD,
) -> Ratio:
    """Assert log|det| value(s) ``out`` match ``expected`` within ``n κ ε`` ratio units."""
    r = logdet_ratio(out, expected, n=n, kappa=kappa, dtype=dtype)
    allowed = _allowed(updates, threshold)
    if not r.passed(allowed):
        dt = dtype_name(dtype)
        ctx = f"n={n}, dtype={dt}, kappa={kappa:.4g}, updates={updates}"
        call = (
            f"assert_logabsdet(out=out, expected=expected, n={n}, kappa={kappa!r}, "
            f"dtype={dt!r}, updates={updates}, threshold={threshold})"
        )
        raise _fail(
            "log|det| check failed",
            r,
            allowed,
            ctx,
            repro_snippet(call, out=out, expected=expected),
        )
    return r


def assert_sign(*, out: Any, expected: Any) -> None:
    """Assert determinant sign(s) ``out`` equal ``expected`` exactly (±1, elementwise)."""
    o, e = np.atleast_1d(np.asarray(out, dtype=np.float64)), np.atleast_1d(np.asarray(expected))
    o, e = np.broadcast_arrays(o, e.astype(np.float64))
    bad = np.flatnonzero(~(o == e))
    if bad.size:
        i = int(bad[0])
        raise ToleranceError(
            f"sign check failed: {bad.size} of {o.size} signs differ; first at flat index {i}: "
            f"got {o.flat[i]:g}, expected {e.flat[i]:g}\nReproduce with:\n"
            + repro_snippet("assert_sign(out=out, expected=expected)", out=o, expected=e)
        )
