"""Argument checks shared by the NumPy reference, the oracle and the tolerance engine."""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np

__all__ = [
    "as_batch",
    "as_float_dtype",
    "as_square_matrix",
    "as_vector",
    "is_real",
    "positive_int",
]

_FLOAT_KINDS = ("f",)


def is_real(x: Any) -> bool:
    """Whether ``x`` is a real number (Python or NumPy; not a bool). NaN counts: comparisons
    made afterwards (``0 < x``, ``math.isfinite``) exclude it."""
    return isinstance(x, Real) and not isinstance(x, bool)


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int (not a bool) ≥ ``minimum``, else raise a ValueError
    naming ``name`` ("must be a positive integer" for the default ``minimum`` of 1)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def as_float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Return ``dtype`` as a NumPy floating dtype, or raise a ValueError naming ``name``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"{name} must be a floating dtype, got {dtype!r}") from exc
    if dt.kind not in _FLOAT_KINDS:
        raise ValueError(f"{name} must be a floating dtype, got {dt}")
    return dt


def as_square_matrix(a: Any, name: str, dtype: Any | None = None) -> np.ndarray:
    """Return ``a`` as a finite square 2-D floating array (a copy when converted).

    Raises ``ValueError`` naming ``name`` for non-2-D, non-square, empty or non-finite input.
    """
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real floating matrix, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got an array of shape {arr.shape}")
    if arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name} must be square and non-empty, got shape {arr.shape}")
    target = as_float_dtype(dtype, "dtype") if dtype is not None else None
    if target is None:
        target = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    arr = np.array(arr, dtype=target, copy=True)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} must be finite, found {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )
    return arr


def as_vector(v: Any, name: str, n: int, dtype: Any) -> np.ndarray:
    """Return ``v`` as a finite 1-D array of length ``n`` and the given dtype (a copy)."""
    arr = np.asarray(v)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real vector, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    arr = np.array(arr, dtype=dtype, copy=True)
    if not np.all(np.isfinite(arr)):
        i = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"{name} must be finite, found {arr[i]} at index {i}")
    return arr


def as_batch(x: Any, name: str, n: int, dtype: Any) -> np.ndarray:
    """Return ``x`` of shape ``(*, n)`` as an array of ``dtype`` (no copy when already so)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.ndim < 1 or arr.shape[-1] != n:
        raise ValueError(f"{name} must have shape (*, {n}), got {arr.shape}")
    return arr.astype(dtype, copy=False)
