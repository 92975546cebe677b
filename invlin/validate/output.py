"""Write conformance files atomically (each file replaced whole, never half-written)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from invlin.validate.render import render_json, render_markdown
from invlin.validate.results import Conformance

__all__ = ["write_conformance", "write_text_atomic"]


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_conformance(
    conformance: Conformance, folder: str | Path, *, title: str = "invlin conformance"
) -> list[Path]:
    """Write ``folder/conformance.md`` and ``folder/conformance.json``; returns both paths.

    Other files in ``folder`` are left alone. The JSON is written last, so a reader that
    finds it also finds the matching Markdown.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out must be a folder, got the file {str(folder)!r}")
    md = write_text_atomic(folder / "conformance.md", render_markdown(conformance, title=title))
    js = write_text_atomic(folder / "conformance.json", render_json(conformance))
    return [md, js]
