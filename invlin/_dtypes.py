"""The dtype → unit-roundoff table every other module reads (layers, estimators, tolerances)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EPS", "dtype_name", "eps"]

#: Unit roundoff u = 2^-p of each floating format (LAPACK's xLAMCH('E'); half of ``finfo.eps``).
EPS: dict[str, float] = {
    "bfloat16": 2.0**-8,
    "float16": 2.0**-11,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}


def dtype_name(dtype: Any) -> str:
    """Canonical name (``"float32"``, …) of a NumPy dtype, torch dtype, array, tensor or string."""
    if hasattr(dtype, "dtype") and not isinstance(dtype, type):
        dtype = dtype.dtype
    name = str(dtype)
    if name.startswith("torch."):
        name = name[len("torch.") :]
    name = {"float": "float64", "double": "float64", "half": "float16"}.get(name, name)
    if name not in EPS:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name not in EPS:
        raise ValueError(f"dtype must be one of {sorted(EPS)}, got {dtype!r}")
    return name


def eps(dtype: Any) -> float:
    """Unit roundoff of ``dtype`` (NumPy or torch dtype, array, tensor, or name).

    >>> eps("float64") == 2.0**-53
    True
    """
    return EPS[dtype_name(dtype)]
