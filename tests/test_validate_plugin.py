"""The pytest plugin: ``--invlin-profile`` and the ``invlin_validate`` fixture."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


def _plugin_args() -> list[str]:
    """Load the plugin explicitly: harmless when its entry point has loaded it already (it is
    named after the module, so pytest sees one plugin), needed before invlin is reinstalled."""
    return ["-p", "invlin.validate.plugin"]


PROFILE_TEST = """
def test_profile(invlin_validate):
    print("PROFILE=" + invlin_validate.profile)
"""


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], None, "ci"),
        ([], "dev", "dev"),
        (["--invlin-profile", "thorough"], "dev", "thorough"),
        (["--invlin-profile", "dev"], "bogus", "dev"),  # the option wins; the variable unread
    ],
)
def test_profile_option_and_environment(pytester, monkeypatch, argv, env, expected):
    if env is None:
        monkeypatch.delenv("INVLIN_PROFILE", raising=False)
    else:
        monkeypatch.setenv("INVLIN_PROFILE", env)
    pytester.makepyfile(PROFILE_TEST)
    result = pytester.runpytest(*_plugin_args(), "-s", *argv)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*PROFILE={expected}*"])


def test_an_unknown_profile_in_the_environment_fails_the_test_naming_the_variable(
    pytester, monkeypatch
):
    monkeypatch.setenv("INVLIN_PROFILE", "bogus")
    pytester.makepyfile(PROFILE_TEST)
    result = pytester.runpytest(*_plugin_args(), "-s")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*$INVLIN_PROFILE must be one of dev, ci, thorough, got 'bogus'*"])
    result.stdout.no_fnmatch_line("*PROFILE=*")
    result.stdout.no_fnmatch_line("*Traceback*")


def test_bad_profile_is_a_usage_error(pytester):
    pytester.makepyfile(PROFILE_TEST)
    result = pytester.runpytest(*_plugin_args(), "--invlin-profile", "fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--invlin-profile*invalid choice*"])


def test_option_is_documented_in_help(pytester):
    result = pytester.runpytest(*_plugin_args(), "--help")
    result.stdout.fnmatch_lines(["*invlin layer validation*", "*--invlin-profile*"])


def test_loading_the_plugin_imports_neither_torch_nor_hypothesis():
    code = (
        "import sys, invlin.validate.plugin; "
        "print(sorted(m for m in ('torch', 'hypothesis', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_entry_point_is_declared_in_pyproject():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert data["project"]["entry-points"]["pytest11"] == {
        "invlin.validate.plugin": "invlin.validate.plugin"
    }
    assert "*.json" in data["tool"]["setuptools"]["package-data"]["invlin.validate"]


LAYER_TESTS = '''
import torch


class Scale(torch.nn.Module):
    """y = s ⊙ x; log|det| = Σ log|s| (SIGN = +1) or its negation (SIGN = -1, a bug)."""

    SIGN = 1.0

    def __init__(self, features):
        super().__init__()
        self.s = torch.nn.Parameter(torch.linspace(0.5, 2.0, features, dtype=torch.float64))

    def forward(self, x):
        s = self.s.to(x.dtype)
        return x * s, self.SIGN * s.abs().log().sum().expand(x.shape[:-1])

    def inverse(self, y):
        s = self.s.to(y.dtype)
        return y / s, -self.SIGN * s.abs().log().sum().expand(y.shape[:-1])


class WrongSign(Scale):
    SIGN = -1.0


def test_good(invlin_validate):
    report = invlin_validate(Scale, dtypes=("float64",), checks=["logdet_autograd"])
    assert report.passed


def test_broken(invlin_validate):
    invlin_validate(WrongSign, dtypes=("float64",), checks=["logdet_autograd"])
'''


def test_fixture_passes_a_good_layer_and_fails_a_broken_one(pytester):
    pytester.makepyfile(LAYER_TESTS)
    # In a subprocess: an in-process run would drop torch from sys.modules afterwards
    # (pytester restores the module table), and importing torch twice crashes the process.
    result = pytester.runpytest_subprocess(*_plugin_args(), "--invlin-profile", "dev")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: layer 'WrongSign' does not conform*",
            "*FAIL WrongSign*logdet_autograd*float64/cpu*",
        ]
    )
