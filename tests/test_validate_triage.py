"""The triage of the conformance report: its file loads, matches findings, and every
reproduction it quotes runs and asserts its fact (with the library installed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from invlin.validate.registry import BUILTIN
from invlin.validate.results import CheckResult, Conformance, LayerReport
from invlin.validate.summary import CONTEXT_SUFFIX, render_summary
from invlin.validate.triage import TRIAGE_FILE, Verdict, load_triage, match, unmatched

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "validate"
TRIAGE = load_triage(REPORTS / TRIAGE_FILE)
_MODULES = {name: row.module for name, row in BUILTIN.items()}


def _entry(**kw) -> dict:
    base = {
        "library": "nflows",
        "layer": "Old",
        "checks": ["round_trip"],
        "kind": "defect",
        "summary": "s",
        "facts": "f",
        "source": "x.py:1",
        "reproduction": "assert True",
    }
    return {**base, **kw}


def test_the_triage_file_is_well_formed_and_explains_distinct_findings():
    assert TRIAGE, f"{REPORTS / TRIAGE_FILE} is missing or empty"
    keys = [
        (v.library, layer, c, d)
        for v in TRIAGE
        for layer in v.layers
        for c in v.checks
        for d in (v.dtypes or ("float64", "float32"))
    ]
    assert len(keys) == len(set(keys)), "two verdicts explain the same finding"


def test_load_refuses_malformed_entries(tmp_path):
    path = tmp_path / TRIAGE_FILE
    assert load_triage(path) == []
    for bad, words in (
        (_entry(kind="bug"), "'kind'"),
        (_entry(checks="round_trip"), "checks"),
        (_entry(summary=""), "'summary'"),
        ({"library": "x"}, "missing keys"),
        (_entry(extra=1), "unknown keys"),
    ):
        path.write_text(json.dumps([bad]))
        with pytest.raises(ValueError, match=words):
            load_triage(path)


def test_match_untriaged_and_stale_findings_are_reported():
    def verdict(layer: str, checks: tuple, dtypes: tuple = ()) -> Verdict:
        entry = {k: v for k, v in _entry().items() if k not in ("layer", "checks")}
        return Verdict(layers=(layer,), checks=checks, dtypes=dtypes, **entry)

    path_free = [
        verdict("Old", ("*",)),
        verdict("Gone", ("edges",)),
        verdict("Half", ("edges",), ("float32",)),
    ]
    old = LayerReport(
        "Old",
        "nflows",
        "",
        [
            CheckResult("round_trip", "float64", "cpu", "error", exception="RuntimeError: x"),
            CheckResult("cache", "float32", "cpu", "error", exception="RuntimeError: x"),
        ],
    )
    half = LayerReport(
        "Half",
        "nflows",
        "",
        [
            CheckResult("edges", "float32", "cpu", "fail", message="nan"),
            CheckResult("edges", "float64", "cpu", "fail", message="nan"),
        ],
    )
    parts = {"nflows": Conformance(layers=[old, half])}
    assert match(path_free, "nflows", "Old", old.results[1]) is path_free[0]
    assert match(path_free, "nflows", "Half", half.results[1]) is None  # float64 not covered
    untriaged, stale = unmatched(path_free, parts)
    assert [(lib, layer, r.dtype) for lib, layer, r in untriaged] == [("nflows", "Half", "float64")]
    assert stale == [path_free[1]]
    readme = render_summary(parts, triage=path_free)
    assert "## Triage" in readme and "### Findings without a verdict" in readme
    assert "- nflows · Half · `edges` (float64/cpu)" in readme
    assert "### Verdicts that match no finding of these runs" in readme
    assert "Verdict: **library defect**" in readme
    glance = readme[readme.index("## Findings at a glance") :]
    # one finding per verdict: the covered float32 half and the untriaged float64 half apart
    assert "| nflows | Half | edges | float32/cpu |  | defect |" in glance
    assert "| nflows | Half | edges | float64/cpu |  | untriaged |" in glance


@pytest.mark.parametrize("folder", ["validate", "validate-context"])
def test_the_committed_summary_has_a_verdict_for_every_finding(folder: str):
    readme = (REPORTS.parent / folder / "README.md").read_text(encoding="utf-8")
    assert "## Triage" in readme
    assert "### Findings without a verdict" not in readme
    assert "### Verdicts that match no finding" not in readme
    assert "| untriaged |" not in readme


@pytest.mark.parametrize(
    "verdict", TRIAGE, ids=[f"{v.library}-{v.layers[0]}-{'-'.join(v.checks)}" for v in TRIAGE]
)
def test_each_reproduction_runs_and_asserts_its_fact(verdict: Verdict):
    module = _MODULES[verdict.library.removesuffix(CONTEXT_SUFFIX)]  # a conditional run's too
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (run with the flow libraries' environment)")
    exec(compile(verdict.reproduction, f"<triage {verdict.layers[0]}>", "exec"), {})


def test_summary_takes_its_verdicts_from_another_folders_triage_file(tmp_path, capsys):
    """``--triage FILE``: one triage file serves a second report folder (conditional runs)."""
    from invlin.validate.render import render_json
    from invlin.validate.summary import main

    folder = tmp_path / "ctx"
    part = Conformance(
        layers=[
            LayerReport(
                "Old",
                "nflows",
                "",
                [CheckResult("round_trip", "float64", "cpu", "fail", message="off")],
            )
        ],
        meta={"versions": {"nflows": "0.14"}, "context_features": 3},
    )
    (folder / "nflows-context").mkdir(parents=True)
    (folder / "nflows-context" / "conformance.json").write_text(render_json(part))
    triage = tmp_path / "elsewhere.json"
    triage.write_text(json.dumps([_entry(library="nflows-context")]))
    assert main([str(folder), "--triage", str(triage)]) == 0
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "Verdict: **library defect**" in readme and "| 0.14 | 3 |" in readme
    assert main([str(folder)]) == 0  # no triage.json in the folder: no verdicts
    assert "Verdict:" not in (folder / "README.md").read_text(encoding="utf-8")
    assert main([str(folder), "--triage", str(tmp_path / "missing.json")]) == 2
    assert "--triage file" in capsys.readouterr().err
