"""The JSON schema of data.json and a validator for it."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["SCHEMA_FILE", "load_schema", "validate"]

#: The schema's file name inside the ``invlin.report`` package.
SCHEMA_FILE = "data.schema.json"


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("invlin.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a report's data.json."""
    return json.loads(_schema_text())


def validate(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first violation when ``data`` does not match the schema.

    Needs the ``jsonschema`` package (in the ``test`` extra); ImportError says so when missing.
    """
    try:
        import jsonschema
    except ImportError as exc:
        raise ImportError("validating data.json needs jsonschema: pip install jsonschema") from exc
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ValueError(f"data does not match the report schema at {where}: {e.message} "
                         f"({len(errors)} error(s))")
