"""Packaged JSON schemas: loading one and checking data against it (draft 2020-12)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["check", "load"]


@cache
def _text(package: str, file: str) -> str:
    return resources.files(package).joinpath(file).read_text(encoding="utf-8")


def load(package: str, file: str) -> dict[str, Any]:
    """The schema ``file`` shipped inside ``package`` (a fresh dict each call)."""
    return json.loads(_text(package, file))


def check(data: Any, package: str, file: str, what: str) -> None:
    """Raise ``ValueError`` naming the first violation when ``data`` does not match the schema;
    ``what`` names the schema in messages ("report", "conformance"). Needs ``jsonschema``."""
    try:
        import jsonschema
    except ImportError as exc:
        raise ImportError(
            f"validating {what} JSON needs jsonschema: pip install jsonschema"
        ) from exc
    validator = jsonschema.Draft202012Validator(load(package, file))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ValueError(
            f"data does not match the {what} schema at {where}: {e.message} "
            f"({len(errors)} error(s))"
        )
