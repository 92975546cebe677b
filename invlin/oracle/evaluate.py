"""The oracle: true inverse, sign and log|det| of an exact matrix at a self-chosen precision."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import libmp

from . import _flint, _mpmath
from ._common import (
    NORM_PREC,
    PrecisionEvaluation,
    Raw,
    norm1,
    norm1_diff,
    raw_from_man_exp,
    raw_to_float,
)
from ._singular import is_exactly_singular
from .budget import require_within, resolve_budget
from .exact import ExactMatrix

__all__ = ["OracleResult", "OracleSingularError", "available_backends", "evaluate"]

_BACKENDS: dict[str, Callable[[list[list[int]], int], PrecisionEvaluation]] = {
    "flint": _flint.evaluate_at,
    "mpmath": _mpmath.evaluate_at,
}
_FLOAT_KAPPA_LIMIT = 1e16  # beyond this a float64 condition estimate says little


class OracleSingularError(ArithmeticError):
    """The matrix is singular, or too ill-conditioned for the largest precision allowed.

    ``bits`` is the largest precision tried (0 when an exact test found det = 0 before any
    floating evaluation).
    """

    def __init__(self, message: str, bits: int) -> None:
        super().__init__(message)
        self.bits = bits


@dataclass(frozen=True, eq=False)
class OracleResult:
    """What the oracle knows about a nonsingular n×n matrix A.

    ``inverse``: A⁻¹ rounded to float64, shape (n, n); its error is below 2^-target_bits·‖A⁻¹‖₁
    in the 1-norm before the final rounding. ``sign``: sign of det A (+1 or -1).
    ``logabsdet``: log|det A| as a float; ``logabsdet_mp``: the same as an ``mpmath.mpf`` at
    ``bits`` of precision. ``kappa``: ‖A‖₁‖A⁻¹‖₁ from the high-precision inverse.
    ``bits``: working precision; ``check_bits``: the higher precision that confirmed it.
    ``backend``: "flint" or "mpmath". ``rel_radius``: flint's rigorous ‖rad A⁻¹‖₁/‖A⁻¹‖₁, or for
    mpmath the observed relative 1-norm disagreement of the two evaluations.
    """

    inverse: np.ndarray
    sign: int
    logabsdet: float
    logabsdet_mp: mpmath.mpf
    kappa: float
    bits: int
    check_bits: int
    backend: str
    rel_radius: float


def available_backends() -> tuple[str, ...]:
    """Return the usable backends in order of preference: ("flint", "mpmath") or ("mpmath",)."""
    return ("flint", "mpmath") if _flint.flint_module() is not None else ("mpmath",)


def _resolve_backend(backend: str) -> str:
    if backend == "auto":
        return available_backends()[0]
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be 'auto', 'flint' or 'mpmath', got {backend!r}")
    if backend == "flint" and _flint.flint_module() is None:
        raise ImportError("backend='flint' needs python-flint: pip install python-flint")
    return backend


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _float_kappa(em: ExactMatrix) -> float:
    """1-norm condition number of the nearest float64 matrix (inf when unusable)."""
    a = em.to_float()
    if not np.all(np.isfinite(a)):
        return math.inf
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            kappa = float(np.linalg.cond(a, 1))
        except np.linalg.LinAlgError:
            return math.inf
    return kappa if math.isfinite(kappa) else math.inf


def _bits_for(log2_kappa: int, target: int, guard: int) -> int:
    return max(0, log2_kappa) + target + guard


def _check_bits(bits: int) -> int:
    return bits + max(32, bits // 2)


def _log2_ceil(x: Raw) -> int:
    """An integer at least log2|x| (x nonzero raw mpf)."""
    return int(x[2] + x[3])


def _total_lad(ev: PrecisionEvaluation, n_times_exp: int) -> Raw:
    """log|det A| = log|det M| + n·E·log 2, at the evaluation's precision."""
    prec, rnd = ev.bits, libmp.round_nearest
    shift = libmp.mpf_mul(libmp.from_int(n_times_exp), libmp.mpf_ln2(prec + 10), prec, rnd)
    return libmp.mpf_add(ev.log_abs_det, shift, prec, rnd)


def _le(x: Raw, y: Raw) -> bool:
    return libmp.mpf_cmp(x, y) <= 0


def _accept(
    lo: PrecisionEvaluation, hi: PrecisionEvaluation, n_times_exp: int, target: int
) -> tuple[bool, Raw]:
    """Whether ``lo`` is confirmed by ``hi``; also the relative radius to report."""
    eps = raw_from_man_exp(1, -target)
    div, prec = libmp.mpf_div, NORM_PREC
    inv_norm = norm1(hi.inverse)
    disagreement = div(norm1_diff(lo.inverse, hi.inverse), inv_norm, prec, libmp.round_up)
    lad_lo, lad_hi = _total_lad(lo, n_times_exp), _total_lad(hi, n_times_exp)
    scale = libmp.mpf_abs(lad_hi)
    if _le(scale, libmp.fone):
        scale = libmp.fone
    lad_tol = libmp.mpf_mul(eps, scale, prec)
    lad_gap = libmp.mpf_abs(libmp.mpf_sub(lad_lo, lad_hi, prec, libmp.round_up))
    ok = lo.sign == hi.sign and _le(disagreement, eps) and _le(lad_gap, lad_tol)
    rel = disagreement
    if lo.inverse_radius is not None:
        rel = div(lo.inverse_radius, norm1(lo.inverse), prec, libmp.round_up)
        ok = ok and _le(rel, eps)
    if lo.log_abs_det_radius is not None:
        ok = ok and _le(lo.log_abs_det_radius, lad_tol)
    return ok, rel


