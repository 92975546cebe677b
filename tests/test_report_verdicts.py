"""Verdicts of a drift report: which failures are expected (declared in
invlin/drift/expectations.py), the reason each failure carries, the verdict lines, the exit status
and what the terminal prints. Built from synthetic checkpoints, so no oracle runs here."""

from __future__ import annotations

import dataclasses

import pytest

from invlin._dtypes import eps
from invlin.drift.expectations import CONDITIONS, EXPECTATIONS
from invlin.drift.failures import CHECKS, diagnose
from invlin.drift.measure import CheckpointRecord
from invlin.drift.policies import POLICIES
from invlin.drift.regimes import REGIMES
from invlin.drift.results import ConfigurationResult, TrackResult, report_data, summarize
from invlin.drift.verdicts import EXIT_FAILED, EXIT_OK, exit_status, judge
from invlin.report.terminal import render_terminal
from invlin.report.verdicts import failure_rows, verdict_rows

UPDATES = (1, 10, 20, 40)


def _record(
    updates: int,
    *,
    inverse: float = 1.0,
    logdet: float = 1.0,
    sign: int = 1,
    true_sign: int = 1,
    kappa: float = 10.0,
    refreshes: int = 0,
) -> CheckpointRecord:
    """One checkpoint: ratios ``inverse`` / ``logdet`` on both truths, the tracked ``sign``
    against ``true_sign``; ``passed`` by the rule of CheckpointRecord."""
    allowed = 30.0 * (1 + updates)
    passed = inverse <= allowed and logdet <= allowed and sign == true_sign
    return CheckpointRecord(
        updates=updates,
        merged=updates,
        refused=0,
        corrections=0,
        refreshes=refreshes,
        kappa_exact=kappa,
        kappa_held=kappa,
        oracle_bits=64,
        inverse_ratio_exact=inverse,
        inverse_ratio_held=inverse,
        forward_ratio_exact=1.0,
        logdet_true=0.0,
        logdet_tracked=0.0,
        logdet_error_exact=0.0,
        logdet_ratio_exact=logdet,
        logdet_error_held=0.0,
        logdet_ratio_held=logdet,
        sign_tracked=sign,
        sign_exact=true_sign,
        sign_held=true_sign,
        estimated_residual=0.0,
        true_residual=0.0,
        estimated_ratio=1.0,
        estimated_logdet_drift=0.0,
        true_logdet_drift=0.0,
        allowed=allowed,
        passed=passed,
        seconds_per_update=1e-5,
    )


def _passing() -> list[CheckpointRecord]:
    return [_record(k) for k in UPDATES]


def _inverse_fails_from_20() -> list[CheckpointRecord]:
    """Inverse ratio far over the allowance 30·21 from update 20 on."""
    return [_record(k, inverse=1e6 if k >= 20 else 1.0) for k in UPDATES]


def _sign_fails_at_20(kappa: float) -> list[CheckpointRecord]:
    """Only the sign is wrong, from update 20, after κ₁ reached ``kappa`` at update 10."""
    return [
        _record(k, sign=-1 if k >= 20 else 1, kappa=kappa if k == 10 else 10.0) for k in UPDATES
    ]


def _track(policy: str, records: list[CheckpointRecord], engine: str = "reference") -> TrackResult:
    return TrackResult(engine, "cpu", policy, "", records, summarize(records, UPDATES[-1], 1e-3))


def _configuration(regime: str, dtype: str, tracks: list[TrackResult]) -> ConfigurationResult:
    settings = {"label": f"{regime}-{dtype}", "regime": regime, "n": 4, "dtype": dtype}
    settings["updates"] = UPDATES[-1]
    return ConfigurationResult(settings, "", None, [], tracks, {}, 0.1)


def _data(*configurations: ConfigurationResult, kind: str = "sweep") -> dict:
    return report_data(
        kind,
        "t",
        list(configurations),
        settings={},
        environment={"packages": {}},
        wall_seconds=1.0,
        command=["report"],
    )


def _verdict(policy: str, regime: str, records: list[CheckpointRecord], dtype: str = "float64"):
    return judge(_track(policy, records), regime, dtype)


def test_the_declared_rules_name_known_policies_regimes_checks_and_conditions():
    for rule in EXPECTATIONS:
        assert set(rule.policies) <= set(POLICIES), rule.name
        assert set(rule.regimes) <= set(REGIMES), rule.name
        assert set(rule.checks) <= set(CHECKS), rule.name
        assert rule.condition in CONDITIONS, rule.name
        assert rule.title and rule.reason, rule.name
    assert len({r.name for r in EXPECTATIONS}) == len(EXPECTATIONS)


