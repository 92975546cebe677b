"""Rendering of conformance tables (text, Markdown, JSON + schema) and their atomic output."""

from __future__ import annotations

import json
import math

import pytest
import torch

from invlin.validate.output import write_conformance
from invlin.validate.render import (
    counts,
    fence,
    from_json,
    jsonable,
    render,
    render_json,
    render_markdown,
    render_text,
)
from invlin.validate.results import CheckResult, Conformance, LayerReport
from invlin.validate.schema import load_schema, validate_conformance

pytest.importorskip("jsonschema")

REPRO = "import torch\nlayer = make(features=3)\nprint(layer(torch.zeros(1, 3)))\n"


def _table() -> Conformance:
    """A hand-built table with one of each status and a layer that could not be built."""
    ok = LayerReport(
        "Good",
        "invlin",
        "pkg:good",
        [
            CheckResult("roundtrip", "float64", "cpu", "pass", 0.25, 30.0),
            CheckResult("roundtrip", "float32", "cpu", "pass", 2.5, 30.0),
            CheckResult("device", "float64", "cuda", "skip", message="no CUDA device here"),
        ],
    )
    bad = LayerReport(
        "Broken",
        "custom",
        "broken.py:make",
        [
            CheckResult(
                "logdet_autograd",
                "float64",
                "cpu",
                "fail",
                math.inf,
                30.0,
                message="log|det| is -1.2 but autograd slogdet gives 1.2",
                example={"x": [[0.5, float("nan"), -1.0]], "seed": 7, "shape": (1, 3)},
                repro=REPRO,
            ),
            CheckResult("logdet_autograd", "float32", "cpu", "pass", 1.0, 30.0),
            CheckResult(
                "gradients",
                "float64",
                "cpu",
                "error",
                exception="RuntimeError: a | b is not differentiable",
            ),
        ],
    )
    dead = LayerReport(
        "Dead",
        "custom",
        "dead.py:make",
        error="TypeError: make() got an unexpected keyword argument 'features'",
    )
    return Conformance(
        layers=[ok, bad, dead], meta={"profile": "dev", "versions": {"torch": torch.__version__}}
    )


def test_json_matches_schema_and_round_trips_non_finite_ratios():
    table = _table()
    text = render_json(table)
    data = json.loads(text)  # strict JSON: no NaN/Infinity literals
    assert "Infinity" not in text and "NaN" not in text
    validate_conformance(data)
    back = from_json(text)
    fail = back.layers[1].results[0]
    assert math.isinf(fail.ratio) and fail.allowed == 30.0
    assert fail.example == {"x": [[0.5, "nan", -1.0]], "seed": 7, "shape": [1, 3]}
    assert [layer.passed for layer in back.layers] == [True, False, False]
    assert back.layers[2].error == table.layers[2].error


def test_schema_rejects_what_the_renderer_must_never_write():
    data = json.loads(render_json(_table()))
    bad_status = json.loads(json.dumps(data))
    bad_status["layers"][0]["results"][0]["status"] = "ok"
    with pytest.raises(ValueError, match="status"):
        validate_conformance(bad_status)
    missing = json.loads(json.dumps(data))
    del missing["layers"][1]["results"][0]["repro"]
    with pytest.raises(ValueError, match="repro"):
        validate_conformance(missing)
    # the schema names every field of the result dataclasses: none may be added silently
    fields = set(load_schema()["$defs"]["result"]["properties"])
    assert fields == set(CheckResult.__dataclass_fields__)
    assert set(load_schema()["$defs"]["layer"]["properties"]) == set(
        LayerReport.__dataclass_fields__
    )


def test_text_table_and_failure_details():
    text = render_text(_table())
    lines = text.splitlines()
    assert lines[0].startswith(
        "invlin validate: FAILED: 3 layer(s), 3 passed, 1 failed, 2 error(s), 1 skipped"
    )
    header = next(line for line in lines if line.startswith("layer"))
    assert header.split() == ["layer", "check", "float64/cpu", "float32/cpu", "float64/cuda"]
    row = next(line for line in lines if "logdet_autograd" in line and "FAIL" in line)
    assert "FAIL inf / 30" in row and "pass 1 / 30" in row
    assert any("Dead" in line and "ERROR" in line for line in lines)
    details = text[text.index("failures:") :]
    assert "FAIL custom:Broken · logdet_autograd · float64/cpu: ratio inf, allowed 30" in details
    assert "log|det| is -1.2 but autograd slogdet gives 1.2" in details
    assert 'x: [[0.5, "nan", -1.0]]' in details and "seed: 7" in details
    assert "    layer = make(features=3)" in details
    assert "exception: RuntimeError: a | b is not differentiable" in details
    assert "unexpected keyword argument 'features'" in details
    assert "no CUDA device here" in text[: text.index("failures:")]  # skip reasons listed


def test_passing_table_says_so_and_has_no_failure_section():
    good = Conformance(layers=[_table().layers[0]])
    text = render_text(good)
    assert text.startswith("invlin validate: PASSED: 1 layer(s), 2 passed, 0 failed")
    assert "failures:" not in text
    assert "## Failures" not in render_markdown(good)


