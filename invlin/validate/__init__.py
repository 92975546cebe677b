"""Validate invertible layers of any flow library with invlin's checks."""

from __future__ import annotations

from typing import Any

__all__ = ["check"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the pytest plugin (invlin.validate.plugin) loads without torch.
    if name == "check":
        from invlin.validate.assertion import check

        return check
    raise AttributeError(f"module 'invlin.validate' has no attribute {name!r}")
