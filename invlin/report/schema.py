"""The JSON schema of data.json and a validator for it."""

from __future__ import annotations

from typing import Any

from invlin import _schema

__all__ = ["SCHEMA_FILE", "load_schema", "validate"]

#: The schema's file name inside the ``invlin.report`` package.
SCHEMA_FILE = "data.schema.json"


def load_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a report's data.json."""
    return _schema.load("invlin.report", SCHEMA_FILE)


def validate(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first violation when ``data`` does not match the schema.

    Needs the ``jsonschema`` package (in the ``test`` extra); ImportError says so when missing.
    """
    _schema.check(data, "invlin.report", SCHEMA_FILE, "report")
