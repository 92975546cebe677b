"""Run the examples of Markdown files and check the commands they show (README, docs pages).

Every ```python block is executed in a fresh namespace; a ``test_*`` function it defines is called
too, with the fixtures the caller passes (the real ``invlin_validate`` in the tests). Shell blocks
cannot run in a test (they install, or need a user's package), so each ``invlin`` command in them
is checked against the ``--help`` of its subcommand, and each ``nox -s`` session against
``noxfile.py``.
"""

from __future__ import annotations

import inspect
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

__all__ = [
    "blocks",
    "check_commands_against_help",
    "check_nox_sessions",
    "help_text",
    "invlin_commands",
    "run_python_block",
]

ROOT = Path(__file__).resolve().parents[1]


def blocks(text: str, lang: str) -> list[str]:
    """The bodies of the fenced ```lang blocks of ``text``, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def run_python_block(block: str, where: str, fixtures: dict[str, Any]) -> None:
    """Execute ``block`` as an importable module (as a user's file or notebook would be: its
    classes can be pickled by reference), then call each ``test_*`` function it defines with
    ``fixtures``."""
    module = types.ModuleType("readme_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, where, "exec"), module.__dict__)
        for name, fn in list(module.__dict__.items()):
            if name.startswith("test_") and callable(fn):
                wanted = inspect.signature(fn).parameters
                missing = [p for p in wanted if p not in fixtures]
                assert not missing, f"{where}: {name} asks for unknown fixtures {missing}"
                fn(**{p: fixtures[p] for p in wanted})
    finally:
        del sys.modules[module.__name__]


def help_text(*sub: str) -> str:
    """``invlin SUB --help`` as run by a user (the console script's module)."""
    done = subprocess.run(
        [sys.executable, "-m", "invlin.cli", *sub, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def invlin_commands(text: str) -> list[list[str]]:
    """Each ``invlin ...`` command line of the shell blocks, split into words."""
    found = []
    for block in blocks(text, "bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.strip(), comments=True)
                if words and words[0] == "invlin":
                    found.append(words)
    return found


def check_commands_against_help(text: str) -> None:
    """Every option of every ``invlin`` command in ``text`` appears in its subcommand's help."""
    commands = invlin_commands(text)
    assert commands, "no invlin command in the shell blocks"
    helps: dict[tuple[str, ...], str] = {}
    for words in commands:
        sub = tuple(w for w in words[1:3] if w in ("report", "train", "validate", "replay"))
        if sub not in helps:
            helps[sub] = help_text(*sub)
        for word in words[1:]:
            if word.startswith("-"):
                option = word.split("=")[0]
                assert re.search(rf"(?<![\w-]){re.escape(option)}\b", helps[sub]), (
                    f"`{' '.join(words)}`: {option} is not in `invlin {' '.join(sub)} --help`"
                )


def check_nox_sessions(text: str) -> None:
    """Every ``nox -s NAME`` of ``text`` is a session of noxfile.py."""
    defined = set(re.findall(r"^def (\w+)\(session", (ROOT / "noxfile.py").read_text(), re.M))
    named = set(re.findall(r"nox -s (\w+)", text))
    assert named, "no nox session named"
    assert named <= defined, f"sessions not in noxfile.py: {sorted(named - defined)}"
