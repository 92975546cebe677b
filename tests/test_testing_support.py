"""Tests of the path allowance, the reproduction helpers and the settings profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import Phase, settings

from invlin.oracle import ExactMatrix, evaluate
from invlin.reference.rank_one import Guard, TrackedMatrix
from invlin.testing import THRESHOLD, ToleranceError, allowed_ratio, assert_inverse, inverse_ratio
from invlin.testing.cases import PathCase
from invlin.testing.paths import path_allowance
from invlin.testing.profiles import PROFILES, active_profile, load_profile, max_updates
from invlin.testing.reproduce import case_script, reproducible


def _scalar_path(c: float, k: int):
    mats = [np.array([[c**j]]) for j in range(k + 1)]
    return mats, [np.array([[c**-j]]) for j in range(k + 1)]


def test_allowance_is_the_engine_allowance_on_a_constant_path():
    mats = [np.eye(3)] * 6
    allow = path_allowance(mats, mats)
    assert np.array_equal(allow.inverse, [allowed_ratio(e) for e in range(6)])
    assert np.array_equal(allow.logabsdet, [allowed_ratio(e) for e in range(6)])
    assert np.all(allow.kappa == 1.0)


def test_allowance_by_hand_on_a_shrinking_scalar():
    # A_j = 0.6^j: a_je = 0.6^(j−e), no cancellation (‖X_{j−1}‖/‖X_j‖ = 0.6 < 1):
    # inverse[e] = 30·(0.6^−e + Σ_{j=1..e} 0.6^(j−1−e)).
    mats, invs = _scalar_path(0.6, 5)
    allow = path_allowance(mats, invs)
    for e in range(6):
        want = THRESHOLD * (0.6**-e + sum(0.6 ** (j - 1 - e) for j in range(1, e + 1)))
        assert allow.inverse[e] == pytest.approx(max(want, allowed_ratio(e)), rel=1e-12)
    assert allow.amplification[0, 5] == pytest.approx(0.6**-5, rel=1e-12)


def test_allowance_charges_cancellation_in_the_subtraction():
    # n = 1, c = −190: X_1 = X_0/c, the update's write errs by ε‖X_0‖ = 190 units of X_1.
    mats = [np.array([[0.1]]), np.array([[-19.0]])]
    allow = path_allowance(mats, [1 / m for m in mats])
    assert allow.inverse[1] == pytest.approx(THRESHOLD * (1 + 190.0), rel=1e-12)


def test_allowance_covers_the_scalar_path_the_engine_does_not():
    t = TrackedMatrix(np.array([[1.0]]), guard=Guard.off())
    exact = ExactMatrix.from_float(t.a)
    mats, invs = [exact.to_float()], [evaluate(exact).inverse]
    for _ in range(30):
        u, v = np.array([-0.4 * t.a[0, 0]]), np.array([1.0])
        t.update(u, v)
        exact.apply(u, v)
        mats.append(exact.to_float())
        invs.append(evaluate(exact).inverse)
    ratio = inverse_ratio(mats[-1], t.inverse).value
    assert ratio > allowed_ratio(30)  # the engine's 30·(1 + k) is exceeded …
    assert ratio <= path_allowance(mats, invs).inverse[-1]  # … the path allowance is not


def test_allowance_validates_arguments():
    with pytest.raises(ValueError, match="matrices"):
        path_allowance([], [])
    with pytest.raises(ValueError, match="inverses"):
        path_allowance([np.eye(2)], [np.eye(3)])
    with pytest.raises(ValueError, match="logabsdets"):
        path_allowance([np.eye(2)], [np.eye(2)], [math.nan])
    with pytest.raises(ValueError, match="finite"):
        path_allowance([np.full((2, 2), np.inf)], [np.eye(2)])


def test_reproducible_appends_a_runnable_script_and_keeps_the_ratio():
    case = PathCase(
        np.eye(2),
        np.array([[0.5, 0.0]]),
        np.array([[1.0, 0.0]]),
        np.array([1.5]),
        "float64",
        "benign",
        None,
        1,
    )
    with pytest.raises(ToleranceError) as info:
        with reproducible("result = case.a0 + np.outer(case.us[0], case.vs[0])", case=case):
            assert_inverse(np.eye(2), out=2 * np.eye(2))
    msg = str(info.value)
    assert "ratio" in msg and "Reproduce the whole case" in msg
    assert info.value.ratio is not None and info.value.allowed == THRESHOLD
    script = msg.split("Reproduce the whole case with:\n", 1)[1]
    scope: dict = {}
    exec(script, scope)
    assert np.array_equal(scope["result"], [[1.5, 0.0], [0.0, 1.0]])


def test_reproducible_wraps_plain_assertions_and_passes_other_errors():
    with pytest.raises(ToleranceError, match="x = 3"):
        with reproducible("print(x)", x=3):
            raise AssertionError("boom")
    with pytest.raises(KeyError):
        with reproducible("print(x)", x=3):
            raise KeyError("not an assertion")
    with pytest.raises(ValueError, match="identifiers"):
        case_script("pass", **{"not a name": 1})


def test_profiles_register_load_and_size(monkeypatch):
    monkeypatch.delenv("INVLIN_MAX_UPDATES", raising=False)
    assert PROFILES["thorough"].max_examples >= 10 * PROFILES["ci"].max_examples
    previous = settings.default  # restored exactly below (our "ci" replaces Hypothesis's)
    try:
        p = load_profile("ci")
        assert active_profile() == p and settings.default.derandomize
        assert settings.default.deadline is None and settings.default.database is None
        assert settings.default.max_examples == p.max_examples
        load_profile("thorough")
        assert Phase.target in settings.default.phases
        assert max_updates() == PROFILES["thorough"].max_updates
        monkeypatch.setenv("INVLIN_MAX_UPDATES", "5")
        assert max_updates() == 5
        with pytest.raises(ValueError, match="profile"):
            load_profile("nightly")
    finally:
        settings.register_profile("_before_profile_test", previous)
        settings.load_profile("_before_profile_test")
