"""Values made JSON-ready: non-finite floats as strings, arrays and tensors as lists."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["jsonable"]


def jsonable(
    value: Any, *, max_inline: int | None = None, fallback: Callable[[Any], str] = str
) -> Any:
    """``value`` with non-finite floats as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict
    JSON has no such numbers), tuples and sets as lists, tensors/arrays/NumPy scalars as (nested)
    lists or numbers, and any other object as ``fallback(value)``.

    ``max_inline``: arrays or tensors with more entries are written as their shape, finite
    extremes and count of non-finite entries instead of a list.

    >>> jsonable({"a": (1.0, float("inf")), 2: float("nan")})
    {'a': [1.0, 'inf'], '2': 'nan'}
    """

    def again(v: Any) -> Any:
        return jsonable(v, max_inline=max_inline, fallback=fallback)

    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): again(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [again(v) for v in value]
    if max_inline is not None and getattr(value, "ndim", 0) and _size(value) > max_inline:
        return _summary(value)
    tolist = getattr(value, "tolist", None)  # torch.Tensor, numpy arrays and scalars
    if callable(tolist):
        try:
            return again(tolist())
        except Exception:  # a tensor on the meta device, ...
            pass
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return again(float(value))
    return fallback(value)


def _size(value: Any) -> int:
    n = value.numel() if hasattr(value, "numel") else value.size
    return int(n)


def _summary(value: Any) -> dict[str, Any]:
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    arr = np.asarray(value, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {
        "shape": list(arr.shape),
        "min": jsonable(float(finite.min())) if finite.size else None,
        "max": jsonable(float(finite.max())) if finite.size else None,
        "nonfinite": int(arr.size - finite.size),
    }
