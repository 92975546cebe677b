"""Exact singularity test for an integer matrix: modular screening, then an exact verdict."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["is_exactly_singular"]

# Primes below 2**31, so that a product of two residues fits in int64.
_PRIMES = (2147483647, 2147483629, 2147483587)


def _singular_mod(ints: np.ndarray, p: int) -> bool:
    """Whether det(ints) ≡ 0 (mod p), by Gaussian elimination over GF(p)."""
    a = (ints % p).astype(np.int64)
    n = a.shape[0]
    for k in range(n):
        nz = np.flatnonzero(a[k:, k])
        if nz.size == 0:
            return True
        r = k + int(nz[0])
        if r != k:
            a[[k, r]] = a[[r, k]]
        inv = pow(int(a[k, k]), -1, p)
        f = (a[k + 1 :, k] * inv) % p
        a[k + 1 :, k:] = (a[k + 1 :, k:] - (f[:, None] * a[k, k:][None, :]) % p) % p
    return False


def _is_prime_u32(m: int) -> bool:
    """Deterministic Miller–Rabin for m < 2**32 (bases 2, 7, 61)."""
    if m < 2 or m % 2 == 0:
        return m == 2
    d, s = m - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 7, 61):
        if a % m == 0:
            continue
        x = pow(a, d, m)
        if x in (1, m - 1):
            continue
        for _ in range(s - 1):
            x = x * x % m
            if x == m - 1:
                break
        else:
            return False
    return True


def _primes_below_2_31() -> Iterator[int]:
    """Primes below 2**31 in decreasing order."""
    m = 2**31 - 1
    while m > 2:
        if _is_prime_u32(m):
            yield m
        m -= 2


def _hadamard_bits(rows: list[list[int]]) -> int:
    """An integer b with |det| < 2**b (Hadamard: |det| <= prod of the row 2-norms)."""
    return sum((sum(x * x for x in row).bit_length() + 1) // 2 for row in rows) + 1


def _det_is_zero_multimodular(ints: np.ndarray) -> bool:
    """Whether det(ints) == 0 exactly: zero modulo primes whose product exceeds |det|'s bound."""
    need = _hadamard_bits(ints.tolist())
    have = 0
    for p in _primes_below_2_31():
        if not _singular_mod(ints, p):
            return False
        have += p.bit_length() - 1  # p > 2**30
        if have >= need:
            return True
    raise AssertionError("unreachable: not enough primes below 2**31")  # pragma: no cover


def _exact_det_is_zero(ints: np.ndarray) -> bool:
    try:
        import flint
    except ImportError:
        return _det_is_zero_multimodular(ints)
    return flint.fmpz_mat([[int(x) for x in row] for row in ints.tolist()]).det() == 0


def is_exactly_singular(ints: np.ndarray) -> bool:
    """Whether the square integer matrix ``ints`` (object array of Python ints) is singular.

    A nonzero determinant modulo any screening prime proves nonsingularity (milliseconds); only
    when all residues vanish is the exact verdict sought: flint's integer determinant, or else
    residues modulo enough primes to exceed Hadamard's bound on |det|.
    """
    if any(not _singular_mod(ints, p) for p in _PRIMES):
        return False
    return _exact_det_is_zero(ints)
