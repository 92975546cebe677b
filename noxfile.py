"""nox sessions for invlin: tests, report, lint (more arrive with later features)."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
# Pin torch to the CPU build by default; set INVLIN_CONSTRAINTS="" to let pip choose, or to a file.
CONSTRAINTS = os.environ.get("INVLIN_CONSTRAINTS", str(ROOT / "constraints" / "cpu.txt"))


def _install(session: nox.Session, extras: str) -> None:
    args = ["-c", CONSTRAINTS] if CONSTRAINTS else []
    session.install(*args, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the unit tests and doctests."""
    _install(session, "test,flint,experiments")
    session.run("pytest", *(session.posargs or ["tests", "--doctest-modules", "invlin"]))


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff on the code base."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Run the built-in drift check (the main job)."""
    _install(session, "flint")
    session.run("invlin", "report", *session.posargs)


@nox.session(default=False)
def cuda(session: nox.Session) -> None:
    """Run the CUDA tests (skip cleanly without a GPU); uses the torch already installed."""
    # A CUDA torch build cannot come from the CPU constraints file: install invlin without them
    # and keep the environment's torch (create the venv with --system-site-packages when needed).
    session.install("-e", ".[test]")
    session.run("pytest", "tests/test_cuda.py", "-v", "-rs", *session.posargs)


@nox.session(default=False)
def experiments(session: nox.Session) -> None:
    """Regenerate reports/experiments (toy2d and digits; a few minutes on 2 CPU cores)."""
    _install(session, "experiments,flint")
    session.run("invlin", "train", "toy2d", "--quiet", *session.posargs)
    session.run("invlin", "train", "digits", "--quiet", *session.posargs)
