"""The JSON schema of a conformance table and a validator for it."""

from __future__ import annotations

from typing import Any

from invlin import _schema

__all__ = ["SCHEMA_FILE", "load_schema", "validate_conformance"]

#: The schema's file name inside the ``invlin.validate`` package.
SCHEMA_FILE = "conformance.schema.json"


def load_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of ``invlin validate --format json``."""
    return _schema.load("invlin.validate", SCHEMA_FILE)


def validate_conformance(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first violation when ``data`` does not match the schema.

    ``data`` is the parsed JSON output. Needs ``jsonschema`` (in the ``test`` extra).
    """
    _schema.check(data, "invlin.validate", SCHEMA_FILE, "conformance")
