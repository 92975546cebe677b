"""The conformance report states how long each library's run took: a run records its wall time
(and -j) in its metadata, and the merged summary prints it per library, conditional runs
(``<library>-context``) included."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from invlin.cli import main
from invlin.validate.meta import run_meta
from invlin.validate.results import CheckResult, Conformance, LayerReport
from invlin.validate.summary import load_parts, render_summary, run_time

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "validate"
_META = {"profile": "ci", "features": 4, "dtypes": ["float64"], "devices": ["cpu"], "seed": 0}


def _part(library: str, **meta) -> Conformance:
    layer = LayerReport("L", library, "", [CheckResult("round_trip", "float64", "cpu", "pass")])
    return Conformance(layers=[layer], meta={"versions": {library: "1.0"}, **meta})


def test_run_meta_records_the_wall_time_and_jobs_only_when_given():
    meta = run_meta(**_META, checks=["round_trip"], wall_seconds=12.345, jobs=2)
    assert meta["wall_seconds"] == 12.3 and meta["jobs"] == 2
    bare = run_meta(**_META, checks=["round_trip"])
    assert "wall_seconds" not in bare and "jobs" not in bare


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"wall_seconds": -1.0}, "wall_seconds"),
        ({"wall_seconds": math.nan}, "wall_seconds"),
        ({"wall_seconds": math.inf}, "wall_seconds"),
        ({"jobs": 0}, "jobs"),
        ({"jobs": True}, "jobs"),
    ],
)
def test_run_meta_refuses_a_bad_time_or_jobs_naming_it(kw, match):
    with pytest.raises(ValueError, match=match):
        run_meta(**_META, checks=[], **kw)


def test_run_time_text():
    assert run_time({"wall_seconds": 412.3}) == "412 s"
    assert run_time({"wall_seconds": 412.3, "jobs": 1}) == "412 s"
    assert run_time({"wall_seconds": 99.6, "jobs": 2}) == "100 s, -j 2"
    assert run_time({}) == "?" and run_time({"wall_seconds": "fast"}) == "?"


def test_the_summary_prints_each_librarys_run_time_and_context():
    parts = {
        "zuko": _part("zuko", wall_seconds=123.4, jobs=1),
        "zuko-context": _part("zuko", wall_seconds=77.0, jobs=2, context_features=3),
        "old": _part("old"),
    }
    readme = render_summary(parts)
    head = "| library | version | context | layers | conforming | pass | fail | error | skip "
    assert head + "| run time |" in readme
    assert "| [zuko](zuko/conformance.md) | 1.0 | — | 1 | 1 | 1 | 0 | 0 | 0 | 123 s |" in readme
    # a conditional run: its own row, the library's version, M, its own time
    row = "| [zuko-context](zuko-context/conformance.md) | 1.0 | 3 | 1 | 1 | 1 | 0 | 0 | 0 |"
    assert row + " 77 s, -j 2 |" in readme
    assert "| [old](old/conformance.md) | 1.0 | — | 1 | 1 | 1 | 0 | 0 | 0 | ? |" in readme


def test_a_library_run_records_its_wall_time(tmp_path):
    """End to end: `invlin validate --out` writes wall_seconds and jobs into conformance.json."""
    out = tmp_path / "out"
    argv = ["validate", "invlin.nn:P4InvLinear", "--check", "invertibility", "--dtype", "float64"]
    assert main([*argv, "--profile", "dev", "--out", str(out), "--quiet"]) == 0
    meta = json.loads((out / "conformance.json").read_text())["meta"]
    assert isinstance(meta["wall_seconds"], float) and 0 < meta["wall_seconds"] < 600
    assert meta["jobs"] == 1


def test_the_committed_report_states_every_librarys_run_time():
    parts = load_parts(REPORTS)
    assert not [lib for lib, part in parts.items() if run_time(part.meta) == "?"]
    readme = (REPORTS / "README.md").read_text(encoding="utf-8")
    for lib, part in parts.items():
        assert f"| {run_time(part.meta)} |" in readme.split(f"[{lib}]({lib}/conformance.md)")[1]