def test_markdown_table_is_well_formed():
    md = render_markdown(_table(), title="invlin conformance: demo")
    assert md.startswith("# invlin conformance: demo\n")
    rows = [line for line in md.splitlines() if line.startswith("|")]
    table = rows[: rows.index("| layer | check | where | reason |")]  # before the skip table
    # every row of the layer × check table has the header's number of cells
    assert len(table) == 7 and all(r.replace("\\|", "").count("|") == 6 for r in table), table
    assert "```python\n" + REPRO.rstrip() + "\n```" in md
    assert "### FAIL custom:Broken · logdet_autograd · float64/cpu" in md
    assert "## Skipped checks" in md and "no CUDA device here" in md
    assert "- profile: dev" in md


def test_fence_outgrows_backticks_in_its_content():
    assert fence("a ``` b").startswith("````\n") and fence("a ``` b").endswith("\n````")


def test_jsonable_handles_tensors_and_non_finite_values():
    value = {"t": torch.tensor([1.0, float("inf")]), "n": float("-inf"), 1: (torch.float32,)}
    assert jsonable(value) == {"t": [1.0, "inf"], "n": "-inf", "1": ["torch.float32"]}


def test_counts_and_unknown_format():
    assert counts(_table()) == {
        "layers": 3,
        "layer_errors": 1,
        "pass": 3,
        "fail": 1,
        "error": 1,
        "skip": 1,
        "insufficient": 0,
    }
    with pytest.raises(ValueError, match="fmt"):
        render(_table(), "html")


def test_write_conformance_replaces_files_atomically(tmp_path):
    out = tmp_path / "nested" / "lib"
    (out).mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    paths = write_conformance(_table(), out, title="t")
    assert sorted(p.name for p in out.iterdir()) == [
        "conformance.json",
        "conformance.md",
        "keep.txt",
    ]
    assert [p.name for p in paths] == ["conformance.md", "conformance.json"]
    validate_conformance(json.loads((out / "conformance.json").read_text()))
    write_conformance(Conformance(layers=[_table().layers[0]]), out)
    assert from_json((out / "conformance.json").read_text()).passed
    assert "PASSED" in (out / "conformance.md").read_text()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="folder"):
        write_conformance(_table(), tmp_path / "file")


def test_summary_merges_library_folders_into_readme_and_json(tmp_path):
    from invlin.validate.summary import main as summary_main

    table = _table()
    write_conformance(
        Conformance(layers=table.layers[:1], meta={"versions": {"nflows": "0.14"}}),
        tmp_path / "nflows",
    )
    write_conformance(
        Conformance(
            layers=table.layers[1:],
            meta={
                "versions": {"pyro": "1.9.2"},
                "command": "invlin x",
                "warnings": [
                    {
                        "layer": "pyro:Broken",
                        "category": "UserWarning",
                        "message": "torch.qr is deprecated",
                        "where": "pyro/x.py:3",
                        "count": 2,
                    }
                ],
            },
        ),
        tmp_path / "pyro",
    )
    assert summary_main([str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    # columns: version, context (— : unconditional), layers, conforming, pass, fail, error,
    # skip, run time (? : the run recorded none)
    assert "| [nflows](nflows/conformance.md) | 0.14 | — | 1 | 1 | 2 | 0 | 0 | 1 | ? |" in readme
    assert "| [pyro](pyro/conformance.md) | 1.9.2 | — | 2 | 0 | 1 | 1 | 2 | 0 | ? |" in readme
    findings = readme[readme.index("## Findings") :]
    assert "Every curated layer passed" in findings[: findings.index("### pyro")]
    assert (
        "**Broken** fails `logdet_autograd` (float64/cpu): worst ratio inf (allowed 30)" in findings
    )
    assert "layer = make(features=3)" in findings  # the reproduction
    assert 'x: [[0.5, "nan", -1.0]]' in findings  # the minimal failing example
    assert "**Broken** raises in `gradients` (float64/cpu)" in findings
    assert "**Dead** cannot be built" in findings
    assert '- Broken: UserWarning "torch.qr is deprecated" (pyro/x.py:3)' in findings
    assert "## Conventions the adapters normalise" in readme and "nflows negates" in readme
    merged = json.loads((tmp_path / "conformance.json").read_text())
    validate_conformance(merged)
    assert [x["name"] for x in merged["layers"]] == ["Good", "Broken", "Dead"]
    assert set(merged["meta"]["libraries"]) == {"nflows", "pyro"}
    assert summary_main([str(tmp_path / "empty")]) == 2


def test_one_exception_raised_by_every_check_is_shown_once():
    gone = "RuntimeError: torch.solve was removed"
    layer = LayerReport(
        "Old",
        "nflows",
        "",
        [
            CheckResult(c, d, "cpu", "error", exception=gone)
            for d in ("float64", "float32")
            for c in ("round_trip", "cache")
        ],
    )
    text = render_text(Conformance(layers=[layer]))
    assert text.count(f"exception: {gone}") == 1
    assert (
        "the same exception in: cache float64/cpu, round_trip float32/cpu, cache float32/cpu"
        in text
    )
    assert render_markdown(Conformance(layers=[layer])).count(gone) == 1
