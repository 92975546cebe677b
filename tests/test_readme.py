"""The README's examples run as written, and its commands name options and sessions that exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_examples import (
    blocks,
    check_commands_against_help,
    check_nox_sessions,
    help_text,
    run_python_block,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_python_blocks_run(invlin_validate):
    found = blocks(README.read_text(), "python")
    assert len(found) >= 3, "README should show validation, assertions and training"
    for i, block in enumerate(found):
        run_python_block(block, f"README.md python block {i}", {"invlin_validate": invlin_validate})


def test_readme_first_commands_are_install_and_tests():
    first = blocks(README.read_text(), "bash")[0].splitlines()
    assert first[0].startswith("pip install") and "invlin report" in first[0]
    assert "nox -s tests" in first[1]
    assert "nox -s tests" in (ROOT / ".ci" / "run").read_text()


def test_readme_commands_exist():
    text = README.read_text()
    check_commands_against_help(text)
    check_nox_sessions(text)
    assert "usage: invlin" in help_text()
    assert "Exit status" in help_text("validate")


def test_command_check_catches_a_wrong_option():
    with pytest.raises(AssertionError, match="--no-such-option"):
        check_commands_against_help("```bash\ninvlin validate x:y --no-such-option 3\n```\n")
    with pytest.raises(AssertionError, match="not_a_session"):
        check_nox_sessions("run `nox -s not_a_session`")


def test_python_block_failure_is_seen():
    with pytest.raises(AssertionError, match="boom"):
        run_python_block("def test_x():\n    raise AssertionError('boom')\n", "example", {})
