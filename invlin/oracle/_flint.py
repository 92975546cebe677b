"""python-flint backend: rigorous arb-ball inverse and determinant of an integer matrix.

python-flint keeps its working precision in one process-global context (``flint.ctx.prec``),
shared by every thread. Each evaluation saves it, sets its own, computes and restores it while
holding :data:`FLINT_CONTEXT_LOCK`, so concurrent oracle evaluations (threaded executors) neither
compute at each other's precision nor leave one behind. Code outside the oracle that changes
``flint.ctx.prec`` from another thread at the same time should hold the same lock.
"""

from __future__ import annotations

import threading
from types import ModuleType

from ._common import PrecisionEvaluation, Raw, norm1, raw_from_man_exp

__all__ = ["FLINT_CONTEXT_LOCK", "evaluate_at", "flint_module"]

FLINT_CONTEXT_LOCK = threading.Lock()
"""Held around every save / set / compute / restore of python-flint's global precision."""

try:
    import flint as _flint_module
except ImportError:  # pragma: no cover - depends on the environment
    _flint_module = None


def flint_module() -> ModuleType | None:
    """Return the imported ``flint`` module, or None when python-flint is not installed."""
    return _flint_module


def _mid_raw(x) -> Raw:
    m, e = x.mid().man_exp()
    return raw_from_man_exp(int(m), int(e))


def _rad_raw(x) -> Raw:
    m, e = x.rad().mid().man_exp()
    return raw_from_man_exp(int(m), int(e))


def evaluate_at(ints: list[list[int]], bits: int) -> PrecisionEvaluation:
    """Invert the integer matrix ``ints`` (n lists of n ints) and take its determinant in arb.

    The integer entries enter exactly; ``inv`` and ``det`` run at ``bits`` bits and return balls
    whose radii bound every error. The midpoints and the radius norms come back as raw mpf.
    Raises ``ZeroDivisionError`` when arb cannot certify invertibility or the sign of det.
    Thread-safe: the whole evaluation holds :data:`FLINT_CONTEXT_LOCK`, and flint's global
    precision is the caller's again on return.
    """
    fl = _flint_module
    if fl is None:
        raise ImportError("the flint backend needs python-flint: pip install python-flint")
    with FLINT_CONTEXT_LOCK:
        return _evaluate_locked(fl, ints, int(bits))


def _evaluate_locked(fl: ModuleType, ints: list[list[int]], bits: int) -> PrecisionEvaluation:
    """The body of :func:`evaluate_at`; the caller holds :data:`FLINT_CONTEXT_LOCK`."""
    old = fl.ctx.prec
    try:
        fl.ctx.prec = bits
        a = fl.arb_mat(fl.fmpz_mat(ints))
        x = a.inv()  # raises ZeroDivisionError when not certified invertible
        det = a.det()
        if not det.is_finite() or det.contains(0):
            raise ZeroDivisionError(f"determinant ball contains 0 at {bits} bits")
        sign = 1 if det > 0 else -1
        lad = abs(det).log()
        n = a.nrows()
        entries = x.entries()
        mids = [[_mid_raw(e) for e in entries[i * n : (i + 1) * n]] for i in range(n)]
        rads = [[_rad_raw(e) for e in entries[i * n : (i + 1) * n]] for i in range(n)]
        return PrecisionEvaluation(
            bits=bits,
            inverse=mids,
            sign=sign,
            log_abs_det=_mid_raw(lad),
            inverse_radius=norm1(rads),
            log_abs_det_radius=_rad_raw(lad),
        )
    finally:
        fl.ctx.prec = old
