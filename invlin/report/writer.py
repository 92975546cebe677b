"""Write a report folder atomically: build it beside the target, then swap it into place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from invlin.outputs import file_writer, plan_output, replace_folder
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

    The folder is built beside ``target`` and swapped in by
    :func:`invlin.outputs.replace_folder`: an error or interruption leaves the old complete
    report or the new complete one, never a mix; several processes writing ``target`` at once all
    succeed (the last one wins) and no temporary folder is left behind. This replaces
    ``target`` whatever it holds; :func:`write_report` refuses a folder invlin did not write.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"target must be a folder, got the file {str(target)!r}")
    replace_folder(file_writer(files), target)
    return target


def write_report(data: dict[str, Any], target: str | Path, *, command: str = "") -> Path:
    """Render ``data`` and write the report folder ``target`` atomically; returns its path.

    ``target`` follows the rules of :mod:`invlin.outputs` (created if missing, used if empty,
    replaced if it holds invlin's marker, else :class:`~invlin.outputs.OutputError`); the
    folder gets the marker, with ``command`` recorded in it.
    """
    kind = "replay" if data.get("kind") == "replay" else "report"
    output = plan_output(target, kind=kind, command=command, label="target")
    return output.write_files(render_files(data))
