"""Drift reports: render a data document as PNG figures, Markdown, HTML, CSV and JSON."""

from invlin.report.schema import load_schema, validate
from invlin.report.writer import render_files, write_atomic, write_report

__all__ = ["load_schema", "render_files", "validate", "write_atomic", "write_report"]
