"""``invlin report`` under the oracle's work budget: refused work is a usage error (exit 2, one
line naming ``--oracle-budget``, nothing written), ``--oracle-budget`` raises the limit for
this command only, and bad values are refused before any work."""

from __future__ import annotations

import pytest
from report_args import TINY_SWEEP

from invlin.cli import main
from invlin.oracle import budget

SMALL = TINY_SWEEP


def test_work_beyond_the_budget_is_refused_with_the_option_named(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(budget, "DEFAULT_BUDGET", 1.0)  # below any evaluation's cost
    out = tmp_path / "rep"
    with pytest.raises(SystemExit) as exc:
        main([*SMALL, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "refused" in err and "--oracle-budget" in err and "Traceback" not in err
    assert not out.exists()


def test_the_option_raises_the_limit_for_this_command_only(monkeypatch, tmp_path):
    monkeypatch.setattr(budget, "DEFAULT_BUDGET", 1.0)
    assert main([*SMALL, "--out", str(tmp_path / "rep"), "--oracle-budget", "inf"]) == 0
    assert budget.DEFAULT_BUDGET == 1.0  # restored after the command


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--oracle-budget", "-1"], "--oracle-budget must be a positive number"),
        (["--oracle-budget", "nan"], "--oracle-budget must be a positive number"),
        (["--oracle-budget", "1e9", "--executor", "dask"], "use --executor local"),
    ],
)
def test_bad_budgets_are_usage_errors_before_any_work(extra, message, tmp_path, capsys):
    out = tmp_path / "rep"
    with pytest.raises(SystemExit) as exc:
        main([*SMALL, "--out", str(out), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
