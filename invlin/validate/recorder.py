"""Record the warnings raised while layers are validated (deprecated torch APIs, ...)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["record_warnings"]


def _short(filename: str) -> str:
    """``nflows/transforms/lu.py`` rather than the full site-packages path."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in filename:
            return filename.rsplit(marker, 1)[1]
    return filename


@contextmanager
def record_warnings(layer: str, into: list[dict[str, Any]]) -> Iterator[None]:
    """Append one entry per distinct warning raised inside the block to ``into``.

    Entries are ``{"layer", "category", "message" (first line), "where" (file:line),
    "count"}``; the warnings are not printed. Warnings a check turns into errors or filters
    itself are not seen here.
    """
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        text = str(message).strip().splitlines()[0] if str(message).strip() else ""
        key = (category.__name__, text, f"{_short(filename)}:{lineno}")
        if key in seen:
            seen[key]["count"] += 1
        else:
            seen[key] = {
                "layer": layer,
                "category": key[0],
                "message": key[1],
                "where": key[2],
                "count": 1,
            }

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        try:
            yield
        finally:
            into.extend(seen.values())
