"""The record a backend returns for one precision, and raw-mpf helpers shared by the backends."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from mpmath import libmp

__all__ = [
    "NORM_PREC",
    "PrecisionEvaluation",
    "Raw",
    "dyadic_to_float",
    "norm1",
    "norm1_diff",
    "raw_from_man_exp",
    "raw_to_float",
]

Raw = tuple  # mpmath's raw mpf: (sign, mantissa, exponent, bitcount)

NORM_PREC = 64  # norms and ratios need only a few correct bits


class PrecisionEvaluation(NamedTuple):
    """One backend evaluation of an integer matrix M at ``bits`` of working precision.

    ``inverse`` holds M⁻¹ (n lists of n raw mpf), ``log_abs_det`` is log|det M| (raw mpf),
    ``sign`` is the sign of det M; the radii are rigorous error bounds (flint) or None (mpmath):
    ``inverse_radius`` is the 1-norm of the entrywise radii, ``log_abs_det_radius`` absolute.
    """

    bits: int
    inverse: list[list[Raw]]
    sign: int
    log_abs_det: Raw
    inverse_radius: Raw | None = None
    log_abs_det_radius: Raw | None = None


def raw_from_man_exp(man: int, exp: int) -> Raw:
    """Return the exact raw mpf ``man * 2**exp``."""
    return libmp.from_man_exp(int(man), int(exp))


def dyadic_to_float(m: int, e: int) -> float:
    """Return ``m * 2**e`` rounded to the nearest float64 (±inf on overflow, ±0 on underflow)."""
    if m == 0:
        return 0.0
    top = e + abs(m).bit_length()
    if top > 1025:
        val = math.inf
    elif top < -1080:
        val = 0.0
    else:
        try:  # int -> float and int / int both round correctly, subnormals included
            val = float(abs(m) << e) if e >= 0 else abs(m) / (1 << -e)
        except OverflowError:
            val = math.inf
    return val if m > 0 else -val


def raw_to_float(x: Raw, shift: int = 0) -> float:
    """Return the raw mpf ``x`` times ``2**shift`` rounded to the nearest float64."""
    sign, man, exp, _ = x
    if not man and exp:  # mpmath's special values (inf, nan) have a zero mantissa
        return libmp.to_float(x)
    man = int(man)
    return dyadic_to_float(-man if sign else man, exp + shift)


def norm1(rows: list[list[Raw]]) -> Raw:
    """Return the 1-norm (largest absolute column sum) of a raw matrix, to about 50 bits.

    Entries are scaled by a common power of two into float64 first, so no range is lost; entries
    below 2^-1000 of the largest do not count.
    """
    top = max((x[2] + x[3] for row in rows for x in row if x[1]), default=None)
    if top is None:
        return libmp.fzero
    vals = np.array([[raw_to_float(x, -top) for x in row] for row in rows], dtype=np.float64)
    colmax = float(np.abs(vals).sum(axis=0).max())
    return libmp.mpf_shift(libmp.from_float(colmax), top)


def norm1_diff(a: list[list[Raw]], b: list[list[Raw]]) -> Raw:
    """Return the 1-norm of ``a - b`` (raw matrices of equal shape), to NORM_PREC bits."""
    sub = libmp.mpf_sub
    diff = [
        [sub(x, y, NORM_PREC, libmp.round_nearest) for x, y in zip(ra, rb, strict=True)]
        for ra, rb in zip(a, b, strict=True)
    ]
    return norm1(diff)
