"""mpmath backend: Gauss–Jordan inverse and determinant of an integer matrix at a set precision."""

from __future__ import annotations

from mpmath import libmp

from ._common import PrecisionEvaluation

__all__ = ["evaluate_at"]


def evaluate_at(ints: list[list[int]], bits: int) -> PrecisionEvaluation:
    """Invert the integer matrix ``ints`` (n lists of n ints) and take its determinant.

    All arithmetic is rounded to ``bits`` bits (round to nearest) on raw mpf tuples built afresh
    on every call, so nothing is cached across precisions (mpmath's own matrices cache their LU
    and do not notice a precision change). One in-place Gauss–Jordan sweep with partial pivoting
    yields both the inverse and the pivots whose product is the determinant.
    Raises ``ZeroDivisionError`` when a pivot rounds to exactly zero.
    """
    prec, rnd = int(bits), libmp.round_nearest
    mul, add, neg = libmp.mpf_mul, libmp.mpf_add, libmp.mpf_neg
    absf, cmp = libmp.mpf_abs, libmp.mpf_cmp
    fzero, fone = libmp.fzero, libmp.fone
    a = [[libmp.from_int(int(x), prec, rnd) for x in row] for row in ints]
    n = len(a)
    det = fone
    swaps: list[int] = []
    for k in range(n):
        p, best = k, absf(a[k][k])
        for i in range(k + 1, n):
            c = absf(a[i][k])
            if cmp(c, best) > 0:
                p, best = i, c
        if best == fzero:
            raise ZeroDivisionError(f"zero pivot in column {k} at {prec} bits")
        if p != k:
            a[k], a[p] = a[p], a[k]
            det = neg(det)
        swaps.append(p)
        row = a[k]
        piv = row[k]
        det = mul(det, piv, prec, rnd)
        inv = libmp.mpf_div(fone, piv, prec, rnd)
        row[k] = fone
        row = [mul(x, inv, prec, rnd) for x in row]
        a[k] = row
        for i in range(n):
            other = a[i]
            f = other[k]
            if i == k or f == fzero:
                continue
            f = neg(f)
            other[k] = fzero
            a[i] = [
                add(x, mul(f, y, prec, rnd), prec, rnd) for x, y in zip(other, row, strict=True)
            ]
    # a now holds (P A)^-1 = A^-1 Pᵀ; undo the row swaps as column swaps, last first.
    for k in range(n - 1, -1, -1):
        p = swaps[k]
        if p != k:
            for r in a:
                r[k], r[p] = r[p], r[k]
    sign = -1 if det[0] else 1
    lad = libmp.mpf_log(absf(det), prec, rnd)
    return PrecisionEvaluation(bits=prec, inverse=a, sign=sign, log_abs_det=lad)
