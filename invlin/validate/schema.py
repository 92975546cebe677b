"""The JSON schema of a conformance table and a validator for it."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["SCHEMA_FILE", "load_schema", "validate_conformance"]

#: The schema's file name inside the ``invlin.validate`` package.
SCHEMA_FILE = "conformance.schema.json"


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("invlin.validate").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of ``invlin validate --format json``."""
    return json.loads(_schema_text())


def validate_conformance(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first violation when ``data`` does not match the schema.

    ``data`` is the parsed JSON output. Needs ``jsonschema`` (in the ``test`` extra).
    """
    try:
        import jsonschema
    except ImportError as exc:
        raise ImportError("validating conformance JSON needs jsonschema: "
                          "pip install jsonschema") from exc
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ValueError(f"data does not match the conformance schema at {where}: {e.message} "
                         f"({len(errors)} error(s))")