def test_plain_near_the_singular_set_is_expected_and_nowhere_else():
    """The demonstration: plain Sherman–Morrison failing in approach / crossing. The same failure
    in the benign walk, or of the monitored policy near the singular set, is unexpected."""
    failing = _inverse_fails_from_20()
    for regime in ("approach", "crossing"):
        v = _verdict("plain", regime, failing)
        assert (v.verdict, v.expectation) == ("expected", "plain near the singular set")
    assert _verdict("plain", "walk", failing).verdict == "unexpected"
    assert _verdict("monitored", "crossing", failing).verdict == "unexpected"
    assert _verdict("monitored", "approach", failing).verdict == "unexpected"
    # The det guard is blind only on the approach (det constant); on the crossing it must hold.
    assert _verdict("guarded", "approach", failing).expectation == "det guard on the approach"
    assert _verdict("guarded", "crossing", failing).verdict == "unexpected"
    assert _verdict("plain", "crossing", _passing()).verdict == "pass"


def test_a_refresh_failure_is_expected_only_when_a_refresh_clears_it():
    cleared = [
        _record(1),
        _record(10),
        _record(20, inverse=1e6),
        _record(40, refreshes=1),  # refreshed after the failing checkpoint, passes again
    ]
    assert _verdict("refresh", "crossing", cleared).expectation == "refresh clears it"
    stuck = [*cleared[:3], _record(40, inverse=1e6, refreshes=1)]
    assert _verdict("refresh", "crossing", stuck).verdict == "unexpected"
    passes_without_refresh = [*cleared[:3], _record(40)]
    assert _verdict("refresh", "crossing", passes_without_refresh).verdict == "unexpected"


def test_a_wrong_sign_is_expected_only_beyond_the_dtype():
    """Sign-only failures are expected where κ₁ reached 1/ε before them (the sign is not
    determined in the dtype), and unexpected at a κ₁ the dtype resolves or together with an
    inverse failure."""
    beyond = 2.0 / eps("float32")
    within = 0.5 / eps("float32")
    v = _verdict("monitored", "approach", _sign_fails_at_20(beyond), "float32")
    assert v.expectation == "sign beyond the dtype"
    assert _verdict("monitored", "approach", _sign_fails_at_20(within), "float32").verdict == (
        "unexpected"
    )
    # The same κ₁ is well within float64's reach: unexpected there.
    assert _verdict("monitored", "approach", _sign_fails_at_20(beyond)).verdict == "unexpected"
    both = [dataclasses.replace(r, inverse_ratio_exact=1e6) for r in _sign_fails_at_20(beyond)]
    both = [dataclasses.replace(r, passed=r.passed and r.updates < 20) for r in both]
    assert _verdict("monitored", "approach", both, "float32").verdict == "unexpected"


def test_each_failure_carries_its_reason_and_update():
    records = _inverse_fails_from_20()
    failure = diagnose(records)
    assert failure is not None and failure.updates == 20 and failure.kinds == ("inverse",)
    assert {(c.check, c.truth) for c in failure.checks} == {
        ("inverse", "exact"),
        ("inverse", "held"),
    }
    sign = diagnose(_sign_fails_at_20(1e3))
    assert sign is not None and sign.kinds == ("sign",) and sign.updates == 20
    data = _data(
        _configuration(
            "walk", "float64", [_track("plain", records), _track("guarded", _passing())]
        ),
        _configuration("crossing", "float32", [_track("monitored", _sign_fails_at_20(1e3))]),
    )
    rows = failure_rows(data)
    assert [r[0] for r in rows] == ["UNEXPECTED", "UNEXPECTED"]
    walk = next(r for r in rows if r[1] == "walk")
    assert "inverse ratio 1e+06 > 6.3e+02 allowed" in walk[6] and "at update 20" in walk[6]
    crossing = next(r for r in rows if r[1] == "crossing")
    assert "tracked sign −1, exact path +1" in crossing[6] and "at update 20" in crossing[6]
    assert diagnose(_passing()) is None


