"""The oracle refuses work beyond its budget before running it (issue 21, item 4)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from invlin.oracle import ExactMatrix, OracleBudgetError, available_backends, evaluate
from invlin.oracle import budget as budget_module
from invlin.oracle.budget import DEFAULT_BUDGET, UNIT_BITS, evaluation_cost

EVALUATE = sys.modules["invlin.oracle.evaluate"]  # the module (the package exports the function)


@pytest.fixture
def runs(monkeypatch):
    """The precisions each backend evaluation ran at (and the exact singularity tests run)."""
    seen: list[object] = []
    for name, run in list(EVALUATE._BACKENDS.items()):

        def spy(rows, bits, run=run):
            seen.append(bits)
            return run(rows, bits)

        monkeypatch.setitem(EVALUATE._BACKENDS, name, spy)
    singular = EVALUATE.is_exactly_singular

    def spy_singular(ints):
        seen.append("singular test")
        return singular(ints)

    monkeypatch.setattr(EVALUATE, "is_exactly_singular", spy_singular)
    return seen


def _matrix(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n)) + math.sqrt(n) * np.eye(n)


def _needs_doubling() -> ExactMatrix:
    """[[1, 1], [1, 1 + 2⁻²⁰⁰]]: its float64 rounding is singular (κ unknown, 53 bits assumed),
    its κ₁ ≈ 2²⁰² needs a second, higher precision."""
    big = 2**200
    return ExactMatrix(np.array([[big, big], [big, big + 1]], dtype=object), -200)


def test_cost_formula():
    assert evaluation_cost(10, 64) == 1000.0  # below UNIT_BITS: one unit per n³
    assert evaluation_cost(10, UNIT_BITS) == 1000.0
    assert evaluation_cost(10, 4 * UNIT_BITS) == 4000.0


@pytest.mark.parametrize("backend", available_backends())
def test_n300_is_refused_by_default_before_any_work(backend, runs):
    with pytest.raises(OracleBudgetError) as info:
        evaluate(_matrix(300), backend=backend)
    assert runs == []  # neither the exact singularity test nor any evaluation ran
    err = info.value
    assert err.budget == DEFAULT_BUDGET
    assert err.estimate >= 2 * 300**3 > DEFAULT_BUDGET
    text = str(err)
    assert "n = 300" in text and "budget=" in text and "DEFAULT_BUDGET" in text


def test_below_the_budget_is_accepted(runs):
    r = evaluate(_matrix(8))
    assert r.sign in (-1, 1) and len(runs) >= 3  # the singularity test and two precisions
    # the estimate for this evaluation is far below the default
    assert 2 * evaluation_cost(8, r.check_bits) < DEFAULT_BUDGET


def test_an_explicit_budget_is_honoured_both_ways(runs):
    a = _matrix(8)
    first = evaluate(a)
    need = evaluation_cost(8, first.bits) + evaluation_cost(8, first.check_bits)
    runs.clear()
    with pytest.raises(OracleBudgetError, match=r"n = 8 .*exceeds budget=") as info:
        evaluate(a, budget=need - 1)
    assert runs == [] and info.value.estimate == need
    again = evaluate(a, budget=need)  # exactly enough: runs, same answer
    assert np.array_equal(again.inverse, first.inverse)
    evaluate(a, budget=math.inf)


def test_raising_the_module_default_is_honoured(monkeypatch):
    a = _matrix(8)
    monkeypatch.setattr(budget_module, "DEFAULT_BUDGET", 100)
    with pytest.raises(OracleBudgetError, match="budget=100"):
        evaluate(a)
    monkeypatch.setattr(budget_module, "DEFAULT_BUDGET", 10**5)
    assert evaluate(a).sign in (-1, 1)


def test_each_precision_step_is_budgeted(runs):
    m = _needs_doubling()
    done = evaluate(m, backend="mpmath", budget=math.inf)
    first = next(b for b in runs if isinstance(b, int))
    assert done.bits > first  # the first precision did not suffice
    runs.clear()
    enough_for_one = evaluation_cost(2, first) + evaluation_cost(2, first + max(32, first // 2))
    with pytest.raises(OracleBudgetError, match="already spent") as info:
        evaluate(m, backend="mpmath", budget=enough_for_one)
    assert first in runs and max(b for b in runs if isinstance(b, int)) < done.bits
    assert info.value.estimate > enough_for_one


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "many", True])
def test_a_bad_budget_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="budget must be a positive number"):
        evaluate(_matrix(3), budget=bad)
