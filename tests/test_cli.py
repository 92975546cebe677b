"""Tests of the ``invlin`` command line and its drift report on small planted cases."""

from __future__ import annotations

import json

import pytest

from invlin.cli import main
from invlin.drift.vocabulary import POLICIES


def test_report_prints_summary_writes_report_and_passes(capsys, tmp_path):
    out = tmp_path / "rep"
    assert (
        main(
            [
                "report",
                "--n",
                "6",
                "--updates",
                "30",
                "--dtypes",
                "float64",
                "--regimes",
                "walk",
                "--output",
                str(out),
                "--no-progress",
                "--strict",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("verdict  policy")
    # One verdict line per policy (× the one regime), each over both engines.
    rows = [line.split() for line in text.splitlines() if line.startswith("PASS")]
    assert [r[1:4] for r in rows] == [[p, "walk", "2/2"] for p in POLICIES]
    assert "8 passed, 0 failed" in text and "exit status 0" in text
    assert text.rstrip().endswith(f"wrote {out}")
    assert (out / "report.html").is_file() and (out / "data.json").is_file()


@pytest.mark.slow
def test_report_flags_a_planted_defect(monkeypatch, tmp_path):
    """A Sherman–Morrison update that forgets the 1/c factor must fail the check."""
    import numpy as np

    from invlin.reference import rank_one

    def missing_one_over_c(self, u, v, **kw):
        u, v = self._vectors(u, v)
        xu = self._inv @ u
        c = 1 + v @ xu
        self._a = self._a + np.outer(u, v)
        self._inv = self._inv - np.outer(xu, v @ self._inv)  # defect: no division by c
        self._logabsdet = self._logabsdet + np.log(abs(c))
        self.updates += 1
        return rank_one.UpdateResult(float(c), True)

    args = [
        "report",
        "--n",
        "4",
        "--updates",
        "10",
        "--dtypes",
        "float64",
        "--regimes",
        "walk",
        "--engines",
        "reference",
        "--no-progress",
        "--strict",
    ]
    assert main([*args, "--output", str(tmp_path / "good")]) == 0
    monkeypatch.setattr(rank_one.TrackedMatrix, "update", missing_one_over_c)
    assert main([*args, "--output", str(tmp_path / "bad")]) == 1
    data = json.loads((tmp_path / "bad" / "data.json").read_text())
    tracks = data["configurations"][0]["tracks"]
    assert len(tracks) == 4 and not any(t["summary"]["passed"] for t in tracks)


def test_bad_arguments_exit_with_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", "--n", "0"])
    assert info.value.code == 2
    assert "positive integer" in capsys.readouterr().err
