"""Tests of the ``invlin`` command line and the built-in drift check."""

from __future__ import annotations

import pytest

from invlin.cli import main
from invlin.drift.quick import quick_drift


def test_report_prints_table_and_passes(capsys):
    assert main(["report", "--n", "6", "--updates", "30", "--dtypes", "float64"]) == 0
    out = capsys.readouterr().out
    assert "inv ratio" in out and "allowed" in out
    rows = [line for line in out.splitlines() if line.startswith("float64")]
    assert [int(r.split()[1]) for r in rows] == [1, 10, 30]
    assert "3 passed, 0 failed" in out


def test_quick_drift_is_deterministic_and_checks_against_oracle():
    a = quick_drift(5, 12, ("float32",), seed=3)
    b = quick_drift(5, 12, ("float32",), seed=3)
    assert a == b
    assert all(r.sign_ok and r.passed for r in a)
    assert a[-1].updates == 12 and a[-1].oracle_bits >= 64


def test_quick_drift_flags_a_planted_defect(monkeypatch):
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

    assert all(r.passed for r in quick_drift(4, 10, ("float64",)))
    monkeypatch.setattr(rank_one.TrackedMatrix, "update", missing_one_over_c)
    rows = quick_drift(4, 10, ("float64",))
    assert not any(r.passed for r in rows)
    assert main(["report", "--n", "4", "--updates", "10", "--dtypes", "float64"]) == 1


def test_bad_arguments_exit_with_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", "--n", "0"])
    assert info.value.code == 2
    assert "positive integer" in capsys.readouterr().err
