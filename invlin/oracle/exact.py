"""Exact matrices of an update path: integers times a common power of two."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import numpy as np

from invlin._validation import as_square_matrix, as_vector

from ._common import dyadic_to_float

__all__ = ["ExactMatrix", "exact_path"]

_EXACT_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _dyadic_parts(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Split a finite float64 array into Python-int mantissas (object array) and one exponent.

    ``x == mantissas * 2**exponent`` exactly; the exponent is as large as possible, so at least
    one mantissa is odd (all-zero input gives exponent 0).
    """
    mant, ex = np.frexp(x)
    mi = (mant * 2.0**53).astype(np.int64)  # exact: |mant| < 1 has at most 53 significant bits
    nz = mi != 0
    if not nz.any():
        return np.zeros(x.shape, dtype=object), 0
    low = (mi & -mi).astype(np.float64)  # lowest set bit, a power of two
    tz = np.frexp(low)[1].astype(np.int64) - 1
    tz[~nz] = 0
    mi >>= tz
    ex = ex.astype(np.int64) - 53 + tz
    e0 = int(ex[nz].min())
    shifts = np.where(nz, ex - e0, 0).astype(object)
    return mi.astype(object) << shifts, e0


def _int_parts(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Split an integer array into Python-int entries (object array) and exponent 0."""
    return np.array(x.astype(object), dtype=object), 0


class ExactMatrix:
    """An n×n real matrix held exactly as ``mantissas * 2**exponent``.

    ``mantissas`` is an (n, n) NumPy object array of Python ints and ``exponent`` an int; every
    float16/32/64 matrix and every sum of outer products of float vectors has this form.
    Build one with :meth:`from_float`, update it with :meth:`apply`.
    """

    __slots__ = ("_exp", "_ints")

    def __init__(self, mantissas: np.ndarray, exponent: int) -> None:
        ints = np.asarray(mantissas, dtype=object)
        if ints.ndim != 2 or ints.shape[0] != ints.shape[1] or ints.shape[0] == 0:
            raise ValueError(f"mantissas must be a non-empty square 2-D array, got {ints.shape}")
        try:
            flat = [operator.index(m) for m in ints.flat]
            self._exp = operator.index(exponent)
        except TypeError as exc:
            raise ValueError("mantissas and exponent must be integers") from exc
        self._ints = np.empty(ints.shape, dtype=object)
        self._ints.flat[:] = flat

    @classmethod
    def from_float(cls, a: Any) -> ExactMatrix:
        """Return the exact value of ``a``, a square float16/32/64 (or integer) array (n, n)."""
        return cls._from_array(a, "a")

    @classmethod
    def _from_array(cls, a: Any, name: str) -> ExactMatrix:
        raw = np.asarray(a)
        if raw.dtype.kind == "f" and raw.dtype not in _EXACT_FLOATS:
            raise ValueError(f"{name} must be float16, float32 or float64, got {raw.dtype}")
        checked = as_square_matrix(raw, name)  # shape and finiteness checks
        if raw.dtype.kind in "iub":
            ints, exp = _int_parts(raw.astype(np.int64) if raw.dtype.kind == "b" else raw)
        else:
            ints, exp = _dyadic_parts(checked.astype(np.float64))
        out = cls.__new__(cls)
        out._ints, out._exp = ints, exp
        return out

    @property
    def n(self) -> int:
        """The order n of the matrix."""
        return int(self._ints.shape[0])

    @property
    def mantissas(self) -> np.ndarray:
        """A copy of the integer mantissas, an (n, n) object array of Python ints."""
        return self._ints.copy()

    @property
    def exponent(self) -> int:
        """The common binary exponent: the matrix is ``mantissas * 2**exponent``."""
        return self._exp

    def copy(self) -> ExactMatrix:
        """Return an independent copy."""
        out = ExactMatrix.__new__(ExactMatrix)
        out._ints, out._exp = self._ints.copy(), self._exp
        return out

    def apply(self, u: Any, v: Any) -> None:
        """Add the outer product ``u vᵀ`` exactly, in place (u, v: float vectors of length n)."""
        self._apply(u, v, "u", "v")

    def _apply(self, u: Any, v: Any, u_name: str, v_name: str) -> None:
        n = self.n
        uu = _as_exact_vector(u, u_name, n)
        vv = _as_exact_vector(v, v_name, n)
        mu, eu = _dyadic_parts(uu)
        mv, ev = _dyadic_parts(vv)
        if not (mu.any() and mv.any()):
            return
        outer = np.multiply.outer(mu, mv)
        e = eu + ev
        if e < self._exp:
            self._ints = self._ints << (self._exp - e)
            self._exp = e
        elif e > self._exp:
            outer = outer << (e - self._exp)
        self._ints = self._ints + outer

    def to_float(self) -> np.ndarray:
        """Return the nearest float64 matrix, shape (n, n) (entries beyond range become ±inf)."""
        e = self._exp
        flat = [dyadic_to_float(int(m), e) for m in self._ints.flat]
        return np.array(flat, dtype=np.float64).reshape(self._ints.shape)

    def to_fractions(self) -> list[list[Fraction]]:
        """Return the exact entries as an n×n list of lists of ``Fraction``."""
        e = self._exp
        scale = Fraction(2) ** e
        return [[Fraction(int(m)) * scale for m in row] for row in self._ints.tolist()]

    def _aligned(self, other: ExactMatrix) -> tuple[np.ndarray, np.ndarray]:
        e = min(self._exp, other._exp)
        return self._ints << (self._exp - e), other._ints << (other._exp - e)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExactMatrix):
            return NotImplemented
        if other.n != self.n:
            return False
        a, b = self._aligned(other)
        return bool(np.all(a == b))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        bits = max(abs(int(m)).bit_length() for m in self._ints.flat)
        return f"ExactMatrix(n={self.n}, exponent={self._exp}, mantissa_bits<={bits})"


def _as_exact_vector(v: Any, name: str, n: int) -> np.ndarray:
    raw = np.asarray(v)
    if raw.dtype.kind == "f" and raw.dtype not in _EXACT_FLOATS:
        raise ValueError(f"{name} must be float16, float32 or float64, got {raw.dtype}")
    return as_vector(raw, name, n, np.float64)


def exact_path(a0: Any, updates: Iterable[tuple[Any, Any]]) -> ExactMatrix:
    """Return the exact ``a0 + Σ_k u_k v_kᵀ``.

    ``a0`` is a square float array (n, n); ``updates`` yields pairs ``(u_k, v_k)`` of float vectors
    of length n. Non-finite or mis-shaped input raises ``ValueError`` naming the offending update.
    """
    m = ExactMatrix._from_array(a0, "a0")
    for k, pair in enumerate(updates):
        try:
            u, v = pair
        except (TypeError, ValueError) as exc:
            raise ValueError(f"updates[{k}] must be a (u, v) pair") from exc
        m._apply(u, v, f"updates[{k}][0]", f"updates[{k}][1]")
    return m
