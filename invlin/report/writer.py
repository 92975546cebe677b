"""Write a report folder atomically: build it beside the target, then rename it into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from invlin.report.document import build_document
from invlin.report.figures import render_figures
from invlin.report.html import render_html
from invlin.report.markdown import render_markdown
from invlin.report.tables import checkpoints_csv, summary_csv

__all__ = ["render_files", "write_atomic", "write_report"]


def render_files(data: dict[str, Any]) -> dict[str, bytes]:
    """Every file of a report for ``data``: data.json, CSVs, PNGs, report.md, report.html."""
    images = render_figures(data)
    blocks = build_document(data, list(images))
    text = json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n"
    files = {
        "data.json": text.encode(),
        "checkpoints.csv": checkpoints_csv(data).encode(),
        "summary.csv": summary_csv(data).encode(),
        "report.md": render_markdown(blocks).encode(),
        "report.html": render_html(blocks, images, title=f"invlin report {data['name']}").encode(),
    }
    files.update(images)
    return files


def write_atomic(files: dict[str, bytes], target: str | Path) -> Path:
    """Write ``files`` ({name: bytes}) as the folder ``target``, replacing any previous one.

    The folder is built in a temporary directory beside ``target`` and renamed into place; an
    old report is first renamed aside and removed only after the new one is in place. An
    interruption therefore leaves either the old complete report or the new complete one at
    ``target`` (plus, at worst, a hidden ``.<name>.*`` folder beside it), never a mix.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"target must be a folder, got the file {str(target)!r}")
    for name in files:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"file names must be plain names, got {name!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old: Path | None = None
    try:
        for name, content in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)  # put the previous report back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def write_report(data: dict[str, Any], target: str | Path) -> Path:
    """Render ``data`` and write the report folder ``target`` atomically; returns its path."""
    return write_atomic(render_files(data), target)
