"""Verdicts with evidence: 'insufficient' when nothing was judged, the invertibility check, and
one verdict per defect across dtypes (replaying a failing case in the other dtype)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from validate_broken import (
    ConstantMap,
    clamped_coupling_both_ways,
    clamped_coupling_scale,
    constant_map,
    scaled_coordinates,
    zeroed_coordinate,
)

from invlin.testing import eps
from invlin.validate.checks import CHECKS, CheckContext
from invlin.validate.checks.base import result
from invlin.validate.checks.invertibility import rank_deficiency
from invlin.validate.render import render_text
from invlin.validate.results import CheckResult, Conformance, LayerReport
from invlin.validate.runner import validate
from invlin.validate.search import Probe, search
from invlin.validate.verdicts import REPLAYABLE, reconcile

RUN = {"features": 3, "profile": "dev", "max_examples": 10}


# -- insufficient ----------------------------------------------------------------------------
def test_a_search_that_judged_nothing_is_insufficient_not_a_pass():
    from hypothesis import strategies as st

    out = search(
        st.integers(0, 5),
        lambda i: Probe(ok=True, judged=0, message="all singular"),
        profile="dev",
        max_examples=5,
    )
    assert out.judged == 0 and out.unjudged == "all singular" and out.failure is None
    r = result("round_trip", CheckContext(), out, "fine")
    assert r.status == "insufficient" and r.cases == 0 and "all singular" in r.message
    judged = search(
        st.integers(0, 5), lambda i: Probe(ok=True, judged=3), profile="dev", max_examples=5
    )
    r = result("round_trip", CheckContext(), judged, "fine")
    assert r.status == "pass" and r.cases == judged.judged == 3 * judged.examples


def test_insufficient_fails_a_report_unless_allowed():
    ok = CheckResult(check="a", dtype="float64", device="cpu", status="pass", cases=4)
    none = CheckResult(check="b", dtype="float64", device="cpu", status="insufficient", cases=0)
    report = LayerReport(name="L", library="custom", target="", results=[ok, none])
    assert not report.passed and report.ok(allow_insufficient=True)
    table = Conformance(layers=[report])
    assert not table.passed and table.ok(allow_insufficient=True)
    text = render_text(table)
    assert "FAILED" in text and "1 insufficient" in text and "INSUFFICIENT" in text
    table.meta["allow_insufficient"] = True
    assert "PASSED" in render_text(table)
    failing = dataclasses.replace(ok, status="fail")
    assert not LayerReport(name="L", library="c", target="", results=[failing]).ok(
        allow_insufficient=True
    )


# -- invertibility ---------------------------------------------------------------------------
def test_rank_deficiency_uses_the_numerical_rank_threshold():
    n = 3
    tol = n * eps("float64")
    above = np.diag([1.0, 1.0, 4 * tol])  # σ_min/σ_max = 4nε: resolvable
    below = np.diag([1.0, 1.0, tol / 4])  # below nε: singular to working precision
    nan = np.eye(3)
    nan[1, 2] = np.nan
    singular, rank = rank_deficiency(np.stack([np.eye(3), above, below, np.zeros((3, 3)), nan]))
    assert singular.tolist() == [False, False, True, True, True]
    assert rank.tolist() == [3, 3, 2, 0, 0]


@pytest.mark.parametrize(
    "factory, words",
    [
        (constant_map, "constant map"),
        (zeroed_coordinate, "output coordinate(s) [0] do not depend on the input"),
    ],
)
def test_non_invertible_layers_fail_invertibility_in_both_dtypes(factory, words):
    report = validate(factory, checks=["invertibility"], **RUN)
    assert [r.status for r in report.results] == ["fail", "fail"]
    for r in report.results:
        assert words in r.message and r.example["jacobian"] is not None and r.repro
    assert not report.passed


def test_invertible_twin_passes_invertibility_and_counts_its_rows():
    report = validate(scaled_coordinates, checks=["invertibility"], **RUN)
    assert [r.status for r in report.results] == ["pass", "pass"]
    assert all(r.cases and r.cases >= 2 and "cases judged" in r.message for r in report.results)


def test_the_constant_map_fails_the_whole_run_even_when_value_checks_judge_nothing():
    report = validate(constant_map, **RUN)
    by = {(r.check, r.dtype): r for r in report.results}
    assert by[("invertibility", "float64")].status == "fail"
    assert not any(r.status == "pass" and r.cases == 0 for r in report.results)
    assert not report.passed


def test_invertibility_is_registered_first():
    assert next(iter(CHECKS)) == "invertibility"


# -- one verdict per defect --------------------------------------------------------------------
def _result(check, dtype, status, x=None, ratio=None):
    return CheckResult(
        check=check,
        dtype=dtype,
        device="cpu",
        status=status,
        ratio=ratio,
        allowed=30.0,
        message=f"{status} message",
        example=None if x is None else {"x": x},
    )


def _split(x: list) -> LayerReport:
    """round_trip passing in float64 and failing at ``x`` in float32."""
    return LayerReport(
        name="L",
        library="c",
        target="",
        results=[
            _result("round_trip", "float64", "pass", ratio=0.5),
            _result("round_trip", "float32", "fail", x=x, ratio=99.0),
        ],
    )


def test_reconcile_marks_a_precision_only_failure():
    x = [[1.0, 2.0, 3.0]]
    report = _split(x)
    seen = []

    def rerun(check, dtype, device, case):
        seen.append((check, dtype, device, case.tolist()))
        return _result(check, dtype, "pass", ratio=0.7)

    assert reconcile(report, rerun, features=3) == 1
    assert seen == [("round_trip", "float64", "cpu", x)]
    f64, f32 = report.results
    assert f64.status == "pass" and "float32 failing case replayed in float64 passes" in f64.message
    assert f32.status == "fail" and "precision-only" in f32.message


def test_reconcile_turns_a_blind_pass_into_the_failure_it_missed():
    report = _split([[1.0, 2.0, 3.0]])

    def fails(check, dtype, device, case):
        return _result(check, dtype, "fail", x=case.tolist(), ratio=1e9)

    reconcile(report, fails, features=3)
    assert [r.status for r in report.results] == ["fail", "fail"]
    assert "found by replaying the float32 failing case" in report.results[0].message


def test_reconcile_leaves_unreplayable_cases_alone():
    report = LayerReport(
        name="L",
        library="c",
        target="",
        results=[
            _result("conditioning", "float64", "pass"),
            _result("conditioning", "float32", "fail", x=[[1.0, 2.0, 3.0]]),
            _result("round_trip", "float64", "pass"),
            _result("round_trip", "float32", "fail", x=[[1.0, 2.0]]),  # wrong width
        ],
    )
    assert "conditioning" not in REPLAYABLE
    assert reconcile(report, lambda *a: pytest.fail("no replay expected"), features=3) == 0


def test_a_forward_only_clamp_fails_in_both_dtypes_and_its_twin_passes():
    broken = validate(clamped_coupling_scale, checks=["round_trip"], **RUN)
    assert {r.dtype: r.status for r in broken.results} == {"float64": "fail", "float32": "fail"}
    twin = validate(clamped_coupling_both_ways, checks=["round_trip"], **RUN)
    assert {r.status for r in twin.results} == {"pass"}


def test_constant_map_layer_is_not_the_identity():
    layer = ConstantMap(3)
    import torch

    y, ladj = layer(torch.ones(2, 3))
    assert torch.equal(y, layer.w.detach().expand(2, 3)) and not ladj.any()


# -- minimal examples from wide batches --------------------------------------------------------
def test_a_failing_batch_is_reduced_to_its_failing_row():
    from hypothesis import strategies as st

    x = np.zeros((20, 2))
    x[13] = [50.0, 1.0]

    def probe(c):
        bad = np.flatnonzero(np.abs(c).max(axis=1) > 10)
        example = {"x": c, "row": int(bad[0])} if bad.size else None
        return Probe(ok=not bad.size, judged=len(c), example=example, message="too large")

    out = search(st.just(x), probe, profile="dev", max_examples=2)
    assert np.asarray(out.failure.example["x"]).tolist() == [[50.0, 1.0]]
    assert "reduced to the failing row alone" in out.notes

    def needs_company(c):  # fails only when rows see each other: no single row fails
        return Probe(ok=len(c) < 20, judged=len(c), example={"x": c, "row": 13})

    out = search(st.just(x), needs_company, profile="dev", max_examples=2)
    assert np.asarray(out.failure.example["x"]).shape == (20, 2)


# -- parameters moved off their initialisation -------------------------------------------------
def test_a_zero_initialised_layer_is_judged_off_its_initialisation():
    from validate_broken import zero_init_coupling_twin, zero_init_shift_coupling

    blind = validate(zero_init_shift_coupling, checks=["round_trip"], perturb=False, **RUN)
    assert blind.passed and blind.perturbation is None  # t = 0: the bug cannot show
    report = validate(zero_init_shift_coupling, checks=["round_trip"], **RUN)
    assert {r.status for r in report.results} == {"fail"}
    assert "the layer was the identity before" in report.perturbation
    r = report.results[0]
    scope: dict = {}
    exec(compile(r.repro, "<repro>", "exec"), scope)  # the snippet rebuilds the moved layer
    assert scope["adapter"].layer.t.abs().sum() > 0
    twin = validate(zero_init_coupling_twin, checks=["round_trip"], **RUN)
    assert twin.passed and "identity before" in twin.perturbation


def test_a_batch_the_layer_raises_on_is_reduced_to_a_row_that_raises_alone():
    from hypothesis import strategies as st

    x = np.zeros((20, 2))
    x[6] = [1e6, 0.0]

    def probe(c):
        if np.abs(c).max() > 1e3:
            raise OverflowError("too large for the layer")
        return Probe(ok=True, judged=len(c))

    out = search(st.just(x), probe, profile="dev", max_examples=2, describe=lambda c: {"x": c})
    assert out.raised.startswith("OverflowError")
    assert np.asarray(out.failure.example["x"]).tolist() == [[1e6, 0.0]]
    assert "reduced to a row that raises alone" in out.notes


class _HugeScale(torch.nn.Module):
    """y = e⁶⁰·x: correct, but for |x| ≳ 3e12 the exact y exceeds float32's range, where ±inf
    is the correctly rounded float32 answer (not a defect)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.log_s = torch.nn.Parameter(torch.full((features,), 60.0))

    def forward(self, x):
        return x * self.log_s.exp(), self.log_s.sum().expand(x.shape[:-1])

    def inverse(self, y):
        return y * (-self.log_s).exp(), (-self.log_s.sum()).expand(y.shape[:-1])


def test_outputs_beyond_the_dtypes_range_are_not_judged_as_defects():
    report = validate(
        _HugeScale,
        checks=["round_trip", "logdet_consistency"],
        dtypes=("float32",),
        **{**RUN, "profile": "ci", "max_examples": None},
    )
    assert report.passed, [r.message for r in report.results]
    # the same rows are reached: a float32 forward of such an x is really inf
    y, _ = _HugeScale(3)(torch.tensor([[1e16, 1.0, 1.0]]))
    assert torch.isinf(y[0, 0])
