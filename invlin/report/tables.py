"""CSV tables of a report: every checkpoint of every track, and the summary."""

from __future__ import annotations

import csv
import io
from typing import Any

from invlin.report.document import summary_header, summary_rows

__all__ = ["checkpoints_csv", "summary_csv"]

_KEYS = ("label", "regime", "n", "updates_total", "dtype", "engine", "device", "policy")


def checkpoints_csv(data: dict[str, Any]) -> str:
    """One row per (configuration, track, checkpoint): the configuration keys, then every
    checkpoint field of data.json (non-finite values as inf / -inf / nan)."""
    buf = io.StringIO()
    writer = None
    for c in data["configurations"]:
        s = c["settings"]
        for t in c["tracks"]:
            for cp in t["checkpoints"]:
                row = {
                    "label": s["label"],
                    "regime": s["regime"],
                    "n": s["n"],
                    "updates_total": s["updates"],
                    "dtype": s["dtype"],
                    "engine": t["engine"],
                    "device": t["device"],
                    "policy": t["policy"],
                    **cp,
                }
                if writer is None:
                    writer = csv.DictWriter(buf, fieldnames=list(row), lineterminator="\n")
                    writer.writeheader()
                writer.writerow(row)
    return buf.getvalue()


def summary_csv(data: dict[str, Any]) -> str:
    """The summary table of the report as CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(summary_header(data))
    writer.writerows(summary_rows(data))
    return buf.getvalue()
