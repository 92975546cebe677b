"""Failure reports that carry the generated case as a runnable reproduction script."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from invlin.testing.assertions import ToleranceError
from invlin.testing.cases import array_literal

__all__ = ["case_script", "reproducible"]

_HEADER = (
    "import numpy as np",
    "from invlin.testing.cases import LUCase, MatrixCase, PathCase",
)


def case_script(call: str, **objects: Any) -> str:
    """Python source that rebuilds ``objects`` and then runs ``call`` (a statement or a block).

    Cases (:mod:`invlin.testing.cases`) and plain Python values enter through their ``repr``,
    arrays as exact float64 literals.

    >>> print(case_script("print(x.sum())", x=np.array([0.1, 2.0])))
    import numpy as np
    from invlin.testing.cases import LUCase, MatrixCase, PathCase
    x = np.array([0.1, 2. ])
    print(x.sum())
    """
    lines = list(_HEADER)
    for name, value in objects.items():
        if not name.isidentifier():
            raise ValueError(f"object names must be identifiers, got {name!r}")
        text = array_literal(value) if isinstance(value, np.ndarray) else repr(value)
        lines.append(f"{name} = {text}")
    lines.append(call.strip("\n"))
    return "\n".join(lines)


@contextmanager
def reproducible(call: str, **objects: Any) -> Iterator[None]:
    """Run the block; an AssertionError raised in it is re-raised as a :class:`ToleranceError`
    (keeping ``ratio`` and ``allowed`` when present) whose message ends with
    :func:`case_script` ``(call, **objects)``, so the failing case can be rerun as a script."""
    try:
        yield
    except AssertionError as exc:
        script = case_script(call, **objects)
        err = ToleranceError(
            f"{exc}\n\nReproduce the whole case with:\n{script}",
            getattr(exc, "ratio", None),
            getattr(exc, "allowed", None),
        )
        raise err.with_traceback(exc.__traceback__) from None