def test_verdict_lines_separate_expected_from_unexpected_per_policy_and_regime():
    data = _data(
        _configuration(
            "crossing",
            "float64",
            [_track("plain", _inverse_fails_from_20()), _track("guarded", _passing())],
        ),
        _configuration("walk", "float64", [_track("plain", _inverse_fails_from_20())]),
    )
    lines = {(v["policy"], v["scope"]): v for v in data["verdicts"]}
    assert lines[("plain", "crossing")]["verdict"] == "EXPECTED"
    assert lines[("guarded", "crossing")]["verdict"] == "PASS"
    assert lines[("plain", "walk")]["verdict"] == "UNEXPECTED"
    assert lines[("plain", "walk")]["failures"] == [
        {"dtype": "float64", "failed": 1, "tracks": 1, "kinds": ["inverse"], "first_failure": 20}
    ]
    assert data["summary"]["expected"] == 1 and data["summary"]["unexpected"] == 1
    rows = {(r[1], r[2]): r for r in verdict_rows(data)}
    assert "inverse from 20" in rows[("plain", "walk")][4]
    assert "not explained by any rule" in rows[("plain", "walk")][5]
    assert "singular set" in rows[("plain", "crossing")][5]


@pytest.mark.parametrize(
    ("unexpected", "failed", "strict", "status"),
    [
        (0, 0, False, EXIT_OK),
        (0, 3, False, EXIT_OK),
        (0, 3, True, EXIT_FAILED),
        (1, 3, False, EXIT_FAILED),
        (1, 1, True, EXIT_FAILED),
    ],
)
def test_exit_status_is_nonzero_only_for_unexpected_failures(unexpected, failed, strict, status):
    assert exit_status(unexpected=unexpected, failed=failed, strict=strict) == status


def test_report_data_records_the_exit_status_of_its_verdicts():
    expected = _configuration("crossing", "float64", [_track("plain", _inverse_fails_from_20())])
    assert _data(expected)["exit_status"] == {"default": 0, "strict": 1}
    unexpected = _configuration("walk", "float64", [_track("plain", _inverse_fails_from_20())])
    assert _data(expected, unexpected)["exit_status"] == {"default": 1, "strict": 1}
    assert _data(_configuration("walk", "float64", [_track("plain", _passing())]))[
        "exit_status"
    ] == {"default": 0, "strict": 0}


def test_terminal_leads_with_verdict_lines_and_keeps_the_track_table_behind_details():
    data = _data(
        _configuration("crossing", "float64", [_track("plain", _inverse_fails_from_20())]),
        _configuration("walk", "float64", [_track("plain", _inverse_fails_from_20())]),
    )
    text = render_terminal(data)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["verdict", "policy", "regime"]
    assert any(ln.split()[:3] == ["EXPECTED", "plain", "crossing"] for ln in lines)
    assert any(ln.split()[:3] == ["UNEXPECTED", "plain", "walk"] for ln in lines)
    # The unexpected failure's reason is printed; the expected one's only with --details.
    assert sum("at update 20" in ln for ln in lines) == 1
    assert "max inv ratio" not in text
    assert "exit status 1" in text and "0: no unexpected failure" in text
    detailed = render_terminal(data, details=True)
    assert "max inv ratio" in detailed and detailed.count("at update 20") == 2


def test_replay_verdict_lines_are_per_layer():
    replay = _configuration("replay", "float64", [_track("as-recorded", _passing(), "recorded")])
    replay.settings["label"] = "flow.0"
    data = _data(replay, kind="replay")
    assert data["verdicts"][0]["scope"] == "flow.0"
    text = render_terminal(data)
    assert text.splitlines()[0].split()[:3] == ["verdict", "policy", "layer"]


def test_a_recorded_track_is_judged_only_on_what_it_recorded():
    """A replay's recorded track has no inverse and no held matrix (NaN ratios, held sign 0 at
    every checkpoint): its failure names the log|det| it recorded, not the missing ones. A NaN
    at one checkpoint of a measured track (a singular truth there) is a reason."""
    nan = float("nan")
    recorded = [
        dataclasses.replace(
            r,
            inverse_ratio_exact=nan,
            inverse_ratio_held=nan,
            logdet_ratio_held=nan,
            sign_held=0,
            logdet_ratio_exact=1e6 if r.updates >= 10 else 1.0,
            passed=r.updates < 10,
        )
        for r in _passing()
    ]
    failure = diagnose(recorded)
    assert failure is not None and failure.updates == 10 and failure.kinds == ("log|det|",)
    assert [(c.check, c.truth) for c in failure.checks] == [("log|det|", "exact")]
    singular = [*_passing()[:2], dataclasses.replace(_passing()[2], inverse_ratio_exact=nan)]
    singular[2] = dataclasses.replace(singular[2], passed=False)
    data = _data(_configuration("walk", "float64", [_track("plain", singular)]))
    (row,) = failure_rows(data)
    assert "inverse ratio not computable: singular truth (exact path) at update 20" in row[6]
