"""The profile list's one definition and the one reader of ``$INVLIN_PROFILE``, as each user of
it sees it: the test suites' profiles, ``invlin validate`` and ``invlin.validate.check``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from invlin.cli import main
from invlin.search_profiles import (
    ENV_PROFILE,
    PROFILE_NAMES,
    PROFILES,
    VALIDATOR_DEFAULT,
    choose_profile,
    env_profile,
    profile_named,
    suite_default,
)

BAD_ENV = r"\$INVLIN_PROFILE must be one of dev, ci, thorough, got 'nightly'"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    """Set (a string) or unset (None) ``$INVLIN_PROFILE`` for one test."""

    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(ENV_PROFILE, raising=False)
        else:
            monkeypatch.setenv(ENV_PROFILE, value)

    return set_to


def test_the_profile_list_is_defined_once():
    from invlin.testing import profiles as testing_profiles
    from invlin.validate import command, plugin

    assert testing_profiles.PROFILES is PROFILES
    assert PROFILE_NAMES == ("dev", "ci", "thorough") == tuple(PROFILES)
    assert command.PROFILES is PROFILE_NAMES
    assert not hasattr(plugin, "PROFILES")
    assert all(p.name == name for name, p in PROFILES.items())


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [(None, "ci", "ci"), ("", "ci", "ci"), (None, "dev", "dev"), ("thorough", "dev", "thorough")],
)
def test_environment_or_default(env, value, default, expected):
    env(value)
    assert env_profile() == (value or None)
    assert choose_profile(default=default) == expected


def test_an_explicit_name_wins_over_the_environment(env):
    env("nightly")  # never read: no error
    assert choose_profile("dev", default="ci") == "dev"


def test_an_unknown_environment_name_is_an_error_naming_the_variable(env):
    env("nightly")
    with pytest.raises(ValueError, match=BAD_ENV):
        env_profile()
    with pytest.raises(ValueError, match=BAD_ENV):
        choose_profile(default=VALIDATOR_DEFAULT)


def test_an_unknown_explicit_name_is_an_error_naming_its_origin(env):
    env(None)
    with pytest.raises(ValueError, match=r"^profile must be one of dev, ci, thorough, got 'x'$"):
        choose_profile("x", default="ci")
    with pytest.raises(ValueError, match=r"^--profile must be one of"):
        choose_profile("CI", default="ci", what="--profile")
    with pytest.raises(ValueError, match=r"^profile must be one of .*got 3$"):
        profile_named(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^default must be one of"):
        choose_profile(default="fast")


def test_suite_default_follows_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert suite_default() == "ci"
    monkeypatch.delenv("CI")
    assert suite_default() == "dev"


def test_the_test_suites_reader_rejects_an_unknown_environment_name(env):
    from invlin.testing.profiles import load_profile

    env("nightly")
    with pytest.raises(ValueError, match=BAD_ENV):
        load_profile()


def test_check_rejects_an_unknown_environment_name(env):
    import invlin.validate

    env("nightly")
    with pytest.raises(ValueError, match=BAD_ENV):
        invlin.validate.check(lambda features: None, features=2)


@pytest.mark.parametrize("out", [False, True])
def test_invlin_validate_rejects_an_unknown_environment_name(env, tmp_path, capsys, out):
    env("nightly")
    argv = ["validate", "invlin.nn:P4InvLinear"]
    if out:  # the output folder's command line is built first: no traceback there either
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "invlin validate: error: $INVLIN_PROFILE must be one of dev, ci, thorough" in err
    assert "Traceback" not in err


def test_the_reader_imports_nothing_heavy():
    code = (
        "import sys, invlin.search_profiles; "
        "print(sorted(m for m in ('torch', 'hypothesis', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
