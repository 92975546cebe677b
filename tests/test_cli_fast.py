"""``invlin --help`` and every subcommand's ``--help`` answer without importing torch, SciPy or
Matplotlib (each costs seconds on a cold start; help must not)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from invlin.cli import SUBCOMMANDS, SUMMARIES, build_parser, main, overview_parser

# In a fresh interpreter, ask ``main`` for the help of each (sub)command path given in argv
# (as JSON) and record which heavy modules were imported by then. One process for all paths
# keeps the test cheap; the check after each path names the first one that imported torch.
PROBE = r"""
import contextlib, io, json, sys
from invlin.cli import main

out = []
for path in json.loads(sys.argv[1]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            main([*path, "--help"])
            code = None
        except SystemExit as exc:
            code = exc.code
    heavy = ("torch", "scipy", "matplotlib")
    mods = sorted(m for m in sys.modules if m in heavy or m.startswith("invlin."))
    usage = text.getvalue().startswith("usage: invlin")
    out.append({"path": path, "code": code, "usage": usage, "modules": mods})
print(json.dumps(out))
"""


def _paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command path of ``parser``: ``[]``, ``["report"]``, ``["report", "replay"]``, ..."""
    found = [list(prefix)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _paths(child, (*prefix, name))
    return found


def test_no_help_imports_torch():
    paths = _paths(build_parser())
    assert {("report", "replay"), ("train", "toy2d"), ("validate",)} <= set(map(tuple, paths))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(paths)], capture_output=True, text=True, check=True
    ).stdout
    results = json.loads(done.strip().splitlines()[-1])
    assert [r["path"] for r in results] == paths
    for r in results:
        assert r["code"] == 0 and r["usage"], r
        for heavy in ("torch", "scipy", "matplotlib"):
            assert heavy not in r["modules"], (
                f"`invlin {' '.join(r['path'])} --help` imported {heavy}"
            )
    # ``invlin --help`` (the first path) lists the subcommands without importing their modules.
    assert results[0]["path"] == []
    assert not set(SUBCOMMANDS.values()) & set(results[0]["modules"])


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _helps(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a.help for a in sub._choices_actions}


def test_overview_lists_every_subcommand_with_its_registered_summary():
    assert set(SUMMARIES) == set(SUBCOMMANDS) == set(_subcommands(overview_parser()))
    assert _helps(overview_parser()) == _helps(build_parser()) == SUMMARIES


def test_overview_refuses_what_names_no_subcommand(capsys):
    for argv, code in (([], 2), (["bogus"], 2), (["--help"], 0)):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == code, argv
    err = capsys.readouterr()
    assert "invalid choice: 'bogus'" in err.err
    for name in SUMMARIES:
        assert name in err.out


def test_python_dash_m_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "invlin", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: invlin"), done.stderr