def _result(
    em: ExactMatrix, lo: PrecisionEvaluation, check_bits: int, backend: str, rel: Raw
) -> OracleResult:
    n, e = em.n, em.exponent
    inverse = np.array([[raw_to_float(x, -e) for x in row] for row in lo.inverse], dtype=float)
    lad = _total_lad(lo, n * e)
    a_norm = max(sum(abs(int(x)) for x in col) for col in em._ints.T)  # exact ‖M‖₁
    kappa = libmp.mpf_mul(libmp.from_int(a_norm, NORM_PREC), norm1(lo.inverse), NORM_PREC)
    return OracleResult(
        inverse=inverse,
        sign=lo.sign,
        logabsdet=raw_to_float(lad),
        logabsdet_mp=mpmath.mp.make_mpf(lad),
        # κ₁ ≥ 1 always (‖A‖‖A⁻¹‖ ≥ ‖AA⁻¹‖ = 1); rounding the product may land just below.
        kappa=max(1.0, raw_to_float(kappa)),
        bits=lo.bits,
        check_bits=check_bits,
        backend=backend,
        rel_radius=raw_to_float(rel),
    )


def evaluate(
    matrix: np.ndarray | ExactMatrix,
    *,
    backend: str = "auto",
    target_bits: int = 64,
    guard_bits: int = 20,
    max_bits: int = 8192,
    budget: float | None = None,
) -> OracleResult:
    """Return the true inverse, sign and log|det| of ``matrix``, confirmed at two precisions.

    ``matrix`` is a square float16/32/64 (or integer) array of shape (n, n), taken exactly as
    held, or an :class:`ExactMatrix`. The working precision starts at log₂κ + ``target_bits`` +
    ``guard_bits`` (κ estimated in float64) and is confirmed by a second evaluation at
    ``bits + max(32, bits // 2)``: inverse (relative, 1-norm), log|det| (absolute, scaled by
    max(1, |log|det||)) and sign must agree to 2^-target_bits, and for flint the rigorous radii
    must be that small too. Otherwise the precision at least doubles, up to ``max_bits``.

    Work is bounded: before each precision step its estimated cost (n³·max(1, bits/256) units
    per evaluation, :mod:`invlin.oracle.budget`) is added to what was spent, and a total beyond
    ``budget`` (None: :data:`~invlin.oracle.budget.DEFAULT_BUDGET` = 10⁷ units, e.g. n = 128 at
    the default target; ``math.inf``: no limit) raises ``OracleBudgetError`` before that step
    runs — an n too large for the budget is refused before any exact or floating work.

    Raises ``OracleSingularError`` for an exactly singular matrix (found in exact integer
    arithmetic, without floating evaluation) or one still unresolved at ``max_bits``;
    ``OracleBudgetError`` beyond the budget; ``ValueError`` for bad arguments; ``ImportError``
    for ``backend="flint"`` without flint.
    """
    name = _resolve_backend(backend)
    target = _check_int(target_bits, "target_bits", 1)
    guard = _check_int(guard_bits, "guard_bits", 0)
    top = _check_int(max_bits, "max_bits", 16)
    limit = resolve_budget(budget)
    em = matrix if isinstance(matrix, ExactMatrix) else ExactMatrix._from_array(matrix, "matrix")
    least = min(_bits_for(0, target, guard), top)  # κ ≥ 1: no evaluation runs at fewer bits
    require_within(0.0, em.n, (least, _check_bits(least)), limit)
    if is_exactly_singular(em._ints):
        raise OracleSingularError(
            "matrix is singular: its exact determinant is 0 (no precision can invert it)", bits=0
        )
    run = _BACKENDS[name]
    rows = em._ints.tolist()
    a_norm = max(sum(abs(x) for x in col) for col in zip(*rows, strict=True))  # exact ‖M‖₁
    n_times_exp = em.n * em.exponent
    kappa = _float_kappa(em)
    log2_kappa = math.ceil(math.log2(max(kappa, 1.0))) if kappa <= _FLOAT_KAPPA_LIMIT else 53
    bits = min(_bits_for(log2_kappa, target, guard), top)
    spent = 0.0
    while True:
        check = _check_bits(bits)
        spent = require_within(spent, em.n, (bits, check), limit)
        lo = hi = None
        tried = bits
        try:
            lo = run(rows, bits)
            tried = check
            hi = run(rows, check)
        except ZeroDivisionError:
            pass
        if lo is not None and hi is not None:
            ok, rel = _accept(lo, hi, n_times_exp, target)
            if ok:
                return _result(em, lo, check, name, rel)
        if bits >= top:
            raise OracleSingularError(
                f"matrix is singular or too ill-conditioned for {tried} bits of precision "
                f"(the largest tried; max_bits={top})",
                bits=tried,
            )
        hint = 0
        if hi is not None:  # κ seen at the higher precision, if already that large
            log2_k = a_norm.bit_length() + _log2_ceil(norm1(hi.inverse))
            hint = _bits_for(log2_k, target, guard)
        bits = min(max(2 * bits, hint), top)
