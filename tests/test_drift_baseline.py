"""The committed baseline report reports/default/: valid, self-consistent, and its truths agree
with an independent oracle evaluation of the same update path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from invlin.drift.config import Configuration
from invlin.drift.regimes import generate
from invlin.oracle import evaluate, exact_path
from invlin.testing import allowed_ratio, assert_forward

BASELINE = Path(__file__).resolve().parents[1] / "reports" / "default"
pytestmark = pytest.mark.skipif(
    not (BASELINE / "data.json").is_file(), reason="no committed baseline report"
)

_JUDGED = ("inverse_ratio_exact", "inverse_ratio_held", "logdet_ratio_exact", "logdet_ratio_held")


@pytest.fixture(scope="module")
def baseline():
    return json.loads((BASELINE / "data.json").read_text())


def test_baseline_matches_the_schema_and_has_its_files(baseline):
    pytest.importorskip("jsonschema")
    from invlin.report import validate

    validate(baseline)
    for name in ("report.md", "report.html", "drift.png", "summary.csv", "checkpoints.csv"):
        assert (BASELINE / name).is_file()
    assert baseline["kind"] == "sweep" and baseline["name"] == "default"


def test_baseline_verdicts_follow_from_its_numbers(baseline):
    """Every stored verdict is what the stored ratios, signs and allowances imply."""
    tracks = failed = 0
    for c in baseline["configurations"]:
        for t in c["tracks"]:
            ok_all = True
            for cp in t["checkpoints"]:
                assert cp["allowed"] == allowed_ratio(cp["merged"])
                ratios = [float(cp[k]) for k in _JUDGED]
                ok = (
                    all(math.isfinite(r) and r <= cp["allowed"] for r in ratios)
                    and cp["sign_tracked"] == cp["sign_exact"] == cp["sign_held"]
                )
                assert cp["passed"] == ok
                ok_all &= ok
            assert t["summary"]["passed"] == ok_all
            tracks += 1
            failed += not ok_all
    assert baseline["summary"]["tracks"] == tracks and baseline["summary"]["failed"] == failed


@pytest.mark.parametrize(
    ("label", "where"),
    [("walk-n16-k1000-float64", "last"), ("crossing-n16-k1000-float64", "event")],
)
def test_baseline_truths_agree_with_an_independent_evaluation(baseline, label, where):
    """Rebuild the plain track's exact path from the stored settings, evaluate it with mpmath,
    compare with the stored κ, log|det| and sign. The generator uses LAPACK (QR), so another
    platform may plan vectors that differ by rounding: the truths then differ by at most the
    condition of the quantity times the accumulated rounding, κ·k·ε — the engine's allowance
    for k updates at condition κ."""
    conf = next(c for c in baseline["configurations"] if c["settings"]["label"] == label)
    s = conf["settings"]
    config = Configuration(
        s["regime"],
        s["n"],
        s["updates"],
        s["dtype"],
        (),
        seed=s["seed"],
        depth=s["depth"],
        scale=s["scale"],
    )
    plain = next(t for t in conf["tracks"] if t["policy"] == "plain" and t["engine"] == "reference")
    cp = (
        plain["checkpoints"][-1]
        if where == "last"
        else next(c for c in plain["checkpoints"] if c["updates"] == conf["event"])
    )
    m = cp["updates"]
    assert cp["merged"] == m  # plain merged every update: its path is the planned one
    seq = generate(
        s["regime"],
        s["n"],
        s["updates"],
        seed=config.sequence_seed(),
        scale=s["scale"],
        depth=s["depth"],
    )
    truth = evaluate(exact_path(seq.a0, zip(seq.u[:m], seq.v[:m], strict=True)), backend="mpmath")
    assert cp["sign_exact"] == truth.sign
    assert_forward(
        out=np.array([float(cp["kappa_exact"]), float(cp["logdet_true"])]),
        expected=np.array([truth.kappa, truth.logabsdet]),
        kappa=truth.kappa,
        dtype="float64",
        updates=m,
    )
