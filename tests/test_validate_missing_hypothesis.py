"""Without Hypothesis, check() and the invlin_validate fixture say what to install."""

from __future__ import annotations

import sys

import pytest

from invlin.nn import LULinear
from invlin.validate import check


def hide_hypothesis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import hypothesis`` fail as it does where the package is not installed."""
    for name in [m for m in sys.modules if m == "hypothesis" or m.startswith("hypothesis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # None: the import raises ImportError


def test_check_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_hypothesis(monkeypatch)
    with pytest.raises(ImportError, match=r'pip install "hypothesis>=6\.100"') as info:
        check(LULinear, features=2, profile="dev", checks=["round_trip"])
    assert "invlin_validate" in str(info.value)


def test_fixture_names_what_to_install(invlin_validate, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_hypothesis(monkeypatch)
    with pytest.raises(ImportError, match=r'pip install "hypothesis>=6\.100"'):
        invlin_validate(LULinear, features=2, checks=["round_trip"])


def test_with_hypothesis_check_runs() -> None:
    report = check(LULinear, features=2, profile="dev", dtypes=("float64",), checks=["round_trip"])
    assert report.passed
